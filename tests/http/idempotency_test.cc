// The Idempotency-Key cache on its own: replays, waits, conflicts, and its bounds.
#include "proxy/http/idempotency.h"

#include <gtest/gtest.h>

#include <optional>

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

}  // namespace
}  // namespace saltproxy
