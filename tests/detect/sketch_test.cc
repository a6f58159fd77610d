#include "proxy/detect/sketch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "proxy/detect/key_hash.h"
#include "testing/zipf.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::Zipf;

TEST(KeyHashTest, DeterministicAndSeeded) {
  std::string key(64, 'k');
  EXPECT_EQ(KeyHash(key.data(), key.size(), 1), KeyHash(key.data(), key.size(), 1));
  EXPECT_NE(KeyHash(key.data(), key.size(), 1), KeyHash(key.data(), key.size(), 2));
  // Every length up to 64 bytes hashes, and lengths differ.
  absl::flat_hash_map<uint64_t, int> seen;
  for (int n = 0; n <= 64; ++n) seen[KeyHash(key.data(), n, 7)]++;
  EXPECT_EQ(seen.size(), 65u);
}

TEST(KeyHashTest, EveryLengthAndEveryByteCounts) {
  // Lengths 0 to 200 (the branch-free 16-64 byte path, the short paths and the long loop), and
  // for each, a change of any single byte changes the hash.
  std::string key;
  for (int i = 0; i < 200; ++i) key.push_back(static_cast<char>('a' + i % 26));
  absl::flat_hash_map<uint64_t, int> seen;
  for (size_t n = 0; n <= key.size(); ++n) {
    const uint64_t h = KeyHash(key.data(), n, 7);
    seen[h]++;
    for (size_t i = 0; i < n; ++i) {
      std::string changed = key.substr(0, n);
      changed[i] ^= 0x20;
      ASSERT_NE(KeyHash(changed.data(), n, 7), h) << "length " << n << ", byte " << i;
    }
  }
  EXPECT_EQ(seen.size(), key.size() + 1);
  // Never a byte outside the key (an ASan build sees a read past a buffer of exactly n bytes).
  for (size_t n = 0; n <= key.size(); ++n) {
    auto exact = std::make_unique<char[]>(n);
    std::memcpy(exact.get(), key.data(), n);
    EXPECT_EQ(KeyHash(exact.get(), n, 7), KeyHash(key.data(), n, 7));
  }
}

TEST(KeyHashTest, MixedSeedIsTheSameHash) {
  const uint64_t mixed = KeyHashSeed(42);
  for (size_t n : {0, 3, 8, 15, 16, 31, 32, 33, 64, 65, 100}) {
    std::string key(n, 'q');
    EXPECT_EQ(KeyHashMixed(key.data(), n, mixed), KeyHash(key.data(), n, 42)) << n;
  }
}

TEST(KeyHashTest, LowBitsSpreadEvenly) {
  // The sketch's columns come from the hash's bits: ids that differ in a digit or two, as real
  // keys do, must fill 4096 columns about evenly (a chi-square far from its 4095 degrees of
  // freedom would mean clustering, and tighter estimates lost).
  constexpr int kColumns = 4096, kKeys = 400000;
  for (int shift : {0, 32}) {
    std::vector<int> count(kColumns, 0);
    for (int i = 0; i < kKeys; ++i) {
      std::string key = "user-" + std::to_string(i) + "/session";
      ++count[(KeyHash(key.data(), key.size(), 3) >> shift) & (kColumns - 1)];
    }
    double chi2 = 0, expected = static_cast<double>(kKeys) / kColumns;
    for (int c : count) chi2 += (c - expected) * (c - expected) / expected;
    EXPECT_LT(chi2, 4095 + 6 * std::sqrt(2.0 * 4095)) << "bits from " << shift;
  }
}

TEST(SketchShapeTest, FollowsTheErrorBound) {
  auto shape = SketchShape::ForErrorBound(1e-3, 0.01, 1 << 30);
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(shape->depth, 5u);      // ceil(ln 100)
  EXPECT_EQ(shape->width, 4096u);   // e / 1e-3 = 2719, to the next power of two
  EXPECT_LE(shape->epsilon(), 1e-3);
}

