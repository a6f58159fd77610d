#include "proxy/salting/resume.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "saltproxy/salt_map.h"

namespace saltproxy {
namespace {

// RFC 3339 as the router writes it (Rfc3339); `fallback` when absent or unreadable.
absl::Time ParseTimeOr(const std::string& text, absl::Time fallback) {
  absl::Time t;
  std::string error;
  if (text.empty() || !absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return fallback;
  return t;
}

}  // namespace

absl::StatusOr<LastMap> ReadLastMap(std::string_view json, std::string_view instance) {
  PublishedSaltMap map;
  std::string error;
  if (!ParseSaltMap(json, &map, &error)) return absl::InvalidArgumentError(error);
  if (map.instance != instance) {
    return absl::InvalidArgumentError(absl::StrCat("the map is instance ", map.instance,
                                                   "'s, not ", std::string(instance), "'s"));
  }
  LastMap last;
  last.epoch = map.epoch;
  for (const KeyLayout& l : map.layouts) {
    SaltMapEntry e;
    if (l.action == "salted") {
      e.action = RouteAction::kSalted;
    } else if (l.action == "rerouted") {
      e.action = RouteAction::kRerouted;
    } else if (l.action == "cooled") {
      e.action = RouteAction::kPassed;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("key ", l.key, " of ", l.topic, ": unknown action ", l.action));
    }
    if (l.partitions.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key ", l.key, " of ", l.topic, ": no partitions"));
    }
    e.topic = l.topic;
    e.key = l.key;
    e.destination = l.destination;
    e.salts = static_cast<int32_t>(l.partitions.size());
    e.partitions = l.partitions;
    e.epoch = l.epoch;
    e.since_seq = l.since_seq;
    for (const CutOverPoint& c : l.cutover) {
      e.cutover.push_back(CutOver{c.topic, c.partition, c.max_offset});
    }
    e.hot_since = ParseTimeOr(l.hot_since, absl::InfinitePast());
    e.changed_at = ParseTimeOr(l.changed_at, absl::InfinitePast());
    e.resumed = l.resumed;
    last.layouts.push_back(std::move(e));
  }
  return last;
}

std::vector<TopicPartition> WatermarksNeeded(const LastMap& last) {
  std::vector<TopicPartition> needed;
  for (const SaltMapEntry& e : last.layouts) {
    for (int32_t p : e.partitions) needed.emplace_back(e.destination, p);
  }
  std::sort(needed.begin(), needed.end());
  needed.erase(std::unique(needed.begin(), needed.end()), needed.end());
  return needed;
}

ResumePlan PlanResume(const LastMap& last, const Watermarks& watermarks, absl::Time now,
                      absl::Duration cooled_retention) {
  ResumePlan plan;
  for (const SaltMapEntry& old : last.layouts) {
    const bool cooled = old.action == RouteAction::kPassed;
    // A cooled key whose changed_at is unknown gets a whole retention from now: stamped longer
    // than needed rather than too short.
    const absl::Time cooled_at = old.changed_at == absl::InfinitePast() ? now : old.changed_at;
    if (cooled && now - cooled_at > cooled_retention) {
      ++plan.expired;
      continue;
    }
    SaltMapEntry resumed;
    resumed.topic = old.topic;
    resumed.key = old.key;
    resumed.action = old.action;
    resumed.destination = old.destination;
    resumed.salts = old.salts;
    resumed.partitions = old.partitions;
    resumed.since_seq = 0;
    resumed.hot_since = old.hot_since == absl::InfinitePast() ? now : old.hot_since;
    // A cooled key's retention runs on from when it cooled; the others changed now.
    resumed.changed_at = cooled ? cooled_at : now;
    resumed.resumed = true;
    bool known = true;
    for (int32_t p : old.partitions) {
      auto hw = watermarks.find({old.destination, p});
      if (hw == watermarks.end()) {
        known = false;
        break;
      }
      resumed.cutover.push_back(CutOver{old.destination, p, hw->second - 1});
    }
    if (!known) {
      ++plan.unresumable;
      continue;
    }
    for (const CutOver& c : old.cutover) {
      if (c.max_offset < 0) continue;  // the key sent nothing there
      auto same = std::find_if(resumed.cutover.begin(), resumed.cutover.end(),
                               [&](const CutOver& o) {
                                 return o.topic == c.topic && o.partition == c.partition;
                               });
      if (same == resumed.cutover.end()) {
        resumed.cutover.push_back(c);
      } else {
        same->max_offset = std::max(same->max_offset, c.max_offset);
      }
    }
    plan.layouts.push_back(std::move(resumed));
  }
  return plan;
}

}  // namespace saltproxy
