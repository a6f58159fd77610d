// When a key is hot, and when it turns cold again: the detector's thresholds for every topic
// (Thresholds), and a topic's own overrides of them (TopicThresholds, salting.topics in the
// config file). Header-only, so that the config file's types can hold them too.
#pragma once

#include <optional>

#include "absl/time/time.h"

namespace saltproxy {

// A topic's own thresholds: unset fields keep the detector's; a topic that sets any of hot_rps,
// hot_share and hot_partition_share takes all three from here (unset ones 0), so that the one it
// sets is the one that applies.
struct TopicThresholds {
  std::optional<double> hot_rps;
  std::optional<double> hot_share;
  std::optional<double> hot_partition_share;
  std::optional<double> hot_min_rps;
  std::optional<double> partition_capacity_rps;
  std::optional<double> cold_ratio;
  std::optional<absl::Duration> hold_down;
  bool operator==(const TopicThresholds&) const = default;
};

// The thresholds in force: the detector's, or a topic's with its overrides applied.
struct Thresholds {
  // The hot threshold, in records/s, is the first of these that is set (non-zero):
  double hot_rps = 0;              // an absolute rate
  double hot_share = 0.001;        // a share of the topic's rate
  double hot_partition_share = 0;  // a share of one partition's capacity
  // ...and never below this floor, so that a quiet topic's noise is never salted.
  double hot_min_rps = 5;
  // One partition's capacity in records/s; 0: the topic's mean partition rate (rate/partitions).
  double partition_capacity_rps = 0;
  // A hot key turns cold after staying below cold_ratio × the hot threshold for hold_down.
  double cold_ratio = 0.5;
  absl::Duration hold_down = absl::Seconds(10);
  bool operator==(const Thresholds&) const = default;

  // These, with a topic's overrides applied.
  Thresholds With(const TopicThresholds& o) const {
    Thresholds t = *this;
    if (o.hot_rps || o.hot_share || o.hot_partition_share) {
      t.hot_rps = o.hot_rps.value_or(0);
      t.hot_share = o.hot_share.value_or(0);
      t.hot_partition_share = o.hot_partition_share.value_or(0);
    }
    if (o.hot_min_rps) t.hot_min_rps = *o.hot_min_rps;
    if (o.partition_capacity_rps) t.partition_capacity_rps = *o.partition_capacity_rps;
    if (o.cold_ratio) t.cold_ratio = *o.cold_ratio;
    if (o.hold_down) t.hold_down = *o.hold_down;
    return t;
  }
};

}  // namespace saltproxy
