// Confluent v3 (one record a request, and chunked streaming) and NDJSON bulk against a real Kafka
// broker: what a real consumer (librdkafka) reads back has the keys, values and headers that were
// sent, and every answer's partition and offset is where the broker holds that very record.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proxy/app.h"
#include "saltproxy/partitioner.h"
#include "testing/http_client.h"
#include "testing/raw_http.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RawHttp;
using ::saltproxy::testing::RealKafka;

using Where = std::pair<int64_t, int64_t>;  // partition, offset

// The records of `topic`, by where the broker holds them; fails the test on a missing one.
std::map<Where, ConsumedRecord> ReadBack(RealKafka& kafka, const std::string& topic, int expected) {
  std::map<Where, ConsumedRecord> by_place;
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka.ConsumeAll(topic, expected, absl::Seconds(60));
  EXPECT_THAT(records, IsOk());
  if (!records.ok()) return by_place;
  EXPECT_EQ(records->size(), static_cast<size_t>(expected));
  for (ConsumedRecord& r : *records) by_place[{r.partition, r.offset}] = std::move(r);
  return by_place;
}

// The cluster id the broker wrote when its storage was formatted (DIR/data/meta.properties).
std::string BrokerClusterId(const RealKafka& kafka) {
  std::ifstream meta(kafka.dir() + "/data/meta.properties");
  for (std::string line; std::getline(meta, line);) {
    if (line.rfind("cluster.id=", 0) == 0) return line.substr(11);
  }
  return "";
}

class HttpStreamsRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    // Salting off: ten keys in a few hundred records would turn hot, and these tests check
    // each key's default partition. What salting does on a real broker is salting_real_kafka's.
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: warn
http: {listen: 127.0.0.1:0, stream_credit: 64}
salting: {control_topic: "", defaults: {strategy: "off"}}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = std::move(*app);
    // 503 until the cluster's first metadata answer, as a client discovering the id sees it.
    HttpResult clusters;
    for (absl::Time stop = absl::Now() + absl::Seconds(30); absl::Now() < stop;
         absl::SleepFor(absl::Milliseconds(100))) {
      clusters = HttpClient(port()).Get("/v3/clusters");
      if (clusters.status != 503) break;
      EXPECT_EQ(clusters.headers["Retry-After"], "1");
    }
    ASSERT_EQ(clusters.status, 200) << clusters.body;
    cluster_ = std::string(clusters.Json().at("data").at(0).at("cluster_id").as_string());
    ASSERT_FALSE(cluster_.empty()) << clusters.body;
  }
  uint16_t port() const { return app_->http_port(); }
  std::string Records(const std::string& topic) const {
    return "/v3/clusters/" + cluster_ + "/topics/" + topic + "/records";
  }

  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
  std::string cluster_;
};

TEST_F(HttpStreamsRealKafkaTest, V3ClusterIsTheBrokersOwn) {
  const std::string id = BrokerClusterId(*kafka_);
  ASSERT_FALSE(id.empty()) << "no cluster.id in " << kafka_->dir() << "/data/meta.properties";
  EXPECT_EQ(cluster_, id);
}

