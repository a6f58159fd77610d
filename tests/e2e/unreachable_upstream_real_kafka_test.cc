// A real broker stopped (SIGSTOP, so that its sockets stay open and nothing answers, the harder
// case to tell from a slow broker) while saltproxy runs: once the proxy finds the cluster
// unreachable, /readyz is 503, a new HTTP produce is refused at once with 503/50301 and
// Retry-After, and a Kafka Produce at once with the retriable NOT_ENOUGH_REPLICAS, instead of
// waiting for delivery_timeout (30 s). After SIGCONT produce works again, and nothing refused
// was written. This binary has its own broker (one per test binary), so stopping it disturbs no
// other test.
#include <gtest/gtest.h>

#include <signal.h>

#include <boost/asio.hpp>

#include <fstream>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"
#include "proxy/kafka/wire.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;

constexpr char kTopic[] = "unreachable-e2e";
constexpr char kJson[] = "application/vnd.kafka.json.v2+json";

std::string RoundTrip(boost::asio::ip::tcp::socket& s, const std::string& payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string frame = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  frame += payload;
  boost::asio::write(s, boost::asio::buffer(frame));
  uint8_t size[4];
  boost::asio::read(s, boost::asio::buffer(size));
  std::string answer((size[0] << 24) | (size[1] << 16) | (size[2] << 8) | size[3], '\0');
  boost::asio::read(s, boost::asio::buffer(answer));
  return answer;
}

// Produce v7, acks=all, one keyless record (not idempotent) to partition 0: the error code.
int16_t KafkaProduce(boost::asio::ip::tcp::socket& s, int32_t correlation,
                     const std::string& value) {
  using namespace ::saltproxy::kafka;  // NOLINT
  RecordBatch batch;
  BatchRecord r;
  r.value = value;
  batch.records.push_back(r);
  WireWriter w;
  w.Int16(kProduce);
  w.Int16(7);
  w.Int32(correlation);
  w.NullableString(std::string("test"), false);
  w.NullableString(std::nullopt, false);
  w.Int16(-1);
  w.Int32(30000);
  w.ArrayLength(1, false);
  w.String(kTopic, false);
  w.ArrayLength(1, false);
  w.Int32(0);
  w.NullableBytes(EncodeRecordBatch(batch, Compression::kNone), false);
  const std::string bytes = RoundTrip(s, w.data());
  WireReader answer(bytes);
  EXPECT_EQ(answer.Int32(), correlation);
  EXPECT_EQ(answer.ArrayLength(false), 1);
  EXPECT_EQ(answer.String(false), kTopic);
  EXPECT_EQ(answer.ArrayLength(false), 1);
  EXPECT_EQ(answer.Int32(), 0);
  return answer.Int16();
}

std::string Produce(const std::string& value) {
  return absl::StrCat(R"({"records":[{"value":")", value, R"("}]})");
}

class UnreachableUpstreamRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    // Every setting the test depends on is the default: delivery_timeout 30 s, metadata_refresh
    // 5 s.
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: info
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0}
salting: {control_topic: ""}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = std::move(*app);
  }
  void TearDown() override {
    if (app_) app_->Shutdown().IgnoreError();
  }
  pid_t BrokerPid() const {
    std::ifstream file(kafka_->dir() + "/pid");
    pid_t pid = 0;
    file >> pid;
    return pid;
  }
  // Polls GET /readyz until it answers `status` or the deadline passes; the time it took.
  std::optional<absl::Duration> AwaitReadyz(int status, absl::Duration deadline) {
    const absl::Time start = absl::Now();
    if (!testing::WaitUntil(
            [&] { return HttpClient(app_->http_port()).Get("/readyz").status == status; },
            absl::ToChronoMilliseconds(deadline), std::chrono::milliseconds(100))) {
      return std::nullopt;
    }
    return absl::Now() - start;
  }
  double Metric(const std::string& series) {
    std::string text = HttpClient(app_->http_port()).Get("/metrics").body;
    size_t at = text.find(series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 1));
  }

  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
};

