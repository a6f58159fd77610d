// Confluent REST Proxy's v3 produce API, in-process in front of librdkafka's mock cluster:
// clusters, one record, records:batch, and the streaming mode (chunked, one result a record).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "embedded_app.h"
#include "testing/http_client.h"
#include "testing/raw_http.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::RawHttp;
using ::testing::HasSubstr;

class V3ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    app_ = saltproxy::testing::StartEmbeddedApp("stream_credit: 8").release();
    HttpResult r = HttpClient(app_->http_port()).Get("/v3/clusters");
    cluster_ = std::string(r.Json().at("data").at(0).at("cluster_id").as_string());
  }
  static void TearDownTestSuite() { delete app_; }

  uint16_t port() const { return app_->http_port(); }
  std::string Records(const std::string& topic = "orders") const {
    return "/v3/clusters/" + cluster_ + "/topics/" + topic + "/records";
  }
  HttpResult Post(const std::string& target, const std::string& body,
                  const std::map<std::string, std::string>& headers = {}) {
    return HttpClient(port()).Post(target, body, "application/json", headers);
  }
  // Sends `body` as one chunked v3 streaming request; returns the result lines.
  std::vector<std::string> Stream(const std::string& body, const std::string& query = "") {
    RawHttp c(port());
    c.Send("POST " + Records() + query +
           " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\n\r\n");
    c.SendChunk(body);
    c.SendChunk("");
    RawHttp::Head head = c.ReadHeader();
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers["transfer-encoding"], "chunked");
    std::vector<std::string> lines = c.ReadLinesToEnd();
    EXPECT_TRUE(c.ended());
    return lines;
  }

  static App* app_;
  static std::string cluster_;
};
App* V3ApiTest::app_ = nullptr;
std::string V3ApiTest::cluster_;

boost::json::value Parse(const std::string& s) { return boost::json::parse(s); }

TEST_F(V3ApiTest, ClustersListsTheOneUpstreamClusterWithItsId) {
  HttpResult r = HttpClient(port()).Get("/v3/clusters");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json().at("kind").as_string(), "KafkaClusterList");
  ASSERT_EQ(r.Json().at("data").as_array().size(), 1u);
  EXPECT_FALSE(cluster_.empty());
  HttpResult one = HttpClient(port()).Get("/v3/clusters/" + cluster_);
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(one.Json().at("cluster_id").as_string(), cluster_);
  EXPECT_EQ(HttpClient(port()).Get("/v3/clusters/other").status, 404);
}

TEST_F(V3ApiTest, OneRecordAnswersPartitionOffsetAndSizes) {
  HttpResult r = Post(Records(), R"({"key":{"type":"STRING","data":"user-1"},
      "value":{"type":"JSON","data":{"n":1}},
      "headers":[{"name":"trace","value":"MQ=="}],"timestamp":"2026-11-24T21:30:00.123Z"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto& body = r.Json();
  EXPECT_EQ(body.at("error_code").as_int64(), 200);
  EXPECT_EQ(body.at("cluster_id").as_string(), cluster_);
  EXPECT_EQ(body.at("topic_name").as_string(), "orders");
  EXPECT_GE(body.at("partition_id").as_int64(), 0);
  EXPECT_GE(body.at("offset").as_int64(), 0);
  EXPECT_EQ(body.at("key").at("type").as_string(), "STRING");
  EXPECT_EQ(body.at("key").at("size").as_int64(), 6);
  EXPECT_EQ(body.at("value").at("type").as_string(), "JSON");
  EXPECT_EQ(body.at("value").at("size").as_int64(), 7);  // {"n":1}
  EXPECT_FALSE(body.as_object().contains("routing"));
}

TEST_F(V3ApiTest, PartitionIdIsKept) {
  HttpResult r = Post(Records(), R"({"partition_id":2,"value":{"type":"BINARY","data":"eA=="}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json().at("partition_id").as_int64(), 2);
  EXPECT_EQ(r.Json().at("value").at("size").as_int64(), 1);
}

TEST_F(V3ApiTest, RoutingIsReportedWhenAskedFor) {
  HttpResult r = Post(Records() + "?routing=true",
                      R"({"key":{"type":"JSON","data":"a"},"value":{"type":"JSON","data":1}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json().at("routing").at("action").as_string(), "passed");
  EXPECT_EQ(r.Json().at("routing").at("partition"), r.Json().at("partition_id"));
}

TEST_F(V3ApiTest, UnknownClusterIs404) {
  HttpResult r =
      Post("/v3/clusters/nope/topics/orders/records", R"({"value":{"type":"JSON","data":1}})");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 404);
  EXPECT_THAT(r.body, HasSubstr("cluster not found"));
}

TEST_F(V3ApiTest, UnknownTopicIs404) {
  HttpResult r = Post(Records("no-such-topic"), R"({"value":{"type":"JSON","data":1}})");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("topic not found: no-such-topic"));
}

TEST_F(V3ApiTest, UnknownPartitionIs404) {
  HttpResult r = Post(Records(), R"({"partition_id":9,"value":{"type":"JSON","data":1}})");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("partition not found"));
}

