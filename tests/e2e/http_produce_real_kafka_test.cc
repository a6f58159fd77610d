// Records POSTed to saltproxy's REST API reach a real Kafka broker, where a real consumer
// (librdkafka) reads back the same keys, values and headers, each key on the partition the Java
// default partitioner would choose.
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "proxy/app.h"
#include "saltproxy/partitioner.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;

class HttpProduceRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 4194304}
salting: {control_topic: ""}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = std::move(*app);
  }
  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
};

TEST_F(HttpProduceRealKafkaTest, RecordsReachTheBrokerWithTheSameKeysValuesAndHeaders) {
  ASSERT_THAT(kafka_->CreateTopic("http-e2e", 6), IsOk());
  HttpClient client(app_->http_port());
  const int kRecords = 60;
  // Keys key-0..key-9 in binary mode (base64), six records each, interleaved.
  std::string body = R"({"records":[)";
  for (int i = 0; i < kRecords; ++i) {
    body += absl::StrCat(i ? "," : "", R"({"key":")", absl::Base64Escape(absl::StrCat("key-", i % 10)),
                         R"(","value":")", absl::Base64Escape(absl::StrCat("value-", i)),
                         R"(","headers":[{"key":"n","value":")", absl::Base64Escape(absl::StrCat(i)),
                         R"("}]})");
  }
  body += "]}";
  HttpResult r = client.Post("/topics/http-e2e", body, "application/vnd.kafka.binary.v2+json");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(r.Json().is_object()) << r.body;

  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll("http-e2e", kRecords, absl::Seconds(60));
  ASSERT_THAT(records, IsOk());
  ASSERT_EQ(records->size(), static_cast<size_t>(kRecords));
  std::map<std::string, std::vector<int>> order;  // key → record numbers in partition order
  std::sort(records->begin(), records->end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  for (const ConsumedRecord& rec : *records) {
    ASSERT_TRUE(rec.key && rec.value);
    int n = std::stoi(*rec.Header("n"));
    EXPECT_EQ(*rec.key, absl::StrCat("key-", n % 10));
    EXPECT_EQ(*rec.value, absl::StrCat("value-", n));
    EXPECT_EQ(rec.partition, DefaultPartition(*rec.key, 6)) << *rec.key;
    order[*rec.key].push_back(n);
  }
  for (const auto& [key, ns] : order) {
    EXPECT_TRUE(std::is_sorted(ns.begin(), ns.end())) << key << " out of order";
    EXPECT_EQ(ns.size(), 6u);
  }
  // The answer's offsets are the broker's.
  boost::json::value answer = r.Json();
  const auto& offsets = answer.at("offsets").as_array();
  for (size_t i = 0; i < offsets.size(); ++i) {
    EXPECT_EQ(offsets[i].at("partition").as_int64(),
              DefaultPartition(absl::StrCat("key-", i % 10), 6));
  }
}

TEST_F(HttpProduceRealKafkaTest, UnknownTopicIsA404FromTheRealCluster) {
  HttpResult r = HttpClient(app_->http_port())
                     .Post("/topics/never-created", R"({"records":[{"value":1}]})",
                           "application/vnd.kafka.json.v2+json");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 40401);
}

TEST_F(HttpProduceRealKafkaTest, JsonValuesArriveAsTheirJsonText) {
  ASSERT_THAT(kafka_->CreateTopic("http-e2e-json", 1), IsOk());
  HttpResult r = HttpClient(app_->http_port())
                     .Post("/topics/http-e2e-json",
                           R"({"records":[{"key":"k","value":{"seat":"A1","n":3}}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto records = kafka_->ConsumeAll("http-e2e-json", 1, absl::Seconds(30));
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].key, "\"k\"");
  EXPECT_EQ((*records)[0].value, R"({"seat":"A1","n":3})");
}

