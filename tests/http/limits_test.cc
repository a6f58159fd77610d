// The HTTP server's bounds, each with its own small limit: requests and bytes in flight (429
// with Retry-After), header size (431), slow and idle clients (closed), connections per client
// address (closed on accept), shutdown (503).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "embedded_app.h"
#include "testing/http_client.h"
#include "testing/raw_http.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::RawHttp;
using ::saltproxy::testing::StartEmbeddedApp;
using ::saltproxy::testing::WaitUntil;
using ::testing::HasSubstr;
using std::chrono::milliseconds;

constexpr char kRecord[] = R"({"records":[{"value":1}]})";

// A request whose header promises `length` body bytes that never come: it is in flight.
std::unique_ptr<RawHttp> Stalled(uint16_t port, size_t length) {
  auto c = std::make_unique<RawHttp>(port);
  c->Send("POST /topics/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
          "Content-Length: " + std::to_string(length) + "\r\n\r\n{");
  return c;
}

// Waits until `predicate` holds, 60 s at most.
bool WaitFor(const std::function<bool()>& predicate) { return WaitUntil(predicate); }

TEST(HttpLimitsTest, RequestsInFlightOverTheLimitGet429WithRetryAfter) {
  std::unique_ptr<App> app = StartEmbeddedApp("max_in_flight_requests: 1");
  std::unique_ptr<RawHttp> first = Stalled(app->http_port(), 100);
  HttpResult r;
  ASSERT_TRUE(WaitFor([&] {
    r = HttpClient(app->http_port()).Post("/topics/orders", kRecord);
    if (r.status == 429) return true;
    // The stalled request may have come in while this one held the only slot, and been refused.
    first = Stalled(app->http_port(), 100);
    return false;
  }));
  EXPECT_EQ(r.headers["Retry-After"], "1");
  EXPECT_EQ(r.Json().at("error_code").as_int64(), 429);
  EXPECT_THAT(r.body, HasSubstr("max_in_flight_requests"));
  first.reset();  // the client goes; its slot is freed
  EXPECT_TRUE(WaitFor(
      [&] { return HttpClient(app->http_port()).Post("/topics/orders", kRecord).status == 200; }));
}

TEST(HttpLimitsTest, BodyBytesInFlightOverTheLimitGet429) {
  std::unique_ptr<App> app =
      StartEmbeddedApp("max_in_flight_bytes: 65536\n  max_body_bytes: 100000");
  std::unique_ptr<RawHttp> first = Stalled(app->http_port(), 60000);
  HttpResult r;
  ASSERT_TRUE(WaitFor([&] {
    r = HttpClient(app->http_port())
            .Post("/topics/orders", R"({"records":[{"value":")" + std::string(10000, 'x') + "\"}]}");
    if (r.status == 429) return true;
    // The stalled request may have come in while this one was in flight, and been the one
    // refused (60,000 + 10,023 bytes are over the limit whichever comes second).
    first = Stalled(app->http_port(), 60000);
    return false;
  }));
  EXPECT_THAT(r.body, HasSubstr("max_in_flight_bytes"));
  EXPECT_EQ(r.headers["Retry-After"], "1");
  // A small request still fits beside the stalled one.
  EXPECT_EQ(HttpClient(app->http_port()).Post("/topics/orders", kRecord).status, 200);
}

TEST(HttpLimitsTest, HeadersOverTheLimitGet431) {
  std::unique_ptr<App> app = StartEmbeddedApp("max_header_bytes: 1024");
  HttpResult r = HttpClient(app->http_port())
                     .Post("/topics/orders", kRecord, "application/json",
                           {{"X-Padding", std::string(2000, 'p')}});
  EXPECT_EQ(r.status, 431);
  EXPECT_THAT(r.body, HasSubstr("max_header_bytes"));
}

TEST(HttpLimitsTest, BodyAnnouncedOverTheLimitGets413BeforeItIsSent) {
  std::unique_ptr<App> app = StartEmbeddedApp("max_body_bytes: 1024");
  RawHttp c(app->http_port());
  c.Send("POST /topics/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n");
  RawHttp::Head head = c.ReadHeader();
  EXPECT_EQ(head.status, 413);
  EXPECT_EQ(head.headers["connection"], "close");
  EXPECT_THAT(c.ReadBody(head), HasSubstr("max_body_bytes"));
}

TEST(HttpLimitsTest, SlowBodyIsCutOffAndFreesItsSlot) {
  std::unique_ptr<App> app =
      StartEmbeddedApp("max_in_flight_requests: 1\n  request_timeout: 200ms");
  std::unique_ptr<RawHttp> slow = Stalled(app->http_port(), 100);
  EXPECT_TRUE(slow->ClosedWithin(milliseconds(5000)));
  EXPECT_TRUE(WaitFor(
      [&] { return HttpClient(app->http_port()).Post("/topics/orders", kRecord).status == 200; }));
}