// Issue 20, the doc's produce_record_empty_request_body: 422, not "malformed JSON".
TEST_F(V3ApiTest, EmptyBodyIs422WithTheDocsMessage) {
  for (const char* body : {"", "  \n"}) {
    HttpResult r = Post(Records(), body);
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_EQ(r.Json().at("error_code").as_int64(), 422);
    EXPECT_EQ(r.Json().at("message").as_string(),
              "Payload error. Request body is empty. Data is required.");
  }
}

TEST_F(V3ApiTest, MalformedJsonIs400) {
  HttpResult r = Post(Records(), R"({"value":)");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 400);
}

// Without a schema registry Confluent answers a schema type in the record's own result: v3's
// error_code is an HTTP status, 422, and the message starts "Error: 42206 : Payload error.",
// HTTP 200 as for every v3 record result.
TEST_F(V3ApiTest, SchemaTypesAre422With42206SayingNoSchemaRegistry) {
  HttpResult r = Post(Records(), R"({"value":{"type":"AVRO","data":1}})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 422);
  EXPECT_THAT(r.body, HasSubstr("Error: 42206 : Payload error. Schema Registry must be "
                                "configured when using schemas."));
  EXPECT_THAT(r.body, HasSubstr("schema registry"));
}

// BINARY data is read as Confluent reads it (Guava): trailing '=' optional; a header value
// must be padded (the header test above).
TEST_F(V3ApiTest, BinaryDataMayLeaveOutItsPadding) {
  HttpResult r = Post(Records(), R"({"value":{"type":"BINARY","data":"YWI"}})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.Json().as_object().contains("error_code") &&
               !r.Json().at("error_code").is_null() &&
               r.Json().at("error_code").as_int64() != 200)
      << r.body;
  EXPECT_TRUE(r.Json().as_object().contains("offset")) << r.body;
  HttpResult bad = Post(Records(), R"({"value":{"type":"BINARY","data":"YWJjZ"}})");
  EXPECT_EQ(bad.Json().at("error_code").as_int64(), 400) << bad.body;
}

// Issue 20: the doc's examples without "type" (latest_schema, schema_id_and_schema_version)
// mean the topic's schema from Schema Registry; with none, Confluent answers 422 (42206 in the
// message). They were
// stored as JSON here.
TEST_F(V3ApiTest, RecordsWithoutTypeAreAnsweredAsNeedingASchemaRegistry) {
  for (const char* body :
       {R"({"key":{"data":1000},"value":{"data":"foobar"}})",
        R"({"key":{"subject_name_strategy":"TOPIC_NAME","schema_id":1,"data":1000},)"
        R"("value":{"schema_version":1,"data":{"foo":"bar"}}})",
        R"({"value":{"data":{"n":1}}})"}) {
    SCOPED_TRACE(body);
    HttpResult r = Post(Records(), body);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Json().at("error_code").as_int64(), 422) << r.body;
    EXPECT_THAT(r.body, HasSubstr("42206"));
    EXPECT_THAT(r.body, HasSubstr("schema registry"));
    EXPECT_FALSE(r.Json().as_object().contains("offset"));
  }
}

// Issue 20, the doc's header_not_base64_encoded example: a header value that is not padded
// base64 is a 400 (it was stored as whatever absl::Base64Unescape made of it).
TEST_F(V3ApiTest, HeaderValueNotBase64Is400) {
  for (const char* value : {"abc", "", "SGVhZGVyLTE"}) {
    SCOPED_TRACE(value);
    HttpResult r = Post(Records(), absl::StrCat(R"({"headers":[{"name":"Header-1","value":")",
                                                value,
                                                R"("}],"value":{"type":"STRING","data":"x"}})"));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.Json().at("error_code").as_int64(), 400);
    EXPECT_THAT(r.body, HasSubstr("headers"));
  }
  HttpResult ok = Post(Records(), R"({"headers":[{"name":"Header-1","value":"SGVhZGVyLTE="}],
      "value":{"type":"STRING","data":"x"}})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.Json().at("error_code").as_int64(), 200);
}

