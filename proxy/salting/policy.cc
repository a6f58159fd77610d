#include "proxy/salting/policy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace saltproxy {

absl::Status TopicPolicy::Validate() const {
  if (partition_target_rps < 0) {
    return absl::InvalidArgumentError("partition_target_rps: expected 0 (adaptive) or more");
  }
  if (min_salts < 1) return absl::InvalidArgumentError("min_salts: expected 1 or more");
  if (max_salts != 0 && max_salts < min_salts) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_salts (", max_salts, ") is below min_salts (", min_salts, ")"));
  }
  if (headroom < 1.0) return absl::InvalidArgumentError("headroom: expected 1.0 or more");
  if (hot_topic_pattern.find("{topic}") == std::string::npos) {
    return absl::InvalidArgumentError(
        "hot_topic_pattern: expected a name containing {topic}, e.g. {topic}.hot");
  }
  if (hot_topic_partitions < 1) {
    return absl::InvalidArgumentError("hot_topic_partitions: expected 1 or more");
  }
  return absl::OkStatus();
}

std::string TopicPolicy::HotTopicFor(const std::string& topic) const {
  return absl::StrReplaceAll(hot_topic_pattern, {{"{topic}", topic}});
}

std::vector<KeyDecision> DecideTopic(const std::string& topic, const TopicPolicy& policy,
                                     const PolicyInput& input, const CurrentLayouts& current) {
  std::vector<KeyDecision> decisions;
  if (policy.strategy == Strategy::kOff || input.partitions <= 0 || input.total_rps <= 0) {
    return decisions;
  }
  const double target = policy.partition_target_rps > 0
                            ? policy.partition_target_rps
                            : input.total_rps / input.partitions;
  const int32_t max_salts =
      policy.max_salts > 0 ? std::min(policy.max_salts, input.partitions) : input.partitions;
  const int32_t hot_partitions = input.hot_topic_partitions > 0 ? input.hot_topic_partitions
                                                                : policy.hot_topic_partitions;
  const std::string hot_topic = policy.HotTopicFor(topic);

  for (const KeyRate& k : input.hot) {
    const double need = policy.headroom * k.rate_rps / target;
    const int32_t needed = static_cast<int32_t>(std::min<double>(std::ceil(need), 1 << 20));
    KeyDecision d;
    d.key = k.key;
    d.rate_rps = k.rate_rps;
    bool reroute = policy.strategy == Strategy::kReroute ||
                   (policy.strategy == Strategy::kSaltThenReroute && needed > max_salts);
    int32_t cap = max_salts;
    if (reroute) {
      d.action = RouteAction::kRerouted;
      d.destination = hot_topic;
      cap = hot_partitions;
    } else {
      d.action = RouteAction::kSalted;
      d.destination = topic;
    }
    int32_t salts = std::clamp<int32_t>(needed, std::min(policy.min_salts, cap), cap);
    // Hysteresis: keep the current count unless the need rose above it or fell well below it.
    if (auto it = current.find(k.key);
        it != current.end() && it->second.action == d.action &&
        it->second.destination == d.destination) {
      const int32_t now = it->second.salts;
      if (salts < now && salts >= (3 * now) / 4) salts = now;
    }
    d.salts = salts;
    decisions.push_back(std::move(d));
  }
  return decisions;
}

}  // namespace saltproxy