// Issue 20: what the broker holds is the client's JSON text, numbers as spelled, and a number
// key lands where the Java client would put those bytes.
TEST_F(HttpProduceRealKafkaTest, JsonNumbersArriveAsTheClientWroteThem) {
  ASSERT_THAT(kafka_->CreateTopic("http-e2e-numbers", 1), IsOk());
  ASSERT_THAT(kafka_->CreateTopic("http-e2e-numbers-6", 6), IsOk());
  HttpClient client(app_->http_port());
  HttpResult r = client.Post("/topics/http-e2e-numbers",
                             R"({"records":[{"key":9.99,"value":{"price": 53.5, "big": 1e999999,)"
                             R"( "id": 123456789012345678901234567890, "z": -0}}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto records = kafka_->ConsumeAll("http-e2e-numbers", 1, absl::Seconds(30));
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].key, "9.99");
  EXPECT_EQ((*records)[0].value,
            R"({"price":53.5,"big":1e999999,"id":123456789012345678901234567890,"z":-0})");
  // The broker's answer says where it went (the old 9.99E0 bytes hashed elsewhere).
  HttpResult placed = client.Post("/topics/http-e2e-numbers-6", R"({"records":[{"key":9.99}]})");
  ASSERT_EQ(placed.status, 200) << placed.body;
  EXPECT_EQ(placed.Json().at("offsets").at(0).at("partition").as_int64(),
            DefaultPartition("9.99", 6));
}

// Issue 20: the doc's binary example sent as application/json arrives decoded.
TEST_F(HttpProduceRealKafkaTest, ApplicationJsonBodiesAreBase64) {
  ASSERT_THAT(kafka_->CreateTopic("http-e2e-octets", 1), IsOk());
  HttpResult r = HttpClient(app_->http_port())
                     .Post("/topics/http-e2e-octets",
                           R"({"records":[{"key":"a2V5","value":"Y29uZmx1ZW50"}]})",
                           "application/json");
  ASSERT_EQ(r.status, 200) << r.body;
  auto records = kafka_->ConsumeAll("http-e2e-octets", 1, absl::Seconds(30));
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].key, "key");
  EXPECT_EQ((*records)[0].value, "confluent");
}

// Issue 20: the cluster decides how large a record may be (max.message.bytes, 1,048,588 by
// default): a 1,000,000-byte v3 value and a 1,000,002-byte v2 value are written (they got 500
// and 50002 from librdkafka's own 1,000,000 limit); one over the broker's limit is the doc's
// 413, and the producer goes on.
TEST_F(HttpProduceRealKafkaTest, RecordSizeLimitIsTheClustersAndOverItIs413) {
  ASSERT_THAT(kafka_->CreateTopic("http-e2e-large", 1), IsOk());
  HttpClient client(app_->http_port());
  HttpResult clusters = client.Get("/v3/clusters");
  ASSERT_EQ(clusters.status, 200) << clusters.body;
  const std::string records = absl::StrCat(
      "/v3/clusters/", std::string(clusters.Json().at("data").at(0).at("cluster_id").as_string()),
      "/topics/http-e2e-large/records");
  auto v3 = [&](size_t size) {
    return client.Post(records,
                       absl::StrCat(R"({"value":{"type":"STRING","data":")",
                                    std::string(size, 'v'), R"("}})"),
                       "application/json");
  };
  HttpResult fits = v3(1000000);
  EXPECT_EQ(fits.status, 200) << fits.body.substr(0, 300);
  EXPECT_EQ(fits.Json().at("error_code").as_int64(), 200);
  HttpResult v2 = client.Post(
      "/topics/http-e2e-large",
      absl::StrCat(R"({"records":[{"value":")", absl::Base64Escape(std::string(1000002, 'w')),
                   R"("}]})"),
      "application/vnd.kafka.binary.v2+json");
  ASSERT_EQ(v2.status, 200) << v2.body.substr(0, 300);
  EXPECT_TRUE(v2.Json().at("offsets").at(0).at("error_code").is_null()) << v2.body;
  HttpResult over = v3(1100000);
  EXPECT_EQ(over.status, 413) << over.body.substr(0, 300);
  EXPECT_EQ(over.Json().at("error_code").as_int64(), 413);
  EXPECT_THAT(std::string(over.Json().at("message").as_string()),
              ::testing::HasSubstr("max.message.bytes"));
  HttpResult after = v3(10);
  EXPECT_EQ(after.status, 200) << after.body;
  auto stored = kafka_->ConsumeAll("http-e2e-large", 3, absl::Seconds(60));
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->size(), 3u);
  EXPECT_EQ((*stored)[0].value->size(), 1000000u);
  EXPECT_EQ((*stored)[1].value->size(), 1000002u);
  EXPECT_EQ((*stored)[2].value->size(), 10u);
}

}  // namespace
}  // namespace saltproxy
