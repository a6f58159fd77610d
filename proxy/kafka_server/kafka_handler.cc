#include "proxy/kafka_server/kafka_handler.h"

#include <algorithm>
#include <atomic>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proxy/common/log.h"
#include "proxy/common/retry_after.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"

namespace saltproxy {
namespace {

using namespace ::saltproxy::kafka;  // NOLINT: the protocol's vocabulary

int16_t KafkaErrorFor(const DeliveryReport& r) {
  if (r.status.ok()) return kNone;
  if (r.kafka_error > 0) return r.kafka_error;
  if (absl::IsDeadlineExceeded(r.status) || absl::IsResourceExhausted(r.status)) {
    // Retriable: the client resends the batch. Its records that were written are written again
    // (the sequence window forgets a failed batch); README, "Kafka protocol".
    return kRequestTimedOut;
  }
  if (absl::IsInvalidArgument(r.status)) return kMessageTooLarge;
  if (absl::IsNotFound(r.status)) return kUnknownTopicOrPartition;
  return kNotEnoughReplicas;  // retriable
}

// What every refusal says first: users meet it in their client's exception or in this log.
constexpr char kProduceOnly[] = "saltproxy is a produce-only gateway: ";

// The Java client's name for itself in ApiVersions v3+ (KIP-511).
constexpr std::string_view kJavaClientSoftware = "apache-kafka-java";

struct ProduceState;

// One client partition of a Produce request, while its records are delivered. Its records'
// callbacks hold it by address (the request's partitions are laid out once and never move),
// and while records are out it keeps the request alive: no reference count or lock per record.
struct PartitionState {
  ProducePartitionResponse response;
  std::atomic<int> remaining{0};
  // Whether the records went to the client's own topic and partition at offsets base..base+n-1
  // in the client's order: each record's report checks its offset less its index against the
  // others'. Only then is `base` the answer's base offset; otherwise the answer says -1
  // (unknown), which clients report as an unknown offset rather than a wrong one.
  static constexpr int64_t kNoBase = BatchWrites::kNoBase;
  std::atomic<int64_t> base{kNoBase};
  std::atomic<bool> scattered{false};
  const std::string* topic = nullptr;  // the client's topic (the request's, never moved)
  bool sent = false;                   // records of it were sent (not a duplicate or refused)
  int32_t batch_records = 0;           // in the client's batches for the partition
  bool has_sequence = false;
  ProducerPartition key;
  uint64_t attempt = 0;  // the registry's id of this batch's attempt
  // An idempotent batch's records, by index: BatchWrites::Record, what became of each (over
  // this attempt and, for a retry, the earlier ones), for the registry when some fail.
  std::unique_ptr<std::atomic<uint8_t>[]> outcome;
  BatchWrites Writes() const {
    BatchWrites w;
    for (int32_t i = 0; i < batch_records; ++i) {
      w.records.push_back(
          static_cast<BatchWrites::Record>(outcome[i].load(std::memory_order_relaxed)));
    }
    w.base = base.load(std::memory_order_relaxed);
    w.scattered = scattered.load(std::memory_order_relaxed);
    return w;
  }
  ProduceState* owner = nullptr;
  size_t t = 0, p = 0;
  std::shared_ptr<ProduceState> keep;  // set while records are out, released by the last
};

// A Produce request in flight: answered when the last record's report is in (and, for an
// idempotent producer, when the batches before each of its own are settled).
struct ProduceState : std::enable_shared_from_this<ProduceState> {
  std::mutex mu;
  std::vector<ProduceTopicResponse> topics;
  std::vector<std::vector<PartitionState>> partitions;  // by topic, by partition, as asked
  int pending = 0;  // partitions not yet complete
  int16_t version = 0;
  int32_t throttle_time_ms = 0;  // set when admission refused the request as slow
  std::string header;
  bool respond = true;
  // The client reads a base offset of -1 as "unknown" for every record of the batch (the Java
  // client's RecordMetadata); other clients add each record's index to it.
  bool reads_unknown_offset = false;
  FrameReply reply{nullptr};
  ProducerRegistry* producers = nullptr;

