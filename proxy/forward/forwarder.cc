#include "proxy/forward/forwarder.h"

#include <librdkafka/rdkafka.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <shared_mutex>

#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/common/retry_after.h"
#include "proxy/forward/upstream_stats.h"

namespace saltproxy {
namespace {

// A targeted lookup waits at most this long for the cluster; its callers answer a client.
constexpr absl::Duration kLookupTimeout = absl::Seconds(3);
// The periodic metadata request waits at most this long. It is also the probe that finds the
// cluster unreachable (reachability.h), so it does not shrink with a short metadata_refresh:
// a busy machine can take longer than 100 ms to answer without the cluster being gone.
constexpr absl::Duration kRefreshTimeout = absl::Seconds(5);
constexpr absl::Duration kRefreshRetryPause = absl::Milliseconds(100);
constexpr size_t kMaxPendingLookups = 1024;
constexpr size_t kMaxTopicHandles = 10000;
// Values up to this size are copied into librdkafka's messages (see Forwarder::Produce).
constexpr size_t kCopyMaxBytes = 512;
// Upstream producers (see Forwarder::Handle). Two carried Kafka's ProducerPerformance (1 KiB
// records, 8 partitions, one broker) from 0.72 to 0.79 of its direct throughput; four cost more
// CPU (more, smaller requests and more threads waking) for no more throughput.

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};

int ToMillis(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

}  // namespace

struct Forwarder::Handle {
  // The upstream producers. A record goes through the one its topic and partition pick, so that a
  // partition's records keep their order; each producer has its own connection to each broker,
  // and a broker works on the requests of one connection one at a time, while librdkafka (2.0)
  // puts one partition in a produce request: several producers keep several requests in work.
  // The first also carries the records the upstream partitioner places (-1).
  std::vector<std::unique_ptr<rd_kafka_t, KafkaDeleter>> producers;
  rd_kafka_t* main() const { return producers.front().get(); }
  // Metadata and admin requests go through a handle of their own, which produces nothing, so
  // that they never wait behind produce requests: a broker serves a connection's requests one
  // at a time, and one over its quota mutes the connection after answering (KIP-219) for as
  // long as the quota wants, seconds at a time. On the first producer's connection the metadata
  // probe timed out behind a throttled broker's produce requests, and /readyz said 503 for a
  // cluster that was only slow.
  std::unique_ptr<rd_kafka_t, KafkaDeleter> metadata;

  // Topic handles by name (one per producer), so that a record need not look its topic up by
  // name: librdkafka does that under its handle's write lock, which its broker threads also take.
  struct Topic {
    size_t hash = 0;
    std::vector<rd_kafka_topic_t*> handles;
  };
  std::shared_mutex topics_mu;
  absl::flat_hash_map<std::string, std::unique_ptr<Topic>> topics;

  // nullptr for a name librdkafka refuses, or beyond kMaxTopicHandles topics: such a topic is
  // produced by name, through the first producer, always.
  const Topic* FindTopic(const std::string& name) {
    {
      std::shared_lock<std::shared_mutex> lock(topics_mu);
      auto it = topics.find(name);
      if (it != topics.end()) return it->second.get();
    }
    std::unique_lock<std::shared_mutex> lock(topics_mu);
    auto it = topics.find(name);
    if (it != topics.end()) return it->second.get();
    if (topics.size() >= kMaxTopicHandles) return nullptr;
    auto topic = std::make_unique<Topic>();
    topic->hash = std::hash<std::string>()(name);
    for (auto& producer : producers) {
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(producer.get(), name.c_str(), nullptr);
      if (!rkt) {
        for (rd_kafka_topic_t* made : topic->handles) rd_kafka_topic_destroy(made);
        topics.emplace(name, nullptr);
        return nullptr;
      }
      topic->handles.push_back(rkt);
    }
    return topics.emplace(name, std::move(topic)).first->second.get();
  }

  // Which producer carries `partition` of `topic`.
  size_t Pick(const Topic* topic, int32_t partition) const {
    if (!topic || partition < 0) return 0;
    return (topic->hash + static_cast<size_t>(partition)) % producers.size();
  }

