// The hot-key detector (proxy/detect) as the router's HeatTracker.
//
//   HotKeyDetector detector(config, partitions_of);
//   DetectorHeat heat(detector);
//   Router router(upstream, &heat, options);
#pragma once

#include "proxy/detect/hot_key_detector.h"
#include "proxy/salting/heat.h"

namespace saltproxy {

class DetectorHeat : public HeatTracker {
 public:
  explicit DetectorHeat(HotKeyDetector& detector) : detector_(detector) {}
  void Observe(std::string_view topic, std::string_view key, size_t bytes) override {
    detector_.Observe(topic, key, bytes);
  }
  std::vector<TopicHeat> Tick(absl::Time now) override;
  bool RisingKeyWaiting() override { return detector_.RisingKeyWaiting(); }

 private:
  HotKeyDetector& detector_;
};

}  // namespace saltproxy
