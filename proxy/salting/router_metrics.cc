#include "proxy/salting/router_metrics.h"

#include "absl/strings/str_cat.h"

namespace saltproxy {

RouterMetrics::RouterMetrics(prometheus::Registry& r)
    : records_in_(prometheus::BuildCounter()
                      .Name("saltproxy_topic_records_in_total")
                      .Help("Records clients produced to each topic")
                      .Register(r)),
      bytes_in_(prometheus::BuildCounter()
                    .Name("saltproxy_topic_bytes_in_total")
                    .Help("Key and value bytes clients produced to each topic")
                    .Register(r)),
      stamps_dropped_(prometheus::BuildCounter()
                          .Name("saltproxy_topic_stamp_headers_dropped_total")
                          .Help("Records that came with saltproxy's own headers (saltproxy-key, "
                                "-instance, -seq, -epoch), which were dropped from them")
                          .Register(r)),
      records_out_(prometheus::BuildCounter()
                       .Name("saltproxy_partition_records_out_total")
                       .Help("Records routed to each partition (salted and rerouted included)")
                       .Register(r)),
      bytes_out_(prometheus::BuildCounter()
                     .Name("saltproxy_partition_bytes_out_total")
                     .Help("Key and value bytes routed to each partition")
                     .Register(r)),
      skew_(prometheus::BuildGauge()
                .Name("saltproxy_partition_skew_ratio")
                .Help("Max over mean of the recent per-partition record loads (1 is even)")
                .Register(r)),
      hot_keys_(prometheus::BuildGauge()
                    .Name("saltproxy_hot_keys")
                    .Help("Keys of each topic salted or rerouted now")
                    .Register(r)),
      salts_(prometheus::BuildGauge()
                 .Name("saltproxy_salts_in_use")
                 .Help("Salts in use by the hot keys of each topic")
                 .Register(r)),
      epoch_(prometheus::BuildGauge()
                 .Name("saltproxy_salt_map_epoch")
                 .Help("The salt map's current epoch")
                 .Register(r)
                 .Add({})) {}

RouterMetrics::TopicSeries& RouterMetrics::Topic(const std::string& topic) {
  auto it = topics_.find(topic);
  if (it != topics_.end()) return it->second;
  std::string label = topics_.size() < kMaxTopics ? topic : "_other";
  if (auto other = topics_.find(label); other != topics_.end()) return other->second;
  TopicSeries s;
  s.records_in = &records_in_.Add({{"topic", label}});
  s.bytes_in = &bytes_in_.Add({{"topic", label}});
  s.stamps_dropped = &stamps_dropped_.Add({{"topic", label}});
  s.skew = &skew_.Add({{"topic", label}});
  s.hot_keys = &hot_keys_.Add({{"topic", label}});
  s.salts = &salts_.Add({{"topic", label}});
  return topics_.emplace(label, s).first->second;
}

void RouterMetrics::Update(const Router& router) {
  epoch_.Set(static_cast<double>(router.epoch()));
  for (const Router::TopicStats& t : router.Stats()) {
    TopicSeries& s = Topic(t.topic);
    s.records_in->Increment(static_cast<double>(t.records_in - s.last_records_in));
    s.bytes_in->Increment(static_cast<double>(t.bytes_in - s.last_bytes_in));
    s.last_records_in = t.records_in;
    s.last_bytes_in = t.bytes_in;
    s.stamps_dropped->Increment(static_cast<double>(t.stamps_dropped - s.last_stamps_dropped));
    s.last_stamps_dropped = t.stamps_dropped;
    s.skew->Set(t.skew);
    s.hot_keys->Set(t.hot_keys);
    s.salts->Set(t.salts_in_use);
    if (topics_.size() > kMaxTopics) continue;  // per-partition series only for named topics
    for (size_t p = 0; p < t.records_out.size(); ++p) {
      auto key = std::make_pair(t.topic, static_cast<int32_t>(p));
      auto it = partitions_.find(key);
      if (it == partitions_.end()) {
        prometheus::Labels labels{{"topic", t.topic}, {"partition", absl::StrCat(p)}};
        it = partitions_
                 .emplace(key, PartitionSeries{&records_out_.Add(labels), &bytes_out_.Add(labels)})
                 .first;
      }
      PartitionSeries& ps = it->second;
      ps.records_out->Increment(static_cast<double>(t.records_out[p] - ps.last_records));
      ps.bytes_out->Increment(static_cast<double>(t.bytes_out[p] - ps.last_bytes));
      ps.last_records = t.records_out[p];
      ps.last_bytes = t.bytes_out[p];
    }
  }
}

}  // namespace saltproxy