  void DestroyTopics() {
    for (auto& [name, topic] : topics) {
      if (topic) for (rd_kafka_topic_t* rkt : topic->handles) rd_kafka_topic_destroy(rkt);
    }
    topics.clear();
  }
  ~Handle() { DestroyTopics(); }
};

// Travels with each record as librdkafka's per-message opaque, so a delivery report finds its
// caller in constant time, with no table of outstanding requests to search.
struct Forwarder::PendingDelivery {
  DeliveryCallback done;
  Forwarder* forwarder;
  int64_t bytes;  // counted against upstream.max_queued_bytes until the report
  // A large value, which librdkafka reads in place (no copy) until the delivery report.
  std::optional<std::string> value;
};

struct Forwarder::ForwardMetrics {
  explicit ForwardMetrics(prometheus::Registry& r)
      : forwarded(prometheus::BuildCounter()
                      .Name("saltproxy_records_forwarded_total")
                      .Help("Records the upstream cluster acknowledged")
                      .Register(r)
                      .Add({})),
        forwarded_bytes(prometheus::BuildCounter()
                            .Name("saltproxy_forwarded_bytes_total")
                            .Help("Key and value bytes the upstream cluster acknowledged")
                            .Register(r)
                            .Add({})),
        failed_family(prometheus::BuildCounter()
                          .Name("saltproxy_records_failed_total")
                          .Help("Records the upstream cluster did not take, by librdkafka error")
                          .Register(r)),
        upstream_errors_family(prometheus::BuildCounter()
                                   .Name("saltproxy_upstream_errors_total")
                                   .Help("Errors librdkafka reported about the upstream cluster")
                                   .Register(r)),
        latency(prometheus::BuildHistogram()
                    .Name("saltproxy_upstream_delivery_seconds")
                    .Help("Time from queueing a record to its delivery report")
                    .Register(r)
                    .Add({}, Metrics::LatencyBuckets())),
        queue_depth(prometheus::BuildGauge()
                        .Name("saltproxy_upstream_queue_records")
                        .Help("Records queued in the upstream producer, not yet delivered")
                        .Register(r)
                        .Add({})),
        queue_full(prometheus::BuildCounter()
                       .Name("saltproxy_backpressure_events_total")
                       .Help("Records refused because a bound was reached, by bound")
                       .Register(r)
                       .Add({{"bound", "upstream_queue"}})),
        ready(prometheus::BuildGauge()
                  .Name("saltproxy_upstream_ready")
                  .Help("1 once the upstream cluster answered, while it is not unreachable")
                  .Register(r)
                  .Add({})),
        refused_family(prometheus::BuildCounter()
                           .Name("saltproxy_records_refused_total")
                           .Help("Records of new requests refused before any was sent, by "
                                 "reason")
                           .Register(r)),
        refused_unreachable(refused_family.Add({{"reason", "upstream_unreachable"}})),
        refused_slow(refused_family.Add({{"reason", "upstream_slow"}})),
        queue_delay(prometheus::BuildGauge()
                        .Name("saltproxy_upstream_queue_delay_seconds")
                        .Help("Estimated time a record admitted now would wait upstream before "
                              "it is written; new requests are refused above "
                              "upstream.max_queue_delay")
                        .Register(r)
                        .Add({})) {
    // The usual errors get their series at start-up, so that dashboards and alerts see zeros
    // rather than nothing; any other error adds its own series when it first happens.
    for (rd_kafka_resp_err_t err :
         {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
          RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
          RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
          RD_KAFKA_RESP_ERR__PURGE_QUEUE}) {
      failed_family.Add({{"error", rd_kafka_err2name(err)}});
      upstream_errors_family.Add({{"error", rd_kafka_err2name(err)}});
    }
  }

  // Error paths only: a label per librdkafka error name, a bounded set.
  void CountFailure(prometheus::Family<prometheus::Counter>& family, const char* error) {
    std::lock_guard<std::mutex> lock(mu);
    family.Add({{"error", error}}).Increment();
  }

  prometheus::Counter& forwarded;
  prometheus::Counter& forwarded_bytes;
  prometheus::Family<prometheus::Counter>& failed_family;
  prometheus::Family<prometheus::Counter>& upstream_errors_family;
  prometheus::Histogram& latency;
  prometheus::Gauge& queue_depth;
  prometheus::Counter& queue_full;
  prometheus::Gauge& ready;
  prometheus::Family<prometheus::Counter>& refused_family;
  prometheus::Counter& refused_unreachable;
  prometheus::Counter& refused_slow;
  prometheus::Gauge& queue_delay;
  std::mutex mu;
};

Forwarder::Forwarder(const UpstreamConfig& config, Metrics& metrics, bool cache_only_lookups)
    : config_(config),
      cache_only_lookups_(cache_only_lookups),
      bootstrap_servers_(config.bootstrap_servers),
      handle_(std::make_unique<Handle>()),
      metrics_(std::make_unique<ForwardMetrics>(metrics.registry())),
      stats_(std::make_unique<UpstreamStats>(metrics.registry())),
      reachability_(absl::Now()),
      // Twice the bound: a broker over its quota can mute a connection for seconds between
      // answers, and the rate needs a few of them (queue_delay.h).
      queue_delay_(2 * std::max(config.max_queue_delay, absl::Seconds(1))),
      metadata_(std::make_shared<ClusterMetadata>()) {}

absl::StatusOr<std::unique_ptr<Forwarder>> Forwarder::Create(const UpstreamConfig& config,
                                                             Metrics& metrics,
                                                             bool cache_only_lookups) {
  std::unique_ptr<Forwarder> forwarder(new Forwarder(config, metrics, cache_only_lookups));
  if (absl::Status s = forwarder->Start(); !s.ok()) return s;
  return forwarder;
}

// The delivery reports served by one rd_kafka_poll call: their sum is applied to the shared queue
// counters and metrics once when the call returns, and only then are the callers told, in
// report order (so that a caller who hears of its delivery finds it counted). Applying each
// report on its own made it take the queue counters' cache line from the threads that produce,
// and the metrics' lock and cache lines from the other poll thread: 7 % of the proxy's CPU at
// 100-byte records.
struct Forwarder::DeliveryTally {
  explicit DeliveryTally(Forwarder& owner)
      : owner(owner), latency_buckets(Metrics::LatencyBuckets().size() + 1, 0.0) {}