TEST(SketchShapeTest, MemoryCapNarrowsTheWidth) {
  auto shape = SketchShape::ForErrorBound(1e-5, 0.01, 256 << 10);
  ASSERT_TRUE(shape.ok());
  EXPECT_LE(shape->bytes(), 256u << 10);
  // e / 1e-5 wants 262144 columns. Within 256 KiB, 4 rows × 16384 (1.9e-4 at delta 0.01) bound
  // the error tighter than the 5 rows of ln(100) could (5 × 8192: 3.1e-4).
  EXPECT_EQ(shape->depth, 4u);
  EXPECT_EQ(shape->width, 16384u);
  EXPECT_NEAR(shape->epsilon(), std::pow(0.01, -1.0 / 4) / 16384, 1e-12);
  EXPECT_LT(shape->epsilon(), (SketchShape{8192, 5, 0.01}.epsilon()));
}

TEST(SketchShapeTest, UnderAMemoryCapTheShapeWithTheTightestBoundWins) {
  for (size_t max_bytes : {size_t{4} << 10, size_t{100} << 10, size_t{256} << 10,
                           size_t{1} << 20, size_t{3} << 20}) {
    for (double delta : {0.1, 0.01, 0.001}) {
      auto shape = SketchShape::ForErrorBound(1e-7, delta, max_bytes);
      ASSERT_TRUE(shape.ok());
      EXPECT_LE(shape->bytes(), max_bytes);
      for (uint32_t depth = 1; depth <= 8; ++depth) {
        for (uint32_t width = 64; size_t{width} * depth * 4 <= max_bytes; width *= 2) {
          // No shape that fits bounds the error tighter.
          EXPECT_LE(shape->epsilon(), (SketchShape{width, depth, delta}.epsilon()) * (1 + 1e-9))
              << max_bytes << " bytes, delta " << delta << ": " << width << " × " << depth
              << " is tighter than " << shape->width << " × " << shape->depth;
        }
      }
    }
  }
}

TEST(SketchShapeTest, BadBoundsAreRefused) {
  EXPECT_FALSE(SketchShape::ForErrorBound(0, 0.01, 1 << 20).ok());
  EXPECT_FALSE(SketchShape::ForErrorBound(1e-3, 1.5, 1 << 20).ok());
  EXPECT_FALSE(SketchShape::ForErrorBound(1e-3, 0.01, 100).ok());
}

// On a Zipf stream, every estimate is at least the true count, and all but a delta fraction
// exceed it by at most epsilon × the stream length.
void CheckBound(double exponent, bool conservative) {
  auto shape = SketchShape::ForErrorBound(1e-3, 0.01, 1 << 20);
  ASSERT_TRUE(shape.ok());
  CountMinSketch sketch(*shape, conservative);
  Zipf zipf(100000, exponent, 5);
  absl::flat_hash_map<size_t, uint32_t> exact;
  const int kRecords = 500000;
  for (int i = 0; i < kRecords; ++i) {
    size_t rank = zipf.Next();
    std::string key = "key-" + std::to_string(rank);
    sketch.Add(KeyHash(key.data(), key.size(), 9));
    ++exact[rank];
  }
  int over_bound = 0;
  for (const auto& [rank, count] : exact) {
    std::string key = "key-" + std::to_string(rank);
    uint32_t estimate = sketch.Estimate(KeyHash(key.data(), key.size(), 9));
    ASSERT_GE(estimate, count) << key;
    if (estimate - count > shape->epsilon() * kRecords) ++over_bound;
  }
  EXPECT_LE(over_bound, 0.01 * exact.size()) << "exponent " << exponent;
}

TEST(CountMinSketchTest, ConservativeUpdateStaysWithinTheBoundOnZipf) {
  for (double s : {0.8, 1.0, 1.5}) CheckBound(s, true);
}

TEST(CountMinSketchTest, PlainUpdateStaysWithinTheBoundOnZipf) {
  for (double s : {0.8, 1.0, 1.5}) CheckBound(s, false);
}

