// What the router needs from hot-key detection: a lock-free per-record Observe, and a control
// step that says, per topic, how much traffic there is and which keys are hot right now (the
// detector applies its own hot/cold thresholds and hold-down). proxy/detect implements it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "proxy/salting/policy.h"

namespace saltproxy {

struct TopicHeat {
  std::string topic;
  double total_rps = 0;
  std::vector<KeyRate> hot;  // the keys held hot, with their estimated rates
};

class HeatTracker {
 public:
  virtual ~HeatTracker() = default;
  // Called once per keyed record, from any ingress thread; must not block. Takes no time: rates
  // are counted per control step (Tick), and a clock read per record (absl::Now, 49 ns on the
  // test machine) cost more than the count itself (16-18 ns).
  virtual void Observe(std::string_view topic, std::string_view key, size_t bytes) = 0;
  // The control step, from one thread.
  virtual std::vector<TopicHeat> Tick(absl::Time now) = 0;
  // Between steps, from the control step's thread: whether a step now would find a new key hot
  // (the control loop then runs it early).
  virtual bool RisingKeyWaiting() { return false; }
};

}  // namespace saltproxy
