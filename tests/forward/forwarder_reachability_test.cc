// The forwarder's readiness and admission against librdkafka's mock cluster with faults the
// test injects: a broker that answers everything late, or its produce requests very late, is
// slow, not gone, and stays ready; a broker that is down is found unreachable, new requests are refused, and it is admitted again
// once back; a broker slower than upstream.max_queue_delay gets new requests refused as slow.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proxy/common/retry_after.h"
#include "proxy/forward/forwarder.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::saltproxy::testing::WaitUntil;

// A one-broker mock cluster whose faults the test sets.
class MockCluster {
 public:
  MockCluster() {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    host_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cluster_ = host_ ? rd_kafka_mock_cluster_new(host_, 1) : nullptr;
    if (cluster_) rd_kafka_mock_topic_create(cluster_, "orders", 4, 1);
  }
  ~MockCluster() {
    if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
    if (host_) rd_kafka_destroy(host_);
  }
  rd_kafka_mock_cluster_t* get() { return cluster_; }
  std::string bootstrap() { return rd_kafka_mock_cluster_bootstraps(cluster_); }

 private:
  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};


class ForwarderReachabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(mock_.get(), nullptr);
    config_.bootstrap_servers = mock_.bootstrap();
    config_.metadata_refresh = absl::Milliseconds(500);
    Start();
  }
  void Start() {
    forwarder_.reset();
    auto forwarder = Forwarder::Create(config_, metrics_, /*cache_only_lookups=*/true);
    ASSERT_THAT(forwarder, IsOk());
    forwarder_ = std::move(*forwarder);
    ASSERT_TRUE(WaitUntil([&] { return forwarder_->Ready(); }, std::chrono::seconds(20)));
  }
  // The broker holds back the answers to its next `count` Produce requests for `delay`.
  void DelayProduceAnswers(int count, absl::Duration delay) {
    for (int i = 0; i < count; ++i) {
      ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(
                    mock_.get(), 1, /*Produce*/ 0, 1, RD_KAFKA_RESP_ERR_NO_ERROR,
                    static_cast<int>(absl::ToInt64Milliseconds(delay))),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }
  double Metric(const std::string& series) {
    const std::string text = metrics_.Serialize();
    const size_t at = text.find("\n" + series + " ");  // a sample's line, not its # HELP
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
  }
  void TearDown() override { forwarder_.reset(); }

  absl::Status ProduceOne(int32_t partition) {
    Record r;
    r.topic = "orders";
    r.value = "v";
    return forwarder_->Produce(std::move(r), partition, [this](const DeliveryReport& report) {
      (report.status.ok() ? delivered_ : failed_).fetch_add(1);
    });
  }

  MockCluster mock_;
  UpstreamConfig config_;
  Metrics metrics_;
  std::unique_ptr<Forwarder> forwarder_;
  std::atomic<int> delivered_{0};
  std::atomic<int> failed_{0};
};

// A broker that answers everything late (1.5 s here) is slow, not gone. Readiness used to wait
// min(metadata_refresh, 5 s) for a metadata answer: with a 500 ms refresh, such a broker made
// /readyz 503 although it acknowledged every record. (Metadata answers later than 5 s while
// acknowledgements keep coming, the overload the issue saw, is Reachability's own test: the mock
// cluster of librdkafka 2.0 cannot delay Metadata alone.) Its records wait about 3 s, under the
// 5 s max_queue_delay, but the first round trips after a lull, before librdkafka's requests
// carry the load, can be refused as slow (queue_delay.h): only "unreachable" is counted here.
TEST_F(ForwarderReachabilityTest, BrokerAnsweringEverythingLateStaysReadyAndReachable) {
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock_.get(), 1, 1500), RD_KAFKA_RESP_ERR_NO_ERROR);
  int unready_samples = 0;
  int unreachable = 0;
  const absl::Time end = absl::Now() + absl::Seconds(10);
  for (int i = 0; absl::Now() < end; ++i) {
    ASSERT_THAT(ProduceOne(i % 4), IsOk());
    if (!forwarder_->Ready()) ++unready_samples;
    if (absl::IsUnavailable(forwarder_->Admit(1))) ++unreachable;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(delivered_.load(), 20) << "records were not acknowledged during the window";
  EXPECT_EQ(failed_.load(), 0);
  EXPECT_EQ(unready_samples, 0);
  EXPECT_EQ(unreachable, 0);
}

