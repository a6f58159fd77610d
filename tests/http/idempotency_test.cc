// The Idempotency-Key cache on its own (replays, waits, conflicts, its bounds), and the API's
// produce answers through it, against a sink that fails or delivers on the test's word.
#include "proxy/http/idempotency.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "proxy/http/api.h"
#include "testing/held_sink.h"

namespace saltproxy {
namespace {

// A responder that stores what it was answered.
struct Captured {
  std::optional<HttpResponse> response;
  Responder Make() {
    return Responder([this](HttpResponse&& r) { response = std::move(r); });
  }
};

HttpResponse Ok(const std::string& body) {
  HttpResponse r{boost::beast::http::status::ok, 11};
  r.body() = body;
  return r;
}

const absl::Time kNow = absl::FromUnixSeconds(1'000'000);

TEST(IdempotencyCacheTest, RetryAfterTheAnswerGetsTheSameAnswerMarkedReplayed) {
  IdempotencyCache cache(absl::Minutes(5), 100);
  Captured first, retry;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  cache.Recording("k", std::move(r1))(Ok("first"));
  Responder r2 = retry.Make();
  ASSERT_TRUE(cache.Claim("k", 1, r2, kNow + absl::Seconds(1), 11));
  ASSERT_TRUE(retry.response);
  EXPECT_EQ(retry.response->body(), "first");
  EXPECT_EQ((*retry.response)["Idempotent-Replayed"], "true");
}

TEST(IdempotencyCacheTest, RetryWhileTheFirstIsInFlightWaitsForItsAnswer) {
  IdempotencyCache cache(absl::Minutes(5), 100);
  Captured first, retry;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  Responder recording = cache.Recording("k", std::move(r1));
  Responder r2 = retry.Make();
  ASSERT_TRUE(cache.Claim("k", 1, r2, kNow, 11));
  EXPECT_FALSE(retry.response);  // waiting, not produced again
  recording(Ok("first"));
  ASSERT_TRUE(retry.response);
  EXPECT_EQ(retry.response->body(), "first");
}

TEST(IdempotencyCacheTest, SameKeyWithAnotherBodyIs422) {
  IdempotencyCache cache(absl::Minutes(5), 100);
  Captured first, other;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  Responder r2 = other.Make();
  ASSERT_TRUE(cache.Claim("k", 2, r2, kNow, 11));
  ASSERT_TRUE(other.response);
  EXPECT_EQ(other.response->result_int(), 422);
  EXPECT_NE(other.response->body().find("different request body"), std::string::npos);
}

TEST(IdempotencyCacheTest, KeyIsForgottenAfterTheWindow) {
  IdempotencyCache cache(absl::Seconds(10), 100);
  Captured first;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  cache.Recording("k", std::move(r1))(Ok("first"));
  Captured later;
  Responder r2 = later.Make();
  EXPECT_FALSE(cache.Claim("k", 1, r2, kNow + absl::Seconds(11), 11));  // new again
}

TEST(IdempotencyCacheTest, CapacityBoundsTheKeysKept) {
  IdempotencyCache cache(absl::Minutes(5), 3);
  for (int i = 0; i < 10; ++i) {
    Captured c;
    Responder r = c.Make();
    ASSERT_FALSE(cache.Claim("k" + std::to_string(i), 1, r, kNow, 11));
    cache.Recording("k" + std::to_string(i), std::move(r))(Ok("x"));
  }
  EXPECT_LE(cache.size(), 3u);
}

TEST(IdempotencyCacheTest, FailedAnswerIsNotReplayed) {
  IdempotencyCache cache(absl::Minutes(5), 100);
  Captured first;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  cache.Recording("k", std::move(r1))(JsonError(11, 503, 503, "down"));
  Captured retry;
  Responder r2 = retry.Make();
  EXPECT_FALSE(cache.Claim("k", 1, r2, kNow, 11));  // runs again
}

TEST(IdempotencyCacheTest, AnAnswerMarkedNothingWrittenIsNotReplayedAndLosesTheMark) {
  IdempotencyCache cache(absl::Minutes(5), 100);
  Captured first;
  Responder r1 = first.Make();
  ASSERT_FALSE(cache.Claim("k", 1, r1, kNow, 11));
  HttpResponse answer = Ok("every record failed");
  answer.set(kNothingWrittenHeader, "1");
  cache.Recording("k", std::move(r1))(std::move(answer));
  ASSERT_TRUE(first.response);
  EXPECT_EQ(first.response->count(kNothingWrittenHeader), 0u);
  Captured retry;
  Responder r2 = retry.Make();
  EXPECT_FALSE(cache.Claim("k", 1, r2, kNow, 11));  // runs again
}

// Settles every record `sink` holds: written or failed, as `written` says, in order.
void Settle(::saltproxy::testing::HeldSink& sink, const std::vector<bool>& written) {
  for (size_t i = 0; i < sink.records.size(); ++i) {
    if (written[i]) {
      sink.Deliver(i, static_cast<int64_t>(i));
    } else {
      sink.Fail(i);
    }
  }
  sink.Clear();
}

class IdempotentProduceTest : public ::testing::Test {
 protected:
  HttpRequest Request(const std::string& target, const std::string& body,
                      const std::string& content_type, const char* key) {
    HttpRequest r{boost::beast::http::verb::post, target, 11};
    r.set(boost::beast::http::field::content_type, content_type);
    if (key) r.set("Idempotency-Key", key);
    r.body() = body;
    r.prepare_payload();
    return r;
  }
  // Sends `body` with `key` and settles its records as `written` says; the client's answer.
  HttpResponse Send(const std::string& target, const std::string& body,
                    const std::string& content_type, const char* key,
                    const std::vector<bool>& written) {
    Captured answer;
    api.Handle(Request(target, body, content_type, key), answer.Make());
    if (!answer.response) Settle(sink, written);
    EXPECT_TRUE(answer.response.has_value());
    return answer.response.value_or(HttpResponse{});
  }

