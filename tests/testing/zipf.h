// A Zipf sampler over ranks 1..n with exponent s (inverse CDF by binary search), and a seeded
// permutation of ranks to key ids so that hot keys are not the first ids.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace saltproxy::testing {

class Zipf {
 public:
  Zipf(size_t n, double s, uint64_t seed) : cdf_(n), rng_(seed) {
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += 1.0 / std::pow(static_cast<double>(i + 1), s);
    double acc = 0;
    for (size_t i = 0; i < n; ++i) {
      acc += 1.0 / std::pow(static_cast<double>(i + 1), s) / total;
      cdf_[i] = acc;
    }
    cdf_.back() = 1.0;
  }
  // A rank from 0 (the most frequent).
  size_t Next() {
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }
  double Share(size_t rank) const { return rank == 0 ? cdf_[0] : cdf_[rank] - cdf_[rank - 1]; }

 private:
  std::vector<double> cdf_;
  std::mt19937_64 rng_;
};

}  // namespace saltproxy::testing