TEST(CountMinSketchTest, ConservativeUpdateIsTighterThanPlain) {
  auto shape = SketchShape::ForErrorBound(1e-3, 0.01, 1 << 20);
  ASSERT_TRUE(shape.ok());
  CountMinSketch cu(*shape, true), plain(*shape, false);
  Zipf zipf(20000, 1.0, 3);
  absl::flat_hash_map<size_t, uint32_t> exact;
  for (int i = 0; i < 200000; ++i) {
    size_t rank = zipf.Next();
    uint64_t h = KeyHash(&rank, sizeof rank, 1);
    cu.Add(h);
    plain.Add(h);
    ++exact[rank];
  }
  double cu_error = 0, plain_error = 0;
  for (const auto& [rank, count] : exact) {
    uint64_t h = KeyHash(&rank, sizeof rank, 1);
    cu_error += cu.Estimate(h) - count;
    plain_error += plain.Estimate(h) - count;
  }
  EXPECT_LT(cu_error, 0.7 * plain_error);
}

TEST(CountMinSketchTest, LocateThenAddAtIsAdd) {
  // The batch path (locate, prefetch, add later) counts exactly as Add, for 4 and 5 rows and
  // both update rules.
  for (uint32_t depth : {4u, 5u}) {
    for (bool conservative : {true, false}) {
      SketchShape shape{1024, depth};
      CountMinSketch one(shape, conservative), two(shape, conservative);
      Zipf zipf(5000, 1.0, 2);
      for (int i = 0; i < 50000; ++i) {
        const size_t rank = zipf.Next();
        const uint64_t h = KeyHash(&rank, sizeof rank, 4);
        uint32_t expected = one.Add(h), got;
        if (depth == 4) {
          uint32_t index[4];
          two.Locate<4>(h, index, /*prefetch=*/true);
          got = two.AddAt<4>(index);
        } else {
          uint32_t index[5];
          two.Locate<5>(h, index, /*prefetch=*/true);
          got = two.AddAt<5>(index);
        }
        ASSERT_EQ(got, expected) << "depth " << depth << " record " << i;
      }
      for (size_t rank = 0; rank < 5000; ++rank) {
        const uint64_t h = KeyHash(&rank, sizeof rank, 4);
        ASSERT_EQ(one.Estimate(h), two.Estimate(h));
      }
    }
  }
}

TEST(CountMinSketchTest, EveryDepthCountsTheSame) {
  // Depths 4 and 5 have unrolled code; the others take the general loop. Same rule for all:
  // a single key's estimate is its count.
  for (uint32_t depth = 1; depth <= 8; ++depth) {
    CountMinSketch sketch(SketchShape{256, depth}, true);
    for (int i = 0; i < 10; ++i) sketch.Add(99);
    EXPECT_EQ(sketch.Estimate(99), 10u) << depth;
  }
}

TEST(CountMinSketchTest, ScaleDecaysEveryCounter) {
  auto shape = SketchShape::ForErrorBound(1e-2, 0.1, 1 << 20);
  CountMinSketch sketch(*shape, true);
  sketch.Add(42, 1000);
  sketch.Scale(0.5);
  EXPECT_NEAR(sketch.Estimate(42), 500, 1);
}

TEST(CountMinSketchTest, SummedSketchesEstimateTheWhole) {
  auto shape = SketchShape::ForErrorBound(1e-2, 0.1, 1 << 20);
  CountMinSketch a(*shape, true), b(*shape, true);
  a.Add(7, 30);
  b.Add(7, 12);
  std::vector<double> sum;
  a.AccumulateInto(sum, 1.0);
  b.AccumulateInto(sum, 0.5);
  EXPECT_DOUBLE_EQ(CountMinSketch::EstimateIn(sum, *shape, 7), 36);
}

TEST(CountMinSketchTest, CountersSaturateInsteadOfWrapping) {
  auto shape = SketchShape::ForErrorBound(1e-2, 0.1, 1 << 20);
  CountMinSketch sketch(*shape, false);
  sketch.Add(1, 0xfffffff0u);
  sketch.Add(1, 0x100);
  EXPECT_EQ(sketch.Estimate(1), 0xffffffffu);
}

}  // namespace
}  // namespace saltproxy