  void Add(const rd_kafka_message_t* msg, int64_t queued_bytes) {
    ++records;
    bytes += queued_bytes;
    if (int64_t us = rd_kafka_message_latency(msg); us >= 0) {
      const double seconds = static_cast<double>(us) * 1e-6;
      const std::vector<double>& bounds = Metrics::LatencyBuckets();
      latency_buckets[static_cast<size_t>(
          std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin())] += 1;
      latency_sum += seconds;
      ++latencies;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++forwarded;
      forwarded_bytes += static_cast<double>(msg->len + msg->key_len);
    }
    // librdkafka's own errors (below zero: timed out, transport) are no answer of the cluster.
    answered |= msg->err >= RD_KAFKA_RESP_ERR_NO_ERROR;
  }

  void Apply() {
    if (records == 0) return;
    Count();
    for (auto& [pending, report] : reports) pending->done(report);
    reports.clear();
    owner.untold_.fetch_sub(1, std::memory_order_release);
  }

  void Count() {
    // Queued first, reported after: QueueDelay reads the sum of the two as records admitted,
    // and takes a dip for what it is, never a rise.
    owner.queued_records_.fetch_sub(records, std::memory_order_relaxed);
    owner.queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    owner.reported_records_.fetch_add(records, std::memory_order_relaxed);
    owner.reported_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    ForwardMetrics& m = *owner.metrics_;
    if (latencies > 0) m.latency.ObserveMultiple(latency_buckets, latency_sum);
    if (forwarded > 0) m.forwarded.Increment(forwarded);
    if (forwarded_bytes > 0) m.forwarded_bytes.Increment(forwarded_bytes);
    if (answered) owner.Answered();
    answered = false;
    records = bytes = latencies = 0;
    forwarded = forwarded_bytes = latency_sum = 0;
    std::fill(latency_buckets.begin(), latency_buckets.end(), 0.0);
  }

  Forwarder& owner;
  int64_t records = 0;
  int64_t bytes = 0;
  int64_t latencies = 0;
  double forwarded = 0;
  double forwarded_bytes = 0;
  double latency_sum = 0;
  bool answered = false;
  std::vector<double> latency_buckets;
  std::vector<std::pair<std::unique_ptr<PendingDelivery>, DeliveryReport>> reports;
};

namespace {
// The tally of the poll call this thread is in, if any: set by PollLoop around rd_kafka_poll.
// Reports served elsewhere (rd_kafka_flush, the destructor's purge) are applied one by one.
thread_local Forwarder::DeliveryTally* current_tally = nullptr;
}  // namespace

void Forwarder::OnDelivery(void* /*rk*/, const void* message, void* /*opaque*/) {
  const auto* msg = static_cast<const rd_kafka_message_t*>(message);
  std::unique_ptr<PendingDelivery> pending(static_cast<PendingDelivery*>(msg->_private));
  Forwarder& self = *pending->forwarder;
  DeliveryReport report;
  report.topic = rd_kafka_topic_name(msg->rkt);
  report.partition = msg->partition;
  report.offset = msg->offset;
  rd_kafka_timestamp_type_t tstype;
  report.timestamp_ms = rd_kafka_message_timestamp(msg, &tstype);
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ForwardMetrics& m = *self.metrics_;
    // librdkafka's codes at or above zero are the Kafka protocol's own error codes.
    report.kafka_error = msg->err > 0 ? static_cast<int16_t>(msg->err) : 0;
    report.maybe_written =
        rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
    const char* name = rd_kafka_err2name(msg->err);
    if (msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE) {
      report.status =
          absl::UnavailableError("saltproxy is shutting down: the record was not written");
    } else if (msg->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
      report.status = absl::UnavailableError(
          "saltproxy is shutting down: the record was sent but not acknowledged in time "
          "(it may have been written)");
    } else if (msg->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
      report.status = absl::DeadlineExceededError(
          absl::StrCat("upstream delivery timed out: ", rd_kafka_err2str(msg->err)));
    } else if (msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      // The broker's MESSAGE_TOO_LARGE: the topic's max.message.bytes decides (see NewProducer).
      report.status = absl::InvalidArgumentError(absl::StrCat(
          "the record is larger than the upstream cluster accepts for topic ", report.topic,
          " (its max.message.bytes)"));
    } else {
      report.status = absl::UnavailableError(
          absl::StrCat("upstream refused the record: ", rd_kafka_err2str(msg->err)));
    }
    m.CountFailure(m.failed_family, name);
  }
  if (current_tally != nullptr && &current_tally->owner == &self) {
    // One count per poll call that holds reports, not per report: Flush waits for it to drop.
    if (current_tally->reports.empty()) self.untold_.fetch_add(1, std::memory_order_relaxed);
    current_tally->Add(msg, pending->bytes);
    current_tally->reports.emplace_back(std::move(pending), std::move(report));
    return;
  }
  DeliveryTally one(self);
  one.Add(msg, pending->bytes);
  one.Count();
  pending->done(report);
}

