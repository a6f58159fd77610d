// What librdkafka's statistics say about the proxy's upstream connections, as metrics:
//
//   saltproxy_upstream_produce_requests_total  Produce requests sent to the cluster
//   saltproxy_upstream_sent_bytes_total        bytes sent to the cluster (all requests)
//   saltproxy_upstream_rtt_seconds             mean round trip of the last interval's requests
//   saltproxy_upstream_queue_seconds           mean time a request waited in the producer
//                                              before it was sent (linger, in-flight limits)
//
// A broker's cost goes by its requests more than by its bytes, and librdkafka (2.0, and still
// upstream: confluentinc/librdkafka#1700) puts one partition in a Produce request where the
// Java client puts every partition of a broker in one: the request count is what tells a
// platform team how much more work the cluster does behind the proxy than behind its clients.
//
//   UpstreamStats stats(metrics.registry());
//   stats.Apply(producer_index, json);  // from librdkafka's stats_cb, any thread
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"

namespace saltproxy {

class UpstreamStats {
 public:
  explicit UpstreamStats(prometheus::Registry& registry);

  // One statistics document of upstream producer `producer` (librdkafka's cumulative counters
  // per broker connection). The counters move by what grew since that producer's previous
  // document; the gauges take the means of every producer's latest windows, weighted by what
  // each window counted (requests for the round trip, records for the queue time).
  // InvalidArgument for a document that is not librdkafka's statistics (nothing changes).
  absl::Status Apply(int producer, std::string_view json);

 private:
  struct Window {  // one broker connection's latest window
    int64_t rtt_us_sum = 0;
    int64_t rtt_count = 0;
    int64_t queue_us_sum = 0;
    int64_t queue_count = 0;
  };
  struct Seen {  // one broker connection's counters at the previous document
    int64_t produce_requests = 0;
    int64_t sent_bytes = 0;
    Window window;
  };

  prometheus::Counter& produce_requests_;
  prometheus::Counter& sent_bytes_;
  prometheus::Gauge& rtt_;
  prometheus::Gauge& queue_;
  std::mutex mu_;
  std::map<std::pair<int, std::string>, Seen> seen_;  // by (producer, broker name); guarded by mu_
};

}  // namespace saltproxy
