#include "proxy/detect/sketch.h"

#include <gtest/gtest.h>

#include <cmath>

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
  EXPECT_EQ(shape->width, 8192u);  // 5 rows × 8192 × 4 bytes = 160 KiB
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