absl::Status Forwarder::Start() {
  for (int i = 0; i < config_.producers; ++i) {
    absl::StatusOr<rd_kafka_t*> rk = NewProducer();
    if (!rk.ok()) return rk.status();
    handle_->producers.emplace_back(*rk);
  }
  absl::StatusOr<rd_kafka_t*> metadata = NewMetadataClient();
  if (!metadata.ok()) return metadata.status();
  handle_->metadata.reset(*metadata);
  for (auto& producer : handle_->producers) {
    poll_threads_.emplace_back([this, rk = producer.get()] { PollLoop(rk); });
  }
  metadata_thread_ = std::thread([this] { MetadataLoop(); });
  return absl::OkStatus();
}

absl::StatusOr<rd_kafka_t*> Forwarder::NewMetadataClient() {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The cluster's address and the user's properties (security above all) as the producers
  // have them; none of the producers' own, since it produces nothing (not idempotent: it asks
  // for no producer id).
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", config_.bootstrap_servers},
      {"client.id", "saltproxy"},
      {"log_level", "4"},
  };
  for (const auto& [name, value] : config_.librdkafka) settings.emplace_back(name, value);
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          absl::StrCat("upstream.librdkafka.", name, "=", value, ": ", err));
    }
  }
  // No error callback: librdkafka logs its errors instead (the producers count theirs).
  rd_kafka_conf_set_log_cb(
      conf, [](const rd_kafka_t*, int level, const char* fac, const char* buf) {
        LogEvent(level <= 3 ? LogLevel::kError : LogLevel::kWarn, "librdkafka",
                 {{"facility", fac}, {"message", buf}});
      });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("upstream metadata client: ", err));
  }
  return rk;
}

absl::StatusOr<rd_kafka_t*> Forwarder::NewProducer() {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const std::string& name, const std::string& value) -> absl::Status {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("upstream.librdkafka.", name, "=", value, ": ", err));
    }
    return absl::OkStatus();
  };
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", config_.bootstrap_servers},
      {"client.id", "saltproxy"},
      // Nothing acknowledged is lost: the proxy answers a client only after acks=all, and the
      // idempotent producer keeps retries from duplicating or reordering records.
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},  // The Java client's default, for records with no choice.
      {"message.timeout.ms", absl::StrCat(ToMillis(config_.delivery_timeout))},
      {"queue.buffering.max.messages", absl::StrCat(config_.max_queued_records)},
      {"queue.buffering.max.kbytes", absl::StrCat(std::max<uint64_t>(1, config_.max_queued_bytes / 1024))},
      // With at most two requests in flight (below), records that arrive while the connection is
      // busy gather into the next request anyway; the linger only holds the first records after
      // a lull. 1 ms rather than 2: a Java-like client with 5 requests in flight went from
      // 124,000 to 164,000 1 KiB records/s (request 4.7 to 3.5 ms), single-record HTTP over 64
      // connections from 22,000 to 28,000-30,000 requests/s, for about a tenth more CPU in
      // proxy and broker. 5 ms: ProducerPerformance at 1 KiB went from 0.72-0.74 of direct to
      // 0.62-0.65 (each request waits longer); 0 ms: 0.71-0.74, a fifth less proxy CPU.
      {"linger.ms", "1"},
      // At most two requests in flight on a connection: a broker reads the next request of a
      // connection only after answering the one before, so more in flight only wait there, each
      // formed too early to hold what arrived since; fewer, larger requests cost the broker and
      // the proxy less, and two still hide the network's round trip.
      {"max.in.flight.requests.per.connection", "2"},
      // Without Nagle's algorithm, as Kafka's Java client: a second request in flight is sent
      // at once rather than after the first one's acknowledgement (a Java-like load through the
      // listener: 124,000 to 127,000 1 KiB records/s, proxy CPU 1.15 to 1.06 s per 400,000).
      {"socket.nagle.disable", "true"},
      // A topic takes records up to its max.message.bytes, 1,048,588 by default; librdkafka's
      // own bound, 1,000,000 by default, refused records the broker takes, so it is the
      // broker's default here. Not higher by default: librdkafka sizes each request's buffer
      // up to this bound from the partition's backlog, and a record the broker refuses as too
      // large makes an idempotent producer drain and bump its epoch on every partition.
      // Topics that take larger records: upstream.librdkafka's message.max.bytes.
      {"message.max.bytes", "1048588"},
      {"log_level", "4"},
      {"statistics.interval.ms", absl::StrCat(ToMillis(config_.statistics_interval))},
  };
  for (const auto& [name, value] : config_.librdkafka) settings.emplace_back(name, value);
  for (const auto& [name, value] : settings) {
    if (absl::Status s = set(name, value); !s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque) {
    OnDelivery(rk, msg, opaque);
  });
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_stats_cb(conf, [](rd_kafka_t* rk, char* json, size_t len, void* opaque) {
    auto* self = static_cast<Forwarder*>(opaque);
    int producer = 0;
    while (producer < static_cast<int>(self->handle_->producers.size()) &&
           self->handle_->producers[producer].get() != rk) {
      ++producer;
    }
    if (absl::Status s = self->stats_->Apply(producer, std::string_view(json, len)); !s.ok()) {
      LogEvent(LogLevel::kWarn, "upstream_statistics_unreadable", {{"reason", s.message()}});
    }
    return 0;  // librdkafka frees the document
  });
  rd_kafka_conf_set_throttle_cb(
      conf, [](rd_kafka_t*, const char*, int32_t, int throttle_time_ms, void* opaque) {
        static_cast<Forwarder*>(opaque)->queue_delay_.Throttled(
            absl::Now(), absl::Milliseconds(throttle_time_ms));
      });
  rd_kafka_conf_set_error_cb(conf, [](rd_kafka_t*, int code, const char* reason, void* opaque) {
    auto* self = static_cast<Forwarder*>(opaque);
    const char* name = rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(code));
    self->metrics_->CountFailure(self->metrics_->upstream_errors_family, name);
    LogEvent(LogLevel::kWarn, "upstream_error", {{"error", name}, {"reason", reason}});
  });
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int level, const char* fac, const char* buf) {
    LogEvent(level <= 3 ? LogLevel::kError : LogLevel::kWarn, "librdkafka",
             {{"facility", fac}, {"message", buf}});
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("upstream producer: ", err));
  }
  return rk;
}

