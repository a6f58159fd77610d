// The salting policy: given what a topic's keys weigh right now, decide for each hot key how many
// salts it gets, or whether it moves to the dedicated hot topic. Pure: no clock, no I/O, so it is
// tested on synthetic rates.
//
//   TopicPolicy policy;                      // from the config file
//   PolicyInput in{.partitions = 16, .total_rps = 16000, .hot = {{"nike", 4000}}};
//   std::vector<KeyDecision> out = DecideTopic("clicks", policy, in, current);
//   // The cold keys leave 1000 - 12000/16 = 250 records/s per partition free: nike needs
//   // ceil(3 × 4000 / 250) = 48 salts, capped at the topic's 16 partitions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/common/record.h"

namespace saltproxy {

enum class Strategy {
  kOff,              // never touch keys
  kSalt,             // salt hot keys within their topic, capped at max_salts
  kReroute,          // move every hot key to the dedicated topic (salted there)
  kSaltThenReroute,  // salt; move a key that needs more than max_salts
};

struct TopicPolicy {
  Strategy strategy = Strategy::kSaltThenReroute;
  // The load each partition should be kept under, in records/s. 0: adapt to the topic's mean
  // partition load (total rate / partitions), which is what evens partitions out.
  double partition_target_rps = 0;
  int min_salts = 2;
  int max_salts = 0;  // 0: the topic's partition count
  // Salts of a salted key = ceil(headroom × rate / free), where free is the capacity a partition
  // has left once the keys left alone are on it. Above 1 so that the load-aware spreading has
  // choices. benchmarks/salting/skew_benchmark: 3 brings steady streams within 1.05, but left a
  // drifting stream (new hot keys every 2 s) at 1.11 in its worst second over 64 partitions;
  // 4 keeps it within 1.03, with the same keys salted.
  double headroom = 4;
  // 0, or a cap on a salted key's salts of ceil(max_salts_per_share × its share of the topic's
  // records × partitions) (min_salts still applies): fewer partitions for a consumer to read a
  // key from, at the cost of evenness. The salts above fill the capacity the cold keys leave,
  // so while hot keys carry less than half of a topic, a key gets more than 2 × share ×
  // partitions; capping there left the worst partition at 1.16-1.29 × the mean in
  // benchmarks/salting/skew_benchmark (Zipf 1.0-1.2), against 1.00-1.04 uncapped.
  double max_salts_per_share = 0;
  // The dedicated topic's name, "{topic}" replaced by the source topic, and its partitions.
  std::string hot_topic_pattern = "{topic}.hot";
  int hot_topic_partitions = 16;

  absl::Status Validate() const;
  std::string HotTopicFor(const std::string& topic) const;
};

struct KeyRate {
  std::string key;
  double rate_rps = 0;
};

struct PolicyInput {
  int32_t partitions = 0;           // of the source topic
  int32_t hot_topic_partitions = 0;  // of the dedicated topic (0: not known yet; policy's value)
  double total_rps = 0;             // the whole topic's rate
  std::vector<KeyRate> hot;         // keys the detector holds hot, with their rates
};

// A key's layout: where its records go. Equal layouts mean no change (no new epoch).
struct KeyDecision {
  std::string key;
  RouteAction action = RouteAction::kSalted;  // kSalted or kRerouted
  std::string destination;                     // the topic its salts live in
  int32_t salts = 0;
  double rate_rps = 0;
};

// The layout currently in force for each key of the topic (empty for a cold topic).
using CurrentLayouts = absl::flat_hash_map<std::string, KeyDecision>;

// One decision per hot key. Salt counts rise at once and fall only when the need drops below
// three quarters of the current count, so that a key's layout does not change on every tick.
std::vector<KeyDecision> DecideTopic(const std::string& topic, const TopicPolicy& policy,
                                     const PolicyInput& input, const CurrentLayouts& current);

}  // namespace saltproxy
