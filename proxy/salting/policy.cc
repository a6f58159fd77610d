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
  if (max_salts_per_share < 0) {
    return absl::InvalidArgumentError("max_salts_per_share: expected 0 (no cap) or more");
  }
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
  // The capacity a partition has left for hot keys once the keys left alone (the cold ones)
  // are on it: hot keys fill these valleys, so each gets salts in proportion to its rate over
  // that free capacity, and together they reach every partition.
  double hot_total = 0;
  for (const KeyRate& k : input.hot) hot_total += k.rate_rps;
  const double cold_per_partition =
      std::max(0.0, input.total_rps - hot_total) / input.partitions;
  const double free = std::max(target - cold_per_partition, 0.05 * target);
  // The cap on a salted key's salts, × its share × partitions (0: none). Never below
  // 1 / hot share: share × partitions / hot share is the fewest with which the hot keys together
  // reach every partition, so that they can fill every valley.
  const double hot_share = std::min(1.0, hot_total / input.total_rps);
  const double share_cap = policy.max_salts_per_share > 0 && hot_share > 0
                               ? std::max(policy.max_salts_per_share, 1.0 / hot_share)
                               : policy.max_salts_per_share;

  for (const KeyRate& k : input.hot) {
    auto ceil_count = [](double x) {
      return static_cast<int32_t>(std::min<double>(std::ceil(x), 1 << 20));
    };
    KeyDecision d;
    d.key = k.key;
    d.rate_rps = k.rate_rps;
    // A key whose own rate needs more than max_salts partitions at the target cannot be
    // salted within its topic.
    bool reroute = policy.strategy == Strategy::kReroute ||
                   (policy.strategy == Strategy::kSaltThenReroute &&
                    ceil_count(k.rate_rps / target) > max_salts);
    int32_t needed;
    int32_t cap;
    if (reroute) {
      d.action = RouteAction::kRerouted;
      d.destination = hot_topic;
      cap = hot_partitions;
      needed = ceil_count(policy.headroom * k.rate_rps / target);
    } else {
      d.action = RouteAction::kSalted;
      d.destination = topic;
      cap = max_salts;
      needed = ceil_count(policy.headroom * k.rate_rps / free);
      if (share_cap > 0) {
        needed = std::min(needed, ceil_count(share_cap * k.rate_rps / input.total_rps *
                                             input.partitions));
      }
    }
    int32_t salts = std::clamp<int32_t>(needed, std::min(policy.min_salts, cap), cap);
    // Hysteresis: keep the current count unless the need rose above it or fell well below it;
    // and never add salts while the key's rate is falling (it grows only with the key).
    if (auto it = current.find(k.key);
        it != current.end() && it->second.action == d.action &&
        it->second.destination == d.destination) {
      const int32_t now = it->second.salts;
      if (salts < now && salts >= (3 * now) / 4) salts = now;
      if (salts > now && k.rate_rps <= it->second.rate_rps) salts = now;
    }
    d.salts = salts;
    decisions.push_back(std::move(d));
  }
  return decisions;
}

}  // namespace saltproxy