Forwarder::~Forwarder() {
  if (closed_) return;
  if (absl::Status s = Flush(absl::Seconds(5)); !s.ok()) {
    LogEvent(LogLevel::kWarn, "upstream_flush_incomplete", {{"reason", s.message()}});
  }
  Close(absl::Now() + absl::Seconds(1));
}

int Forwarder::Purge() {
  refusing_ = true;
  int purged = 0;
  // Fail what is left so that no caller waits for ever: purge makes librdkafka emit a delivery
  // report for each of these records, served by the poll threads (or Close's last poll).
  for (auto& producer : handle_->producers) {
    purged += rd_kafka_outq_len(producer.get());
    rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  }
  return purged;
}

void Forwarder::StopMetadata() {
  {
    std::lock_guard<std::mutex> lock(metadata_mu_);
    metadata_stopping_ = true;
  }
  metadata_cv_.notify_all();
}

void Forwarder::Close(absl::Time deadline) {
  if (closed_) return;
  closed_ = true;
  if (handle_->producers.empty()) return;  // Start failed before the first producer existed
  Purge();
  // The purged records' reports, served by the poll threads while they still run.
  while ((queued_records_.load() > 0 || untold_.load(std::memory_order_acquire) > 0) &&
         absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  stopping_ = true;
  StopMetadata();
  // Both return within a poll (100 ms) or a metadata request (kLookupTimeout) at most.
  for (std::thread& t : poll_threads_) t.join();
  if (metadata_thread_.joinable()) metadata_thread_.join();
  for (auto& producer : handle_->producers) rd_kafka_poll(producer.get(), 0);
  handle_->DestroyTopics();
  handle_->producers.clear();
  handle_->metadata.reset();
  for (Lookup& lookup : lookups_) lookup.done(absl::UnavailableError("saltproxy is shutting down"));
}

absl::Status Forwarder::Produce(Record&& record, int32_t partition, DeliveryCallback done) {
  if (refusing_.load(std::memory_order_relaxed)) {
    return absl::UnavailableError("saltproxy is shutting down: the record was not written");
  }
  // The queue bounds hold for all producers together.
  int64_t bytes = static_cast<int64_t>((record.key ? record.key->size() : 0) +
                                       (record.value ? record.value->size() : 0));
  for (const RecordHeader& h : record.headers) {
    bytes += static_cast<int64_t>(h.key.size() + (h.value ? h.value->size() : 0));
  }
  // Both counts move first, whichever bound refuses: the refusal takes both back.
  const bool records_full =
      queued_records_.fetch_add(1, std::memory_order_relaxed) >= config_.max_queued_records;
  const bool bytes_full = queued_bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes >
                          static_cast<int64_t>(config_.max_queued_bytes);
  if (records_full || bytes_full) {
    queued_records_.fetch_sub(1, std::memory_order_relaxed);
    queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    return QueueFull();
  }
  rd_kafka_headers_t* headers = nullptr;
  if (!record.headers.empty()) {
    headers = rd_kafka_headers_new(record.headers.size());
    for (const RecordHeader& h : record.headers) {
      rd_kafka_header_add(headers, h.key.data(), static_cast<ssize_t>(h.key.size()),
                          h.value ? h.value->data() : nullptr,
                          h.value ? static_cast<ssize_t>(h.value->size()) : 0);
    }
  }
  auto pending = std::make_unique<PendingDelivery>(
      PendingDelivery{std::move(done), this, bytes, std::nullopt});
  // A small value is copied into librdkafka's message and freed here, on the thread that made
  // it; a large one is handed over without a copy and freed after its report, on the delivery
  // thread. Memory freed on another thread than the one that allocated it costs glibc's malloc
  // more than a copy of a few hundred bytes (proxy CPU per 1.16 million 100-byte records: 1.33 s
  // handed over, 1.13 s copied; per 400,000 1 KiB records: 1.26 s handed over, 1.32 s copied).
  const bool copy = !record.value || record.value->size() <= kCopyMaxBytes;
  if (!copy) pending->value = std::move(record.value);
  const std::string* key = record.key ? &*record.key : nullptr;  // librdkafka copies keys
  const std::string* value = copy ? (record.value ? &*record.value : nullptr) : &*pending->value;
  const Handle::Topic* topic = handle_->FindTopic(record.topic);
  const size_t which = handle_->Pick(topic, partition);
  auto produce = [&](auto... topic_arg) {
    return rd_kafka_producev(
        handle_->producers[which].get(), topic_arg...,
        RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
        // Copied, or neither copied nor freed: `pending` owns the value.
        RD_KAFKA_V_MSGFLAGS(copy ? RD_KAFKA_MSG_F_COPY : 0),
        RD_KAFKA_V_KEY(key ? key->data() : nullptr, key ? key->size() : 0),
        RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr,
                         value ? value->size() : 0),
        RD_KAFKA_V_TIMESTAMP(record.timestamp_ms), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(pending.get()), RD_KAFKA_V_END);
  };
  rd_kafka_resp_err_t err = topic ? produce(RD_KAFKA_V_RKT(topic->handles[which]))
                                  : produce(RD_KAFKA_V_TOPIC(record.topic.c_str()));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    pending.release();  // Owned by librdkafka's message until OnDelivery.
    return absl::OkStatus();
  }
  if (headers) rd_kafka_headers_destroy(headers);  // Not taken over on failure.
  if (!copy) record.value = std::move(pending->value);  // Nor is the value: the caller keeps it.
  queued_records_.fetch_sub(1, std::memory_order_relaxed);
  queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  switch (err) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return QueueFull();
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return absl::InvalidArgumentError(
          "the record is larger than saltproxy's producer takes: a topic's default "
          "max.message.bytes, 1,048,588 bytes (upstream.librdkafka: message.max.bytes raises it "
          "for topics that take more)");
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:  // Kafka clients: UNKNOWN_TOPIC_OR_PARTITION
      return absl::NotFoundError(
          absl::StrCat("topic ", record.topic, " has no partition ", partition));
    default:
      return absl::UnavailableError(
          absl::StrCat("upstream producer refused the record: ", rd_kafka_err2str(err)));
  }
}

