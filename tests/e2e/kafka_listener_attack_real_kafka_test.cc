// A hostile peer against saltproxy's Kafka listener, in front of a real broker: connections
// that announce 100 MB frames and send only the size, or a trickle after it, as an attacker on
// the network would (no authentication needed). saltproxy holds only what they sent, within
// kafka.max_in_flight_bytes, while kcat (librdkafka) on other connections produces, is answered,
// and every record is on the broker.
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "testing/http_client.h"
#include "testing/process.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::ResidentBytes;
using ::saltproxy::testing::Shell;
using ::saltproxy::testing::WaitUntil;

// One series of saltproxy's /metrics; -1 when absent.
double Metric(uint16_t http_port, const std::string& series) {
  std::istringstream in(HttpClient(http_port).Get("/metrics").body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

TEST(KafkaListenerAttackRealKafkaTest, PeersHoldOnlyWhatTheySentAndOthersKeepProducing) {
  RealKafka& kafka = RealKafka::Get();
  ASSERT_FALSE(kafka.bootstrap().empty());
  constexpr uint64_t kBudget = 128 << 20;  // kafka.max_in_flight_bytes (>= max_frame_bytes)
  absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: error
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0, max_in_flight_bytes: )", kBudget, R"(}
salting: {control_topic: ""}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), "\n"));
  ASSERT_THAT(config, IsOk());
  absl::StatusOr<std::unique_ptr<App>> started = App::Start(*config);
  ASSERT_THAT(started, IsOk());
  std::unique_ptr<App> app = std::move(*started);
  const std::string topic = "attacked";
  ASSERT_THAT(kafka.CreateTopic(topic, 4), IsOk());
  const int64_t before = ResidentBytes();

  // 20 connections send a size prefix of 100 MB (the default kafka.max_frame_bytes) and stop;
  // 40 more send 4 KB after it and stop.
  const uint32_t announced = 100 << 20;
  const std::string prefix = {static_cast<char>(announced >> 24),
                              static_cast<char>(announced >> 16),
                              static_cast<char>(announced >> 8), static_cast<char>(announced)};
  net::io_context ioc;
  std::vector<tcp::socket> attackers;
  for (int i = 0; i < 60; ++i) {
    attackers.emplace_back(ioc);
    attackers.back().connect({net::ip::make_address("127.0.0.1"), app->kafka_port()});
    net::write(attackers.back(), net::buffer(i < 20 ? prefix : prefix + std::string(4096, 'x')));
  }
  // Every frame is begun and every trickle read (60 s at most: a deadline, not a measurement).
  ASSERT_TRUE(WaitUntil([&] {
    return Metric(app->http_port(), "saltproxy_kafka_frames_reading") == 60 &&
           Metric(app->http_port(), "saltproxy_kafka_in_flight_bytes") >= 40 * 4096;
  }));

  // A well-behaved producer on other connections: every record answered and on the broker.
  const int kRecords = 500;
  const std::string input = ::testing::TempDir() + "/attack-input.txt";
  {
    std::ofstream out(input);
    for (int i = 0; i < kRecords; ++i) out << "key-" << i % 5 << ":value-" << i << "\n";
  }
  auto [rc, output] = Shell(absl::StrCat("kcat -P -b 127.0.0.1:", app->kafka_port(), " -t ",
                                         topic, " -K: -X enable.idempotence=true -l ", input));
  ASSERT_EQ(rc, 0) << output;
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka.ConsumeAll(topic, kRecords, absl::Seconds(60));
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ(records->size(), static_cast<size_t>(kRecords));

  // 60 frames of 100 MB were announced (6 GB if taken at their word); 40 × 4 KB were sent.
  const double held = Metric(app->http_port(), "saltproxy_kafka_in_flight_bytes");
  EXPECT_LE(held, kBudget);
  EXPECT_LE(held, 40 * (16 << 10));  // each trickle in a buffer of 16 KiB at most
  const int64_t grown = ResidentBytes() - before;
  std::printf("resident memory grew by %.1f MB; in-flight bytes %.0f\n", grown / 1e6, held);
  EXPECT_LT(grown, 64 << 20);
  app->Shutdown().IgnoreError();
}

}  // namespace
}  // namespace saltproxy
