// The one record type that flows from an ingress (Kafka protocol or HTTP) through the router to
// the forwarder. Each stage owns one concern and knows nothing of the stage before it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace saltproxy {

struct RecordHeader {
  std::string key;
  std::optional<std::string> value;  // Kafka allows a null header value.
};

struct Record {
  std::string topic;
  std::optional<std::string> key;    // nullopt: a null key (the partitioner spreads those).
  std::optional<std::string> value;  // nullopt: a null value (a tombstone).
  std::vector<RecordHeader> headers;
  int64_t timestamp_ms = 0;  // 0: the upstream producer stamps the record.
  int32_t partition = -1;    // -1: the router chooses; otherwise the client asked for it.
  // Where a keyed record goes while its key is cold (-1: the Java default partitioner's choice,
  // murmur2). The Kafka listener sets the client's own choice, which saltproxy keeps for a cold
  // key whatever the client's partitioner; a hot key's records move to its salts all the same.
  int32_t cold_partition = -1;
};

// What the router did with a record's key.
enum class RouteAction {
  kPassed,           // not hot: the Java default partitioner's partition (murmur2 of the key)
  kClientPartition,  // the client named the partition (or, Kafka, chose it for a cold key): kept
  kSalted,           // hot: spread over the key's salts within its own topic
  kRerouted,         // too hot for salting: moved (and salted) to the dedicated hot topic
};

// What became of one record upstream.
struct DeliveryReport {
  absl::Status status;      // OK once the cluster acknowledged the record.
  int16_t kafka_error = 0;  // The Kafka protocol error code when the broker refused it, else 0.
  std::string topic;        // Where the record went (a hot key may be rerouted).
  int32_t partition = -1;
  int64_t offset = -1;
  int64_t timestamp_ms = -1;
  RouteAction action = RouteAction::kPassed;
  int32_t salt = -1;        // The salt index when salted or rerouted, else -1.
  uint64_t epoch = 0;       // The salt map epoch the decision was made under.
  // Failed, but the cluster may have written it all the same: sent, and its acknowledgement
  // never came (the upstream producer's "possibly persisted").
  bool maybe_written = false;
};
using DeliveryCallback = absl::AnyInvocable<void(const DeliveryReport&)>;

// What an ingress hands its records to: the router in front of the forwarder. Both ingresses
// (Kafka protocol and HTTP) use the same sink, so whatever saltproxy does to keys applies to both.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // OK: `done` runs exactly once, later, on another thread. ResourceExhausted: push back.
  // InvalidArgument / NotFound: the record can never be produced. On an error `done` is dropped.
  virtual absl::Status Submit(Record&& record, DeliveryCallback done) = 0;
  // Asked once per new request, before any of its `records` is submitted: OK; Unavailable
  // while the upstream cluster is unreachable; ResourceExhausted, with a RetryAfter hint
  // (retry_after.h), while it is slower than the load. On a refusal answer a retriable error
  // at once: nothing of the request was sent.
  virtual absl::Status Admit(int64_t records) {
    (void)records;
    return absl::OkStatus();
  }
  // True while Admit would refuse new work because the upstream cluster is slower than the
  // load; counts nothing. A stream stops reading meanwhile.
  virtual bool Congested() const { return false; }
  // Partitions of `topic` (NotFound when the cluster has no such topic). `done` may run on the
  // caller's thread or on another.
  virtual void LookupTopic(const std::string& topic,
                           absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) = 0;
};

}  // namespace saltproxy