absl::Status Forwarder::Admit(int64_t records) {
  if (!reachability_.reachable()) {
    metrics_->refused_unreachable.Increment(static_cast<double>(records));
    return absl::UnavailableError(
        "the upstream Kafka cluster is unreachable (no broker answered a metadata request "
        "within its timeout, nor anything else since); nothing of this request was sent; "
        "retry later");
  }
  if (config_.max_queue_delay <= absl::ZeroDuration()) return absl::OkStatus();
  // With what the requests admitted since the last update bring (queue_delay.h, Projected):
  // counted here first, and taken back on a refusal, so that requests arriving together see
  // each other.
  const int64_t admitted =
      admitted_since_update_.fetch_add(records, std::memory_order_relaxed) + records;
  const absl::Duration delay = std::max(
      queue_delay_.estimate(),
      queue_delay_.Projected(queued_records_.load(std::memory_order_relaxed) + admitted));
  if (delay <= config_.max_queue_delay) return absl::OkStatus();
  admitted_since_update_.fetch_sub(records, std::memory_order_relaxed);
  return Slow(records, delay);
}

bool Forwarder::Congested() const {
  if (config_.max_queue_delay <= absl::ZeroDuration()) return false;
  const int64_t queued = queued_records_.load(std::memory_order_relaxed) +
                         admitted_since_update_.load(std::memory_order_relaxed) + 1;
  return std::max(queue_delay_.estimate(), queue_delay_.Projected(queued)) >
         config_.max_queue_delay;
}

absl::Status Forwarder::Slow(int64_t records, absl::Duration delay) {
  metrics_->refused_slow.Increment(static_cast<double>(records));
  const absl::Duration bound = config_.max_queue_delay;
  // Come back once the queue has drained to the bound at the rate it drains now (about the
  // excess), within [1 s, the bound]: a refused client should neither hammer nor sleep long.
  const absl::Duration after =
      std::clamp(delay - bound, absl::Seconds(1), std::max(bound, absl::Seconds(1)));
  const std::string said = absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(100)));
  uint64_t not_logged = 0;
  if (refusals_log_.Allow("upstream_slow", &not_logged)) {
    LogEvent(LogLevel::kWarn, "upstream_slow",
             {{"queue_delay", said},
              {"max_queue_delay", absl::FormatDuration(bound)},
              {"queued_records", absl::StrCat(queued_records_.load(std::memory_order_relaxed))},
              {"refused_records", absl::StrCat(records)},
              {"not_logged_since", absl::StrCat(not_logged)}});
  }
  return WithRetryAfter(
      absl::ResourceExhaustedError(absl::StrCat(
          "the upstream Kafka cluster is slower than the load: a record accepted now would wait "
          "about ", said, " to be written, over upstream.max_queue_delay (",
          absl::FormatDuration(bound), "); nothing of this request was sent; retry in ",
          absl::FormatDuration(absl::Ceil(after, absl::Seconds(1))))),
      after);
}