// Issue 20: Confluent answers BINARY data that is not base64 in the record's result: HTTP 200
// with error_code 400 (its produceBinaryWithInvalidData_throwsBadRequest), not an HTTP 400.
TEST_F(V3ApiTest, BadBinaryDataIsTheRecordsOwnError400) {
  HttpResult r = Post(Records(), R"({"key":{"type":"BINARY","data":1},)"
                                 R"("value":{"type":"BINARY","data":"fooba"}})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 400);
  EXPECT_THAT(r.body, HasSubstr("base64"));
}

TEST_F(V3ApiTest, UnknownFieldIs400) {
  HttpResult r = Post(Records(), R"({"value":{"type":"JSON","data":1},"colour":"red"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("colour"));
}

TEST_F(V3ApiTest, BadTimestampIs400) {
  HttpResult r = Post(Records(), R"({"value":{"type":"JSON","data":1},"timestamp":"yesterday"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("RFC 3339"));
}

TEST_F(V3ApiTest, AcceptOtherThanJsonIs406) {
  HttpResult r =
      Post(Records(), R"({"value":{"type":"JSON","data":1}})", {{"Accept", "text/html"}});
  EXPECT_EQ(r.status, 406) << r.body;
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 406);
  HttpResult ok = Post(Records(), R"({"value":{"type":"JSON","data":1}})",
                       {{"Accept", "text/html;q=0.9, application/json;q=0.1"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  RawHttp c(port());
  c.Send("GET /v3/clusters HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\n\r\n");
  EXPECT_EQ(c.ReadHeader().status, 406);
  RawHttp s(port());
  s.Send("POST " + Records() + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
         "Accept: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(s.ReadHeader().status, 406);
}

TEST_F(V3ApiTest, NonJsonContentTypeIs415) {
  HttpResult r =
      HttpClient(port()).Post(Records(), R"({"value":{"type":"JSON","data":1}})", "text/plain");
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 415);
}

TEST_F(V3ApiTest, BatchAnswers207WithSuccessesAndFailuresById) {
  HttpResult r = Post(Records() + ":batch", R"({"entries":[
      {"id":"a","key":{"type":"JSON","data":"k"},"value":{"type":"JSON","data":1}},
      {"id":"b","value":{"type":"PROTOBUF","data":1}},
      {"id":"c","partition_id":99,"value":{"type":"JSON","data":1}},
      {"id":"d","value":{"type":"BINARY","data":"eHl6"}}]})");
  ASSERT_EQ(r.status, 207) << r.body;
  const auto& successes = r.Json().at("successes").as_array();
  const auto& failures = r.Json().at("failures").as_array();
  ASSERT_EQ(successes.size(), 2u);
  EXPECT_EQ(successes[0].at("id").as_string(), "a");
  EXPECT_EQ(successes[1].at("id").as_string(), "d");
  EXPECT_EQ(successes[1].at("value").at("size").as_int64(), 3);
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].at("id").as_string(), "b");
  EXPECT_EQ(failures[0].at("error_code").as_int64(), 422);
  EXPECT_EQ(failures[1].at("id").as_string(), "c");
  EXPECT_EQ(failures[1].at("error_code").as_int64(), 404);
}

TEST_F(V3ApiTest, BatchEntriesNeedUniqueIds) {
  EXPECT_EQ(
      Post(Records() + ":batch", R"({"entries":[{"value":{"type":"JSON","data":1}}]})").status,
      400);
  HttpResult twice = Post(Records() + ":batch",
                          R"({"entries":[{"id":"x","value":{"type":"JSON","data":1}},)"
                          R"({"id":"x","value":{"type":"JSON","data":2}}]})");
  EXPECT_EQ(twice.status, 400);
  EXPECT_THAT(twice.body, HasSubstr("used twice"));
  EXPECT_EQ(Post(Records() + ":batch", R"({"entries":[]})").status, 400);
}

TEST_F(V3ApiTest, StreamingAnswersOneResultPerRecordInOrder) {
  std::string body;
  for (int i = 0; i < 50; ++i) {
    body += R"({"partition_id":)" + std::to_string(i % 4) + R"(,"value":{"type":"JSON","data":)" +
            std::to_string(i) + "}}";
  }
  std::vector<std::string> lines = Stream(body);
  ASSERT_EQ(lines.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    boost::json::value v = Parse(lines[i]);
    EXPECT_EQ(v.at("error_code").as_int64(), 200) << lines[i];
    EXPECT_EQ(v.at("partition_id").as_int64(), i % 4) << "result " << i << " out of order";
  }
}

TEST_F(V3ApiTest, StreamingResultsFlowWhileTheRequestIsStillOpen) {
  RawHttp c(port());
  c.Send("POST " + Records() +
         " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
  c.SendChunk(R"({"value":{"type":"JSON","data":1}})");
  ASSERT_EQ(c.ReadHeader().status, 200);
  EXPECT_THAT(c.ReadLine(), HasSubstr(R"("error_code":200)"));  // before the body ended
  c.SendChunk(R"({"value":{"type":"JSON","data":2}} {"value":{"type":"JSON","data":3}})");
  EXPECT_THAT(c.ReadLine(), HasSubstr(R"("error_code":200)"));
  EXPECT_THAT(c.ReadLine(), HasSubstr(R"("error_code":200)"));
  c.SendChunk("");
  EXPECT_TRUE(c.ReadLinesToEnd().empty());
  EXPECT_TRUE(c.ended());
}

TEST_F(V3ApiTest, StreamingInvalidRecordGetsItsErrorAndTheStreamGoesOn) {
  std::vector<std::string> lines =
      Stream(R"({"value":{"type":"JSON","data":1}}{"value":{"type":"AVRO","data":1}})"
             R"({"partition_id":7,"value":{"type":"JSON","data":1}})"
             R"({"value":{"type":"JSON","data":3}})"
             R"({"value":{"type":"BINARY","data":"fooba"}}{"value":{"data":1}})"
             R"({"value":{"type":"JSON","data":4}})");
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(Parse(lines[0]).at("error_code").as_int64(), 200);
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 422);
  EXPECT_EQ(Parse(lines[2]).at("error_code").as_int64(), 404);
  EXPECT_EQ(Parse(lines[3]).at("error_code").as_int64(), 200);
  EXPECT_EQ(Parse(lines[4]).at("error_code").as_int64(), 400);
  EXPECT_EQ(Parse(lines[5]).at("error_code").as_int64(), 422);
  EXPECT_EQ(Parse(lines[6]).at("error_code").as_int64(), 200);
}

// Issue 20: a v3 stream whose client closes its side inside a chunk ends, after the result of
// every record read, with a line saying so (it closed with nothing written).
TEST_F(V3ApiTest, StreamingBodyCutInsideAChunkEndsWithALineSayingSo) {
  RawHttp c(port());
  c.Send("POST " + Records() +
         " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
  c.SendChunk(R"({"value":{"type":"JSON","data":1}})");
  c.Send("400\r\n{\"value\":{\"type\":\"JSON\",");  // 1024 announced, fewer sent
  c.ShutdownSend();
  ASSERT_EQ(c.ReadHeader().status, 200);
  std::vector<std::string> lines = c.ReadLinesToEnd();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Parse(lines[0]).at("error_code").as_int64(), 200);
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 400);
  EXPECT_THAT(lines[1], HasSubstr("ended before its last chunk"));
  EXPECT_TRUE(c.ended());
}

