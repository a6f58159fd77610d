// The NDJSON bulk endpoint, in-process in front of librdkafka's mock cluster: one record a line
// in, one result a line out, in order, streaming both ways.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "embedded_app.h"
#include "testing/http_client.h"
#include "testing/raw_http.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::RawHttp;
using ::testing::HasSubstr;

class BulkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    app_ = saltproxy::testing::StartEmbeddedApp("stream_credit: 16\n  max_body_bytes: 4096")
               .release();
  }
  static void TearDownTestSuite() { delete app_; }
  uint16_t port() const { return app_->http_port(); }

  // POSTs `body` (with Content-Length) and returns the result lines.
  std::vector<std::string> Bulk(const std::string& body, const std::string& target =
                                                              "/bulk/topics/orders") {
    RawHttp c(port());
    c.Send("POST " + target + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    RawHttp::Head head = c.ReadHeader();
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers["content-type"], "application/x-ndjson");
    return c.ReadLinesToEnd();
  }

  static App* app_;
};
App* BulkTest::app_ = nullptr;

boost::json::value Parse(const std::string& s) { return boost::json::parse(s); }

TEST_F(BulkTest, OneResultLinePerRecordLineInOrder) {
  std::string body;
  for (int i = 0; i < 100; ++i) {
    body += R"({"key":"k)" + std::to_string(i) + R"(","value":{"n":)" + std::to_string(i) +
            R"(},"partition":)" + std::to_string(i % 4) + "}\n";
  }
  std::vector<std::string> lines = Bulk(body);
  ASSERT_EQ(lines.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(Parse(lines[i]).at("partition").as_int64(), i % 4) << lines[i];
    EXPECT_GE(Parse(lines[i]).at("offset").as_int64(), 0);
  }
}

TEST_F(BulkTest, LastLineWithoutNewlineAndBlankLinesAreFine) {
  std::vector<std::string> lines = Bulk("{\"value\":1}\n\n\r\n{\"value\":2}");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(Parse(lines[1]).as_object().contains("offset"));
}

TEST_F(BulkTest, BadLineGetsItsOwnErrorAndTheStreamGoesOn) {
  std::vector<std::string> lines =
      Bulk("{\"value\":1}\nnot json\n{\"value\":1,\"colour\":2}\n{\"value\":1,\"partition\":9}\n"
           "{\"value\":2}\n");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_TRUE(Parse(lines[0]).as_object().contains("offset"));
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 400);
  EXPECT_THAT(lines[1], HasSubstr("line 2"));
  EXPECT_EQ(Parse(lines[2]).at("error_code").as_int64(), 422);
  EXPECT_THAT(lines[2], HasSubstr("colour"));
  EXPECT_EQ(Parse(lines[3]).at("error_code").as_int64(), 40402);
  EXPECT_TRUE(Parse(lines[4]).as_object().contains("offset"));
}

TEST_F(BulkTest, BinaryFormatDecodesBase64) {
  std::vector<std::string> lines =
      Bulk("{\"key\":\"" + absl::Base64Escape("k") + "\",\"value\":\"" +
               absl::Base64Escape("v") + "\"}\n{\"value\":\"not base64!\"}\n",
           "/bulk/topics/orders?format=binary");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(Parse(lines[0]).as_object().contains("offset"));
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 422);
}

TEST_F(BulkTest, RoutingIsReportedWhenAskedFor) {
  std::vector<std::string> lines =
      Bulk("{\"key\":\"a\",\"value\":1}\n", "/bulk/topics/orders?routing=true");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Parse(lines[0]).at("routing").at("action").as_string(), "passed");
}

TEST_F(BulkTest, ChunkedRequestStreamsResultsBeforeItEnds) {
  RawHttp c(port());
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  c.SendChunk("{\"value\":1}\n{\"val");  // a record split across chunks
  ASSERT_EQ(c.ReadHeader().status, 200);
  EXPECT_THAT(c.ReadLine(), HasSubstr("offset"));
  c.SendChunk("ue\":2}\n");
  EXPECT_THAT(c.ReadLine(), HasSubstr("offset"));
  c.SendChunk("");
  EXPECT_TRUE(c.ReadLinesToEnd().empty());
  EXPECT_TRUE(c.ended());
}

