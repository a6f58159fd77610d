// The client side of two Kafka requests, so that saltproxy can ask the upstream cluster what
// librdkafka 2.0 does not tell: the topic ids (Metadata v10 and later carry them), which
// saltproxy's own Metadata answers must repeat to be the cluster's.
//
//   absl::StatusOr<TopicIds> ids = FetchTopicIds("kafka-1:9092,kafka-2:9092", absl::Seconds(5));
//   // ids->at("clicks") is the broker's Uuid of topic "clicks"
//
// Plaintext listeners only: against TLS or SASL listeners the call fails and saltproxy keeps
// answering the all-zero id ("unknown"), which clients accept.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/kafka/wire.h"

namespace saltproxy::kafka {

using TopicIds = absl::flat_hash_map<std::string, Uuid>;

// A framed ApiVersions v0 request (4-byte length first).
std::string EncodeApiVersionsRequestV0(int32_t correlation_id, std::string_view client_id);
// The highest Metadata version the broker serves, from an ApiVersions v0 response body (after
// the correlation id); -1 when it does not list Metadata.
absl::StatusOr<int16_t> DecodeMetadataMaxVersion(WireReader& in);

// A framed Metadata request for every topic, version 10 to 12 (flexible, header v2).
std::string EncodeMetadataRequestAllTopics(int16_t version, int32_t correlation_id,
                                           std::string_view client_id);
// The topic ids of a Metadata v10-v12 response body (after the response header).
absl::StatusOr<TopicIds> DecodeMetadataTopicIds(WireReader& in, int16_t version);

// Connects to the first reachable of `bootstrap_servers` (host:port, comma-separated), and asks
// for every topic's id. FailedPrecondition when the broker serves no Metadata v10.
absl::StatusOr<TopicIds> FetchTopicIds(const std::string& bootstrap_servers,
                                       absl::Duration timeout);

}  // namespace saltproxy::kafka