TEST_F(UnreachableUpstreamRealKafkaTest, StoppedBrokerIsRefusedAtOnceAndNothingRefusedIsWritten) {
  ASSERT_THAT(kafka_->CreateTopic(kTopic, 1), IsOk());
  HttpClient http(app_->http_port());
  ASSERT_EQ(http.Post(absl::StrCat("/topics/", kTopic), Produce("before-http"), kJson).status,
            200);
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket kafka(ioc);
  kafka.connect({boost::asio::ip::make_address("127.0.0.1"), app_->kafka_port()});
  ASSERT_EQ(KafkaProduce(kafka, 1, "before-kafka"), kafka::kNone);
  ASSERT_EQ(AwaitReadyz(200, absl::Seconds(30)).has_value(), true);

  const pid_t broker = BrokerPid();
  ASSERT_GT(broker, 0);
  ASSERT_EQ(kill(broker, SIGSTOP), 0);
  absl::Cleanup resume = [broker] { kill(broker, SIGCONT); };
  const absl::Time stopped = absl::Now();

  // Readiness: the metadata request that finds the silence waits up to 5 s, and starts up to
  // metadata_refresh (5 s) after the stop.
  std::optional<absl::Duration> unready = AwaitReadyz(503, absl::Seconds(30));
  ASSERT_TRUE(unready.has_value()) << "/readyz still 200 30 s after the broker stopped";
  std::cout << "readyz 503 after " << absl::FormatDuration(*unready) << " of broker stop\n";

  // A new HTTP produce: refused at once, never waiting for delivery_timeout.
  absl::Time asked = absl::Now();
  HttpResult refused = http.Post(absl::StrCat("/topics/", kTopic), Produce("refused-http"), kJson);
  const absl::Duration http_took = absl::Now() - asked;
  std::cout << "HTTP 503 after " << absl::FormatDuration(absl::Now() - stopped)
            << " of broker stop, answered in " << absl::FormatDuration(http_took) << "\n";
  EXPECT_LT(http_took, absl::Seconds(10));
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(refused.headers["Retry-After"], "1");
  const boost::json::value answer = refused.Json();
  const boost::json::value* code =
      answer.is_object() ? answer.as_object().if_contains("error_code") : nullptr;
  EXPECT_TRUE(code && code->is_int64() && code->as_int64() == 50301) << refused.body;

  // A Kafka Produce: the retriable NOT_ENOUGH_REPLICAS, at once.
  asked = absl::Now();
  EXPECT_EQ(KafkaProduce(kafka, 2, "refused-kafka"), kafka::kNotEnoughReplicas);
  const absl::Duration kafka_took = absl::Now() - asked;
  std::cout << "Kafka NOT_ENOUGH_REPLICAS after " << absl::FormatDuration(absl::Now() - stopped)
            << " of broker stop, answered in " << absl::FormatDuration(kafka_took) << "\n";
  EXPECT_LT(kafka_took, absl::Seconds(10));
  EXPECT_EQ(Metric("saltproxy_records_refused_total{reason=\"upstream_unreachable\"}"), 2);

  std::move(resume).Invoke();
  ASSERT_TRUE(AwaitReadyz(200, absl::Seconds(60)).has_value())
      << "/readyz not 200 60 s after the broker resumed";
  EXPECT_EQ(http.Post(absl::StrCat("/topics/", kTopic), Produce("after-http"), kJson).status, 200);
  EXPECT_EQ(KafkaProduce(kafka, 3, "after-kafka"), kafka::kNone);

  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll(kTopic, -1, absl::Seconds(30));
  ASSERT_THAT(records, IsOk());
  std::multiset<std::string> values;
  for (const ConsumedRecord& r : *records) values.insert(r.value.value_or("(null)"));
  // JSON values are stored as their JSON text, quotes included.
  EXPECT_EQ(values, (std::multiset<std::string>{"\"before-http\"", "before-kafka",
                                                "\"after-http\"", "after-kafka"}));
}

}  // namespace
}  // namespace saltproxy
