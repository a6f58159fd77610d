// The process's Prometheus registry and its text exposition. Each module resolves the handles
// of its own metric families once, at start-up, from this registry (never per request), e.g.
//
//   auto& family = prometheus::BuildCounter().Name("saltproxy_records_forwarded_total")
//                      .Help("Records delivered upstream").Register(metrics.registry());
//   prometheus::Counter* forwarded = &family.Add({});
//
// GET /metrics serves Serialize().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

namespace saltproxy {

class Metrics {
 public:
  Metrics();
  prometheus::Registry& registry() { return *registry_; }
  // Prometheus text format 0.0.4 of every family registered so far.
  std::string Serialize() const;

  // Latency buckets in seconds, 100 µs to 30 s, shared by every latency histogram so that
  // dashboards can compare them.
  static const std::vector<double>& LatencyBuckets();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace saltproxy