// A broker over its quota answers a produce request and then mutes the connection (KIP-219):
// nothing more comes back on it for seconds. Here every connection's produce answers are held
// back 8 s, longer than the metadata probe's 5 s timeout. The probe goes through a connection
// that carries no produce request, so it is answered at once and the cluster stays ready; on
// the first producer's connection it waited behind the produce request, went unanswered, and
// nothing else came back meanwhile: /readyz said 503 for a broker that was only slow.
TEST_F(ForwarderReachabilityTest, ProduceAnswersHeldBackPastTheProbeTimeoutStayReady) {
  DelayProduceAnswers(8, absl::Seconds(8));
  for (int32_t partition = 0; partition < 4; ++partition) {
    ASSERT_THAT(ProduceOne(partition), IsOk());  // both producers, both connections
  }
  int unready_samples = 0;
  int unreachable = 0;
  const absl::Time end = absl::Now() + absl::Seconds(12);  // past the delay and a probe timeout
  while (absl::Now() < end) {
    if (!forwarder_->Ready()) ++unready_samples;
    if (absl::IsUnavailable(forwarder_->Admit(1))) ++unreachable;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(unready_samples, 0);
  EXPECT_EQ(unreachable, 0);
  EXPECT_TRUE(WaitUntil([&] { return delivered_.load() == 4; }, std::chrono::seconds(30)));
  EXPECT_EQ(failed_.load(), 0);
}

TEST_F(ForwarderReachabilityTest, BrokerDownIsRefusedAtOnceAndAdmittedAgainWhenBack) {
  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock_.get(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  // The refresh that finds the silence waits its 5 s.
  ASSERT_TRUE(WaitUntil([&] { return !forwarder_->Ready(); }, std::chrono::seconds(20)))
      << "still ready 20 s after the broker went down";
  EXPECT_THAT(forwarder_->Admit(3), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(metrics_.Serialize().find(
                "saltproxy_records_refused_total{reason=\"upstream_unreachable\"} 3"),
            std::string::npos);
  EXPECT_NE(metrics_.Serialize().find("saltproxy_upstream_ready 0"), std::string::npos);

  ASSERT_EQ(rd_kafka_mock_broker_set_up(mock_.get(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(WaitUntil([&] { return forwarder_->Ready(); }, std::chrono::seconds(30)))
      << "not ready 30 s after the broker came back";
  EXPECT_THAT(forwarder_->Admit(1), IsOk());
  EXPECT_NE(metrics_.Serialize().find("saltproxy_upstream_ready 1"), std::string::npos);
  ASSERT_THAT(ProduceOne(0), IsOk());
  EXPECT_TRUE(WaitUntil([&] { return delivered_.load() == 1; }, std::chrono::seconds(30)));
}

// A record the broker takes 3 s to acknowledge, against a bound of 1 s: once it has waited
// past the bound, new requests are refused as slow (counted, with a hint of when to retry), the
// record admitted before is delivered as ever, the cluster stays ready, and once the queue is
// empty new requests are admitted again.
TEST_F(ForwarderReachabilityTest, SlowerThanTheBoundIsRefusedAsSlowAndAdmittedWhenDrained) {
  config_.max_queue_delay = absl::Seconds(1);
  Start();
  DelayProduceAnswers(1, absl::Seconds(3));
  ASSERT_THAT(forwarder_->Admit(1), IsOk());
  ASSERT_THAT(ProduceOne(0), IsOk());

  absl::Status refused;
  ASSERT_TRUE(WaitUntil(
      [&] {
        refused = forwarder_->Admit(2);
        return !refused.ok();
      },
      std::chrono::seconds(10)))
      << "never refused while a record waited 3 s against a 1 s bound";
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_NE(refused.message().find("slower than the load"), std::string::npos)
      << refused.message();
  ASSERT_TRUE(RetryAfter(refused).has_value());
  EXPECT_GE(*RetryAfter(refused), absl::Seconds(1));
  EXPECT_EQ(delivered_.load(), 0) << "refused after the record was delivered";
  EXPECT_TRUE(forwarder_->Ready());
  EXPECT_GT(forwarder_->QueueDelayEstimate(), absl::Seconds(1));
  EXPECT_GT(Metric("saltproxy_upstream_queue_delay_seconds"), 1);
  EXPECT_EQ(Metric("saltproxy_records_refused_total{reason=\"upstream_slow\"}"), 2);
  EXPECT_EQ(Metric("saltproxy_records_refused_total{reason=\"upstream_unreachable\"}"), 0);

  ASSERT_TRUE(WaitUntil([&] { return delivered_.load() == 1; }, std::chrono::seconds(30)));
  EXPECT_EQ(failed_.load(), 0);
  EXPECT_TRUE(WaitUntil([&] { return forwarder_->Admit(1).ok(); }, std::chrono::seconds(5)))
      << "still refused once the queue was empty";
  EXPECT_TRUE(forwarder_->Ready());
}

// max_queue_delay 0s: no bound, the behaviour before it existed.
TEST_F(ForwarderReachabilityTest, NoBoundAdmitsHoweverLongRecordsWait) {
  config_.max_queue_delay = absl::ZeroDuration();
  Start();
  DelayProduceAnswers(1, absl::Seconds(3));
  ASSERT_THAT(ProduceOne(0), IsOk());
  int refused = 0;
  while (delivered_.load() == 0 && failed_.load() == 0) {
    if (!forwarder_->Admit(1).ok()) ++refused;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(delivered_.load(), 1);
  EXPECT_EQ(refused, 0);
}

}  // namespace
}  // namespace saltproxy
