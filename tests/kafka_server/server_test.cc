// The Kafka listener's framing and ordering, with a handler that answers on demand; and what
// peers can make it hold (the byte budget, the frame timeout, the connection bounds).
#include "proxy/kafka_server/server.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <poll.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>
#include <thread>

#include "testing/process.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

namespace net = boost::asio;
using ::saltproxy::testing::ResidentBytes;
using ::saltproxy::testing::WaitUntil;
using tcp = net::ip::tcp;

// Keeps replies until the test releases them, in any order; or, with `echo`, answers each frame
// at once with "re:" and the frame.
class HeldHandler : public FrameHandler {
 public:
  void Handle(std::string frame, uint64_t, FrameReply reply) override {
    if (echo) {
      reply.Respond("re:" + frame);
      return;
    }
    std::lock_guard<std::mutex> lock(mu);
    frames.push_back(frame);
    replies.push_back(std::move(reply));
    cv.notify_all();
  }
  std::atomic<bool> echo{false};
  bool WaitFrames(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return frames.size() >= n; });
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> frames;
  std::deque<FrameReply> replies;
};

std::string Frame(const std::string& payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 8), static_cast<char>(n)};
  return out + payload;
}

std::string ReadFrame(tcp::socket& socket, boost::system::error_code& ec) {
  uint8_t size[4];
  net::read(socket, net::buffer(size), ec);
  if (ec) return "";
  uint32_t n = (uint32_t{size[0]} << 24) | (uint32_t{size[1]} << 16) | (uint32_t{size[2]} << 8) |
               size[3];
  std::string payload(n, '\0');
  net::read(socket, net::buffer(payload), ec);
  return payload;
}

// The value of one series in the Prometheus text, e.g. Value(text, "x_total{reason=\"a\"}");
// -1 when absent.
double Value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

std::string SizePrefix(uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
}

class KafkaServerTest : public ::testing::Test {
 protected:
  void Start(int max_in_flight = 16, uint32_t max_frame = 1024) {
    options.listen = {"127.0.0.1", 0};
    options.max_in_flight_per_connection = max_in_flight;
    options.max_frame_bytes = max_frame;
    server = std::make_unique<KafkaServer>(options, handler, metrics);
    ASSERT_TRUE(server->Start().ok());
  }
  tcp::socket Connect(const char* from = nullptr) {
    tcp::socket s(ioc);
    if (from != nullptr) {
      s.open(tcp::v4());
      s.bind({net::ip::make_address(from), 0});
    }
    s.connect({net::ip::make_address("127.0.0.1"), server->port()});
    return s;
  }
  double Metric(const std::string& series) { return Value(metrics.Serialize(), series); }
  // Polls a metric until `done` holds, 60 s at most (a generous deadline, not a measurement).
  bool WaitMetric(const std::string& series, const std::function<bool(double)>& done) {
    return WaitUntil([&] { return done(Metric(series)); });
  }
  KafkaServerOptions options;
  void TearDown() override {
    {
      // Unanswered replies post to the server's io_context: drop them while it is alive.
      std::lock_guard<std::mutex> lock(handler.mu);
      handler.replies.clear();
    }
    if (server) server->Shutdown(absl::ZeroDuration());
  }
  net::io_context ioc;
  Metrics metrics;
  HeldHandler handler;
  std::unique_ptr<KafkaServer> server;
};

TEST_F(KafkaServerTest, AnswersComeBackInRequestOrderWhateverOrderTheyComplete) {
  Start();
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("one") + Frame("two") + Frame("three")));
  ASSERT_TRUE(handler.WaitFrames(3));
  EXPECT_EQ(handler.frames[0], "one");
  handler.replies[2].Respond("answer-3");
  handler.replies[1].Respond("answer-2");
  handler.replies[0].Respond("answer-1");
  boost::system::error_code ec;
  EXPECT_EQ(ReadFrame(s, ec), "answer-1");
  EXPECT_EQ(ReadFrame(s, ec), "answer-2");
  EXPECT_EQ(ReadFrame(s, ec), "answer-3");
}