TEST(HttpLimitsTest, IdleConnectionIsClosed) {
  std::unique_ptr<App> app = StartEmbeddedApp("idle_timeout: 200ms");
  RawHttp idle(app->http_port());
  EXPECT_TRUE(idle.ClosedWithin(milliseconds(5000)));
}

TEST(HttpLimitsTest, HeaderTrickledByteByByteTimesOut) {
  std::unique_ptr<App> app = StartEmbeddedApp("idle_timeout: 300ms");
  RawHttp slow(app->http_port());
  const std::string header = "POST /topics/orders HTTP/1.1\r\nHost: t\r\n";
  bool closed = false;
  for (size_t i = 0; i < header.size() && !closed; ++i) {
    closed = !slow.Send(header.substr(i, 1)) || slow.ClosedWithin(milliseconds(50));
  }
  EXPECT_TRUE(closed || slow.ClosedWithin(milliseconds(5000)));
}

// Connections over http.max_connections_per_address are closed on accept and counted; a place
// freed is taken again.
TEST(HttpLimitsTest, ConnectionsOverThePerAddressBoundAreRefused) {
  std::unique_ptr<App> app = StartEmbeddedApp("max_connections_per_address: 2");
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  std::unique_ptr<RawHttp> first, second;
  // Two open connections that have been answered (a closed connection of the start-up checks
  // may still hold a place for a moment: then they are tried again).
  ASSERT_TRUE(WaitFor([&] {
    first = std::make_unique<RawHttp>(app->http_port());
    second = std::make_unique<RawHttp>(app->http_port());
    return first->Send(healthz) && first->ReadHeader().status == 200 && second->Send(healthz) &&
           second->ReadHeader().status == 200;
  }));
  // A third from the same address is over the bound.
  RawHttp third(app->http_port());
  third.Send(healthz);
  EXPECT_EQ(third.ReadHeader().status, 0);  // closed without an answer
  first.reset();
  HttpResult metrics;
  ASSERT_TRUE(WaitFor([&] {
    metrics = HttpClient(app->http_port()).Get("/metrics");
    return metrics.status == 200;
  }));
  // At least the third; a /metrics request made before the first's close was seen counts too.
  const std::string series =
      "saltproxy_http_connections_refused_total{reason=\"max_connections_per_address\"} ";
  const size_t at = metrics.body.find(series);
  ASSERT_NE(at, std::string::npos) << metrics.body;
  EXPECT_GE(std::stod(metrics.body.substr(at + series.size())), 1);
}

TEST(HttpLimitsTest, ShutdownAnswers503OnOpenConnectionsAndEndsStreams) {
  std::unique_ptr<App> app = StartEmbeddedApp();
  HttpClient keep_alive(app->http_port());
  ASSERT_EQ(keep_alive.Post("/topics/orders", kRecord).status, 200);
  RawHttp stream(app->http_port());
  stream.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  stream.SendChunk("{\"value\":1}\n");
  ASSERT_EQ(stream.ReadHeader().status, 200);
  ASSERT_THAT(stream.ReadLine(), HasSubstr("offset"));
  std::thread stopper([&] { ASSERT_TRUE(app->Shutdown().ok()); });
  // The stream ends with a 503 line once the server drains; the body was never finished.
  std::string last = stream.ReadLine();
  EXPECT_THAT(last, HasSubstr("\"error_code\":503"));
  EXPECT_TRUE(stream.ReadLinesToEnd().empty());
  EXPECT_TRUE(stream.ended());
  HttpResult refused = keep_alive.Post("/topics/orders", kRecord);
  if (refused.error.empty()) {  // the connection may also be gone already
    EXPECT_EQ(refused.status, 503);
    EXPECT_EQ(refused.Json().at("error_code").as_int64(), 503);
  }
  stopper.join();
}

TEST(HttpLimitsTest, MalformedRequestOnOneConnectionLeavesAStreamOnAnotherAlone) {
  std::unique_ptr<App> app = StartEmbeddedApp();
  RawHttp stream(app->http_port());
  stream.Send("POST /bulk/topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  stream.SendChunk("{\"value\":1}\n");
  ASSERT_EQ(stream.ReadHeader().status, 200);
  RawHttp bad(app->http_port());
  bad.Send("POST /topics/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(bad.ReadHeader().status, 400);
  stream.SendChunk("{\"value\":2}\n");
  stream.SendChunk("");
  EXPECT_EQ(stream.ReadLinesToEnd().size(), 2u);
}

}  // namespace
}  // namespace saltproxy
