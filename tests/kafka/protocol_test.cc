// Messages, with bytes written by hand from the protocol's JSON definitions.
#include "proxy/kafka/protocol.h"

#include <gtest/gtest.h>

#include "proxy/kafka/record_batch.h"

namespace saltproxy::kafka {
namespace {

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

TEST(ProtocolTest, RequestHeaderV2ForAFlexibleVersion) {
  // ApiVersions v3: api_key 18, version 3, correlation 7, client_id "kc", no tags.
  std::string frame = Bytes({0, 18, 0, 3, 0, 0, 0, 7, 0, 2, 'k', 'c', 0});
  WireReader in(frame);
  auto h = DecodeRequestHeader(in);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->api_key, 18);
  EXPECT_EQ(h->api_version, 3);
  EXPECT_EQ(h->correlation_id, 7);
  EXPECT_EQ(h->client_id, "kc");
  EXPECT_EQ(in.remaining(), 0u);
}

TEST(ProtocolTest, ApiVersionsV3RequestNamesTheClientsSoftware) {
  // Compact strings (length + 1): "librdkafka", "2.0.2"; no tags.
  std::string body = Bytes({11, 'l', 'i', 'b', 'r', 'd', 'k', 'a', 'f', 'k', 'a', 6, '2', '.',
                            '0', '.', '2', 0});
  WireReader in(body);
  auto r = DecodeApiVersionsRequest(in, 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->client_software_name, "librdkafka");
  EXPECT_EQ(r->client_software_version, "2.0.2");
  EXPECT_EQ(in.remaining(), 0u);
  // v0-v2 have an empty body; a v3 body cut short is an error.
  const std::string none, part = body.substr(0, 5);
  WireReader empty(none);
  ASSERT_TRUE(DecodeApiVersionsRequest(empty, 2).ok());
  WireReader cut(part);
  EXPECT_FALSE(DecodeApiVersionsRequest(cut, 3).ok());
}

TEST(ProtocolTest, ApiVersionsResponseHeaderIsAlwaysV0) {
  RequestHeader h{kApiVersions, 3, 9, std::nullopt};
  EXPECT_EQ(EncodeResponseHeader(h), Bytes({0, 0, 0, 9}));
  RequestHeader produce{kProduce, 9, 9, std::nullopt};
  EXPECT_EQ(EncodeResponseHeader(produce), Bytes({0, 0, 0, 9, 0}));  // v1: tagged fields
}

TEST(ProtocolTest, ApiVersionsV3IsCompactWithTags) {
  std::string body = EncodeApiVersionsResponse(3, kNone);
  WireReader r(body);
  EXPECT_EQ(r.Int16(), 0);
  int32_t n = r.ArrayLength(true);
  ASSERT_EQ(n, static_cast<int32_t>(SupportedApis().size()));
  bool produce = false;
  for (int32_t i = 0; i < n; ++i) {
    int16_t key = r.Int16(), min = r.Int16(), max = r.Int16();
    r.SkipTaggedFields();
    if (key == kProduce) {
      produce = true;
      EXPECT_EQ(min, 0);   // librdkafka wants the minimum advertised as v0
      EXPECT_GE(max, 7);   // and v7 for zstd
    }
  }
  EXPECT_TRUE(produce);
  EXPECT_EQ(r.Int32(), 0);  // throttle
  r.SkipTaggedFields();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ProtocolTest, FeatureFlagsLibrdkafkaLooksForAreAdvertised) {
  ASSERT_NE(FindApi(kFetch), nullptr);
  EXPECT_LE(FindApi(kFetch)->min, 4);
  EXPECT_GE(FindApi(kFetch)->max, 10);   // zstd
  ASSERT_NE(FindApi(kFindCoordinator), nullptr);
  EXPECT_EQ(FindApi(kFindCoordinator)->min, 0);  // lz4
  EXPECT_GE(FindApi(kProduce)->max, 3);  // record format v2
}

TEST(ProtocolTest, UnsupportedApiVersionsVersionGetsV0LayoutWithTheList) {
  std::string body = EncodeApiVersionsResponse(9, kUnsupportedVersion);
  WireReader r(body);
  EXPECT_EQ(r.Int16(), kUnsupportedVersion);
  EXPECT_EQ(r.ArrayLength(false), static_cast<int32_t>(SupportedApis().size()));
}

TEST(ProtocolTest, MetadataRequestV1NullMeansAllTopics) {
  const std::string bytes = Bytes({0xff, 0xff, 0xff, 0xff});
  WireReader in(bytes);
  auto req = DecodeMetadataRequest(in, 1);
  ASSERT_TRUE(req.ok());
  EXPECT_FALSE(req->topics.has_value());
}

TEST(ProtocolTest, MetadataRequestV9CompactTopics) {
  // topics: compact array of 1 {name "t", tags}, allow_auto 1, include_cluster_ops 0,
  // include_topic_ops 0, tags.
  const std::string bytes = Bytes({2, 2, 't', 0, 1, 0, 0, 0});
  WireReader in(bytes);
  auto req = DecodeMetadataRequest(in, 9);
  ASSERT_TRUE(req.ok()) << req.status();
  ASSERT_TRUE(req->topics.has_value());
  EXPECT_EQ(*req->topics, std::vector<std::string>{"t"});
}

TEST(ProtocolTest, MetadataResponseNamesSaltproxyLeaderOfEveryPartition) {
  MetadataResponse m{5, "127.0.0.1", 9092, "cid", {{kNone, "orders", 3}}};
  for (int16_t v : {0, 1, 5, 8, 9, 10, 12}) {
    std::string body = EncodeMetadataResponse(m, v);
    WireReader r(body);
    const bool flex = v >= 9;
    if (v >= 3) r.Int32();
    ASSERT_EQ(r.ArrayLength(flex), 1);
    EXPECT_EQ(r.Int32(), 5);
    EXPECT_EQ(r.String(flex), "127.0.0.1");
    EXPECT_EQ(r.Int32(), 9092);
    if (v >= 1) r.NullableString(flex);
    if (flex) r.SkipTaggedFields();
    if (v >= 2) {
      EXPECT_EQ(r.NullableString(flex), "cid");
    }
    if (v >= 1) {
      EXPECT_EQ(r.Int32(), 5);
    }
    ASSERT_EQ(r.ArrayLength(flex), 1);
    EXPECT_EQ(r.Int16(), 0);
    EXPECT_EQ(r.NullableString(flex), "orders");
    if (v >= 10) r.ReadUuid();
    if (v >= 1) r.Bool();
    ASSERT_EQ(r.ArrayLength(flex), 3) << "v" << v;
    EXPECT_TRUE(r.ok()) << "v" << v;
  }
}

TEST(ProtocolTest, ProduceRequestV3ByHand) {
  RecordBatch batch;
  BatchRecord rec;
  rec.key = "k";
  rec.value = "v";
  batch.records.push_back(rec);
  std::string records = EncodeRecordBatch(batch, Compression::kNone);
  WireWriter w;
  w.NullableString(std::nullopt, false);  // transactional_id
  w.Int16(-1);                            // acks
  w.Int32(30000);                         // timeout
  w.ArrayLength(1, false);
  w.String("orders", false);
  w.ArrayLength(1, false);
  w.Int32(2);
  w.NullableBytes(records, false);
  WireReader in(w.data());
  auto req = DecodeProduceRequest(in, 3);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->acks, -1);
  ASSERT_EQ(req->topics.size(), 1u);
  EXPECT_EQ(req->topics[0].name, "orders");
  EXPECT_EQ(req->topics[0].partitions[0].index, 2);
  EXPECT_EQ(*req->topics[0].partitions[0].records, records);
}

