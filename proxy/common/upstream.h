// What the router needs from the upstream cluster. proxy/forward's Forwarder is the real one;
// tests use a fake that records what it was asked to produce.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/common/record.h"

namespace saltproxy {

class Upstream {
 public:
  virtual ~Upstream() = default;
  // Queues `record` for `partition` (-1: the Java default partitioner's choice). OK: `done`
  // runs exactly once, later. Delivery reports of one partition arrive in produce order.
  virtual absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) = 0;
  // Asked once per new request before any of its `records` is produced, so that a refusal
  // leaves nothing half sent: OK, or Unavailable while the cluster is unreachable (the caller
  // answers a retriable error at once). Requests already admitted are not affected.
  // ResourceExhausted (with a RetryAfter hint, retry_after.h) while the cluster is slower than
  // the load: a record admitted now would wait past upstream.max_queue_delay.
  virtual absl::Status Admit(int64_t records) {
    (void)records;
    return absl::OkStatus();
  }
  // True while Admit would refuse new work as slow; counts nothing.
  virtual bool Congested() const { return false; }
  // Partitions of `topic` from the metadata cache, without waiting.
  virtual std::optional<int32_t> CachedPartitions(const std::string& topic) const = 0;
  // Partitions of `topic`, asking the cluster when the cache does not know it.
  virtual void LookupTopic(const std::string& topic,
                           absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) = 0;
  // Every topic the metadata cache knows, with its partitions, and the cluster's id.
  struct Topics {
    std::string cluster_id;
    std::vector<std::pair<std::string, int32_t>> topics;
  };
  virtual Topics KnownTopics() const = 0;
  // Creates `topic` unless it exists (blocking; control path only).
  virtual absl::Status CreateTopic(const std::string& topic, int32_t partitions,
                                   const std::map<std::string, std::string>& configs) = 0;
};

}  // namespace saltproxy
