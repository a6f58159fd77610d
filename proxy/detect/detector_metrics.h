// Prometheus metrics of the hot-key detector, refreshed after each control step: hot keys and
// the estimated share of the hottest key per topic, and the memory of every sketch. No per-key
// labels; at most kMaxTopics topics get series of their own.
#pragma once

#include <map>
#include <string>

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "proxy/detect/hot_key_detector.h"

namespace saltproxy {

class DetectorMetrics {
 public:
  static constexpr size_t kMaxTopics = 500;
  explicit DetectorMetrics(prometheus::Registry& registry);
  void Update(const HotKeyDetector& detector);

 private:
  prometheus::Family<prometheus::Gauge>& hot_keys_;
  prometheus::Family<prometheus::Gauge>& hottest_share_;
  prometheus::Gauge& sketch_bytes_;
  std::map<std::string, std::pair<prometheus::Gauge*, prometheus::Gauge*>> topics_;
};

}  // namespace saltproxy
