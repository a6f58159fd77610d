#include "proxy/kafka/protocol.h"

#include "absl/strings/str_cat.h"

namespace saltproxy::kafka {

const std::vector<ApiRange>& SupportedApis() {
  static const std::vector<ApiRange> apis = {
      {kProduce, 0, 12},        {kFetch, 4, 11},     {kMetadata, 0, 12},
      {kFindCoordinator, 0, 2}, {kApiVersions, 0, 4}, {kInitProducerId, 0, 4},
      {kListOffsets, 0, 10},    {kCreateTopics, 0, 7},
  };
  return apis;
}

const ApiRange* FindApi(int16_t key) {
  for (const ApiRange& a : SupportedApis()) {
    if (a.key == key) return &a;
  }
  return nullptr;
}

std::string_view ApiName(int16_t key) {
  switch (key) {
    case kProduce: return "produce";
    case kFetch: return "fetch";
    case kListOffsets: return "list_offsets";
    case kMetadata: return "metadata";
    case kFindCoordinator: return "find_coordinator";
    case kApiVersions: return "api_versions";
    case kInitProducerId: return "init_producer_id";
    case kCreateTopics: return "create_topics";
    default: return "unknown";
  }
}

bool IsFlexible(int16_t api_key, int16_t version) {
  switch (api_key) {
    case kProduce: return version >= 9;
    case kFetch: return version >= 12;
    case kListOffsets: return version >= 6;
    case kMetadata: return version >= 9;
    case kFindCoordinator: return version >= 3;
    case kApiVersions: return version >= 3;
    case kInitProducerId: return version >= 2;
    case kCreateTopics: return version >= 5;
    default: return false;
  }
}

absl::StatusOr<RequestHeader> DecodeRequestHeader(WireReader& in) {
  RequestHeader h;
  h.api_key = in.Int16();
  h.api_version = in.Int16();
  h.correlation_id = in.Int32();
  h.client_id = in.NullableString(/*compact=*/false);  // header v1 and v2 alike
  if (IsFlexible(h.api_key, h.api_version)) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  return h;
}

std::string EncodeResponseHeader(const RequestHeader& request) {
  WireWriter w;
  w.Int32(request.correlation_id);
  if (request.api_key != kApiVersions && IsFlexible(request.api_key, request.api_version)) {
    w.EmptyTaggedFields();
  }
  return std::move(w.data());
}

absl::StatusOr<ApiVersionsRequest> DecodeApiVersionsRequest(WireReader& in, int16_t version) {
  ApiVersionsRequest r;
  if (version >= 3) {
    r.client_software_name = in.String(/*compact=*/true);
    r.client_software_version = in.String(/*compact=*/true);
    in.SkipTaggedFields();
  }
  if (!in.ok()) return in.status();
  return r;
}

std::string EncodeApiVersionsResponse(int16_t version, int16_t error) {
  if (error == kUnsupportedVersion) version = 0;
  const bool flexible = version >= 3;
  WireWriter w;
  w.Int16(error);
  w.ArrayLength(static_cast<int32_t>(SupportedApis().size()), flexible);
  for (const ApiRange& a : SupportedApis()) {
    w.Int16(a.key);
    w.Int16(a.min);
    w.Int16(a.max);
    if (flexible) w.EmptyTaggedFields();
  }
  if (version >= 1) w.Int32(0);  // throttle_time_ms
  if (flexible) w.EmptyTaggedFields();
  return std::move(w.data());
}

absl::StatusOr<MetadataRequest> DecodeMetadataRequest(WireReader& in, int16_t version) {
  const bool flexible = version >= 9;
  MetadataRequest req;
  int32_t n = in.ArrayLength(flexible);
  if (n >= 0) {
    req.topics.emplace();
    for (int32_t i = 0; i < n && in.ok(); ++i) {
      if (version >= 10) in.ReadUuid();
      std::optional<std::string> name =
          version >= 10 ? in.NullableString(flexible) : std::optional(in.String(flexible));
      if (name) req.topics->push_back(std::move(*name));
      if (flexible) in.SkipTaggedFields();
    }
    // v0 has no null array: an empty one asks for every topic.
    if (version == 0 && req.topics->empty()) req.topics.reset();
  }
  if (version >= 4) in.Bool();                     // allow_auto_topic_creation: never
  if (version >= 8 && version <= 10) in.Bool();    // include_cluster_authorized_operations
  if (version >= 8) in.Bool();                     // include_topic_authorized_operations
  if (flexible) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  return req;
}

std::string EncodeMetadataResponse(const MetadataResponse& r, int16_t version) {
  const bool flexible = version >= 9;
  WireWriter w;
  if (version >= 3) w.Int32(0);  // throttle_time_ms
  w.ArrayLength(1, flexible);    // brokers: saltproxy alone
  w.Int32(r.node_id);
  w.String(r.host, flexible);
  w.Int32(r.port);
  if (version >= 1) w.NullableString(std::nullopt, flexible);  // rack
  if (flexible) w.EmptyTaggedFields();
  if (version >= 2) w.NullableString(r.cluster_id, flexible);
  if (version >= 1) w.Int32(r.node_id);  // controller_id
  w.ArrayLength(static_cast<int32_t>(r.topics.size()), flexible);
  for (const MetadataTopic& t : r.topics) {
    w.Int16(t.error);
    if (version >= 12) {
      w.NullableString(t.name, flexible);
    } else {
      w.String(t.name, flexible);
    }
    // The cluster's id for the topic (metadata_client.h); all zero says "unknown".
    if (version >= 10) w.WriteUuid(t.topic_id);
    if (version >= 1) w.Bool(false);  // is_internal
    w.ArrayLength(t.error == kNone ? t.partitions : 0, flexible);
    for (int32_t p = 0; t.error == kNone && p < t.partitions; ++p) {
      w.Int16(kNone);
      w.Int32(p);
      w.Int32(r.node_id);         // leader: saltproxy owns every partition's choice
      if (version >= 7) w.Int32(0);  // leader_epoch
      w.ArrayLength(1, flexible);    // replica_nodes
      w.Int32(r.node_id);
      w.ArrayLength(1, flexible);  // isr_nodes
      w.Int32(r.node_id);
      if (version >= 5) w.ArrayLength(0, flexible);  // offline_replicas
      if (flexible) w.EmptyTaggedFields();
    }
    if (version >= 8) w.Int32(INT32_MIN);  // topic_authorized_operations: not asked
    if (flexible) w.EmptyTaggedFields();
  }
  if (version >= 8 && version <= 10) w.Int32(INT32_MIN);  // cluster_authorized_operations
  if (flexible) w.EmptyTaggedFields();
  return std::move(w.data());
}

absl::StatusOr<ProduceRequest> DecodeProduceRequest(WireReader& in, int16_t version) {
  const bool flexible = version >= 9;
  ProduceRequest req;
  if (version >= 3) req.transactional_id = in.NullableString(flexible);
  req.acks = in.Int16();
  req.timeout_ms = in.Int32();
  int32_t topics = in.ArrayLength(flexible);
  for (int32_t t = 0; t < topics && in.ok(); ++t) {
    ProduceTopic topic;
    topic.name = in.String(flexible);
    int32_t partitions = in.ArrayLength(flexible);
    for (int32_t p = 0; p < partitions && in.ok(); ++p) {
      ProducePartition part;
      part.index = in.Int32();
      part.records = in.NullableBytes(flexible);
      if (flexible) in.SkipTaggedFields();
      topic.partitions.push_back(part);
    }
    if (flexible) in.SkipTaggedFields();
    req.topics.push_back(std::move(topic));
  }
  if (flexible) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  if (req.acks != 0 && req.acks != 1 && req.acks != -1) {
    return absl::InvalidArgumentError(absl::StrCat("acks ", req.acks, ": expected 0, 1 or -1"));
  }
  return req;
}

std::string EncodeProduceResponse(const std::vector<ProduceTopicResponse>& topics,
                                  int16_t version, int32_t throttle_time_ms) {
  const bool flexible = version >= 9;
  WireWriter w;
  w.ArrayLength(static_cast<int32_t>(topics.size()), flexible);
  for (const ProduceTopicResponse& t : topics) {
    w.String(t.name, flexible);
    w.ArrayLength(static_cast<int32_t>(t.partitions.size()), flexible);
    for (const ProducePartitionResponse& p : t.partitions) {
      w.Int32(p.index);
      w.Int16(p.error);
      w.Int64(p.base_offset);
      if (version >= 2) w.Int64(p.log_append_time_ms);
      if (version >= 5) w.Int64(p.log_start_offset);
      if (version >= 8) {
        w.ArrayLength(0, flexible);  // record_errors
        w.NullableString(p.error_message, flexible);
      }
      if (flexible) w.EmptyTaggedFields();
    }
    if (flexible) w.EmptyTaggedFields();
  }
  if (version >= 1) w.Int32(throttle_time_ms);
  if (flexible) w.EmptyTaggedFields();
  return std::move(w.data());
}

absl::StatusOr<InitProducerIdRequest> DecodeInitProducerIdRequest(WireReader& in,
                                                                  int16_t version) {
  const bool flexible = version >= 2;
  InitProducerIdRequest req;
  req.transactional_id = in.NullableString(flexible);
  req.transaction_timeout_ms = in.Int32();
  if (version >= 3) {
    req.producer_id = in.Int64();
    req.producer_epoch = in.Int16();
  }
  if (flexible) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  return req;
}

std::string EncodeInitProducerIdResponse(int16_t version, int16_t error, int64_t producer_id,
                                         int16_t producer_epoch) {
  WireWriter w;
  w.Int32(0);  // throttle_time_ms
  w.Int16(error);
  w.Int64(producer_id);
  w.Int16(producer_epoch);
  if (version >= 2) w.EmptyTaggedFields();
  return std::move(w.data());
}

absl::StatusOr<FindCoordinatorRequest> DecodeFindCoordinatorRequest(WireReader& in,
                                                                    int16_t version) {
  FindCoordinatorRequest req;
  req.key = in.String(false);
  if (version >= 1) req.key_type = in.Int8();
  if (!in.ok()) return in.status();
  return req;
}

std::string EncodeFindCoordinatorError(int16_t version, int16_t error,
                                       const std::string& message) {
  WireWriter w;
  if (version >= 1) w.Int32(0);  // throttle_time_ms
  w.Int16(error);
  if (version >= 1) w.NullableString(message, false);
  w.Int32(-1);  // node_id
  w.String("", false);
  w.Int32(-1);  // port
  return std::move(w.data());
}

absl::StatusOr<std::string> EncodeFetchError(WireReader& in, int16_t version, int16_t error) {
  in.Int32();  // replica_id
  in.Int32();  // max_wait_ms
  in.Int32();  // min_bytes
  in.Int32();  // max_bytes
  in.Int8();   // isolation_level
  if (version >= 7) {
    in.Int32();  // session_id
    in.Int32();  // session_epoch
  }
  WireWriter w;
  w.Int32(0);  // throttle_time_ms
  if (version >= 7) {
    w.Int16(kNone);  // the partitions carry the error (see the header)
    w.Int32(0);      // session_id
  }
  int32_t topics = in.ArrayLength(false);
  WireWriter body;
  int32_t written = 0;
  for (int32_t t = 0; t < topics && in.ok(); ++t) {
    std::string name = in.String(false);
    int32_t partitions = in.ArrayLength(false);
    body.String(name, false);
    body.ArrayLength(std::max(partitions, 0), false);
    for (int32_t p = 0; p < partitions && in.ok(); ++p) {
      int32_t index = in.Int32();
      if (version >= 9) in.Int32();  // current_leader_epoch
      in.Int64();                    // fetch_offset
      if (version >= 5) in.Int64();  // log_start_offset
      in.Int32();                    // partition_max_bytes
      body.Int32(index);
      body.Int16(error);
      body.Int64(-1);  // high_watermark
      body.Int64(-1);  // last_stable_offset
      if (version >= 5) body.Int64(-1);  // log_start_offset
      body.ArrayLength(-1, false);       // aborted_transactions
      if (version >= 11) body.Int32(-1);  // preferred_read_replica
      // Empty records, as brokers send with an error: librdkafka takes a null for a parse
      // failure ("invalid MessageSetSize -1") and fetches again for ever.
      body.NullableBytes(std::string_view(), false);
    }
    ++written;
  }
  if (!in.ok()) return in.status();
  w.ArrayLength(written, false);
  w.Raw(body.data());
  return std::move(w.data());
}

absl::StatusOr<std::string> EncodeListOffsetsError(WireReader& in, int16_t version,
                                                   int16_t error) {
  const bool flexible = version >= 6;
  in.Int32();                    // replica_id
  if (version >= 2) in.Int8();  // isolation_level
  WireWriter w;
  if (version >= 2) w.Int32(0);  // throttle_time_ms
  int32_t topics = in.ArrayLength(flexible);
  WireWriter body;
  int32_t written = 0;
  for (int32_t t = 0; t < topics && in.ok(); ++t) {
    std::string name = in.String(flexible);
    int32_t partitions = in.ArrayLength(flexible);
    body.String(name, flexible);
    body.ArrayLength(std::max(partitions, 0), flexible);
    for (int32_t p = 0; p < partitions && in.ok(); ++p) {
      int32_t index = in.Int32();
      if (version >= 4) in.Int32();  // current_leader_epoch
      in.Int64();                    // timestamp
      if (version == 0) in.Int32();  // max_num_offsets
      if (flexible) in.SkipTaggedFields();
      body.Int32(index);
      body.Int16(error);
      if (version == 0) body.ArrayLength(0, false);  // old_style_offsets
      if (version >= 1) {
        body.Int64(-1);  // timestamp
        body.Int64(-1);  // offset
      }
      if (version >= 4) body.Int32(-1);  // leader_epoch
      if (flexible) body.EmptyTaggedFields();
    }
    if (flexible) {
      in.SkipTaggedFields();
      body.EmptyTaggedFields();
    }
    ++written;
  }
  if (version >= 10) in.Int32();  // timeout_ms
  if (flexible) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  w.ArrayLength(written, flexible);
  w.Raw(body.data());
  if (flexible) w.EmptyTaggedFields();
  return std::move(w.data());
}

absl::StatusOr<CreateTopicsRequest> DecodeCreateTopicsRequest(WireReader& in, int16_t version) {
  const bool flexible = version >= 5;
  CreateTopicsRequest req;
  int32_t topics = in.ArrayLength(flexible);
  for (int32_t t = 0; t < topics && in.ok(); ++t) {
    req.names.push_back(in.String(flexible));
    in.Int32();  // num_partitions
    in.Int16();  // replication_factor
    int32_t assignments = in.ArrayLength(flexible);
    for (int32_t a = 0; a < assignments && in.ok(); ++a) {
      in.Int32();  // partition_index
      int32_t brokers = in.ArrayLength(flexible);
      for (int32_t b = 0; b < brokers && in.ok(); ++b) in.Int32();
      if (flexible) in.SkipTaggedFields();
    }
    int32_t configs = in.ArrayLength(flexible);
    for (int32_t c = 0; c < configs && in.ok(); ++c) {
      in.String(flexible);          // name
      in.NullableString(flexible);  // value
      if (flexible) in.SkipTaggedFields();
    }
    if (flexible) in.SkipTaggedFields();
  }
  in.Int32();                 // timeout_ms
  if (version >= 1) in.Bool();  // validate_only
  if (flexible) in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  return req;
}

std::string EncodeCreateTopicsError(const CreateTopicsRequest& request, int16_t version,
                                    int16_t error, const std::string& message) {
  const bool flexible = version >= 5;
  WireWriter w;
  if (version >= 2) w.Int32(0);  // throttle_time_ms
  w.ArrayLength(static_cast<int32_t>(request.names.size()), flexible);
  for (const std::string& name : request.names) {
    w.String(name, flexible);
    if (version >= 7) w.WriteUuid(Uuid{});  // topic_id: none, nothing was created
    w.Int16(error);
    if (version >= 1) w.NullableString(message, flexible);
    if (version >= 5) {
      w.Int32(-1);                   // num_partitions
      w.Int16(-1);                   // replication_factor
      w.ArrayLength(-1, flexible);  // configs: null
    }
    if (flexible) w.EmptyTaggedFields();
  }
  if (flexible) w.EmptyTaggedFields();
  return std::move(w.data());
}

}  // namespace saltproxy::kafka