  // A partition's records are all reported. mu held; what the registry hands back goes to
  // `run`, for the caller to run once it has let go of mu.
  void Finish(size_t t, size_t p, ProducerRegistry::Deferred* run) {
    PartitionState& s = partitions[t][p];
    if (s.response.error == kNone && s.sent) {
      const int64_t base = s.base.load(std::memory_order_relaxed);
      const bool exact = !s.scattered.load(std::memory_order_relaxed) &&
                         base != PartitionState::kNoBase;
      s.response.base_offset = exact ? base : -1;
    }
    if (s.has_sequence) {
      if (s.response.error != kNone) {
        producers->Fail(s.key, s.attempt, s.Writes(), run);
      } else {
        auto wait = [this, t, p]() -> ProducerRegistry::Settled {
          return [self = shared_from_this(), t, p](bool written) {
            std::lock_guard<std::mutex> lock(self->mu);
            if (!written) self->EarlierBatchFailed(t, p);
            self->Settle(t, p);
          };
        };
        switch (producers->Complete(s.key, s.attempt, s.response.base_offset, wait, run)) {
          case Settlement::kWaiting:
            return;  // `settled` answers it
          case Settlement::kEarlierFailed:
            EarlierBatchFailed(t, p);
            break;
          case Settlement::kSettled:
            break;
        }
      }
    }
    Settle(t, p);
  }
  // Written, but a batch before it was not: as a broker, which would not have taken it.
  void EarlierBatchFailed(size_t t, size_t p) {  // mu held
    ProducePartitionResponse& r = partitions[t][p].response;
    r.error = kOutOfOrderSequenceNumber;
    r.error_message = "an earlier batch of this producer and partition failed; resend from it";
    r.base_offset = -1;
  }
  void Settle(size_t t, size_t p) {  // mu held
    ProducePartitionResponse& r = topics[t].partitions[p];
    r = partitions[t][p].response;
    if (r.error == kNone && r.base_offset == -1 && !reads_unknown_offset) {
      // An unknown offset, told a client that computes each record's offset as base + index
      // whatever the base (librdkafka, Sarama, kafka-python): -n, so that every record of the
      // batch gets a negative offset, never another record's.
      r.base_offset = -std::max<int64_t>(1, partitions[t][p].batch_records);
    }
    if (--pending == 0) Answer();
  }
  void Answer() {
    if (!respond) return;
    reply.Respond(header + EncodeProduceResponse(topics, version, throttle_time_ms));
  }
};

}  // namespace

KafkaHandler::KafkaHandler(KafkaHandlerOptions options, RecordSink& sink, Upstream& upstream,
                           ProducerRegistry& producers, Metrics& metrics)
    : options_(std::move(options)),
      sink_(sink),
      upstream_(upstream),
      producers_(producers),
      requests_(prometheus::BuildCounter()
                    .Name("saltproxy_kafka_api_requests_total")
                    .Help("Kafka-protocol requests answered, by API")
                    .Register(metrics.registry())),
      records_in_(prometheus::BuildCounter()
                      .Name("saltproxy_kafka_records_in_total")
                      .Help("Records received in Kafka-protocol Produce requests")
                      .Register(metrics.registry())
                      .Add({})),
      duplicates_(prometheus::BuildCounter()
                      .Name("saltproxy_kafka_duplicate_batches_total")
                      .Help("Retried idempotent batches answered without producing them again")
                      .Register(metrics.registry())
                      .Add({})),
      skipped_(&prometheus::BuildCounter()
                    .Name("saltproxy_kafka_idempotent_records_skipped_total")
                    .Help("Records of retried idempotent batches not written again: an earlier "
                          "attempt of the batch had written them")
                    .Register(metrics.registry())
                    .Add({})),
      retried_(&prometheus::BuildCounter()
                    .Name("saltproxy_kafka_idempotent_batches_retried_total")
                    .Help("Idempotent batches retried after a partial failure: only their "
                          "records not yet written were produced")
                    .Register(metrics.registry())
                    .Add({})),
      unserved_(prometheus::BuildCounter()
                    .Name("saltproxy_kafka_unserved_requests_total")
                    .Help("Kafka-protocol requests saltproxy does not serve, by API and outcome "
                          "(refused: answered with an error; closed: the connection closed)")
                    .Register(metrics.registry())) {
  auto& doubts = prometheus::BuildCounter()
                     .Name("saltproxy_kafka_idempotent_records_maybe_duplicated_total")
                     .Help("Records of idempotent producers that may have been written twice, by "
                           "reason: possibly_written (failed after being sent, produced again "
                           "on the retry), unknown_producer (a producer this run did not issue, "
                           "as after a restart: its first batches per partition), forgotten "
                           "(written, unacknowledged, and forgotten: a new epoch, a producer "
                           "evicted, a resend in other sequence ranges)")
                     .Register(metrics.registry());
  maybe_written_again_ = &doubts.Add({{"reason", "possibly_written"}});
  unknown_producer_ = &doubts.Add({{"reason", "unknown_producer"}});
  forgotten_ = &doubts.Add({{"reason", "forgotten"}});
  for (size_t i = 0; i <= SupportedApis().size(); ++i) {
    std::string api(i < SupportedApis().size() ? ApiName(SupportedApis()[i].key) : "unknown");
    by_api_.push_back({i < SupportedApis().size() ? &requests_.Add({{"api", api}}) : nullptr,
                       &unserved_.Add({{"api", api}, {"outcome", "refused"}}),
                       &unserved_.Add({{"api", api}, {"outcome", "closed"}})});
  }
}

size_t KafkaHandler::ApiIndex(int16_t api_key) {
  size_t i = 0;
  while (i < SupportedApis().size() && SupportedApis()[i].key != api_key) ++i;
  return i;  // SupportedApis().size(): "unknown"
}

void KafkaHandler::CountUnserved(int16_t api_key, Unserved outcome) {
  const ApiCounters& c = by_api_[ApiIndex(api_key)];
  (outcome == Unserved::kRefused ? c.refused : c.closed)->Increment();
}

void KafkaHandler::Refuse(const RequestHeader& header, const std::string& detail,
                          std::string answer, FrameReply reply) {
  CountUnserved(header.api_key, Unserved::kRefused);
  // A line a second per API at most: a consumer group left running asks again every second.
  uint64_t not_logged = 0;
  if (refusal_log_.Allow(ApiName(header.api_key), &not_logged)) {
    LogEvent(LogLevel::kWarn, "kafka_request_refused",
             {{"api", ApiName(header.api_key)},
              {"version", absl::StrCat(header.api_version)},
              {"client", header.client_id.value_or("?")},
              {"detail", absl::StrCat(kProduceOnly, detail)},
              {"refused_since_last_line", absl::StrCat(not_logged)}});
  }
  reply.Respond(EncodeResponseHeader(header) + answer);
}

void KafkaHandler::Handle(std::string frame_bytes, uint64_t connection, FrameReply reply) {
  auto frame = std::make_shared<std::string>(std::move(frame_bytes));
  WireReader in(*frame);
  absl::StatusOr<RequestHeader> header = DecodeRequestHeader(in);
  if (!header.ok()) return reply.Close(absl::StrCat("bad request header: ", header.status().message()));
  const int16_t key = header->api_key;
  const int16_t version = header->api_version;
  const ApiRange* api = FindApi(key);
  if (!api) {
    // No layout to answer in: closed, as a broker closes it (the server logs the reason).
    CountUnserved(key, Unserved::kClosed);
    return reply.Close(absl::StrCat(kProduceOnly, "API key ", key, " is not served (client ",
                                    header->client_id.value_or("?"), ")"));
  }
  std::string response_header = EncodeResponseHeader(*header);
  if (version < api->min || version > api->max) {
    if (key == kApiVersions) {
      // As brokers do: the v0 layout, UNSUPPORTED_VERSION and the supported ranges.
      return reply.Respond(response_header + EncodeApiVersionsResponse(0, kUnsupportedVersion));
    }
    CountUnserved(key, Unserved::kClosed);
    return reply.Close(absl::StrCat("API ", key, " v", version, " is not supported (", api->min,
                                    "-", api->max, ")"));
  }
  const size_t body_at = frame->size() - in.remaining();
  by_api_[ApiIndex(key)].requests->Increment();
  switch (key) {
    case kApiVersions: {
      // The client's software decides how an unknown offset is told (ProduceState). A body that
      // does not decode is answered all the same, as brokers do for what they ignore.
      absl::StatusOr<ApiVersionsRequest> req = DecodeApiVersionsRequest(in, version);
      if (req.ok() && req->client_software_name == kJavaClientSoftware) {
        std::lock_guard<std::mutex> lock(java_mu_);
        java_connections_.insert(connection);
      }
      return reply.Respond(response_header + EncodeApiVersionsResponse(version, kNone));
    }
    case kMetadata:
      return HandleMetadata(frame, body_at, version, std::move(response_header), std::move(reply));
    case kProduce:
      return HandleProduce(frame, body_at, version, connection, std::move(response_header),
                           std::move(reply));
    case kInitProducerId: {
      absl::StatusOr<InitProducerIdRequest> req = DecodeInitProducerIdRequest(in, version);
      if (!req.ok()) return reply.Close(std::string(req.status().message()));
      if (req->transactional_id) {
        // InitProducerId has no field for a message: the log says why.
        return Refuse(*header,
                      absl::StrCat("transactions are not supported (transactional_id ",
                                   *req->transactional_id, "); produce without transactional.id"),
                      EncodeInitProducerIdResponse(version, kTransactionalIdAuthorizationFailed,
                                                   -1, -1),
                      std::move(reply));
      }
      ProducerRegistry::Issued id = producers_.Init(req->producer_id, req->producer_epoch);
      CountDoubts();
      return reply.Respond(response_header +
                           EncodeInitProducerIdResponse(version, kNone, id.producer_id, id.epoch));
    }
    case kFindCoordinator: {
      absl::StatusOr<FindCoordinatorRequest> req = DecodeFindCoordinatorRequest(in, version);
      if (!req.ok()) return reply.Close(std::string(req.status().message()));
      // Never COORDINATOR_NOT_AVAILABLE, which is retriable: clients would ask again until their
      // own timeout (60 s for Java's initTransactions). The codes below are the ones each
      // client gives up on at once, checked with the real clients (tests/e2e):
      // CLUSTER_AUTHORIZATION_FAILED is fatal to librdkafka's and Java's transactional
      // producers, and Java's is the one that shows the message (its
      // TRANSACTIONAL_ID_AUTHORIZATION_FAILED exception has a fixed text);
      // GROUP_AUTHORIZATION_FAILED is what Java's and librdkafka's consumers surface from a
      // group lookup.
      const bool transaction = req->key_type == kTransactionCoordinator;
      const std::string message =
          transaction ? absl::StrCat(kProduceOnly,
                                     "it does not support transactions; produce without "
                                     "transactional.id")
                      : absl::StrCat(kProduceOnly,
                                     "it has no group coordinator; consume from the Kafka "
                                     "cluster itself");
      return Refuse(*header,
                    absl::StrCat(transaction ? "transaction " : "group ", req->key,
                                 ": no coordinator"),
                    EncodeFindCoordinatorError(version,
                                               transaction ? kClusterAuthorizationFailed
                                                           : kGroupAuthorizationFailed,
                                               message),
                    std::move(reply));
    }
    case kFetch: {
      // Fetch has no field for a message: the log says why. TOPIC_AUTHORIZATION_FAILED is what
      // Java's and librdkafka's consumers surface to the application and stop fetching on.
      absl::StatusOr<std::string> body = EncodeFetchError(in, version, kTopicAuthorizationFailed);
      if (!body.ok()) return reply.Close(std::string(body.status().message()));
      return Refuse(*header, "consume from the Kafka cluster itself", std::move(*body),
                    std::move(reply));
    }
    case kListOffsets: {
      // As Fetch: no message field, and TOPIC_AUTHORIZATION_FAILED is what consumers surface.
      absl::StatusOr<std::string> body =
          EncodeListOffsetsError(in, version, kTopicAuthorizationFailed);
      if (!body.ok()) return reply.Close(std::string(body.status().message()));
      return Refuse(*header, "consume from the Kafka cluster itself", std::move(*body),
                    std::move(reply));
    }
    case kCreateTopics: {
      absl::StatusOr<CreateTopicsRequest> req = DecodeCreateTopicsRequest(in, version);
      if (!req.ok()) return reply.Close(std::string(req.status().message()));
      const std::string message = absl::StrCat(
          kProduceOnly, "it does not create topics; create them on the Kafka cluster itself");
      return Refuse(*header,
                    absl::StrCat("create topics ", absl::StrJoin(req->names, ","),
                                 ": not served"),
                    EncodeCreateTopicsError(*req, version, kClusterAuthorizationFailed, message),
                    std::move(reply));
    }
  }
  reply.Close("unhandled API");
}

kafka::Uuid KafkaHandler::TopicId(const std::string& topic, int16_t version) const {
  if (version < 10 || !options_.topic_ids) return kafka::Uuid{};
  return options_.topic_ids->Get(topic);
}

void KafkaHandler::HandleMetadata(std::shared_ptr<std::string> frame, size_t body_at,
                                  int16_t version, std::string header, FrameReply reply) {
  WireReader in(std::string_view(*frame).substr(body_at));
  absl::StatusOr<MetadataRequest> req = DecodeMetadataRequest(in, version);
  if (!req.ok()) return reply.Close(std::string(req.status().message()));
  Upstream::Topics known = upstream_.KnownTopics();
  auto response = std::make_shared<MetadataResponse>();
  response->node_id = options_.node_id;
  response->host = options_.advertised_host;
  response->port = advertised_port_.load();
  response->cluster_id = known.cluster_id;
  if (!req->topics) {
    for (const auto& [name, partitions] : known.topics) {
      response->topics.push_back({kNone, name, partitions, TopicId(name, version)});
    }
    return reply.Respond(header + EncodeMetadataResponse(*response, version));
  }
  // Topics the cache does not know are looked up (asynchronously) before answering.
  struct Pending {
    std::mutex mu;
    int remaining;
    std::shared_ptr<MetadataResponse> response;
    std::string header;
    int16_t version;
    FrameReply reply{nullptr};
  };
  auto pending = std::make_shared<Pending>();
  pending->remaining = static_cast<int>(req->topics->size());
  pending->response = response;
  pending->header = std::move(header);
  pending->version = version;
  pending->reply = std::move(reply);
  response->topics.resize(req->topics->size());
  if (req->topics->empty()) {
    return pending->reply.Respond(pending->header + EncodeMetadataResponse(*response, version));
  }
  for (size_t i = 0; i < req->topics->size(); ++i) {
    const std::string& name = (*req->topics)[i];
    response->topics[i].name = name;
    response->topics[i].topic_id = TopicId(name, version);
    sink_.LookupTopic(name, [pending, i](absl::StatusOr<int32_t> partitions) {
      std::lock_guard<std::mutex> lock(pending->mu);
      MetadataTopic& t = pending->response->topics[i];
      t.error = partitions.ok() ? kNone : kUnknownTopicOrPartition;
      t.partitions = partitions.ok() ? *partitions : 0;
      if (!partitions.ok()) t.topic_id = kafka::Uuid{};
      if (--pending->remaining == 0) {
        pending->reply.Respond(pending->header +
                               EncodeMetadataResponse(*pending->response, pending->version));
      }
    });
  }
}

void KafkaHandler::CountDoubts() {
  const ProducerRegistry::Doubts d = producers_.TakeDoubts();
  if (d.unknown_producer > 0) unknown_producer_->Increment(static_cast<double>(d.unknown_producer));
  if (d.forgotten > 0) forgotten_->Increment(static_cast<double>(d.forgotten));
}

void KafkaHandler::Closed(uint64_t connection) {
  std::lock_guard<std::mutex> lock(java_mu_);
  java_connections_.erase(connection);
}

void KafkaHandler::HandleProduce(std::shared_ptr<std::string> frame, size_t body_at,
                                 int16_t version, uint64_t connection, std::string header,
                                 FrameReply reply) {
  WireReader in(std::string_view(*frame).substr(body_at));
  absl::StatusOr<ProduceRequest> req = DecodeProduceRequest(in, version);
  if (!req.ok()) {
    LogEvent(LogLevel::kWarn, "kafka_bad_produce", {{"reason", req.status().message()}});
    return reply.Close(std::string(req.status().message()));
  }
  if (version < 3) {
    // Advertised (librdkafka wants Produce's minimum at v0) but not served: message formats v0
    // and v1 would be rewritten as v2. Every partition is refused in the version's own layout.
    CountUnserved(kProduce, Unserved::kRefused);
    LogEvent(LogLevel::kWarn, "kafka_produce_version_refused",
             {{"version", absl::StrCat(version)},
              {"detail", "message format v0/v1; use Produce v3+"}});
    if (req->acks == 0) return reply.NoResponse();
    std::vector<ProduceTopicResponse> topics;
    for (const ProduceTopic& topic : req->topics) {
      ProduceTopicResponse& t = topics.emplace_back();
      t.name = topic.name;
      for (const ProducePartition& p : topic.partitions) {
        ProducePartitionResponse& r = t.partitions.emplace_back();
        r.index = p.index;
        r.error = kUnsupportedVersion;
      }
    }
    return reply.Respond(header + EncodeProduceResponse(topics, version));
  }
  auto state = std::make_shared<ProduceState>();
  state->version = version;
  state->header = std::move(header);
  state->respond = req->acks != 0;
  {
    std::lock_guard<std::mutex> lock(java_mu_);
    state->reads_unknown_offset = java_connections_.contains(connection);
  }
  state->producers = &producers_;
  state->reply = std::move(reply);
  // Decode every partition first, so that the answer's shape is fixed before anything is sent.
  struct Work {
    size_t t, p;
    std::vector<RecordBatch> batches;
    int32_t partitions;
    int32_t records = 0;  // in all of `batches`; 0 once they are cleared as a duplicate
  };
  std::vector<Work> work;
  // What the request's records may take decoded, all partitions together.
  size_t decode_budget = options_.max_decompressed_bytes;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->topics.resize(req->topics.size());
    state->partitions.resize(req->topics.size());
    for (size_t t = 0; t < req->topics.size(); ++t) {
      const ProduceTopic& topic = req->topics[t];
      state->topics[t].name = topic.name;
      state->topics[t].partitions.resize(topic.partitions.size());
      // Constructed in place, never resized: record callbacks hold these by address.
      state->partitions[t] = std::vector<PartitionState>(topic.partitions.size());
      std::optional<int32_t> partitions = upstream_.CachedPartitions(topic.name);
      for (size_t p = 0; p < topic.partitions.size(); ++p) {
        PartitionState& s = state->partitions[t][p];
        s.owner = state.get();
        s.t = t;
        s.p = p;
        s.response.index = topic.partitions[p].index;
        ++state->pending;
        auto refuse = [&](int16_t code, std::string message) {
          s.response.error = code;
          s.response.error_message = std::move(message);
        };
        if (req->transactional_id) {
          refuse(kTransactionalIdAuthorizationFailed,
                 "saltproxy does not support transactions; produce without transactional.id");
          continue;
        }
        if (!partitions || topic.partitions[p].index < 0 ||
            topic.partitions[p].index >= *partitions) {
          refuse(kUnknownTopicOrPartition, absl::StrCat("unknown topic or partition ", topic.name,
                                                        "-", topic.partitions[p].index));
          continue;
        }
        if (!topic.partitions[p].records) {
          refuse(kInvalidRecord, "no records");
          continue;
        }
        int16_t code = kNone;
        size_t spent = 0;
        absl::StatusOr<std::vector<RecordBatch>> batches =
            DecodeRecordBatches(*topic.partitions[p].records, decode_budget, &code, &spent);
        if (!batches.ok()) {
          LogEvent(LogLevel::kWarn, "kafka_bad_batch",
                   {{"topic", topic.name}, {"reason", batches.status().message()}});
          refuse(code, std::string(batches.status().message()));
          continue;
        }
        if (batches->empty()) {  // a present but empty records field
          refuse(kInvalidRecord, "no record batch for the partition");
          continue;
        }
        bool refused = false;
        for (const RecordBatch& b : *batches) {
          if (b.records.empty()) {
            refuse(kInvalidRecord, "a record batch with no records");
            refused = true;
            break;
          }
          if (b.transactional() || b.control()) {
            refuse(kTransactionalIdAuthorizationFailed,
                   "saltproxy does not support transactional or control batches");
            refused = true;
            break;
          }
        }
        if (refused) continue;
        int32_t records = 0;
        for (const RecordBatch& b : *batches) records += static_cast<int32_t>(b.records.size());
        s.batch_records = records;
        decode_budget -= spent;  // kept until sent; a refused partition's are freed at once
        work.push_back(Work{t, p, std::move(*batches), *partitions, records});
      }
    }
  }
  // Admission, once for the whole request and before the sequence window sees it: while the
  // upstream cluster is unreachable, or slower than the load, nothing is sent and every
  // partition gets the retriable NOT_ENOUGH_REPLICAS at once. Its meaning for a broker, "not
  // written, send it again", is what happened, and the Java client, librdkafka, Sarama and
  // kafkajs retry it without surfacing it until their own delivery timeout. Slower than the
  // load, the answer's throttle_time_ms also asks the client to wait before it sends again.
  if (!work.empty()) {
    int64_t records = 0;
    for (const Work& w : work) records += w.records;
    if (absl::Status admitted = upstream_.Admit(records); !admitted.ok()) {
      std::lock_guard<std::mutex> lock(state->mu);
      for (const Work& w : work) {
        ProducePartitionResponse& response = state->partitions[w.t][w.p].response;
        response.error = kNotEnoughReplicas;
        response.error_message = std::string(admitted.message());
      }
      if (std::optional<absl::Duration> after = RetryAfter(admitted)) {
        state->throttle_time_ms = static_cast<int32_t>(absl::ToInt64Milliseconds(*after));
      }
      work.clear();
    }
  }
  // Idempotence, and what needs no sending, under the state's lock: a pending duplicate's waiter
  // takes it too, so it cannot settle a partition before the shape below is fixed.
  std::vector<std::pair<size_t, size_t>> ready;  // partitions with nothing to wait for
  ProducerRegistry::Deferred run;  // what the registry settles, run once the lock is let go
  std::unique_lock<std::mutex> lock(state->mu);
  // One sequence range per partition of the request (clients send one batch per partition per
  // request; several are checked as one range).
  for (Work& w : work) {
    PartitionState& s = state->partitions[w.t][w.p];
    const RecordBatch& first = w.batches.front();
    const int32_t count = w.records;
    if (first.producer_id >= 0 && first.base_sequence >= 0) {
      s.has_sequence = true;
      s.key = ProducerPartition{first.producer_id, state->topics[w.t].name, s.response.index};
      BatchCheck check = producers_.Begin(
          s.key, first.producer_epoch, first.base_sequence, first.base_sequence + count - 1,
          [state, t = w.t, p = w.p](bool written, int64_t offset) {
            std::lock_guard<std::mutex> waiter_lock(state->mu);
            PartitionState& dup = state->partitions[t][p];
            dup.has_sequence = false;  // the first attempt already settled the window
            dup.response.error = written ? kNone : kRequestTimedOut;
            dup.response.base_offset = written ? offset : -1;
            state->Settle(t, p);
          },
          &run);
      s.attempt = check.attempt;
      if (check.verdict == BatchVerdict::kNew || check.verdict == BatchVerdict::kRetry) {
        s.outcome = std::make_unique<std::atomic<uint8_t>[]>(static_cast<size_t>(count));
      }
      if (check.verdict == BatchVerdict::kRetry) {
        // Only what the earlier attempts did not write is produced; the answer's offsets carry
        // on from theirs.
        const BatchWrites& earlier = check.written;
        int32_t skipped = 0;
        for (int32_t i = 0; i < count && i < static_cast<int32_t>(earlier.records.size()); ++i) {
          if (earlier.records[i] == BatchWrites::kWritten) {
            s.outcome[i].store(BatchWrites::kWritten, std::memory_order_relaxed);
            ++skipped;
          } else if (earlier.records[i] == BatchWrites::kMaybeWritten) {
            maybe_written_again_->Increment();
          }
        }
        s.base.store(earlier.base, std::memory_order_relaxed);
        s.scattered.store(earlier.scattered, std::memory_order_relaxed);
        w.records = count - skipped;
        skipped_->Increment(skipped);
        retried_->Increment();
      } else if (check.verdict != BatchVerdict::kNew) {
        s.has_sequence = false;
        w.batches.clear();  // nothing to produce
        w.records = 0;
        switch (check.verdict) {
          case BatchVerdict::kDuplicate:
            duplicates_.Increment();
            s.response.base_offset = check.base_offset;
            break;
          case BatchVerdict::kDuplicatePending:
            duplicates_.Increment();
            s.response.error = -2;  // settled by the waiter above
            break;
          case BatchVerdict::kOutOfOrder:
            s.response.error = kOutOfOrderSequenceNumber;
            break;
          case BatchVerdict::kInvalidEpoch:
            s.response.error = kInvalidProducerEpoch;
            break;
          case BatchVerdict::kNew:
          case BatchVerdict::kRetry:
            break;
        }
      }
    }
  }
  CountDoubts();
  {
    for (size_t t = 0; t < state->partitions.size(); ++t) {
      for (size_t p = 0; p < state->partitions[t].size(); ++p) {
        PartitionState& s = state->partitions[t][p];
        if (s.response.error == -2) continue;  // a pending duplicate's waiter answers it
        bool has_work = false;
        for (const Work& w : work) has_work |= (w.t == t && w.p == p && !w.batches.empty());
        if (!has_work) ready.emplace_back(t, p);
      }
    }
    for (Work& w : work) {
      PartitionState& s = state->partitions[w.t][w.p];
      s.remaining.store(w.records, std::memory_order_relaxed);
      s.topic = &state->topics[w.t].name;
      s.sent = w.records > 0 || s.outcome != nullptr;  // a retry may have nothing left to send
      if (w.records > 0) s.keep = state;
      if (w.records == 0 && !w.batches.empty()) ready.emplace_back(w.t, w.p);
    }
  }
  lock.unlock();
  // Send every record; each partition completes when its last report is in.
  for (Work& w : work) {
    const std::string& topic = state->topics[w.t].name;
    const int32_t client_partition = state->partitions[w.t][w.p].response.index;
    int32_t index = 0;
    records_in_.Increment(w.records);  // once a partition: the counter is shared by all threads
    const PartitionState& partition = state->partitions[w.t][w.p];
    for (RecordBatch& b : w.batches) {
      for (BatchRecord& r : b.records) {
        // A retry's records that an earlier attempt wrote are not written again. Read without
        // the lock: nothing reports for this partition before its first record is sent.
        if (partition.outcome &&
            partition.outcome[index].load(std::memory_order_relaxed) == BatchWrites::kWritten) {
          ++index;
          continue;
        }
        Record record;
        record.topic = topic;
        record.key = std::move(r.key);
        record.value = std::move(r.value);
        record.timestamp_ms = b.log_append_time() ? 0 : r.timestamp;
        // Records without a key keep the partition the client chose; keyed ones keep it while
        // their key is cold, whatever the client's partitioner (CRC32, FNV-1a, round-robin),
        // and go where the router says (the key's salts) while it is hot.
        record.partition = record.key ? -1 : client_partition;
        record.cold_partition = record.key ? client_partition : -1;
        for (auto& [k, v] : r.headers) record.headers.push_back({std::move(k), std::move(v)});
        // Two words, so that the callback is stored without an allocation of its own.
        auto done = [s = &state->partitions[w.t][w.p], index = index++](
                        const DeliveryReport& report) {
          ProduceState& st = *s->owner;
          const int16_t code = KafkaErrorFor(report);
          if (s->outcome) {
            s->outcome[index].store(report.status.ok()       ? BatchWrites::kWritten
                                    : report.maybe_written ? BatchWrites::kMaybeWritten
                                                           : BatchWrites::kUnwritten,
                                    std::memory_order_relaxed);
          }
          if (report.status.ok()) {
            // Offsets of one partition are unique: n records that all sit at their index plus
            // one same base, on the client's partition, are base..base+n-1 in the client's order.
            if (report.partition != s->response.index || report.offset < 0 ||
                report.topic != *s->topic) {
              s->scattered.store(true, std::memory_order_relaxed);
            } else {
              const int64_t base = report.offset - index;
              int64_t seen = PartitionState::kNoBase;
              if (!s->base.compare_exchange_strong(seen, base, std::memory_order_relaxed) &&
                  seen != base) {
                s->scattered.store(true, std::memory_order_relaxed);
              }
            }
          } else {
            std::lock_guard<std::mutex> lock(st.mu);
            if (s->response.error == kNone) {
              s->response.error = code;
              s->response.error_message = std::string(report.status.message());
            }
          }
          if (s->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
          std::shared_ptr<ProduceState> keep;  // released after the lock, perhaps the last owner
          ProducerRegistry::Deferred run;
          {
            std::lock_guard<std::mutex> lock(st.mu);
            keep = std::move(s->keep);
            st.Finish(s->t, s->p, &run);
          }
          for (auto& settle : run) settle();
        };
        static_assert(sizeof(done) <= 2 * sizeof(void*),
                      "AnyInvocable stores callbacks of up to two words without allocating");
        absl::Status queued = sink_.Submit(std::move(record), done);
        if (!queued.ok()) {
          DeliveryReport failed;
          failed.status = queued;
          done(failed);
        }
      }
    }
  }
  lock.lock();
  for (const auto& [t, p] : ready) state->Finish(t, p, &run);
  // acks=0: no answer at all, as a broker gives none.
  if (!state->respond) state->reply.NoResponse();
  lock.unlock();
  for (auto& settle : run) settle();
}

}  // namespace saltproxy
