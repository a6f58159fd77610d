// The API handler before a sink whose upstream cluster is slower than the load
// (RecordSink::Admit refuses as slow, RecordSink::Congested): new produce requests of every
// shape are refused whole and at once with 429, the refusal's Retry-After and Confluent's
// 42901 (v3: 429), and nothing of them reaches the sink; an open stream stops taking records
// while the sink is congested and takes them again after.
#include <gtest/gtest.h>

#include <optional>
#include <variant>

#include "boost/json.hpp"
#include "proxy/common/retry_after.h"
#include "proxy/http/api.h"
#include "testing/held_sink.h"

namespace saltproxy {
namespace {

namespace http = boost::beast::http;

HttpRequest Post(const std::string& target, const std::string& body,
                 const std::string& content_type, const char* idempotency_key = nullptr) {
  HttpRequest r{http::verb::post, target, 11};
  r.set(http::field::content_type, content_type);
  if (idempotency_key) r.set("Idempotency-Key", idempotency_key);
  r.body() = body;
  r.prepare_payload();
  return r;
}

HttpRequest StreamHeader(const std::string& target) {
  HttpRequest header{http::verb::post, target, 11};
  header.set(http::field::transfer_encoding, "chunked");
  header.chunked(true);
  return header;
}

class Results : public StreamResults {
 public:
  void Complete(uint64_t, std::string text) override { lines.push_back(std::move(text)); }
  std::vector<std::string> lines;
};

class SlowUpstreamTest : public ::testing::Test {
 protected:
  SlowUpstreamTest() {
    sink.admit = WithRetryAfter(
        absl::ResourceExhaustedError("the upstream Kafka cluster is slower than the load"),
        absl::Milliseconds(2500));
  }
  std::optional<HttpResponse> Ask(HttpRequest request) {
    auto answer = std::make_shared<std::optional<HttpResponse>>();
    api.Handle(std::move(request),
               Responder([answer](HttpResponse&& r) { *answer = std::move(r); }));
    return *answer;
  }
  StreamOpening Open(const std::string& target) {
    std::optional<StreamOpening> opening;
    api.OpenStream(StreamHeader(target), [&](StreamOpening o) { opening = std::move(o); });
    EXPECT_TRUE(opening.has_value()) << "not answered at once";
    return opening ? std::move(*opening) : StreamOpening(HttpResponse{});
  }
  int64_t ErrorCode(const HttpResponse& r) {
    return boost::json::parse(r.body()).at("error_code").as_int64();
  }

  HttpConfig config;
  ::saltproxy::testing::HeldSink sink{4};
  Metrics metrics;
  ApiHandler api{config, sink, metrics, [] { return false; }, [] { return "c1"; }};
};

TEST_F(SlowUpstreamTest, EveryProduceShapeIs429WithItsRetryAfterAtOnceAndNothingIsSent) {
  struct Case {
    std::string target, body, type;
    int64_t code;
  };
  for (const Case& c :
       {Case{"/topics/orders", R"({"records":[{"value":1},{"value":2}]})",
             "application/vnd.kafka.json.v2+json", 42901},
        Case{"/topics/orders/partitions/1", R"({"records":[{"value":1}]})",
             "application/vnd.kafka.json.v2+json", 42901},
        Case{"/v3/clusters/c1/topics/orders/records", R"({"value":{"type":"JSON","data":1}})",
             "application/json", 429},
        Case{"/v3/clusters/c1/topics/orders/records:batch",
             R"({"entries":[{"id":"a","value":{"type":"JSON","data":1}}]})", "application/json",
             429}}) {
    SCOPED_TRACE(c.target);
    std::optional<HttpResponse> r = Ask(Post(c.target, c.body, c.type));
    ASSERT_TRUE(r.has_value()) << "not answered at once";
    EXPECT_EQ(r->result_int(), 429) << r->body();
    EXPECT_EQ((*r)[http::field::retry_after], "3");  // 2.5 s, in whole seconds
    EXPECT_EQ(ErrorCode(*r), c.code) << r->body();
    EXPECT_NE(r->body().find("slower than the load"), std::string::npos) << r->body();
    EXPECT_TRUE(sink.records.empty());
  }
}

TEST_F(SlowUpstreamTest, StreamsAreRefusedAtTheirOpeningWith429) {
  for (const std::string target :
       {"/bulk/topics/orders", "/v3/clusters/c1/topics/orders/records"}) {
    SCOPED_TRACE(target);
    StreamOpening opening = Open(target);
    ASSERT_TRUE(std::holds_alternative<HttpResponse>(opening)) << "the stream was opened";
    const HttpResponse& r = std::get<HttpResponse>(opening);
    EXPECT_EQ(r.result_int(), 429) << r.body();
    EXPECT_EQ(r[http::field::retry_after], "3");
    EXPECT_EQ(ErrorCode(r), target[1] == 'b' ? 42901 : 429) << r.body();
  }
}

// A stream opened before the cluster slowed down keeps its connection: it stops taking records
// (the session retries the same one shortly, reading nothing more) rather than failing them.
TEST_F(SlowUpstreamTest, AnOpenStreamStopsTakingRecordsWhileCongestedAndGoesOnAfter) {
  sink.admit = absl::OkStatus();
  for (const std::string target :
       {"/bulk/topics/orders", "/v3/clusters/c1/topics/orders/records"}) {
    SCOPED_TRACE(target);
    sink.Clear();
    StreamOpening opening = Open(target);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<StreamHandler>>(opening));
    StreamHandler& stream = *std::get<std::unique_ptr<StreamHandler>>(opening);
    const std::string data = target[1] == 'b' ? "{\"value\":1}\n{\"value\":2}\n"
                                              : R"({"value":{"type":"JSON","data":1}})"
                                                R"({"value":{"type":"JSON","data":2}})";
    auto results = std::make_shared<Results>();

    sink.congested = true;
    StreamHandler::Consumed c = stream.Consume(data, /*last=*/false, 10, 0, results);
    EXPECT_TRUE(c.retry);
    EXPECT_EQ(c.records, 0);
    EXPECT_EQ(c.bytes, 0u);
    EXPECT_TRUE(sink.records.empty());
    EXPECT_TRUE(results->lines.empty()) << "a record was failed rather than held";

    sink.congested = false;
    c = stream.Consume(data, /*last=*/true, 10, 0, results);
    EXPECT_FALSE(c.retry);
    EXPECT_EQ(c.records, 2);
    EXPECT_EQ(sink.records.size(), 2u);
    sink.Deliver(0, 1);
    sink.Deliver(1, 2);
    EXPECT_EQ(results->lines.size(), 2u);
  }
}

TEST_F(SlowUpstreamTest, ARefusedIdempotentRequestIsProducedWhenRetriedLater) {
  const std::string body = R"({"records":[{"value":1}]})";
  const std::string type = "application/vnd.kafka.json.v2+json";
  std::optional<HttpResponse> refused = Ask(Post("/topics/orders", body, type, "k1"));
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->result_int(), 429);
  sink.admit = absl::OkStatus();
  auto answer = std::make_shared<std::optional<HttpResponse>>();
  api.Handle(Post("/topics/orders", body, type, "k1"),
             Responder([answer](HttpResponse&& r) { *answer = std::move(r); }));
  ASSERT_EQ(sink.records.size(), 1u) << "the 429 was replayed instead of producing";
  sink.Deliver(0, 7);
  ASSERT_TRUE(answer->has_value());
  EXPECT_EQ((*answer)->result_int(), 200) << (*answer)->body();
}

}  // namespace
}  // namespace saltproxy
