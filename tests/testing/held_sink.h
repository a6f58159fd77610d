// Fakes for the ingress handlers' tests (and the Kafka handler's fuzz target, so no gtest here):
// a RecordSink that holds every record until the test delivers or fails it, and an Upstream
// whose topics all have one fixed partition count.
//
//   HeldSink sink(/*partitions=*/4);
//   handler.Handle(request, ...);        // its records wait in sink.records / sink.callbacks
//   sink.Deliver(0, /*offset=*/41);      // or sink.Fail(1); sink.Clear() once all are settled
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proxy/common/record.h"
#include "proxy/common/upstream.h"

namespace saltproxy::testing {

class HeldSink : public RecordSink {
 public:
  // Every topic but "" has `partitions`; beyond `capacity` records held, Submit pushes back.
  explicit HeldSink(int32_t partitions = 1, size_t capacity = 1'000'000)
      : partitions_(partitions), capacity_(capacity) {}

  // What Admit answers (set it to Unavailable for an unreachable cluster, ResourceExhausted
  // for a slow one), and what Congested answers.
  absl::Status admit;
  absl::Status Admit(int64_t) override { return admit; }
  bool congested = false;
  bool Congested() const override { return congested; }

  absl::Status Submit(Record&& record, DeliveryCallback done) override {
    if (records.size() >= capacity_) return absl::ResourceExhaustedError("the sink is full");
    records.push_back(std::move(record));
    callbacks.push_back(std::move(done));
    return absl::OkStatus();
  }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    if (topic.empty()) return done(absl::NotFoundError("no such topic"));
    done(partitions_);
  }
  // Record `i` was written at `offset` (partition 0).
  void Deliver(size_t i, int64_t offset) { DeliverTo(i, records[i].topic, 0, offset); }
  // Record `i` was written at `offset` of `partition` of `topic` (where a router may move it).
  void DeliverTo(size_t i, const std::string& topic, int32_t partition, int64_t offset) {
    DeliveryReport r;
    r.topic = topic;
    r.partition = partition;
    r.offset = offset;
    callbacks[i](r);
  }
  // Record `i` timed out: possibly written, as a client must take it; `maybe_written` when the
  // upstream says so too (sent, never acknowledged), rather than that it never left.
  void Fail(size_t i, bool maybe_written = false) {
    DeliveryReport r;
    r.topic = records[i].topic;
    r.status = absl::DeadlineExceededError("message timed out");
    r.maybe_written = maybe_written;
    callbacks[i](r);
  }
  // Forgets what it held (every callback must have run).
  void Clear() {
    records.clear();
    callbacks.clear();
  }

  std::vector<Record> records;
  std::vector<DeliveryCallback> callbacks;

 private:
  const int32_t partitions_;
  const size_t capacity_;
};

// Every topic but "" has `partitions` partitions; nothing is produced through it.
class FixedUpstream : public Upstream {
 public:
  explicit FixedUpstream(int32_t partitions) : partitions_(partitions) {}

  // What Admit answers (set it to Unavailable for an unreachable cluster), and the records it
  // was asked about.
  absl::Status admit;
  int64_t asked_to_admit = 0;
  absl::Status Admit(int64_t records) override {
    asked_to_admit += records;
    return admit;
  }

  absl::Status Produce(Record&&, int32_t, DeliveryCallback) override {
    return absl::UnimplementedError("the handler produces through its sink");
  }
  std::optional<int32_t> CachedPartitions(const std::string& topic) const override {
    if (topic.empty()) return std::nullopt;
    return partitions_;
  }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    if (topic.empty()) return done(absl::NotFoundError("no such topic"));
    done(partitions_);
  }
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string&, int32_t,
                           const std::map<std::string, std::string>&) override {
    return absl::OkStatus();
  }

 private:
  const int32_t partitions_;
};

}  // namespace saltproxy::testing
