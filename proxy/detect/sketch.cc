#include "proxy/detect/sketch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace saltproxy {

absl::StatusOr<SketchShape> SketchShape::ForErrorBound(double epsilon, double delta,
                                                       size_t max_bytes) {
  if (!(epsilon > 0 && epsilon < 1)) {
    return absl::InvalidArgumentError("epsilon: expected a number between 0 and 1, such as 1e-4");
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError("delta: expected a number between 0 and 1, such as 0.01");
  }
  SketchShape shape;
  shape.delta = delta;
  // At most 8 rows (delta down to e^-8): more would cost more than it buys.
  shape.depth = std::min<uint32_t>(8, static_cast<uint32_t>(std::ceil(std::log(1.0 / delta))));
  const uint64_t width = static_cast<uint64_t>(std::ceil(std::exp(1.0) / epsilon));
  uint64_t pow2 = 1;
  while (pow2 < width) pow2 <<= 1;
  if (pow2 * shape.depth * sizeof(uint32_t) <= max_bytes) {
    shape.width = static_cast<uint32_t>(pow2);
    return shape;
  }
  // The memory cap binds: of the shapes that fill it (each depth with the widest power-of-two
  // width that fits), the one with the tightest bound at this delta; on a tie, fewer rows.
  SketchShape best;
  for (uint32_t depth = 1; depth <= 8; ++depth) {
    uint64_t w = 1;
    while (w * 2 * depth * sizeof(uint32_t) <= max_bytes) w <<= 1;
    if (w < 64 || w * depth * sizeof(uint32_t) > max_bytes) continue;
    SketchShape candidate{static_cast<uint32_t>(w), depth, delta};
    if (best.width == 0 || candidate.epsilon() < best.epsilon() * (1 - 1e-9)) best = candidate;
  }
  if (best.width == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max sketch bytes ", max_bytes, " leaves fewer than 64 columns"));
  }
  return best;
}

double SketchShape::epsilon() const {
  if (width == 0 || depth == 0) return 1.0;
  if (delta <= 0) return std::exp(1.0) / width;
  return std::pow(delta, -1.0 / depth) / width;
}

CountMinSketch::CountMinSketch(SketchShape shape, bool conservative)
    : shape_(shape),
      conservative_(conservative),
      cells_(new std::atomic<uint32_t>[size_t{shape.width} * shape.depth]) {
  for (size_t i = 0; i < size_t{shape.width} * shape.depth; ++i) {
    cells_[i].store(0, std::memory_order_relaxed);
  }
}

uint32_t CountMinSketch::AddAnyDepth(uint64_t hash, uint32_t count) {
  constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();
  const uint32_t depth = std::min<uint32_t>(shape_.depth, 8);
  uint32_t index[8];
  uint32_t value[8];
  uint32_t min = kMax;
  for (uint32_t r = 0; r < depth; ++r) {
    index[r] = Index(shape_, hash, r);
    __builtin_prefetch(&cells_[index[r]], 1);
  }
  for (uint32_t r = 0; r < depth; ++r) {
    value[r] = cells_[index[r]].load(std::memory_order_relaxed);
    min = std::min(min, value[r]);
  }
  const uint32_t target = min > kMax - count ? kMax : min + count;
  for (uint32_t r = 0; r < depth; ++r) {
    const uint32_t v = value[r];
    // Conservative update raises only the cells below the new minimum, and only to it.
    // Written without a branch: which cells those are is not predictable.
    const uint32_t next =
        conservative_ ? std::max(v, target) : (v > kMax - count ? kMax : v + count);
    cells_[index[r]].store(next, std::memory_order_relaxed);
  }
  return target;
}

uint32_t CountMinSketch::Estimate(uint64_t hash) const {
  uint32_t min = std::numeric_limits<uint32_t>::max();
  for (uint32_t r = 0; r < shape_.depth; ++r) {
    min = std::min(min, cells_[Index(shape_, hash, r)].load(std::memory_order_relaxed));
  }
  return min;
}

void CountMinSketch::Scale(double factor) {
  const size_t n = size_t{shape_.width} * shape_.depth;
  // Fixed point: 16 fractional bits keep the rounding error below one count per cell.
  const uint64_t m = static_cast<uint64_t>(std::clamp(factor, 0.0, 1.0) * 65536.0);
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = cells_[i].load(std::memory_order_relaxed);
    if (v) cells_[i].store(static_cast<uint32_t>((v * m) >> 16), std::memory_order_relaxed);
  }
}

void CountMinSketch::AccumulateInto(std::vector<double>& sum, double weight) const {
  const size_t n = size_t{shape_.width} * shape_.depth;
  sum.resize(n, 0.0);
  for (size_t i = 0; i < n; ++i) sum[i] += weight * cells_[i].load(std::memory_order_relaxed);
}

double CountMinSketch::EstimateIn(const std::vector<double>& sum, SketchShape shape,
                                  uint64_t hash) {
  double min = std::numeric_limits<double>::max();
  for (uint32_t r = 0; r < shape.depth; ++r) min = std::min(min, sum[Index(shape, hash, r)]);
  return min;
}

}  // namespace saltproxy
