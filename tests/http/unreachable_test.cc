// The API handler before a sink whose upstream cluster is unreachable (RecordSink::Admit): new
// produce requests of every shape are refused whole and at once with 503 and Retry-After, and
// nothing of them reaches the sink.
#include <gtest/gtest.h>

#include <optional>
#include <variant>

#include "boost/json.hpp"
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

class UnreachableTest : public ::testing::Test {
 protected:
  UnreachableTest() {
    sink.admit = absl::UnavailableError("the upstream Kafka cluster is unreachable");
  }
  std::optional<HttpResponse> Ask(HttpRequest request) {
    auto answer = std::make_shared<std::optional<HttpResponse>>();
    api.Handle(std::move(request),
               Responder([answer](HttpResponse&& r) { *answer = std::move(r); }));
    return *answer;
  }
  int64_t ErrorCode(const HttpResponse& r) {
    return boost::json::parse(r.body()).at("error_code").as_int64();
  }

  HttpConfig config;
  ::saltproxy::testing::HeldSink sink{4};
  Metrics metrics;
  ApiHandler api{config, sink, metrics, [] { return false; }, [] { return "c1"; }};
};

TEST_F(UnreachableTest, EveryProduceShapeIs503WithRetryAfterAtOnceAndNothingIsSent) {
  struct Case {
    std::string target, body, type;
    int64_t code;
  };
  for (const Case& c :
       {Case{"/topics/orders", R"({"records":[{"value":1},{"value":2}]})",
             "application/vnd.kafka.json.v2+json", 50301},
        Case{"/topics/orders/partitions/1", R"({"records":[{"value":1}]})",
             "application/vnd.kafka.json.v2+json", 50301},
        Case{"/v3/clusters/c1/topics/orders/records", R"({"value":{"type":"JSON","data":1}})",
             "application/json", 503},
        Case{"/v3/clusters/c1/topics/orders/records:batch",
             R"({"entries":[{"id":"a","value":{"type":"JSON","data":1}}]})", "application/json",
             503}}) {
    SCOPED_TRACE(c.target);
    std::optional<HttpResponse> r = Ask(Post(c.target, c.body, c.type));
    ASSERT_TRUE(r.has_value()) << "not answered at once";
    EXPECT_EQ(r->result_int(), 503) << r->body();
    EXPECT_EQ((*r)[http::field::retry_after], "1");
    EXPECT_EQ(ErrorCode(*r), c.code) << r->body();
    EXPECT_NE(r->body().find("unreachable"), std::string::npos) << r->body();
    EXPECT_TRUE(sink.records.empty());
  }
}

TEST_F(UnreachableTest, StreamsAreRefusedAtTheirOpening) {
  for (const std::string target :
       {"/bulk/topics/orders", "/v3/clusters/c1/topics/orders/records"}) {
    SCOPED_TRACE(target);
    HttpRequest header{http::verb::post, target, 11};
    header.set(http::field::transfer_encoding, "chunked");
    header.chunked(true);
    ASSERT_TRUE(api.IsStream(header));
    std::optional<StreamOpening> opening;
    api.OpenStream(header, [&](StreamOpening o) { opening = std::move(o); });
    ASSERT_TRUE(opening.has_value()) << "not answered at once";
    ASSERT_TRUE(std::holds_alternative<HttpResponse>(*opening)) << "the stream was opened";
    const HttpResponse& r = std::get<HttpResponse>(*opening);
    EXPECT_EQ(r.result_int(), 503) << r.body();
    EXPECT_EQ(r[http::field::retry_after], "1");
    EXPECT_EQ(ErrorCode(r), target[1] == 'b' ? 50301 : 503) << r.body();
  }
}

TEST_F(UnreachableTest, ARefusedIdempotentRequestIsProducedWhenRetriedLater) {
  const std::string body = R"({"records":[{"value":1}]})";
  const std::string type = "application/vnd.kafka.json.v2+json";
  std::optional<HttpResponse> refused = Ask(Post("/topics/orders", body, type, "k1"));
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->result_int(), 503);
  sink.admit = absl::OkStatus();
  auto answer = std::make_shared<std::optional<HttpResponse>>();
  api.Handle(Post("/topics/orders", body, type, "k1"),
             Responder([answer](HttpResponse&& r) { *answer = std::move(r); }));
  ASSERT_EQ(sink.records.size(), 1u) << "the 503 was replayed instead of producing";
  sink.Deliver(0, 7);
  ASSERT_TRUE(answer->has_value());
  EXPECT_EQ((*answer)->result_int(), 200) << (*answer)->body();
}

}  // namespace
}  // namespace saltproxy
