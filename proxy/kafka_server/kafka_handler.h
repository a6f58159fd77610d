// Answers Kafka-protocol requests: saltproxy presents itself as the only broker (leader of every
// partition, with the upstream cluster's real partition counts), so that every record passes
// it; Produce records go through the same router as HTTP records, keeping the client's
// partition unless their key is hot (Record::cold_partition); it is the producer-id
// authority for idempotent clients (InitProducerId, sequence windows, duplicates answered with
// the first attempt's offset, the retry of a partly written batch producing only its records
// not yet written). What a produce-only gateway does not serve (transactions,
// consumer groups, fetching, creating topics) is refused at once with a non-retriable error in
// the request's own response, with a log line and saltproxy_kafka_unserved_requests_total.
//
//   KafkaHandler handler(options, router, upstream, registry, metrics);
//   KafkaServer server(server_options, handler, metrics);
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/counter.h>

#include "absl/container/flat_hash_set.h"

#include "proxy/common/log_limiter.h"
#include "proxy/common/record.h"
#include "proxy/common/upstream.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka_server/producer_state.h"
#include "proxy/kafka_server/server.h"
#include "proxy/kafka_server/topic_ids.h"
#include "proxy/metrics/metrics.h"

namespace saltproxy {

struct KafkaHandlerOptions {
  std::string advertised_host = "127.0.0.1";
  // The upstream cluster's topic ids for Metadata v10+ (null: all zero, "unknown").
  TopicIdCache* topic_ids = nullptr;
  int32_t node_id = 0;
  size_t max_decompressed_bytes = 64 << 20;
};

class KafkaHandler : public FrameHandler {
 public:
  KafkaHandler(KafkaHandlerOptions options, RecordSink& sink, Upstream& upstream,
               ProducerRegistry& producers, Metrics& metrics);

  // The port clients are told to connect to (the listener's bound port), set once it is bound.
  void SetAdvertisedPort(int32_t port) { advertised_port_ = port; }

  void Handle(std::string frame, uint64_t connection, FrameReply reply) override;
  void Closed(uint64_t connection) override;

 private:
  kafka::Uuid TopicId(const std::string& topic, int16_t version) const;
  void HandleMetadata(std::shared_ptr<std::string> frame, size_t body_at, int16_t version,
                      std::string header, FrameReply reply);
  void HandleProduce(std::shared_ptr<std::string> frame, size_t body_at, int16_t version,
                     uint64_t connection, std::string header, FrameReply reply);
  // A request saltproxy does not serve: counted and logged, then answered with `answer` (or
  // the connection closed, when the request cannot be answered in its own layout).
  enum class Unserved { kRefused, kClosed };
  static size_t ApiIndex(int16_t api_key);
  void CountUnserved(int16_t api_key, Unserved outcome);
  // Adds what the registry counted as possibly written twice to the metric.
  void CountDoubts();
  void Refuse(const kafka::RequestHeader& header, const std::string& detail, std::string answer,
              FrameReply reply);

  const KafkaHandlerOptions options_;
  RecordSink& sink_;
  Upstream& upstream_;
  ProducerRegistry& producers_;
  std::atomic<int32_t> advertised_port_{0};
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& records_in_;
  prometheus::Counter& duplicates_;
  prometheus::Counter* skipped_;
  prometheus::Counter* retried_;
  prometheus::Counter* maybe_written_again_ = nullptr;  // saltproxy_kafka_idempotent_records_
  prometheus::Counter* unknown_producer_ = nullptr;     // maybe_duplicated_total, by reason
  prometheus::Counter* forgotten_ = nullptr;
  prometheus::Family<prometheus::Counter>& unserved_;
  // By API, in kafka::SupportedApis() order, then "unknown" (no requests counter); resolved
  // at start-up.
  struct ApiCounters {
    prometheus::Counter* requests;
    prometheus::Counter* refused;
    prometheus::Counter* closed;
  };
  std::vector<ApiCounters> by_api_;
  LogLimiter refusal_log_;  // kafka_request_refused: a line a second per API
  // Connections whose client named itself the Java client (ApiVersions v3+), until closed.
  std::mutex java_mu_;
  absl::flat_hash_set<uint64_t> java_connections_;
};

}  // namespace saltproxy
