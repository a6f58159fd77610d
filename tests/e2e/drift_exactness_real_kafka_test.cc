// Issue 16, fault suite (a): a drifting hot set on 64 partitions, with the default detection and
// salting settings. Two producers send a Zipf 1.0 background over 10,000 keys through
// saltproxy's REST API while, every few seconds, a new key takes a fifth of the traffic. Then
// every acknowledged record is checked against the topic (on the broker exactly once), against
// an ordered reader (each producer's records of each key released once, in order, nothing
// forced, nothing dropped, the records it holds bounded) and against an unordered reader (each
// record once, under its original key).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "testing/exactness.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/zipf.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::BrokerReport;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::Ledger;
using ::saltproxy::testing::NumberedHttpProducer;
using ::saltproxy::testing::ReaderReport;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Zipf;

constexpr int kPartitions = 64;
constexpr int kProducers = 2;
constexpr int kPhases = 6;            // a new hot key in each
constexpr int kStepsPerPhase = 70;    // of 50 ms: 3.5 s a phase
constexpr int kRecordsPerStep = 120;  // per producer: 2 x 2,400 records/s
constexpr double kSurgeShare = 0.2;

class DriftExactnessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RealKafka& kafka = RealKafka::Get();
    ASSERT_FALSE(kafka.bootstrap().empty());
    ASSERT_THAT(kafka.CreateTopic("drift", kPartitions), IsOk());
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: e2e-drift
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 4194304}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = app->release();
    std::vector<std::thread> producers;
    std::vector<std::string> failures(kProducers);
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([p, &failures] { failures[p] = Produce(p); });
    }
    for (std::thread& t : producers) t.join();
    for (const std::string& f : failures) ASSERT_EQ(f, "");
  }

  static void TearDownTestSuite() {
    if (app_) (void)app_->Shutdown();
    delete app_;
    app_ = nullptr;
  }

  // One producer's whole run, paced in 50 ms steps; "" or what went wrong.
  static std::string Produce(int producer) {
    HttpClient client(app_->http_port());
    NumberedHttpProducer out(absl::StrCat("p", producer), "drift", &ledger_);
    Zipf zipf(10000, 1.0, 100 + producer);
    std::mt19937 rng(7 + producer);
    auto at = std::chrono::steady_clock::now();
    for (int phase = 0; phase < kPhases; ++phase) {
      const std::string surge = absl::StrCat("surge-", phase);
      for (int step = 0; step < kStepsPerPhase; ++step) {
        std::vector<std::string> keys;
        for (int i = 0; i < kRecordsPerStep; ++i) {
          keys.push_back(std::uniform_real_distribution<double>(0, 1)(rng) < kSurgeShare
                             ? surge
                             : absl::StrCat("k", zipf.Next()));
        }
        if (std::string failed = out.Send(client, keys); !failed.empty()) return failed;
        at += std::chrono::milliseconds(50);
        std::this_thread::sleep_until(at);
      }
    }
    return "";
  }

  static SaltConsumerOptions ReaderOptions() {
    SaltConsumerOptions options;
    options.bootstrap_servers = RealKafka::Get().bootstrap();
    options.topic = "drift";
    options.reassembly.max_wait = std::chrono::minutes(5);  // a forced release is a failure here
    return options;
  }

  static App* app_;
  static Ledger ledger_;
};

App* DriftExactnessTest::app_ = nullptr;
Ledger DriftExactnessTest::ledger_;

TEST_F(DriftExactnessTest, EveryAcknowledgedRecordIsOnTheBrokerOnce) {
  ASSERT_EQ(ledger_.total(), kProducers * kPhases * kStepsPerPhase * kRecordsPerStep);
  BrokerReport broker = ReadBroker(RealKafka::Get(), {"drift", "drift.hot"}, ledger_);
  EXPECT_EQ(broker.lost, 0);
  EXPECT_EQ(broker.duplicated, 0);
  EXPECT_EQ(broker.unacked, 0);
  // The surges were salted: a fifth of the traffic or more went out stamped.
  EXPECT_GT(broker.stamped, ledger_.total() / 10);
  std::printf("broker: %lld records, %lld stamped\n", static_cast<long long>(broker.records),
              static_cast<long long>(broker.stamped));
}

TEST_F(DriftExactnessTest, OrderedReaderReleasesEveryRecordOnceInOrderNothingForced) {
  ReaderReport r = Read(ReaderOptions(), ledger_);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.twice, 0);
  EXPECT_EQ(r.out_of_order, 0);
  EXPECT_EQ(r.wrong_key, 0);
  EXPECT_EQ(r.forced, 0);
  EXPECT_EQ(r.stats.duplicates, 0u);
  EXPECT_EQ(r.stats.forced_by_timeout + r.stats.forced_by_buffer, 0u);
  EXPECT_EQ(r.stats.held, 0u);
  // Bounded: partitions are read side by side in time (align_window), so what waits is about a
  // second of the surge at most, not whole fetches of partitions read one after the other.
  EXPECT_LT(static_cast<int64_t>(r.most_held), ledger_.total() / 20);
  std::printf("ordered reader: %lld released, %zu held at most\n",
              static_cast<long long>(r.released), r.most_held);
}

TEST_F(DriftExactnessTest, UnorderedReaderReleasesEveryRecordOnceUnderItsKey) {
  SaltConsumerOptions options = ReaderOptions();
  options.mode = SaltConsumer::Mode::kUnordered;
  options.group_id = absl::StrCat("e2e-drift-", std::random_device{}());
  ReaderReport r = Read(options, ledger_);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.twice, 0);  // one member, no rebalance: each record once
  EXPECT_EQ(r.wrong_key, 0);
}

}  // namespace
}  // namespace saltproxy