void Forwarder::UpdateQueueDelay() {
  // A poll call returns after every batch of reports under load: a hundred updates a second
  // are plenty for admission, and cost nothing on the delivery path.
  const absl::Time now = absl::Now();
  if (now - queue_delay_updated_ < absl::Milliseconds(10)) return;
  queue_delay_updated_ = now;
  QueueDelay::Counts counts;
  counts.reported_records = reported_records_.load(std::memory_order_relaxed);
  counts.reported_bytes = reported_bytes_.load(std::memory_order_relaxed);
  counts.queued_records = queued_records_.load(std::memory_order_relaxed);
  counts.queued_bytes = queued_bytes_.load(std::memory_order_relaxed);
  metrics_->queue_delay.Set(absl::ToDoubleSeconds(queue_delay_.Update(now, counts)));
  // What was admitted since is queued by now, or soon, and counted in queued_records_.
  admitted_since_update_.store(0, std::memory_order_relaxed);
}

void Forwarder::Answered() {
  if (reachability_.Answered(absl::Now()) != Reachability::Change::kRegained) return;
  metrics_->ready.Set(Ready() ? 1 : 0);
  LogEvent(LogLevel::kInfo, "upstream_reachable", {{"bootstrap", bootstrap_servers_}});
}

absl::Status Forwarder::QueueFull() {
  metrics_->queue_full.Increment();
  return absl::ResourceExhaustedError(
      "the upstream producer's queue is full (upstream.max_queued_records or "
      "upstream.max_queued_bytes); retry later");
}

absl::Status Forwarder::Flush(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& producer : handle_->producers) {
    rd_kafka_flush(producer.get(), std::max(0, ToMillis(deadline - absl::Now())));
  }
  // Reports a poll thread has served but not yet passed on: their callers are told within
  // microseconds, once that poll call returns.
  while (untold_.load(std::memory_order_acquire) > 0 && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const int left = QueueDepth();
  if (left == 0) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat(left, " records still queued after the flush timeout"));
}

int Forwarder::QueueDepth() const {
  int depth = 0;
  for (const auto& producer : handle_->producers) depth += rd_kafka_outq_len(producer.get());
  return depth;
}

void Forwarder::PollLoop(rd_kafka_t* rk) {
  const bool first = rk == handle_->main();
  DeliveryTally tally(*this);
  while (!stopping_.load()) {
    current_tally = &tally;
    rd_kafka_poll(rk, 100);
    current_tally = nullptr;
    tally.Apply();
    if (first) {
      UpdateQueueDelay();
      metrics_->queue_depth.Set(QueueDepth());
    }
  }
}

std::shared_ptr<const ClusterMetadata> Forwarder::metadata() const {
  std::lock_guard<std::mutex> lock(metadata_mu_);
  return metadata_;
}

void Forwarder::RefreshAll() {
  const rd_kafka_metadata_t* md = nullptr;
  const absl::Time asked = absl::Now();
  const absl::Time deadline = asked + kRefreshTimeout;
  rd_kafka_resp_err_t err;
  // Unanswered means no answer for the whole timeout: a request that fails sooner (a connection
  // reset by an idle broker, a broker restarting) is sent again until then.
  while (true) {
    err = rd_kafka_metadata(handle_->metadata.get(), 1, nullptr, &md,
                            std::max(1, ToMillis(deadline - absl::Now())));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || stopping_.load() ||
        absl::Now() + kRefreshRetryPause >= deadline) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ToMillis(kRefreshRetryPause)));
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (reachability_.Unanswered(asked) == Reachability::Change::kLost) {
      metrics_->ready.Set(0);
      LogEvent(LogLevel::kWarn, "upstream_unreachable",
               {{"error", rd_kafka_err2str(err)},
                {"silent_for", absl::FormatDuration(absl::Now() - reachability_.last_answer())},
                {"bootstrap", bootstrap_servers_}});
    }
    return;
  }
  Answered();
  auto snapshot = std::make_shared<ClusterMetadata>();
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR) snapshot->partition_counts[t.topic] = t.partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  char* cluster_id = rd_kafka_clusterid(handle_->metadata.get(), 0);
  if (cluster_id) {
    snapshot->cluster_id = cluster_id;
    rd_kafka_mem_free(handle_->metadata.get(), cluster_id);
  }
  snapshot->fetched_at = absl::Now();
  {
    std::lock_guard<std::mutex> lock(metadata_mu_);
    metadata_ = std::move(snapshot);
  }
  if (!has_metadata_.exchange(true)) {
    LogEvent(LogLevel::kInfo, "upstream_ready", {{"bootstrap", bootstrap_servers_}});
  }
  metrics_->ready.Set(Ready() ? 1 : 0);
}

absl::StatusOr<int32_t> Forwarder::FetchTopic(const std::string& topic) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(handle_->metadata.get(), topic.c_str(), nullptr);
  if (!rkt) return absl::InvalidArgumentError(absl::StrCat("invalid topic name: ", topic));
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(handle_->metadata.get(), 0, rkt, &md, ToMillis(kLookupTimeout));
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("upstream cluster did not answer: ", rd_kafka_err2str(err)));
  }
  Answered();
  absl::StatusOr<int32_t> result = absl::NotFoundError(absl::StrCat("topic not found: ", topic));
  if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
      md->topics[0].partition_cnt > 0) {
    result = md->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  if (result.ok()) {
    std::lock_guard<std::mutex> lock(metadata_mu_);
    auto updated = std::make_shared<ClusterMetadata>(*metadata_);
    updated->partition_counts[topic] = *result;
    metadata_ = std::move(updated);
  }
  return result;
}

