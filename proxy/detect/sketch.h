// A count-min sketch of key frequencies, with conservative update, written by one thread and
// readable from others (its cells are relaxed atomics, so a reader sees a slightly stale but
// valid state). Width and depth come from an error bound: an estimate exceeds the true count by
// at most epsilon × total with probability 1 − delta, where width = e / epsilon (rounded up to a
// power of two) and depth = ln(1 / delta), or, when that does not fit in the memory allowed, the
// shape that fits with the tightest bound at that delta. Conservative update raises only the
// cells that hold the minimum, which keeps the estimates of heavy keys far tighter than the bound
// on skewed data.
//
//   ASSIGN_OR_RETURN(SketchShape shape, SketchShape::ForErrorBound(1e-4, 0.01, 256 << 10));
//   CountMinSketch sketch(shape, /*conservative=*/true);
//   uint32_t estimate = sketch.Add(KeyHash(key.data(), key.size(), 42));
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace saltproxy {

struct SketchShape {
  uint32_t width = 0;  // a power of two
  uint32_t depth = 0;
  double delta = 0;    // the bound's failure probability; 0: e^-depth
  // The smallest shape that meets (epsilon, delta): depth ln(1 / delta), width e / epsilon. When
  // it does not fit in max_bytes, the shape that fits with the smallest epsilon() at this delta:
  // fewer, wider rows can win, as the width is a power of two. At 256 KiB and delta 0.01, 4 rows
  // of 16384 (epsilon 1.9e-4) beat 5 rows of 8192 (3.1e-4), and cost a row less per record.
  static absl::StatusOr<SketchShape> ForErrorBound(double epsilon, double delta, size_t max_bytes);
  size_t bytes() const { return size_t{width} * depth * sizeof(uint32_t); }
  // The bound achieved: an estimate exceeds the true count by more than epsilon × total with
  // probability at most delta. In one row, the excess passes c × total / width with probability
  // at most 1 / c (Markov); the rows hash independently, so c = delta^(-1 / depth) (e for the
  // classic depth ln(1 / delta)).
  double epsilon() const;
};

class CountMinSketch {
 public:
  CountMinSketch(SketchShape shape, bool conservative);

  // Adds `count` to the key with this hash and returns its new estimate. Owner thread only.
  // Inline, and unrolled for 4 and 5 rows (the default shape under its 256 KiB cap has 4; delta
  // 0.01 without a cap gives 5): it is most of a record's cost.
  [[gnu::always_inline]] uint32_t Add(uint64_t hash, uint32_t count = 1) {
    switch (shape_.depth) {
      case 4:
        return AddRows<4>(hash, count);
      case 5:
        return AddRows<5>(hash, count);
      default:
        return AddAnyDepth(hash, count);
    }
  }
  // Asks the CPU to fetch the key's cells, so that an Add of this hash a few keys later finds
  // them in cache.
  [[gnu::always_inline]] void Prefetch(uint64_t hash) const {
    for (uint32_t r = 0; r < shape_.depth; ++r) __builtin_prefetch(&cells_[Index(hash, r)], 1);
  }
  // The same in two steps, for batches of keys on a sketch of kDepth rows (== shape().depth):
  // Locate finds (and prefetches) a key's cells, AddAt later adds to them, as Add would.
  template <uint32_t kDepth>
  [[gnu::always_inline]] void Locate(uint64_t hash, uint32_t (&index)[kDepth],
                                     bool prefetch) const {
#pragma GCC unroll 8
    for (uint32_t r = 0; r < kDepth; ++r) {
      index[r] = Index(hash, r);
      if (prefetch) __builtin_prefetch(&cells_[index[r]], 1);
    }
  }
  template <uint32_t kDepth>
  [[gnu::always_inline]] uint32_t AddAt(const uint32_t (&index)[kDepth], uint32_t count = 1) {
    // Unrolled, so that the cells' addresses and values stay in registers; the members are read
    // once into locals (GCC reloads them after every atomic store otherwise).
    constexpr uint32_t kMax = ~uint32_t{0};
    std::atomic<uint32_t>* const cells = cells_.get();
    const bool conservative = conservative_;
    uint32_t value[kDepth];
    uint32_t min = kMax;
#pragma GCC unroll 8
    for (uint32_t r = 0; r < kDepth; ++r) {
      value[r] = cells[index[r]].load(std::memory_order_relaxed);
      min = value[r] < min ? value[r] : min;
    }
    const uint32_t target = min > kMax - count ? kMax : min + count;
    if (conservative) {
      // Conservative update raises only the cells below the new minimum, and only to it.
      // Written without a branch: which cells those are is not predictable.
#pragma GCC unroll 8
      for (uint32_t r = 0; r < kDepth; ++r) {
        cells[index[r]].store(value[r] > target ? value[r] : target, std::memory_order_relaxed);
      }
    } else {
#pragma GCC unroll 8
      for (uint32_t r = 0; r < kDepth; ++r) {
        const uint32_t v = value[r];
        cells[index[r]].store(v > kMax - count ? kMax : v + count, std::memory_order_relaxed);
      }
    }
    return target;
  }
  // The key's estimate: never below its true (decayed) count.
  uint32_t Estimate(uint64_t hash) const;
  // Multiplies every counter by `factor` (0 < factor <= 1). Owner thread only.
  void Scale(double factor);
  // Adds this sketch's counters, times `weight`, into `sum` (same shape). Any thread.
  void AccumulateInto(std::vector<double>& sum, double weight) const;
  // The estimate of a key in a merged sum of sketches of this shape.
  static double EstimateIn(const std::vector<double>& sum, SketchShape shape, uint64_t hash);

  const SketchShape& shape() const { return shape_; }

 private:
  static uint32_t Index(SketchShape shape, uint64_t hash, uint32_t row) {
    // Double hashing: row i looks at h1 + i·h2 (h2 odd, so rows differ for any width).
    uint64_t h1 = hash;
    uint64_t h2 = ((hash >> 32) | (hash << 32)) | 1;
    return row * shape.width + static_cast<uint32_t>((h1 + row * h2) & (shape.width - 1));
  }
  uint32_t Index(uint64_t hash, uint32_t row) const { return Index(shape_, hash, row); }

  template <uint32_t kDepth>
  [[gnu::always_inline]] uint32_t AddRows(uint64_t hash, uint32_t count) {
    uint32_t index[kDepth];
    Locate<kDepth>(hash, index, /*prefetch=*/false);
    return AddAt<kDepth>(index, count);
  }
  uint32_t AddAnyDepth(uint64_t hash, uint32_t count);

  SketchShape shape_;
  bool conservative_;
  std::unique_ptr<std::atomic<uint32_t>[]> cells_;
};

}  // namespace saltproxy