TEST(ProtocolTest, ProduceV2HasNoTransactionalIdAndItsV0AnswerNoThrottleTime) {
  WireWriter w;
  w.Int16(1);      // acks
  w.Int32(30000);  // timeout
  w.ArrayLength(1, false);
  w.String("orders", false);
  w.ArrayLength(1, false);
  w.Int32(2);
  w.NullableBytes(std::string("v1 message set"), false);
  WireReader in(w.data());
  auto req = DecodeProduceRequest(in, 2);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(in.remaining(), 0u);
  EXPECT_FALSE(req->transactional_id.has_value());
  EXPECT_EQ(req->acks, 1);
  ASSERT_EQ(req->topics.size(), 1u);
  EXPECT_EQ(req->topics[0].partitions[0].index, 2);

  ProduceTopicResponse t{"orders", {{2, kUnsupportedVersion, -1, -1, -1, std::nullopt}}};
  // v0: topic, partition, error, base offset and nothing after; v1 adds throttle_time_ms.
  EXPECT_EQ(EncodeProduceResponse({t}, 0).size(), 4 + 2 + 6 + 4 + 4 + 2 + 8u);
  EXPECT_EQ(EncodeProduceResponse({t}, 1).size(), 4 + 2 + 6 + 4 + 4 + 2 + 8 + 4u);
}

