#include "proxy/detect/detector_metrics.h"

namespace saltproxy {

DetectorMetrics::DetectorMetrics(prometheus::Registry& r)
    : hot_keys_(prometheus::BuildGauge()
                    .Name("saltproxy_detector_hot_keys")
                    .Help("Keys the detector holds hot, per topic")
                    .Register(r)),
      hottest_share_(prometheus::BuildGauge()
                         .Name("saltproxy_detector_hottest_key_share")
                         .Help("Estimated share of the topic's records carried by its hottest key")
                         .Register(r)),
      sketch_bytes_(prometheus::BuildGauge()
                        .Name("saltproxy_detector_sketch_bytes")
                        .Help("Memory held by the count-min sketches of every thread and topic")
                        .Register(r)
                        .Add({})) {}

void DetectorMetrics::Update(const HotKeyDetector& detector) {
  sketch_bytes_.Set(static_cast<double>(detector.SketchBytes()));
  for (const TopicHeatView& t : detector.Snapshot()->topics) {
    auto it = topics_.find(t.topic);
    if (it == topics_.end()) {
      std::string label = topics_.size() < kMaxTopics ? t.topic : "_other";
      it = topics_.find(label);
      if (it == topics_.end()) {
        it = topics_
                 .emplace(label, std::make_pair(&hot_keys_.Add({{"topic", label}}),
                                                &hottest_share_.Add({{"topic", label}})))
                 .first;
      }
    }
    int hot = 0;
    double hottest = 0;
    for (const TrackedKey& k : t.keys) {
      hot += k.hot;
      hottest = std::max(hottest, k.share);
    }
    it->second.first->Set(hot);
    it->second.second->Set(hottest);
  }
}

}  // namespace saltproxy