TEST_F(HttpStreamsRealKafkaTest, V3SingleRecordsLandWhereTheirAnswersSay) {
  const std::string topic = "v3-single-e2e";
  ASSERT_THAT(kafka_->CreateTopic(topic, 4), IsOk());
  struct Sent {
    std::string body;
    std::optional<std::string> key, value;
    std::map<std::string, std::string> headers;
    int partition = -1;   // asked for, or -1
    int64_t timestamp = -1;  // asked for, or -1
  };
  const std::vector<Sent> sent = {
      {R"({"key":{"type":"STRING","data":"user-1"},"value":{"type":"JSON","data":{"seat":"A1"}},
          "headers":[{"name":"trace","value":")" + absl::Base64Escape("t-1") + R"("},
                     {"name":"origin","value":")" + absl::Base64Escape("web") + R"("}]})",
       "user-1", R"({"seat":"A1"})", {{"trace", "t-1"}, {"origin", "web"}}},
      {R"({"partition_id":2,"key":{"type":"BINARY","data":")" + absl::Base64Escape("\x01\x02") +
           R"("},"value":{"type":"BINARY","data":")" + absl::Base64Escape("raw bytes") +
           R"("},"timestamp":"2026-11-24T21:30:00.123Z"})",
       std::string("\x01\x02"), "raw bytes", {}, 2, 1795555800123},
      {R"({"key":{"type":"JSON","data":"user-2"},)"
       R"("value":{"type":"JSON","data":[1,2,3]}})", "\"user-2\"",
       "[1,2,3]", {}},
      {R"({"value":{"type":"STRING","data":"no key"}})", std::nullopt, "no key", {}},
  };
  std::vector<boost::json::value> answers;
  for (const Sent& s : sent) {
    HttpResult r = HttpClient(port()).Post(Records(topic), s.body, "application/json");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Json().at("error_code").as_int64(), 200) << r.body;
    EXPECT_EQ(r.Json().at("cluster_id").as_string(), cluster_);
    EXPECT_EQ(r.Json().at("topic_name").as_string(), topic);
    answers.push_back(r.Json());
  }

  std::map<Where, ConsumedRecord> held = ReadBack(*kafka_, topic, static_cast<int>(sent.size()));
  for (size_t i = 0; i < sent.size(); ++i) {
    SCOPED_TRACE(sent[i].body);
    const Where where{answers[i].at("partition_id").as_int64(), answers[i].at("offset").as_int64()};
    auto it = held.find(where);
    ASSERT_NE(it, held.end()) << "the broker holds nothing at partition " << where.first
                              << " offset " << where.second;
    const ConsumedRecord& rec = it->second;
    EXPECT_EQ(rec.key, sent[i].key);
    EXPECT_EQ(rec.value, sent[i].value);
    ASSERT_EQ(rec.headers.size(), sent[i].headers.size());
    for (const auto& [name, value] : sent[i].headers) EXPECT_EQ(rec.Header(name), value) << name;
    if (sent[i].partition >= 0) {
      EXPECT_EQ(rec.partition, sent[i].partition);
    } else if (sent[i].key) {
      EXPECT_EQ(rec.partition, DefaultPartition(*sent[i].key, 4));
    }
    if (sent[i].timestamp >= 0) {
      EXPECT_EQ(rec.timestamp_ms, sent[i].timestamp);
    }
    // The answer's timestamp is the broker's record timestamp.
    absl::Time answered;
    std::string error;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full,
                                std::string(answers[i].at("timestamp").as_string()), &answered,
                                &error))
        << error;
    EXPECT_EQ(absl::ToUnixMillis(answered), rec.timestamp_ms);
  }
}

TEST_F(HttpStreamsRealKafkaTest, V3ChunkedStreamResultsArriveWhileStreamingAndMatchTheBroker) {
  const std::string topic = "v3-stream-e2e";
  const int kPartitions = 6;
  ASSERT_THAT(kafka_->CreateTopic(topic, kPartitions), IsOk());
  const int kRounds = 3, kPerRound = 100;  // 300 records; the credit is 64 a connection
  RawHttp c(port());
  ASSERT_TRUE(c.Send("POST " + Records(topic) +
                     " HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"));
  std::vector<boost::json::value> results;
  for (int round = 0; round < kRounds; ++round) {
    std::string chunk;
    for (int i = round * kPerRound; i < (round + 1) * kPerRound; ++i) {
      absl::StrAppend(&chunk, R"({"key":{"type":"STRING","data":"key-)", i % 10,
                      R"("},"value":{"type":"JSON","data":{"n":)", i,
                      R"(}},"headers":[{"name":"n","value":")", absl::Base64Escape(absl::StrCat(i)),
                      "\"}]}\n");
    }
    // Several chunks a round, split inside records: the framing is the JSON, not the chunks.
    for (size_t at = 0; at < chunk.size(); at += 997) ASSERT_TRUE(c.SendChunk(chunk.substr(at, 997)));
    if (round == 0) {
      RawHttp::Head head = c.ReadHeader();
      ASSERT_EQ(head.status, 200);
      EXPECT_EQ(head.headers["transfer-encoding"], "chunked");
    }
    // This round's results come back while the request is still open.
    for (int i = 0; i < kPerRound; ++i) {
      std::string line = c.ReadLine();
      ASSERT_FALSE(line.empty()) << "result " << results.size() << " did not arrive";
      results.push_back(boost::json::parse(line));
    }
  }
  ASSERT_TRUE(c.SendChunk(""));
  EXPECT_TRUE(c.ReadLinesToEnd().empty());
  EXPECT_TRUE(c.ended());

  const int total = kRounds * kPerRound;
  std::map<Where, ConsumedRecord> held = ReadBack(*kafka_, topic, total);
  std::map<std::string, int64_t> last_offset;  // per key: offsets grow in the order sent
  for (int i = 0; i < total; ++i) {
    const boost::json::value& r = results[i];
    ASSERT_EQ(r.at("error_code").as_int64(), 200) << r;
    EXPECT_EQ(r.at("topic_name").as_string(), topic);
    const Where where{r.at("partition_id").as_int64(), r.at("offset").as_int64()};
    auto it = held.find(where);
    ASSERT_NE(it, held.end()) << "result " << i << ": nothing at " << where.first << "/"
                              << where.second;
    const ConsumedRecord& rec = it->second;
    const std::string key = absl::StrCat("key-", i % 10);
    EXPECT_EQ(rec.key, key);
    EXPECT_EQ(rec.value, absl::StrCat(R"({"n":)", i, "}"));
    EXPECT_EQ(rec.Header("n"), absl::StrCat(i));
    EXPECT_EQ(rec.partition, DefaultPartition(key, kPartitions));
    EXPECT_EQ(r.at("key").at("size").as_int64(), static_cast<int64_t>(key.size()));
    if (last_offset.count(key)) {
      EXPECT_GT(rec.offset, last_offset[key]) << key;
    }
    last_offset[key] = rec.offset;
  }
  // Nothing twice: the broker holds exactly the records streamed.
  absl::StatusOr<std::vector<int64_t>> ends = kafka_->EndOffsets(topic);
  ASSERT_THAT(ends, IsOk());
  int64_t sum = 0;
  for (int64_t e : *ends) sum += e;
  EXPECT_EQ(sum, total);
}