TEST(ProtocolTest, BadAcksAreRefused) {
  WireWriter w;
  w.NullableString(std::nullopt, false);
  w.Int16(5);
  w.Int32(0);
  w.ArrayLength(0, false);
  WireReader bad(w.data());
  EXPECT_FALSE(DecodeProduceRequest(bad, 3).ok());
}

TEST(ProtocolTest, ProduceResponseV9NamesTheClientsTopicAndPartition) {
  ProduceTopicResponse t{"orders", {{2, kNone, 41, -1, 0, std::nullopt}}};
  std::string body = EncodeProduceResponse({t}, 9);
  WireReader r(body);
  ASSERT_EQ(r.ArrayLength(true), 1);
  EXPECT_EQ(r.String(true), "orders");
  ASSERT_EQ(r.ArrayLength(true), 1);
  EXPECT_EQ(r.Int32(), 2);
  EXPECT_EQ(r.Int16(), 0);
  EXPECT_EQ(r.Int64(), 41);
  r.Int64();
  r.Int64();
  EXPECT_EQ(r.ArrayLength(true), 0);
  EXPECT_FALSE(r.NullableString(true).has_value());
  r.SkipTaggedFields();
  r.SkipTaggedFields();
  EXPECT_EQ(r.Int32(), 0);
  r.SkipTaggedFields();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ProtocolTest, ProduceResponseCarriesItsThrottleTimeLast) {
  ProduceTopicResponse t{"orders", {{2, kNotEnoughReplicas, -1, -1, -1, std::nullopt}}};
  for (int16_t version : {1, 7, 9}) {
    SCOPED_TRACE(version);
    const std::string body = EncodeProduceResponse({t}, version, 2500);
    const size_t tail = version >= 9 ? 5 : 4;  // flexible versions end with empty tagged fields
    WireReader r(std::string_view(body).substr(body.size() - tail));
    EXPECT_EQ(r.Int32(), 2500);
  }
}

TEST(ProtocolTest, InitProducerIdV4RoundTrip) {
  WireWriter w;
  w.NullableString(std::nullopt, true);
  w.Int32(60000);
  w.Int64(123);
  w.Int16(4);
  w.EmptyTaggedFields();
  WireReader in(w.data());
  auto req = DecodeInitProducerIdRequest(in, 4);
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->producer_id, 123);
  EXPECT_EQ(req->producer_epoch, 4);
  std::string body = EncodeInitProducerIdResponse(4, kNone, 99, 5);
  WireReader r(body);
  r.Int32();
  EXPECT_EQ(r.Int16(), 0);
  EXPECT_EQ(r.Int64(), 99);
  EXPECT_EQ(r.Int16(), 5);
}

TEST(ProtocolTest, FetchIsAnsweredWithAnErrorPerPartitionAskedFor) {
  WireWriter w;
  w.Int32(-1);
  w.Int32(500);
  w.Int32(1);
  w.Int32(1 << 20);
  w.Int8(0);
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(1, false);
  w.Int32(3);
  w.Int64(0);
  w.Int64(0);
  w.Int32(1 << 20);
  WireReader in(w.data());
  auto body = EncodeFetchError(in, 5, kTopicAuthorizationFailed);
  ASSERT_TRUE(body.ok()) << body.status();
  WireReader r(*body);
  r.Int32();
  ASSERT_EQ(r.ArrayLength(false), 1);
  EXPECT_EQ(r.String(false), "t");
  ASSERT_EQ(r.ArrayLength(false), 1);
  EXPECT_EQ(r.Int32(), 3);
  EXPECT_EQ(r.Int16(), kTopicAuthorizationFailed);
}

