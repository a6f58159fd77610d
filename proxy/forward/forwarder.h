// The forwarder: the proxy's upstream librdkafka producers (idempotent, acks=all; as many as
// upstream.producers, each partition always through the same one, so that its records keep
// their order), their delivery reports, push-back, and a cache of the upstream cluster's
// metadata (asked through a client of its own, which no produce request holds up).
//
//   ASSIGN_OR_RETURN(auto forwarder, Forwarder::Create(config.upstream, metrics));
//   absl::Status queued = forwarder->Produce(std::move(record), partition,
//       [](const DeliveryReport& report) { ... });  // runs once, on the delivery thread
//   if (absl::IsResourceExhausted(queued)) { /* push back: 429 or a retriable Kafka answer */ }
//
// Nothing acknowledged is lost: a caller answers its client only from the delivery callback,
// which librdkafka calls after the cluster acknowledged the record (acks=all) or gave up on it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/common/log_limiter.h"
#include "proxy/common/record.h"
#include "proxy/common/upstream.h"
#include "proxy/config/config.h"
#include "proxy/forward/queue_delay.h"
#include "proxy/forward/reachability.h"
#include "proxy/metrics/metrics.h"

struct rd_kafka_s;

namespace saltproxy {

class UpstreamStats;

// What the proxy knows of the upstream cluster, refreshed in the background.
struct ClusterMetadata {
  std::string cluster_id;
  absl::flat_hash_map<std::string, int32_t> partition_counts;  // topic → partitions
  absl::Time fetched_at;
};

class Forwarder : public Upstream {
 public:
  // `cache_only_lookups`: LookupTopic answers from the metadata cache alone and never asks the
  // cluster about a topic it does not list. The embedded mock cluster needs it, since it creates
  // any topic a metadata request names.
  static absl::StatusOr<std::unique_ptr<Forwarder>> Create(const UpstreamConfig& config,
                                                           Metrics& metrics,
                                                           bool cache_only_lookups = false);
  ~Forwarder() override;
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Queues `record` for `partition` (-1: the Java default partitioner's choice, murmur2).
  // OK: `done` will run exactly once, on the delivery thread. ResourceExhausted: the queue is
  // full (push back, retry later); InvalidArgument: the record can never be produced (too
  // large, bad partition). On an error `done` is not called.
  absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) override;

  std::optional<int32_t> CachedPartitions(const std::string& topic) const override;
  Topics KnownTopics() const override;

  // Creates `topic` through librdkafka's Admin API (CreateTopics), or through the override set
  // with SetTopicCreator (the embedded mock cluster has no CreateTopics). An existing topic is
  // not an error.
  absl::Status CreateTopic(const std::string& topic, int32_t partitions,
                           const std::map<std::string, std::string>& configs) override;
  using TopicCreator = std::function<absl::Status(const std::string&, int32_t)>;
  void SetTopicCreator(TopicCreator creator) { topic_creator_ = std::move(creator); }

  // Waits until every queued record was delivered or failed and its caller told, or the timeout
  // passed.
  absl::Status Flush(absl::Duration timeout);

  // Shutdown, once the wait for requests in flight is over: refuses every new record
  // (Unavailable) and fails every record still queued or in flight (librdkafka's purge), so that
  // their callers are told at once and answer with an error. A record purged in flight may still
  // have been written by the cluster (its request was sent). Returns how many were purged.
  int Purge();
  // Shutdown begins: the metadata thread makes no further request (one under way ends within
  // its own timeout, long before Close needs the thread), and topic lookups are refused.
  void StopMetadata();
  // Purges, stops the threads and destroys the producers, within `deadline` but for what
  // librdkafka's destroy takes once nothing is left in flight (it does not wait for the
  // cluster). The destructor calls it with a deadline of 5 s when nobody did before.
  void Close(absl::Time deadline);

  // The latest metadata snapshot (never null; empty before the first refresh).
  std::shared_ptr<const ClusterMetadata> metadata() const;

  // Partitions of `topic`: from the cache when it knows the topic, otherwise from a targeted
  // metadata request made on the metadata thread. `done` gets NotFound for a topic the cluster
  // does not have, Unavailable when the cluster did not answer. It may run on the caller's
  // thread (cache hit) or on the metadata thread.
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override;