std::optional<int32_t> Forwarder::CachedPartitions(const std::string& topic) const {
  std::shared_ptr<const ClusterMetadata> md = metadata();
  auto it = md->partition_counts.find(topic);
  if (it == md->partition_counts.end()) return std::nullopt;
  return it->second;
}

Upstream::Topics Forwarder::KnownTopics() const {
  std::shared_ptr<const ClusterMetadata> md = metadata();
  Topics t;
  t.cluster_id = md->cluster_id;
  for (const auto& [name, partitions] : md->partition_counts) t.topics.emplace_back(name, partitions);
  std::sort(t.topics.begin(), t.topics.end());
  return t;
}

absl::Status Forwarder::CreateTopic(const std::string& topic, int32_t partitions,
                                    const std::map<std::string, std::string>& configs) {
  absl::Status result;
  if (topic_creator_) {
    result = topic_creator_(topic, partitions);
  } else {
    char err[512];
    rd_kafka_NewTopic_t* new_topic =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, err, sizeof err);
    if (!new_topic) return absl::InvalidArgumentError(absl::StrCat("create topic ", topic, ": ", err));
    for (const auto& [name, value] : configs) {
      rd_kafka_NewTopic_set_config(new_topic, name.c_str(), value.c_str());
    }
    rd_kafka_queue_t* queue = rd_kafka_queue_new(handle_->metadata.get());
    rd_kafka_CreateTopics(handle_->metadata.get(), &new_topic, 1, nullptr, queue);
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, ToMillis(kLookupTimeout) * 5);
    if (!event) {
      result = absl::DeadlineExceededError(absl::StrCat("create topic ", topic, ": no answer"));
    } else if (rd_kafka_event_error(event)) {
      result = absl::UnavailableError(
          absl::StrCat("create topic ", topic, ": ", rd_kafka_event_error_string(event)));
    } else {
      const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(event);
      size_t count = 0;
      const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &count);
      for (size_t i = 0; i < count; ++i) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
          const char* msg = rd_kafka_topic_result_error_string(results[i]);
          result = absl::UnavailableError(
              absl::StrCat("create topic ", topic, ": ", msg ? msg : rd_kafka_err2str(e)));
        }
      }
    }
    if (event) rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    rd_kafka_NewTopic_destroy(new_topic);
  }
  if (!result.ok()) return result;
  LogEvent(LogLevel::kInfo, "topic_created",
           {{"topic", topic}, {"partitions", absl::StrCat(partitions)}});
  // Learn the new topic at once rather than at the next refresh; a new topic's metadata can
  // take a moment to reach every broker.
  absl::StatusOr<int32_t> known = FetchTopic(topic);
  for (int attempt = 0; attempt < 10 && !known.ok(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    known = FetchTopic(topic);
  }
  return known.ok() ? absl::OkStatus() : known.status();
}

void Forwarder::LookupTopic(const std::string& topic,
                            absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) {
  {
    std::shared_ptr<const ClusterMetadata> md = metadata();
    auto it = md->partition_counts.find(topic);
    if (it != md->partition_counts.end()) {
      done(it->second);
      return;
    }
    if (cache_only_lookups_ && has_metadata_.load()) {
      done(absl::NotFoundError(absl::StrCat("topic not found: ", topic)));
      return;
    }
  }
  std::unique_lock<std::mutex> lock(metadata_mu_);
  if (lookups_.size() >= kMaxPendingLookups || metadata_stopping_.load()) {
    lock.unlock();
    done(absl::UnavailableError("too many topic lookups in flight; retry later"));
    return;
  }
  lookups_.push_back(Lookup{topic, std::move(done)});
  metadata_cv_.notify_one();
}

void Forwarder::MetadataLoop() {
  absl::Time next_refresh = absl::InfinitePast();
  while (!metadata_stopping_.load()) {
    // Whatever librdkafka queued on the metadata client for a poll (nothing it is asked for
    // needs one), so that nothing piles up there.
    rd_kafka_poll(handle_->metadata.get(), 0);
    if (absl::Now() >= next_refresh) {
      RefreshAll();
      next_refresh = absl::Now() + config_.metadata_refresh;
    }
    std::deque<Lookup> batch;
    {
      std::unique_lock<std::mutex> lock(metadata_mu_);
      metadata_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(
                                      1, absl::ToInt64Milliseconds(next_refresh - absl::Now()))),
                            [&] { return metadata_stopping_.load() || !lookups_.empty(); });
      batch.swap(lookups_);
    }
    // One request per distinct topic; every waiter of that topic gets the answer.
    absl::flat_hash_map<std::string, absl::StatusOr<int32_t>> answers;
    for (Lookup& lookup : batch) {
      if (metadata_stopping_.load()) {  // one request at most delays Close
        lookup.done(absl::UnavailableError("saltproxy is shutting down"));
        continue;
      }
      auto it = answers.find(lookup.topic);
      if (it == answers.end()) it = answers.emplace(lookup.topic, FetchTopic(lookup.topic)).first;
      lookup.done(it->second);
    }
  }
}

}  // namespace saltproxy
