// The Kafka messages saltproxy speaks, field for field from the protocol's JSON definitions
// (clients/src/main/resources/common/message/*.json in apache/kafka), with the versions that
// carry each field noted beside it. Adding a version is a matter of adding its fields here.
//
//   WireReader in(frame);
//   ASSIGN_OR_RETURN(RequestHeader header, DecodeRequestHeader(in));
//   if (header.api_key == kProduce) { ASSIGN_OR_RETURN(auto req, DecodeProduceRequest(in, v)); }
//   std::string answer = EncodeResponseHeader(header) + EncodeProduceResponse(topics, v);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/kafka/wire.h"

namespace saltproxy::kafka {

// API keys.
inline constexpr int16_t kProduce = 0;
inline constexpr int16_t kFetch = 1;
inline constexpr int16_t kListOffsets = 2;
inline constexpr int16_t kMetadata = 3;
inline constexpr int16_t kFindCoordinator = 10;
inline constexpr int16_t kApiVersions = 18;
inline constexpr int16_t kCreateTopics = 19;
inline constexpr int16_t kInitProducerId = 22;

// Error codes.
inline constexpr int16_t kNone = 0;
inline constexpr int16_t kUnknownServerError = -1;
inline constexpr int16_t kCorruptMessage = 2;
inline constexpr int16_t kUnknownTopicOrPartition = 3;
inline constexpr int16_t kRequestTimedOut = 7;
inline constexpr int16_t kMessageTooLarge = 10;
inline constexpr int16_t kCoordinatorNotAvailable = 15;
inline constexpr int16_t kNotEnoughReplicas = 19;
inline constexpr int16_t kTopicAuthorizationFailed = 29;
inline constexpr int16_t kGroupAuthorizationFailed = 30;
inline constexpr int16_t kClusterAuthorizationFailed = 31;
inline constexpr int16_t kUnsupportedVersion = 35;
inline constexpr int16_t kInvalidRequest = 42;
inline constexpr int16_t kUnsupportedForMessageFormat = 43;
inline constexpr int16_t kOutOfOrderSequenceNumber = 45;
inline constexpr int16_t kInvalidProducerEpoch = 47;
inline constexpr int16_t kTransactionalIdAuthorizationFailed = 53;
inline constexpr int16_t kInvalidRecord = 87;

struct ApiRange {
  int16_t key;
  int16_t min;
  int16_t max;
};
// What saltproxy advertises. ApiVersions is a feature contract: librdkafka turns record format
// v2 on when it sees Produce v3 and Fetch v4, lz4 when it sees FindCoordinator, zstd when it sees
// Produce v7 and Fetch v10. Produce v0-v2, Fetch and FindCoordinator are advertised for those
// flags, ListOffsets and CreateTopics so that consumers and admin clients send them rather than
// fail on their own: all are answered with a non-retriable error in their own response shape,
// never with silence.
const std::vector<ApiRange>& SupportedApis();
const ApiRange* FindApi(int16_t key);
// The API's name for logs and metric labels ("find_coordinator"); "unknown" for one not above.
std::string_view ApiName(int16_t key);
bool IsFlexible(int16_t api_key, int16_t version);

struct RequestHeader {
  int16_t api_key = 0;
  int16_t api_version = 0;
  int32_t correlation_id = 0;
  std::optional<std::string> client_id;
};
// Reads the header (v1, or v2 with tagged fields for flexible versions of known APIs).
absl::StatusOr<RequestHeader> DecodeRequestHeader(WireReader& in);
// The response header for `request`: v1 (with tagged fields) for flexible versions, except
// ApiVersions, whose response header is always v0 so that a client can read it whatever
// version it asked for.
std::string EncodeResponseHeader(const RequestHeader& request);

// ApiVersions v0-v4. `error` UNSUPPORTED_VERSION is answered in the v0 layout, as brokers do.
// From v3 the client names its software (KIP-511): "apache-kafka-java", "librdkafka", …
struct ApiVersionsRequest {
  std::string client_software_name;  // v3+; empty before
  std::string client_software_version;
};
absl::StatusOr<ApiVersionsRequest> DecodeApiVersionsRequest(WireReader& in, int16_t version);
std::string EncodeApiVersionsResponse(int16_t version, int16_t error);

// Metadata v0-v12.
struct MetadataRequest {
  std::optional<std::vector<std::string>> topics;  // nullopt: every topic
};
absl::StatusOr<MetadataRequest> DecodeMetadataRequest(WireReader& in, int16_t version);
struct MetadataTopic {
  int16_t error = kNone;
  std::string name;
  int32_t partitions = 0;
  Uuid topic_id{};  // v10+; all zero: unknown
};
struct MetadataResponse {
  int32_t node_id = 0;
  std::string host;
  int32_t port = 0;
  std::string cluster_id;
  std::vector<MetadataTopic> topics;
};
std::string EncodeMetadataResponse(const MetadataResponse& response, int16_t version);

// Produce v0-v12. v0-v2 (message formats v0 and v1, no transactional id) are decoded only to be
// answered UNSUPPORTED_VERSION per partition.
struct ProducePartition {
  int32_t index = 0;
  std::optional<std::string_view> records;  // a view into the request frame
};
struct ProduceTopic {
  std::string name;
  std::vector<ProducePartition> partitions;
};
struct ProduceRequest {
  std::optional<std::string> transactional_id;
  int16_t acks = -1;
  int32_t timeout_ms = 0;
  std::vector<ProduceTopic> topics;
};
absl::StatusOr<ProduceRequest> DecodeProduceRequest(WireReader& in, int16_t version);
struct ProducePartitionResponse {
  int32_t index = 0;
  int16_t error = kNone;
  int64_t base_offset = -1;
  int64_t log_append_time_ms = -1;
  int64_t log_start_offset = -1;
  std::optional<std::string> error_message;
};
struct ProduceTopicResponse {
  std::string name;
  std::vector<ProducePartitionResponse> partitions;
};
// `throttle_time_ms`: how long the client should send nothing more (v1+; from v6 clients
// honour it themselves, KIP-219).
std::string EncodeProduceResponse(const std::vector<ProduceTopicResponse>& topics,
                                  int16_t version, int32_t throttle_time_ms = 0);

// InitProducerId v0-v4.
struct InitProducerIdRequest {
  std::optional<std::string> transactional_id;
  int32_t transaction_timeout_ms = 0;
  int64_t producer_id = -1;    // v3+
  int16_t producer_epoch = -1;  // v3+
};
absl::StatusOr<InitProducerIdRequest> DecodeInitProducerIdRequest(WireReader& in,
                                                                  int16_t version);
std::string EncodeInitProducerIdResponse(int16_t version, int16_t error, int64_t producer_id,
                                         int16_t producer_epoch);

// FindCoordinator v0-v2, which saltproxy does not serve: it has no group or transaction
// coordinator. v0 has no key type (a group); error_message is v1+.
inline constexpr int8_t kGroupCoordinator = 0;
inline constexpr int8_t kTransactionCoordinator = 1;
struct FindCoordinatorRequest {
  std::string key;
  int8_t key_type = kGroupCoordinator;
};
absl::StatusOr<FindCoordinatorRequest> DecodeFindCoordinatorRequest(WireReader& in,
                                                                    int16_t version);
std::string EncodeFindCoordinatorError(int16_t version, int16_t error,
                                       const std::string& message);

// Fetch v4-v11, which saltproxy does not serve: `error` on every partition asked for, none at
// the top (v7+), where the Java client takes an error for its fetch session's and retries.
absl::StatusOr<std::string> EncodeFetchError(WireReader& in, int16_t version, int16_t error);

// ListOffsets v0-v10, which saltproxy does not serve: `error` on every partition asked for.
absl::StatusOr<std::string> EncodeListOffsetsError(WireReader& in, int16_t version,
                                                   int16_t error);

// CreateTopics v0-v7, which saltproxy does not serve: `error` and `message` (v1+) for every
// topic asked for.
struct CreateTopicsRequest {
  std::vector<std::string> names;
};
absl::StatusOr<CreateTopicsRequest> DecodeCreateTopicsRequest(WireReader& in, int16_t version);
std::string EncodeCreateTopicsError(const CreateTopicsRequest& request, int16_t version,
                                    int16_t error, const std::string& message);

}  // namespace saltproxy::kafka
