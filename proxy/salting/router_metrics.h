// Prometheus metrics of the router, refreshed after each control step: per topic records and
// bytes in, per partition records and bytes out, the skew (max/mean partition load), hot keys,
// salts in use, and the salt map epoch. Labels are topics and partitions, never keys, and at
// most kMaxTopics topics get their own series (the rest are summed under topic="_other").
//
//   RouterMetrics metrics(registry);
//   router.Tick(now);
//   metrics.Update(router);
#pragma once

#include <map>
#include <string>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "proxy/salting/router.h"

namespace saltproxy {

class RouterMetrics {
 public:
  static constexpr size_t kMaxTopics = 500;

  explicit RouterMetrics(prometheus::Registry& registry);
  // Control thread only.
  void Update(const Router& router);

 private:
  struct TopicSeries {
    prometheus::Counter* records_in;
    prometheus::Counter* bytes_in;
    prometheus::Counter* stamps_dropped;
    prometheus::Gauge* skew;
    prometheus::Gauge* hot_keys;
    prometheus::Gauge* salts;
    uint64_t last_records_in = 0;
    uint64_t last_bytes_in = 0;
    uint64_t last_stamps_dropped = 0;
  };
  struct PartitionSeries {
    prometheus::Counter* records_out;
    prometheus::Counter* bytes_out;
    uint64_t last_records = 0;
    uint64_t last_bytes = 0;
  };
  TopicSeries& Topic(const std::string& topic);

  prometheus::Family<prometheus::Counter>& records_in_;
  prometheus::Family<prometheus::Counter>& bytes_in_;
  prometheus::Family<prometheus::Counter>& stamps_dropped_;
  prometheus::Family<prometheus::Counter>& records_out_;
  prometheus::Family<prometheus::Counter>& bytes_out_;
  prometheus::Family<prometheus::Gauge>& skew_;
  prometheus::Family<prometheus::Gauge>& hot_keys_;
  prometheus::Family<prometheus::Gauge>& salts_;
  prometheus::Gauge& epoch_;
  std::map<std::string, TopicSeries> topics_;
  std::map<std::pair<std::string, int32_t>, PartitionSeries> partitions_;
};

}  // namespace saltproxy