TEST(ProtocolTest, ListOffsetsV6IsCompactWithLeaderEpochs) {
  WireWriter w;
  w.Int32(-1);  // replica id
  w.Int8(0);    // isolation level
  w.ArrayLength(1, true);
  w.String("t", true);
  w.ArrayLength(1, true);
  w.Int32(4);
  w.Int32(7);   // current leader epoch
  w.Int64(-1);  // the latest offset
  w.EmptyTaggedFields();
  w.EmptyTaggedFields();
  w.EmptyTaggedFields();
  WireReader in(w.data());
  absl::StatusOr<std::string> body = EncodeListOffsetsError(in, 6, kTopicAuthorizationFailed);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(in.remaining(), 0u);
  WireReader r(*body);
  EXPECT_EQ(r.Int32(), 0);  // throttle time
  ASSERT_EQ(r.ArrayLength(true), 1);
  EXPECT_EQ(r.String(true), "t");
  ASSERT_EQ(r.ArrayLength(true), 1);
  EXPECT_EQ(r.Int32(), 4);
  EXPECT_EQ(r.Int16(), kTopicAuthorizationFailed);
  EXPECT_EQ(r.Int64(), -1);  // timestamp
  EXPECT_EQ(r.Int64(), -1);  // offset
  EXPECT_EQ(r.Int32(), -1);  // leader epoch
  r.SkipTaggedFields();
  r.SkipTaggedFields();
  r.SkipTaggedFields();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ProtocolTest, ListOffsetsV0AnswersAnEmptyOffsetList) {
  WireWriter w;
  w.Int32(-1);
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(1, false);
  w.Int32(0);
  w.Int64(-2);
  w.Int32(1);  // max_num_offsets
  WireReader in(w.data());
  absl::StatusOr<std::string> body = EncodeListOffsetsError(in, 0, kTopicAuthorizationFailed);
  ASSERT_TRUE(body.ok()) << body.status();
  WireReader r(*body);
  ASSERT_EQ(r.ArrayLength(false), 1);
  EXPECT_EQ(r.String(false), "t");
  ASSERT_EQ(r.ArrayLength(false), 1);
  EXPECT_EQ(r.Int32(), 0);
  EXPECT_EQ(r.Int16(), kTopicAuthorizationFailed);
  EXPECT_EQ(r.ArrayLength(false), 0);  // old-style offsets
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ProtocolTest, CreateTopicsV5IsCompactAndItsAnswerCarriesTheMessageAndNoConfigs) {
  WireWriter w;
  w.ArrayLength(1, true);
  w.String("orders", true);
  w.Int32(-1);  // partitions: the broker's default
  w.Int16(-1);
  w.ArrayLength(1, true);  // one assignment
  w.Int32(0);
  w.ArrayLength(2, true);
  w.Int32(1);
  w.Int32(2);
  w.EmptyTaggedFields();
  w.ArrayLength(0, true);  // configs
  w.EmptyTaggedFields();
  w.Int32(60000);
  w.Bool(true);  // validate only
  w.EmptyTaggedFields();
  WireReader in(w.data());
  absl::StatusOr<CreateTopicsRequest> req = DecodeCreateTopicsRequest(in, 5);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->names, std::vector<std::string>{"orders"});
  EXPECT_EQ(in.remaining(), 0u);

  for (int16_t version : {5, 7}) {
    SCOPED_TRACE(version);
    const std::string answer =
        EncodeCreateTopicsError(*req, version, kClusterAuthorizationFailed, "why");
    WireReader r(answer);
    EXPECT_EQ(r.Int32(), 0);  // throttle time
    ASSERT_EQ(r.ArrayLength(true), 1);
    EXPECT_EQ(r.String(true), "orders");
    if (version >= 7) {
      EXPECT_EQ(r.ReadUuid(), Uuid{});
    }
    EXPECT_EQ(r.Int16(), kClusterAuthorizationFailed);
    EXPECT_EQ(r.NullableString(true), "why");
    EXPECT_EQ(r.Int32(), -1);
    EXPECT_EQ(r.Int16(), -1);
    EXPECT_EQ(r.ArrayLength(true), -1);  // configs: null
    r.SkipTaggedFields();
    r.SkipTaggedFields();
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.remaining(), 0u);
  }
}

TEST(ProtocolTest, CreateTopicsV0AnswerHasNoThrottleTimeNorMessage) {
  CreateTopicsRequest req{{"a"}};
  const std::string answer = EncodeCreateTopicsError(req, 0, kClusterAuthorizationFailed, "why");
  WireReader r(answer);
  ASSERT_EQ(r.ArrayLength(false), 1);
  EXPECT_EQ(r.String(false), "a");
  EXPECT_EQ(r.Int16(), kClusterAuthorizationFailed);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ProtocolTest, FindCoordinatorV0HasNoKeyType) {
  WireWriter w;
  w.String("g", false);
  WireReader in(w.data());
  absl::StatusOr<FindCoordinatorRequest> req = DecodeFindCoordinatorRequest(in, 0);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->key, "g");
  EXPECT_EQ(req->key_type, kGroupCoordinator);
  WireWriter truncated;  // v1 without its key type
  truncated.String("t", false);
  WireReader short_in(truncated.data());
  EXPECT_FALSE(DecodeFindCoordinatorRequest(short_in, 1).ok());
}

}  // namespace
}  // namespace saltproxy::kafka
