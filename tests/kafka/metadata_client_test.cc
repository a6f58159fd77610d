// The client side of ApiVersions and Metadata, checked against saltproxy's own server-side
// encoders (which follow the same JSON definitions); the real broker is asked in
// tests/e2e/kafka_protocol_real_kafka_test.cc.
#include "proxy/kafka/metadata_client.h"

#include <gtest/gtest.h>

#include "proxy/kafka/protocol.h"
#include "testing/status_matchers.h"

namespace saltproxy::kafka {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;

Uuid IdOf(uint8_t seed) {
  Uuid id{};
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(seed + i);
  return id;
}

TEST(MetadataClientTest, ReadsTheHighestMetadataVersionFromApiVersionsV0) {
  std::string body = EncodeApiVersionsResponse(0, kNone);
  WireReader in{std::string_view(body)};
  absl::StatusOr<int16_t> max = DecodeMetadataMaxVersion(in);
  ASSERT_THAT(max, IsOk());
  EXPECT_EQ(*max, FindApi(kMetadata)->max);
}

TEST(MetadataClientTest, RequestsAreFramedWithTheirHeader) {
  std::string request = EncodeMetadataRequestAllTopics(12, 7, "me");
  WireReader in{std::string_view(request)};
  EXPECT_EQ(in.Int32(), static_cast<int32_t>(request.size() - 4));
  absl::StatusOr<RequestHeader> header = DecodeRequestHeader(in);
  ASSERT_THAT(header, IsOk());
  EXPECT_EQ(header->api_key, kMetadata);
  EXPECT_EQ(header->api_version, 12);
  EXPECT_EQ(header->correlation_id, 7);
  EXPECT_EQ(header->client_id, "me");
  absl::StatusOr<MetadataRequest> body = DecodeMetadataRequest(in, 12);
  ASSERT_THAT(body, IsOk());
  EXPECT_FALSE(body->topics.has_value());  // every topic
}

TEST(MetadataClientTest, ReadsEveryTopicsIdInVersions10To12) {
  MetadataResponse response;
  response.node_id = 1;
  response.host = "127.0.0.1";
  response.port = 9092;
  response.cluster_id = "c";
  response.topics = {{kNone, "clicks", 16, IdOf(1)},
                     {kNone, "clicks.hot", 4, IdOf(50)},
                     {kUnknownTopicOrPartition, "gone", 0, Uuid{}},
                     {kNone, "no-id-yet", 2, Uuid{}}};
  for (int16_t version = 10; version <= 12; ++version) {
    std::string body = EncodeMetadataResponse(response, version);
    WireReader in{std::string_view(body)};
    absl::StatusOr<TopicIds> ids = DecodeMetadataTopicIds(in, version);
    ASSERT_THAT(ids, IsOk()) << "v" << version;
    EXPECT_EQ(ids->size(), 2u);
    EXPECT_EQ(ids->at("clicks"), IdOf(1));
    EXPECT_EQ(ids->at("clicks.hot"), IdOf(50));
  }
}

TEST(MetadataClientTest, TruncatedResponseIsAnError) {
  MetadataResponse response;
  response.topics = {{kNone, "clicks", 16, IdOf(1)}};
  std::string body = EncodeMetadataResponse(response, 12);
  body.resize(body.size() - 5);
  WireReader in{std::string_view(body)};
  EXPECT_FALSE(DecodeMetadataTopicIds(in, 12).ok());
  WireReader again{std::string_view(body)};
  EXPECT_THAT(DecodeMetadataTopicIds(again, 9), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MetadataClientTest, NoBrokerListeningIsUnavailable) {
  EXPECT_FALSE(FetchTopicIds("127.0.0.1:1", absl::Seconds(2)).ok());
  EXPECT_THAT(FetchTopicIds("nonsense", absl::Seconds(2)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace saltproxy::kafka
