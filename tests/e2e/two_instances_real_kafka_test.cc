// Issue 16, fault suite (b): two saltproxy instances (different instance ids) in front of one
// cluster, as the deployment runs them. One producer on each, and a third whose connection moves
// from one instance to the other every half second, all writing two hot keys and a Zipf
// background. Both instances salt the hot keys independently. Then: every acknowledged record is
// on the broker once; a salted key means one partition whichever instance wrote it; the ordered
// reader releases each producer's records of each key once, in order, nothing forced; the
// unordered reader each record once under its key.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "saltproxy/salting.h"
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

constexpr int kPartitions = 16;
constexpr int kSteps = 200;           // of 50 ms
constexpr int kRecordsPerStep = 80;   // per producer: 3 x 1,600 records/s
constexpr int kMoveEvery = 10;        // steps: the moving producer changes instance

class TwoInstancesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RealKafka& kafka = RealKafka::Get();
    ASSERT_FALSE(kafka.bootstrap().empty());
    ASSERT_THAT(kafka.CreateTopic("duo", kPartitions), IsOk());
    for (const char* id : {"e2e-duo-a", "e2e-duo-b"}) {
      absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: )", id, R"(
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 4194304}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), "\n"));
      ASSERT_THAT(config, IsOk());
      absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
      ASSERT_THAT(app, IsOk());
      apps_.push_back(app->release());
    }
    std::vector<std::thread> producers;
    std::vector<std::string> failures(3);
    for (int p = 0; p < 3; ++p) {
      producers.emplace_back([p, &failures] { failures[p] = Produce(p); });
    }
    for (std::thread& t : producers) t.join();
    for (const std::string& f : failures) ASSERT_EQ(f, "");
  }

  static void TearDownTestSuite() {
    for (App* app : apps_) {
      (void)app->Shutdown();
      delete app;
    }
    apps_.clear();
  }

  // Producer 0 writes through instance a, 1 through b, 2 through each in turn.
  static std::string Produce(int producer) {
    HttpClient a(apps_[0]->http_port()), b(apps_[1]->http_port());
    NumberedHttpProducer out(absl::StrCat("p", producer), "duo", &ledger_);
    Zipf zipf(1000, 1.0, 200 + producer);
    std::mt19937 rng(11 + producer);
    auto at = std::chrono::steady_clock::now();
    for (int step = 0; step < kSteps; ++step) {
      std::vector<std::string> keys;
      for (int i = 0; i < kRecordsPerStep; ++i) {
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        keys.push_back(u < 0.3 ? "hot-a" : u < 0.5 ? "hot-b" : absl::StrCat("k", zipf.Next()));
      }
      const bool on_b = producer == 1 || (producer == 2 && (step / kMoveEvery) % 2 == 1);
      if (std::string failed = out.Send(on_b ? b : a, keys); !failed.empty()) return failed;
      at += std::chrono::milliseconds(50);
      std::this_thread::sleep_until(at);
    }
    return "";
  }

  static SaltConsumerOptions ReaderOptions() {
    SaltConsumerOptions options;
    options.bootstrap_servers = RealKafka::Get().bootstrap();
    options.topic = "duo";
    options.reassembly.max_wait = std::chrono::minutes(5);  // a forced release is a failure here
    return options;
  }

  static std::vector<App*> apps_;
  static Ledger ledger_;
};

std::vector<App*> TwoInstancesTest::apps_;
Ledger TwoInstancesTest::ledger_;

TEST_F(TwoInstancesTest, EveryAcknowledgedRecordIsOnTheBrokerOnceAndASaltedKeyHasOnePartition) {
  ASSERT_EQ(ledger_.total(), 3 * kSteps * kRecordsPerStep);
  BrokerReport broker = ReadBroker(RealKafka::Get(), {"duo", "duo.hot"}, ledger_);
  EXPECT_EQ(broker.lost, 0);
  EXPECT_EQ(broker.duplicated, 0);
  EXPECT_EQ(broker.unacked, 0);

  absl::StatusOr<std::vector<testing::ConsumedRecord>> read =
      RealKafka::Get().ConsumeAll("duo", -1, absl::Seconds(60));
  ASSERT_THAT(read, IsOk());
  std::map<std::string, std::set<int32_t>> partitions_of;  // salted key -> partitions
  std::map<std::string, std::set<std::string>> instances_of;  // hot key -> instances salting it
  for (const testing::ConsumedRecord& r : *read) {
    std::optional<std::string> instance = r.Header(kHeaderInstance);
    if (!instance || !r.key) continue;
    partitions_of[*r.key].insert(r.partition);
    instances_of[std::string(UnsaltedKey(*r.key))].insert(*instance);
  }
  for (const auto& [salted, partitions] : partitions_of) {
    EXPECT_EQ(partitions.size(), 1u) << "salted key " << salted << " on several partitions";
  }
  // Both instances salted both hot keys (each saw them hot in its half of the traffic).
  EXPECT_EQ(instances_of["hot-a"].size(), 2u);
  EXPECT_EQ(instances_of["hot-b"].size(), 2u);
  std::printf("broker: %lld records, %lld stamped, %zu salted keys\n",
              static_cast<long long>(broker.records), static_cast<long long>(broker.stamped),
              partitions_of.size());
}

TEST_F(TwoInstancesTest, OrderedReaderReleasesEachProducersRecordsInOrderNothingForced) {
  ReaderReport r = Read(ReaderOptions(), ledger_);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.twice, 0);
  EXPECT_EQ(r.out_of_order, 0);
  EXPECT_EQ(r.wrong_key, 0);
  EXPECT_EQ(r.forced, 0);
  EXPECT_EQ(r.stats.duplicates, 0u);
  EXPECT_EQ(r.stats.held, 0u);
  std::printf("ordered reader: %lld released, %zu held at most\n",
              static_cast<long long>(r.released), r.most_held);
}

TEST_F(TwoInstancesTest, UnorderedReaderReleasesEveryRecordOnceUnderItsKey) {
  SaltConsumerOptions options = ReaderOptions();
  options.mode = SaltConsumer::Mode::kUnordered;
  options.group_id = absl::StrCat("e2e-duo-", std::random_device{}());
  ReaderReport r = Read(options, ledger_);
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.twice, 0);
  EXPECT_EQ(r.wrong_key, 0);
}

}  // namespace
}  // namespace saltproxy
