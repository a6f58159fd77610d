// Issue 16, fault suite (a): a drifting hot set on 64 partitions, with the default detection and
// salting settings. Two producers send a Zipf 1.0 background over 10,000 keys through
// saltproxy's REST API while, every few seconds, a new key takes a fifth of the traffic. Then
// every acknowledged record is checked against the topic (on the broker exactly once), against
// an ordered reader (each producer's records of each key released once, in order, nothing
// forced, nothing dropped, the records it holds bounded) and against an unordered reader (each
// record once, under its original key).
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/app.h"
#include "saltproxy/consumer.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/zipf.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Zipf;

constexpr int kPartitions = 64;
constexpr int kProducers = 2;
constexpr int kPhases = 6;               // a new hot key in each
constexpr int kStepsPerPhase = 70;       // of 50 ms: 3.5 s a phase
constexpr int kRecordsPerStep = 120;     // per producer: 2 x 2,400 records/s
constexpr double kSurgeShare = 0.2;

// A record's value: "producer:key:n", n counting that producer's records of that key from 0.
struct Sent {
  std::string producer, key;
  int64_t n = -1;
};
Sent Parse(const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(value, ':');
  Sent s;
  if (parts.size() == 3) {
    s.producer = parts[0];
    s.key = parts[1];
    (void)absl::SimpleAtoi(parts[2], &s.n);
  }
  return s;
}

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

  // One producer's whole run; "" or what went wrong. Every record it sends is acknowledged
  // (no fault here), and recorded in acked_.
  static std::string Produce(int producer) {
    HttpClient client(app_->http_port());
    Zipf zipf(10000, 1.0, 100 + producer);
    std::mt19937 rng(7 + producer);
    std::map<std::string, int64_t> next;
    const std::string name = absl::StrCat("p", producer);
    auto at = std::chrono::steady_clock::now();
    int64_t sent = 0;
    for (int phase = 0; phase < kPhases; ++phase) {
      const std::string surge = absl::StrCat("surge-", phase);
      for (int step = 0; step < kStepsPerPhase; ++step) {
        std::string body = R"({"records":[)";
        for (int i = 0; i < kRecordsPerStep; ++i) {
          const std::string key =
              std::uniform_real_distribution<double>(0, 1)(rng) < kSurgeShare
                  ? surge
                  : absl::StrCat("k", zipf.Next());
          const std::string value = absl::StrCat(name, ":", key, ":", next[key]++);
          absl::StrAppend(&body, i ? "," : "", R"({"key":")", absl::Base64Escape(key),
                          R"(","value":")", absl::Base64Escape(value), R"("})");
        }
        body += "]}";
        HttpResult r = client.Post("/topics/drift", body, "application/vnd.kafka.binary.v2+json");
        if (r.status != 200) return absl::StrCat("HTTP ", r.status, ": ", r.body.substr(0, 300));
        for (const auto& o : r.Json().at("offsets").as_array()) {
          if (!o.at("error_code").is_null()) return boost::json::serialize(o);
        }
        sent += kRecordsPerStep;
        at += std::chrono::milliseconds(50);
        std::this_thread::sleep_until(at);
      }
    }
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : next) acked_[{name, key}] = n;
    total_ += sent;
    return "";
  }

  static App* app_;
  static std::mutex mu_;
  static std::map<std::pair<std::string, std::string>, int64_t> acked_;  // records per (p, key)
  static int64_t total_;
};

App* DriftExactnessTest::app_ = nullptr;
std::mutex DriftExactnessTest::mu_;
std::map<std::pair<std::string, std::string>, int64_t> DriftExactnessTest::acked_;
int64_t DriftExactnessTest::total_ = 0;