TEST_F(KafkaServerTest, RequestWithoutResponseIsSkipped) {
  Start();
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("acks0") + Frame("acks1")));
  ASSERT_TRUE(handler.WaitFrames(2));
  handler.replies[0].NoResponse();
  handler.replies[1].Respond("done");
  boost::system::error_code ec;
  EXPECT_EQ(ReadFrame(s, ec), "done");
}

TEST_F(KafkaServerTest, PipeliningStopsReadingAtMaxInFlight) {
  Start(/*max_in_flight=*/2);
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("a") + Frame("b") + Frame("c")));
  ASSERT_TRUE(handler.WaitFrames(2));
  {
    std::unique_lock<std::mutex> lock(handler.mu);
    // The third frame is not read while two are unanswered.
    EXPECT_FALSE(handler.cv.wait_for(lock, std::chrono::milliseconds(200),
                                     [&] { return handler.frames.size() >= 3; }));
  }
  handler.replies[0].Respond("1");
  ASSERT_TRUE(handler.WaitFrames(3));
  EXPECT_EQ(handler.frames[2], "c");
}

TEST_F(KafkaServerTest, OversizedFrameClosesOnlyThatConnection) {
  Start(16, /*max_frame=*/64);
  tcp::socket bad = Connect();
  tcp::socket good = Connect();
  net::write(bad, net::buffer(Frame(std::string(100, 'x'))));
  boost::system::error_code ec;
  ReadFrame(bad, ec);
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  net::write(good, net::buffer(Frame("fine")));
  ASSERT_TRUE(handler.WaitFrames(1));
  handler.replies[0].Respond("ok");
  EXPECT_EQ(ReadFrame(good, ec), "ok");
}

TEST_F(KafkaServerTest, NegativeSizeClosesTheConnection) {
  Start();
  tcp::socket s = Connect();
  net::write(s, net::buffer(std::string("\xff\xff\xff\xf0", 4)));
  boost::system::error_code ec;
  ReadFrame(s, ec);
  EXPECT_TRUE(ec);
  EXPECT_NE(metrics.Serialize().find("saltproxy_kafka_protocol_errors_total{reason=\"negative_size\"} 1"),
            std::string::npos);
}

TEST_F(KafkaServerTest, HandlerMayCloseTheConnection) {
  Start();
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("garbage")));
  ASSERT_TRUE(handler.WaitFrames(1));
  handler.replies[0].Close("cannot decode the request header");
  boost::system::error_code ec;
  ReadFrame(s, ec);
  EXPECT_TRUE(ec);
}

TEST_F(KafkaServerTest, DroppedReplyClosesRatherThanHangs) {
  Start();
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("x")));
  ASSERT_TRUE(handler.WaitFrames(1));
  {
    std::lock_guard<std::mutex> lock(handler.mu);
    handler.replies.clear();
  }
  boost::system::error_code ec;
  ReadFrame(s, ec);
  EXPECT_TRUE(ec);
}

// The attack that took the proxy to gigabytes: connections that announce a huge frame and send
// nothing more, or a trickle. Only the bytes that arrived are held, within the budget, and a
// client on another connection keeps getting every answer.
TEST_F(KafkaServerTest, AnnouncedFramesCostNothingUntilTheirBytesArrive) {
  constexpr uint32_t kAnnounced = 64 << 20;
  options.max_in_flight_bytes = 8 << 20;
  handler.echo = true;
  Start(16, /*max_frame=*/kAnnounced);
  const int64_t before = ResidentBytes();
  std::vector<tcp::socket> attackers;
  for (int i = 0; i < 20; ++i) {  // the size prefix only
    attackers.push_back(Connect());
    net::write(attackers.back(), net::buffer(SizePrefix(kAnnounced)));
  }
  for (int i = 0; i < 20; ++i) {  // the prefix and 4 KB of a trickle
    attackers.push_back(Connect());
    net::write(attackers.back(), net::buffer(SizePrefix(kAnnounced) + std::string(4096, 'x')));
  }
  // Every attacking frame has been begun by the listener...
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_frames_reading", [](double v) { return v == 40; }));
  // ...and the trickles' bytes read (a 4 KB trickle is held in a buffer of 16 KiB at most).
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_in_flight_bytes",
                         [](double v) { return v >= 20 * 4096; }));
  tcp::socket good = Connect();
  boost::system::error_code ec;
  for (int i = 0; i < 50; ++i) {
    std::string request = "produce-" + std::to_string(i) + std::string(10000, 'p');
    net::write(good, net::buffer(Frame(request)));
    ASSERT_EQ(ReadFrame(good, ec), "re:" + request) << i << ": " << ec.message();
  }
  const double held = Metric("saltproxy_kafka_in_flight_bytes");
  EXPECT_LE(held, 20 * 16384);
  EXPECT_LE(held, options.max_in_flight_bytes);
  // 40 frames of 64 MiB announced: 2.5 GiB if allocated when announced.
  EXPECT_LT(ResidentBytes() - before, static_cast<int64_t>(options.max_in_flight_bytes) + (32 << 20));
}

