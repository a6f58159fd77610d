// The salting policy: given what a topic's keys weigh right now, decide for each hot key how many
// salts it gets, or whether it moves to the dedicated hot topic. Pure: no clock, no I/O, so it is
// tested on synthetic rates.
//
//   TopicPolicy policy;                      // from the config file
//   PolicyInput in{.partitions = 16, .total_rps = 16000, .hot = {{"nike", 4000}}};
//   std::vector<KeyDecision> out = DecideTopic("clicks", policy, in, current);
//   // The cold keys leave 1000 - 12000/16 = 250 records/s per partition free: nike would fill
//   // it with ceil(2 × 4000 / 250) = 32 salts, capped at the topic's 16 partitions. (Alone in
//   // carrying the hot quarter of the topic, it must reach every partition to even them.)
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
  // choices: with salts placed where the other hot keys are not (router.cc), 2 keeps steady
  // and drifting streams within 1.04 in benchmarks/salting/skew_benchmark; 1 left 1.06 steady
  // and 1.32 in a drifting stream's worst second, 1.5 left 1.11.
  double headroom = 2;
  // 0, or a cap on a salted key's salts of ceil(max(max_salts_per_share, 1 / H) × its share of
  // the topic's records × partitions), H being the hot keys' share of the topic (min_salts
  // still applies): fewer partitions for a consumer to read a key from. share × partitions / H
  // is the fewest with which the hot keys together reach every partition; below it some
  // partitions get no hot load and evenness is out of reach (a plain cap of 2 left Zipf 1.0
  // over 256 partitions at 1.17 × the mean). At 2.5, benchmarks/salting/skew_benchmark keeps
  // every steady stream within 1.05 and the drifting one within 1.06 in its worst second, with
  // a salted key's salts at most 2 × ceil(2 × its share × partitions); at 2 the drifting stream
  // reached 1.105.
  double max_salts_per_share = 2.5;
  // The dedicated topic's name, "{topic}" replaced by the source topic, and its partitions.
  std::string hot_topic_pattern = "{topic}.hot";
  int hot_topic_partitions = 16;
  // A salted or rerouted layout resumed at a restart (resume.h) is kept this long unless the
  // detector, which counts from zero after a restart, finds its key hot meanwhile; then it
  // cools as any key does. The proxy sets it to the topic's detection hold_down, the time a
  // hot key may stay below the cold threshold before it cools.
  absl::Duration resumed_hold = absl::Seconds(10);

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