TEST_F(V3ApiTest, StreamingMalformedJsonEndsTheStreamAfterAnError) {
  std::vector<std::string> lines = Stream(
      R"({"value":{"type":"JSON","data":1}} {"value":]] {"value":{"type":"JSON","data":2}})");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Parse(lines[0]).at("error_code").as_int64(), 200);
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 400);
  EXPECT_THAT(lines[1], HasSubstr("the stream ends here"));
}

TEST_F(V3ApiTest, StreamingBeyondTheCreditAnswersEveryRecord) {
  std::string body;
  for (int i = 0; i < 2000; ++i) {
    body += R"({"value":{"type":"JSON","data":)" + std::to_string(i) + "}}\n";
  }
  std::vector<std::string> lines = Stream(body);
  ASSERT_EQ(lines.size(), 2000u);  // 250 times the credit of 8
  for (const std::string& l : lines) EXPECT_THAT(l, HasSubstr(R"("error_code":200)"));
}

TEST_F(V3ApiTest, StreamingToAnUnknownTopicIs404BeforeTheBody) {
  RawHttp c(port());
  c.Send("POST " + Records("no-such-topic") +
         " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 404);
  EXPECT_THAT(c.ReadBody(head), HasSubstr("topic not found"));
}

}  // namespace
}  // namespace saltproxy