  HttpConfig config;
  ::saltproxy::testing::HeldSink sink{4};
  Metrics metrics;
  ApiHandler api{config, sink, metrics, [] { return true; }, [] { return "c1"; }};
};

TEST_F(IdempotentProduceTest, AnswersWhereNothingWasWrittenAreNotReplayedOthersAre) {
  const std::string v2 = R"({"records":[{"value":1},{"value":2}]})";
  const std::string v2_type = "application/vnd.kafka.json.v2+json";
  const std::string v3 =
      R"({"entries":[{"id":"a","value":{"type":"JSON","data":1}},{"id":"b","value":{"type":"JSON","data":2}}]})";
  const std::string v3_target = "/v3/clusters/c1/topics/orders/records:batch";
  struct Case {
    std::string target, body, type;
  };
  for (const Case& c : {Case{"/topics/orders", v2, v2_type},
                        Case{v3_target, v3, "application/json"}}) {
    SCOPED_TRACE(c.target);
    // Every record failed: the retry produces them again.
    const std::string key = c.target + "-none";
    HttpResponse none = Send(c.target, c.body, c.type, key.c_str(), {false, false});
    EXPECT_EQ(none.count(kNothingWrittenHeader), 0u);
    Captured again;
    api.Handle(Request(c.target, c.body, c.type, key.c_str()), again.Make());
    EXPECT_FALSE(again.response.has_value()) << "replayed: " << again.response->body();
    ASSERT_EQ(sink.records.size(), 2u);
    Settle(sink, {true, true});
    ASSERT_TRUE(again.response.has_value());
    EXPECT_EQ((*again.response)["Idempotent-Replayed"], "");
    // One written: replayed, with nothing produced again.
    const std::string some = c.target + "-some";
    HttpResponse first = Send(c.target, c.body, c.type, some.c_str(), {true, false});
    Captured retry;
    api.Handle(Request(c.target, c.body, c.type, some.c_str()), retry.Make());
    ASSERT_TRUE(retry.response);
    EXPECT_EQ((*retry.response)["Idempotent-Replayed"], "true");
    EXPECT_EQ(retry.response->body(), first.body());
    EXPECT_TRUE(sink.records.empty());
    // Without a key the mark is never set.
    EXPECT_EQ(Send(c.target, c.body, c.type, nullptr, {false, false}).count(kNothingWrittenHeader),
              0u);
  }
}

}  // namespace
}  // namespace saltproxy
