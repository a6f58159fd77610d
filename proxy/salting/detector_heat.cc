#include "proxy/salting/detector_heat.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"

namespace saltproxy {

std::vector<TopicHeat> DetectorHeat::Tick(absl::Time now) {
  for (const HotKeyEvent& e : detector_.Tick(now)) {
    LogEvent(LogLevel::kDebug,
             e.kind == HotKeyEvent::Kind::kHot ? "key_detected_hot" : "key_detected_cold",
             {{"topic", e.topic},
              {"key", e.key},
              {"rate_rps", absl::StrCat(static_cast<int64_t>(e.rate_rps))},
              {"share", absl::StrCat(e.share)}});
  }
  std::vector<TopicHeat> heats;
  for (const TopicHeatView& view : detector_.Snapshot()->topics) {
    TopicHeat heat;
    heat.topic = view.topic;
    // A rate on the rise is its recent count, which the decayed average reaches only after
    // half-lives: a key that turns hot gets the salts its rate needs within a fraction of a
    // second, not over the seconds its average takes to climb. A key's recent window can be
    // shorter than its topic's (a key offered since the last step counts from that step), so
    // after a burst its recent rate can pass the topic's: no key carries more than its topic.
    heat.total_rps = std::max(view.rate_rps, view.recent_rps);
    for (const TrackedKey& k : view.keys) {
      if (!k.hot) continue;
      heat.hot.push_back(
          KeyRate{k.key, std::min(std::max(k.rate_rps, k.recent_rps), heat.total_rps)});
    }
    heats.push_back(std::move(heat));
  }
  return heats;
}

}  // namespace saltproxy