TEST_F(BulkTest, ManyMoreRecordsThanTheCreditAreAllAnswered) {
  std::string body;
  for (int i = 0; i < 5000; ++i) body += "{\"value\":" + std::to_string(i) + "}\n";
  RawHttp c(port());
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (size_t at = 0; at < body.size(); at += 3000) c.SendChunk(body.substr(at, 3000));
  c.SendChunk("");
  ASSERT_EQ(c.ReadHeader().status, 200);
  std::vector<std::string> lines = c.ReadLinesToEnd();
  EXPECT_EQ(lines.size(), 5000u);
}

TEST_F(BulkTest, ConnectionIsReusedAfterAStream) {
  RawHttp c(port());
  const std::string body = "{\"value\":1}\n";
  for (int i = 0; i < 3; ++i) {
    c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body);
    ASSERT_EQ(c.ReadHeader().status, 200);
    EXPECT_EQ(c.ReadLinesToEnd().size(), 1u);
  }
}

TEST_F(BulkTest, RecordOverTheBodyLimitEndsTheStreamWith413) {
  RawHttp c(port());
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  c.SendChunk("{\"value\":1}\n{\"value\":\"" + std::string(5000, 'x'));
  ASSERT_EQ(c.ReadHeader().status, 200);
  std::vector<std::string> lines = c.ReadLinesToEnd();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Parse(lines[1]).at("error_code").as_int64(), 413);
  EXPECT_THAT(lines[1], HasSubstr("max_body_bytes"));
}

TEST_F(BulkTest, UnknownTopicIs404WithoutReadingTheBody) {
  RawHttp c(port());
  c.Send("POST /bulk/topics/nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 404);
  EXPECT_EQ(Parse(c.ReadBody(head)).at("error_code").as_int64(), 40401);
}

TEST_F(BulkTest, OtherContentTypeIs415) {
  HttpResult r = HttpClient(port()).Post("/bulk/topics/orders", "{\"value\":1}\n", "text/csv");
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 415);
}

TEST_F(BulkTest, AcceptWithoutNdjsonIs406BeforeTheStreamStarts) {
  RawHttp c(port());
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 406);
  EXPECT_EQ(Parse(c.ReadBody(head)).at("error_code").as_int64(), 406);
}

// Issue 20: a chunk that announces more than the client sends before it closes its side got
// 200 with no line at all, not even the results of the records before it, which were written.
TEST_F(BulkTest, BodyEndingInsideAChunkEndsWithALineSayingSo) {
  RawHttp c(port());
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
  c.SendChunk("{\"key\":\"a\",\"value\":1}\n");
  c.Send("100\r\n{\"key\":\"b\",\"value\":2}\n{\"key\":\"c\"");  // 256 announced, 36 sent
  c.ShutdownSend();
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 200);
  std::vector<std::string> lines = c.ReadLinesToEnd();
  // a, and b (whole within the cut chunk), are written and answered; then what went wrong.
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_GE(Parse(lines[0]).at("offset").as_int64(), 0);
  EXPECT_GE(Parse(lines[1]).at("offset").as_int64(), 0);
  EXPECT_EQ(Parse(lines[2]).at("error_code").as_int64(), 400);
  EXPECT_THAT(lines[2], HasSubstr("ended before its last chunk"));
  EXPECT_TRUE(c.ended());
}

// Issue 20: a 100 MB line (the limit is 4096 bytes here) ends the stream with a 413 line, which
// a client that reads only after sending the whole body still gets.
TEST_F(BulkTest, HundredMegabyteLineEndsWithA413Line) {
  RawHttp c(port());
  const std::string line = "{\"value\":\"" + std::string(100 << 20, 'x') + "\"}\n";
  c.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
         "Content-Length: " + std::to_string(line.size()) + "\r\n\r\n");
  c.Send(line);
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 200);
  std::vector<std::string> lines = c.ReadLinesToEnd();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Parse(lines[0]).at("error_code").as_int64(), 413);
  EXPECT_TRUE(c.ended());
}

TEST_F(BulkTest, GetIs405) {
  EXPECT_EQ(HttpClient(port()).Get("/bulk/topics/orders").status, 405);
}

}  // namespace
}  // namespace saltproxy