// A frame bigger than the first buffer arrives whole, byte for byte, and its bytes are given
// back once it is answered.
TEST_F(KafkaServerTest, ALargeFrameGrowsAsItArrivesAndIsGivenBackWhenAnswered) {
  Start(16, /*max_frame=*/4 << 20);
  std::string payload(3 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + i / 4096);
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame(payload)));
  ASSERT_TRUE(handler.WaitFrames(1));
  EXPECT_EQ(handler.frames[0], payload);
  EXPECT_GE(Metric("saltproxy_kafka_in_flight_bytes"), payload.size());
  handler.replies[0].Respond("ok");
  boost::system::error_code ec;
  EXPECT_EQ(ReadFrame(s, ec), "ok");
  EXPECT_EQ(Metric("saltproxy_kafka_in_flight_bytes"), 0);
}

// When the budget is full a connection stops reading; an answer that gives bytes back lets it
// go on, and its frame arrives whole.
TEST_F(KafkaServerTest, AFullBudgetStopsReadingUntilAnAnswerGivesBytesBack) {
  options.max_in_flight_bytes = 64 << 10;
  Start(16, /*max_frame=*/64 << 10);
  tcp::socket first = Connect();
  tcp::socket second = Connect();
  const std::string a(40 << 10, 'a');
  const std::string b(40 << 10, 'b');
  net::write(first, net::buffer(Frame(a)));
  ASSERT_TRUE(handler.WaitFrames(1));
  net::write(second, net::buffer(Frame(b)));
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_in_flight_bytes_full_total",
                         [](double v) { return v >= 1; }));
  {
    std::lock_guard<std::mutex> lock(handler.mu);
    EXPECT_EQ(handler.frames.size(), 1u);  // the second waits, it has not been handed on
  }
  EXPECT_LE(Metric("saltproxy_kafka_in_flight_bytes"), options.max_in_flight_bytes);
  handler.replies[0].Respond("done-a");
  ASSERT_TRUE(handler.WaitFrames(2));
  EXPECT_EQ(handler.frames[1], b);
  handler.replies[1].Respond("done-b");
  boost::system::error_code ec;
  EXPECT_EQ(ReadFrame(first, ec), "done-a");
  EXPECT_EQ(ReadFrame(second, ec), "done-b");
}

// A frame begun and not finished within kafka.frame_timeout closes its connection and gives its
// bytes back; a connection idle between frames is not touched by it.
TEST_F(KafkaServerTest, AFrameNotWholeWithinTheFrameTimeoutClosesItsConnection) {
  options.frame_timeout = absl::Milliseconds(200);
  handler.echo = true;
  Start(16, /*max_frame=*/1 << 20);
  tcp::socket idle = Connect();
  tcp::socket stalled = Connect();
  net::write(stalled, net::buffer(SizePrefix(100000) + std::string(5000, 's')));
  boost::system::error_code ec;
  ReadFrame(stalled, ec);
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  EXPECT_EQ(Metric("saltproxy_kafka_protocol_errors_total{reason=\"frame_timeout\"}"), 1);
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_in_flight_bytes", [](double v) { return v == 0; }));
  // The idle connection has waited longer than the frame timeout, and still works.
  net::write(idle, net::buffer(Frame("after")));
  EXPECT_EQ(ReadFrame(idle, ec), "re:after") << ec.message();
}