TEST_F(HttpStreamsRealKafkaTest, NdjsonBulkLinesLandWhereTheirResultLinesSay) {
  const std::string topic = "bulk-e2e";
  const int kPartitions = 5;
  ASSERT_THAT(kafka_->CreateTopic(topic, kPartitions), IsOk());
  const int kLines = 400;
  const int kBad = 137;  // one line that is not JSON: its own error, and the stream goes on
  std::string body;
  for (int i = 0; i < kLines; ++i) {
    if (i == kBad) {
      body += "{this is not json\n";
      continue;
    }
    absl::StrAppend(&body, R"({"key":"key-)", i % 10, R"(","value":{"n":)", i, "}");
    if (i % 7 == 0) absl::StrAppend(&body, R"(,"partition":)", i % kPartitions);
    absl::StrAppend(&body, R"(,"headers":[{"key":"n","value":")",
                    absl::Base64Escape(absl::StrCat(i)), "\"}]}\n");
  }
  RawHttp c(port());
  ASSERT_TRUE(c.Send("POST /bulk/topics/" + topic +
                     " HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/x-ndjson\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"));
  for (size_t at = 0; at < body.size(); at += 4096) ASSERT_TRUE(c.SendChunk(body.substr(at, 4096)));
  ASSERT_TRUE(c.SendChunk(""));
  RawHttp::Head head = c.ReadHeader();
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-type"], "application/x-ndjson");
  std::vector<std::string> lines = c.ReadLinesToEnd();
  EXPECT_TRUE(c.ended());
  ASSERT_EQ(lines.size(), static_cast<size_t>(kLines));

  std::map<Where, ConsumedRecord> held = ReadBack(*kafka_, topic, kLines - 1);
  std::map<std::string, int64_t> last_offset;
  for (int i = 0; i < kLines; ++i) {
    boost::json::value r = boost::json::parse(lines[i]);
    if (i == kBad) {
      EXPECT_EQ(r.at("error_code").as_int64(), 400) << lines[i];
      continue;
    }
    ASSERT_TRUE(r.as_object().contains("offset")) << "line " << i + 1 << ": " << lines[i];
    const Where where{r.at("partition").as_int64(), r.at("offset").as_int64()};
    auto it = held.find(where);
    ASSERT_NE(it, held.end()) << "line " << i + 1 << ": nothing at " << where.first << "/"
                              << where.second;
    const ConsumedRecord& rec = it->second;
    const std::string key = absl::StrCat("key-", i % 10);
    EXPECT_EQ(rec.key, absl::StrCat("\"", key, "\""));  // the JSON format keeps the JSON text
    EXPECT_EQ(rec.value, absl::StrCat(R"({"n":)", i, "}"));
    EXPECT_EQ(rec.Header("n"), absl::StrCat(i));
    EXPECT_EQ(rec.partition,
              i % 7 == 0 ? i % kPartitions : DefaultPartition(*rec.key, kPartitions));
    if (i % 7 != 0) {
      if (last_offset.count(key)) {
        EXPECT_GT(rec.offset, last_offset[key]) << key;
      }
      last_offset[key] = rec.offset;
    }
  }
  absl::StatusOr<std::vector<int64_t>> ends = kafka_->EndOffsets(topic);
  ASSERT_THAT(ends, IsOk());
  int64_t sum = 0;
  for (int64_t e : *ends) sum += e;
  EXPECT_EQ(sum, kLines - 1);
}

}  // namespace
}  // namespace saltproxy