  // New requests may send records: OK; Unavailable while the cluster is unreachable
  // (reachability.h); ResourceExhausted while a record admitted now would wait upstream longer
  // than upstream.max_queue_delay (queue_delay.h), with a RetryAfter hint (retry_after.h).
  // Refused `records` are counted by reason. A few atomic operations, no lock.
  absl::Status Admit(int64_t records) override;
  // A record admitted now would wait longer than upstream.max_queue_delay: what Admit refuses as
  // slow, without counting anything (streams stop reading meanwhile).
  bool Congested() const override;
  // The estimated wait of a record admitted now (queue_delay.h), updated every ≤ 100 ms.
  absl::Duration QueueDelayEstimate() const { return queue_delay_.estimate(); }
  // True once the cluster answered a metadata request, while it is not unreachable: a slow
  // cluster is ready, a gone one is not.
  bool Ready() const {
    return has_metadata_.load(std::memory_order_relaxed) && reachability_.reachable();
  }
  // Records queued in librdkafka (all producers), not yet delivered.
  int QueueDepth() const;
  const std::string& bootstrap_servers() const { return bootstrap_servers_; }

  struct DeliveryTally;  // public only for the poll thread's thread_local pointer

 private:
  struct Handle;
  struct PendingDelivery;
  struct ForwardMetrics;

  Forwarder(const UpstreamConfig& config, Metrics& metrics, bool cache_only_lookups);
  absl::Status Start();
  absl::StatusOr<rd_kafka_s*> NewProducer();
  absl::StatusOr<rd_kafka_s*> NewMetadataClient();
  absl::Status QueueFull();
  void PollLoop(rd_kafka_s* rk);
  void UpdateQueueDelay();
  absl::Status Slow(int64_t records, absl::Duration delay);
  void MetadataLoop();
  void RefreshAll();
  absl::StatusOr<int32_t> FetchTopic(const std::string& topic);
  static void OnDelivery(void* rk, const void* message, void* opaque);
  // The cluster answered something (a delivery report it gave, a metadata answer).
  void Answered();

  UpstreamConfig config_;
  const bool cache_only_lookups_;
  std::string bootstrap_servers_;
  std::unique_ptr<Handle> handle_;
  std::unique_ptr<ForwardMetrics> metrics_;
  std::unique_ptr<UpstreamStats> stats_;  // fed by librdkafka's statistics, on poll threads
  TopicCreator topic_creator_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> has_metadata_{false};  // the cluster answered a metadata request once
  Reachability reachability_;
  std::atomic<bool> refusing_{false};  // Purge: no new record
  std::atomic<bool> metadata_stopping_{false};
  bool closed_ = false;
  std::vector<std::thread> poll_threads_;  // one per producer, serving its delivery reports
  // Records and key, value and header bytes queued in all producers together, against
  // upstream.max_queued_records and upstream.max_queued_bytes.
  std::atomic<int64_t> queued_records_{0};
  std::atomic<int64_t> queued_bytes_{0};
  // Records and bytes reported (delivered or failed) since start: with the two above, what
  // QueueDelay estimates from. Updated once per poll call, as the two above.
  std::atomic<int64_t> reported_records_{0};
  std::atomic<int64_t> reported_bytes_{0};
  QueueDelay queue_delay_;  // updated by the first producer's poll thread
  absl::Time queue_delay_updated_ = absl::InfinitePast();  // that thread's only
  std::atomic<int64_t> admitted_since_update_{0};  // records Admit let in since the update
  LogLimiter refusals_log_;
  // Poll calls holding delivery reports whose callers are not yet told (see DeliveryTally).
  std::atomic<int64_t> untold_{0};
  std::thread metadata_thread_;

  mutable std::mutex metadata_mu_;
  std::condition_variable metadata_cv_;
  std::shared_ptr<const ClusterMetadata> metadata_;
  struct Lookup {
    std::string topic;
    absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done;
  };
  std::deque<Lookup> lookups_;  // Bounded by kMaxPendingLookups.
};

}  // namespace saltproxy
