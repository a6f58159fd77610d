// What a restarted instance takes over from the last salt map it published, so that a key hot
// before the restart stays exact across it (README, "How salting works": "Restarts").
//
// The old process is gone, and with it the numbers it gave each key: the new run cannot go on
// with them. So every key whose last layout is salted or rerouted gets a new layout at once,
// the same action, destination and partitions (its records land where readers of the old run's
// layout already look), its numbering from 0 (since_seq 0: a new hot episode for readers), and a
// cut-over point at each old partition's high watermark − 1 taken at the restart (everything
// the old run wrote is below it), plus the old layout's own cut-over points (a crash can leave a
// gap just where the old layout began, and the readers' sequence then no longer orders what
// came before it). A reader releases the new run's first record only once all of those are
// passed, and then knows the old run's numbers it never saw are lost, not late. A key whose
// last layout is cooled is resumed the same way, as cooled, for the rest of its
// cooled_retention (from its changed_at): its records stay stamped, and the records it gets
// once it leaves the map wait for its cut-over, as after any cooling.
//
//   ASSIGN_OR_RETURN(LastMap last, ReadLastMap(value_of_saltmap_key, "saltproxy-1"));
//   Watermarks hw;
//   for (const TopicPartition& tp : WatermarksNeeded(last)) hw[tp] = high_watermark(tp);
//   ResumePlan plan = PlanResume(last, hw, absl::Now(), cooled_retention);
//   router.Resume(std::move(plan.layouts), absl::Now());
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/salting/router.h"

namespace saltproxy {

// The last map an instance published, its layouts as the router writes them.
struct LastMap {
  uint64_t epoch = 0;
  std::vector<SaltMapEntry> layouts;
};

// Parses the value of `saltmap/<instance>` with the consumer library's parser. InvalidArgument
// when it is not a salt map, or is the map of another instance.
absl::StatusOr<LastMap> ReadLastMap(std::string_view json, std::string_view instance);

using TopicPartition = std::pair<std::string, int32_t>;
// High watermarks (the offset the next record will get) taken at the restart.
using Watermarks = std::map<TopicPartition, int64_t>;

// The partitions whose high watermarks the plan needs: each layout's own partitions.
std::vector<TopicPartition> WatermarksNeeded(const LastMap& last);

struct ResumePlan {
  // The layouts to install (epoch 0: the router numbers them as it installs them).
  std::vector<SaltMapEntry> layouts;
  int expired = 0;      // cooled keys whose retention had passed: cold from the start
  int unresumable = 0;  // keys with a partition whose high watermark is not known: cold too
};

ResumePlan PlanResume(const LastMap& last, const Watermarks& watermarks, absl::Time now,
                      absl::Duration cooled_retention);

}  // namespace saltproxy