// A peer that closes mid-frame (before its bytes, or after some) is gone with what it held.
TEST_F(KafkaServerTest, APeerThatClosesMidFrameGivesItsBytesBack) {
  Start(16, /*max_frame=*/1 << 20);
  {
    tcp::socket nothing = Connect();
    tcp::socket some = Connect();
    net::write(nothing, net::buffer(SizePrefix(100000)));
    net::write(some, net::buffer(SizePrefix(100000) + std::string(3000, 's')));
    ASSERT_TRUE(WaitMetric("saltproxy_kafka_in_flight_bytes", [](double v) { return v > 0; }));
  }
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_connections", [](double v) { return v == 0; }));
  EXPECT_EQ(Metric("saltproxy_kafka_in_flight_bytes"), 0);
  EXPECT_EQ(Metric("saltproxy_kafka_frames_reading"), 0);
}

// Connections over the bounds are closed on accept and counted by reason; a place freed is
// taken again.
TEST_F(KafkaServerTest, ConnectionsOverTheBoundsAreRefused) {
  options.max_connections = 5;
  options.max_connections_per_address = 3;
  handler.echo = true;
  Start();
  std::vector<tcp::socket> open;
  boost::system::error_code ec;
  auto works = [&](tcp::socket& s) {
    net::write(s, net::buffer(Frame("hi")), ec);
    return !ec && ReadFrame(s, ec) == "re:hi";
  };
  for (int i = 0; i < 3; ++i) {
    open.push_back(Connect("127.0.0.1"));
    ASSERT_TRUE(works(open.back())) << i;
  }
  tcp::socket fourth = Connect("127.0.0.1");
  EXPECT_FALSE(works(fourth));
  EXPECT_EQ(Metric("saltproxy_kafka_connections_refused_total{reason=\"max_connections_per_address\"}"),
            1);
  for (int i = 0; i < 2; ++i) {
    open.push_back(Connect("127.0.0.2"));
    ASSERT_TRUE(works(open.back())) << i;
  }
  tcp::socket sixth = Connect("127.0.0.2");
  EXPECT_FALSE(works(sixth));
  EXPECT_EQ(Metric("saltproxy_kafka_connections_refused_total{reason=\"max_connections\"}"), 1);
  open.front().close();
  ASSERT_TRUE(WaitMetric("saltproxy_kafka_connections", [](double v) { return v == 4; }));
  tcp::socket again = Connect("127.0.0.1");
  EXPECT_TRUE(works(again));
}

// A connection at its in-flight bound has nothing to read or write while it waits for its
// answer: shutdown must keep the workers for that answer (they used to run out of work and
// return, and the answer was never written), then close the connection after it.
TEST_F(KafkaServerTest, ShutdownWritesAnAnswerGivenAfterItBeganThenCloses) {
  Start(/*max_in_flight=*/1);
  tcp::socket s = Connect();
  net::write(s, net::buffer(Frame("one")));
  ASSERT_TRUE(handler.WaitFrames(1));
  std::thread stopper([&] { server->Shutdown(absl::Seconds(10)); });
  // The listener is closed once a new connection is refused.
  const bool refused = WaitUntil([&] {
    tcp::socket probe(ioc);
    boost::system::error_code ec;
    probe.connect({net::ip::make_address("127.0.0.1"), server->port()}, ec);
    return static_cast<bool>(ec);
  }, std::chrono::seconds(20));
  ASSERT_TRUE(refused);
  {
    std::lock_guard<std::mutex> lock(handler.mu);
    handler.replies[0].Respond("answer-1");
  }
  // The test's own bound, should the answer never come (Asio's reads would wait for ever).
  pollfd readable = {s.native_handle(), POLLIN, 0};
  EXPECT_EQ(poll(&readable, 1, 15000), 1) << "no answer, and the connection is still open";
  boost::system::error_code ec;
  if (readable.revents != 0) {
    EXPECT_EQ(ReadFrame(s, ec), "answer-1");
    EXPECT_FALSE(ec) << ec.message();
    ReadFrame(s, ec);
    EXPECT_EQ(ec, net::error::eof);  // closed after its answer
  }
  stopper.join();
}

}  // namespace
}  // namespace saltproxy