TEST_F(DriftExactnessTest, EveryAcknowledgedRecordIsOnTheBrokerOnce) {
  RealKafka& kafka = RealKafka::Get();
  std::map<std::pair<std::string, std::string>, std::set<int64_t>> stored;
  int64_t records = 0, twice = 0, stamped = 0;
  for (const std::string topic : {"drift", "drift.hot"}) {
    absl::StatusOr<std::vector<int64_t>> ends = kafka.EndOffsets(topic);
    if (!ends.ok()) continue;  // no key was rerouted
    absl::StatusOr<std::vector<testing::ConsumedRecord>> read =
        kafka.ConsumeAll(topic, -1, absl::Seconds(120));
    ASSERT_THAT(read, IsOk());
    for (const testing::ConsumedRecord& r : *read) {
      ASSERT_TRUE(r.value.has_value());
      Sent s = Parse(*r.value);
      ASSERT_GE(s.n, 0) << *r.value;
      twice += stored[{s.producer, s.key}].insert(s.n).second ? 0 : 1;
      ++records;
      stamped += r.Header("saltproxy-seq").has_value();
    }
  }
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(records, total_);
  for (const auto& [pk, n] : acked_) {
    const std::set<int64_t>& got = stored[pk];
    ASSERT_EQ(static_cast<int64_t>(got.size()), n) << pk.first << " " << pk.second;
    ASSERT_TRUE(got.empty() || (*got.begin() == 0 && *got.rbegin() == n - 1));
  }
  // The surges were salted: a fifth of the traffic or more went out stamped.
  EXPECT_GT(stamped, total_ / 10);
  std::printf("broker: %lld records, %lld stamped\n", static_cast<long long>(records),
              static_cast<long long>(stamped));
}

TEST_F(DriftExactnessTest, OrderedReaderReleasesEveryRecordOnceInOrderNothingForced) {
  SaltConsumerOptions options;
  options.bootstrap_servers = RealKafka::Get().bootstrap();
  options.topic = "drift";
  options.reassembly.max_wait = std::chrono::minutes(5);  // a forced release is a failure here
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  ASSERT_NE(consumer, nullptr) << error;

  std::map<std::pair<std::string, std::string>, int64_t> next;
  int64_t released = 0, out_of_order = 0, salted = 0;
  size_t most_held = 0;
  int most_paused = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (released < total_ && std::chrono::steady_clock::now() < deadline) {
    for (ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      ASSERT_TRUE(r.key.has_value());
      ASSERT_FALSE(r.forced) << *r.record.value;
      Sent s = Parse(*r.record.value);
      ASSERT_EQ(s.key, *r.key);
      int64_t& expected = next[{s.producer, s.key}];
      if (s.n != expected) ++out_of_order;
      expected = s.n + 1;
      ++released;
      salted += r.salted;
    }
    most_held = std::max(most_held, consumer->stats().held);
    most_paused = std::max(most_paused, consumer->paused_partitions());
  }
  ReassemblerStats stats = consumer->stats();
  EXPECT_EQ(released, total_);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(stats.duplicates, 0u);
  EXPECT_EQ(stats.forced_by_timeout + stats.forced_by_buffer, 0u);
  EXPECT_EQ(stats.held, 0u);
  for (const auto& [pk, n] : acked_) ASSERT_EQ(next[pk], n) << pk.first << " " << pk.second;
  // Bounded: partitions are read side by side in time (align_window), so what waits is about a
  // second of the surge, not whole fetches of partitions read one after the other.
  EXPECT_LT(static_cast<int64_t>(most_held), total_ / 20);
  std::printf("ordered reader: %lld released, %lld salted, %zu held at most, %d partitions paused "
              "at most, %zu layouts\n",
              static_cast<long long>(released), static_cast<long long>(salted), most_held,
              most_paused, consumer->salt_map().size());
}

TEST_F(DriftExactnessTest, UnorderedReaderReleasesEveryRecordOnceUnderItsKey) {
  SaltConsumerOptions options;
  options.bootstrap_servers = RealKafka::Get().bootstrap();
  options.topic = "drift";
  options.mode = SaltConsumer::Mode::kUnordered;
  options.group_id = absl::StrCat("e2e-drift-", std::random_device{}());
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  ASSERT_NE(consumer, nullptr) << error;
  std::set<std::string> seen;
  int64_t twice = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (static_cast<int64_t>(seen.size()) < total_ &&
         std::chrono::steady_clock::now() < deadline) {
    for (ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      ASSERT_TRUE(r.key.has_value());
      ASSERT_EQ(Parse(*r.record.value).key, *r.key);
      twice += seen.insert(*r.record.value).second ? 0 : 1;
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), total_);
  EXPECT_EQ(twice, 0);  // one member, no rebalance: each record once
  consumer->Close();
}

}  // namespace
}  // namespace saltproxy
