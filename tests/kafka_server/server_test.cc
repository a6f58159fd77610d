// The Kafka listener's framing and ordering, with a handler that answers on demand.
#include "proxy/kafka_server/server.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>

namespace saltproxy {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Keeps replies until the test releases them, in any order.
class HeldHandler : public FrameHandler {
 public:
  void Handle(std::string frame, uint64_t, FrameReply reply) override {
    std::lock_guard<std::mutex> lock(mu);
    frames.push_back(frame);
    replies.push_back(std::move(reply));
    cv.notify_all();
  }
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

class KafkaServerTest : public ::testing::Test {
 protected:
  void Start(int max_in_flight = 16, uint32_t max_frame = 1024) {
    KafkaServerOptions options;
    options.listen = {"127.0.0.1", 0};
    options.max_in_flight_per_connection = max_in_flight;
    options.max_frame_bytes = max_frame;
    server = std::make_unique<KafkaServer>(options, handler, metrics);
    ASSERT_TRUE(server->Start().ok());
  }
  tcp::socket Connect() {
    tcp::socket s(ioc);
    s.connect({net::ip::make_address("127.0.0.1"), server->port()});
    return s;
  }
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

}  // namespace
}  // namespace saltproxy
