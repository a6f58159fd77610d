// Issue 16, point 3, end to end: the real saltproxy binary in front of a real broker is killed
// (SIGKILL) while two keys are hot and records are in flight, and started again at once with
// the same instance id and configuration. Numbered records ("key#n") go through it before and
// after, over HTTP. Then, on the broker:
//   - the restarted proxy took its layouts over: its first map has the hot keys "resumed", on
//     the same partitions, numbered from 0, with a cut-over point per partition between what
//     the old run wrote there and what the new one writes; its first records of each hot key
//     are stamped under that layout, on the partitions the old run used;
//   - the consumer library's ordered reader releases every acknowledged record of every key
//     once, in producer order, none forced; and so does its Reassembler fed the same records
//     in three partition orders (each partition whole, in turn one way and the other, and all
//     of them a record at a time), where a reader that lags on some partitions would meet the
//     new run's records before the old run's.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "saltproxy/consumer.h"
#include "saltproxy/reassembler.h"
#include "saltproxy/salt_map.h"
#include "saltproxy/salting.h"
#include "testing/http_client.h"
#include "testing/process.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::Child;
using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::WaitUntil;

constexpr char kTopic[] = "restarts";
constexpr char kInstance[] = "e2e-restart";
constexpr int kPartitions = 8;
constexpr auto kStep = std::chrono::milliseconds(50);
const std::vector<std::string> kHotKeys = {"H0", "H1"};

// Records per second of each key: two hot keys (43 % and 29 % of the topic) and 50 cold ones.
std::map<std::string, int> Rates() {
  std::map<std::string, int> rates = {{"H0", 300}, {"H1", 200}};
  for (int i = 0; i < 50; ++i) rates[absl::StrCat("bg-", i)] = 4;
  return rates;
}

// What the producer was told about each record it sent.
class Ledger {
 public:
  void Acked(const std::string& value) {
    std::lock_guard<std::mutex> lock(mu_);
    acked_.insert(value);
  }
  void Unknown(const std::string& value) {
    std::lock_guard<std::mutex> lock(mu_);
    unknown_.insert(value);
  }
  size_t acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_.size();
  }
  std::set<std::string> acked_values() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  size_t unknown() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unknown_.size();
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> acked_;
  std::set<std::string> unknown_;  // no answer (the proxy died), or an error answer
};

// Sends every key's records at its rate, in 50 ms steps, one request a step, until `stop` or
// until the proxy is gone (a request without an answer ends it). Numbers go on across runs.
class Producer {
 public:
  explicit Producer(Ledger& ledger) : ledger_(ledger) {}
  void Start(uint16_t port) {
    stop_ = false;
    thread_ = std::thread([this, port] { Run(port); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~Producer() { Stop(); }
  // How long the request on the wire has waited for its answer (zero between requests).
  std::chrono::nanoseconds InFlightFor() const {
    const int64_t since = in_flight_since_.load();
    if (since == 0) return std::chrono::nanoseconds(0);
    return std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(since);
  }

 private:
  void Run(uint16_t port) {
    HttpClient client(port);
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      std::vector<std::string> keys;
      for (const auto& [key, rate] : Rates()) {
        owed_[key] += rate * std::chrono::duration<double>(kStep).count();
        for (; owed_[key] >= 1; owed_[key] -= 1) keys.push_back(key);
      }
      std::shuffle(keys.begin(), keys.end(), rng_);
      std::vector<std::string> values;
      std::string body = R"({"records":[)";
      for (size_t i = 0; i < keys.size(); ++i) {
        values.push_back(absl::StrCat(keys[i], "#", sent_[keys[i]]++));
        absl::StrAppend(&body, i ? "," : "", R"({"key":")", absl::Base64Escape(keys[i]),
                        R"(","value":")", absl::Base64Escape(values.back()), R"("})");
      }
      body += "]}";
      in_flight_since_ = std::chrono::steady_clock::now().time_since_epoch().count();
      HttpResult r = client.Post(absl::StrCat("/topics/", kTopic), body,
                                 "application/vnd.kafka.binary.v2+json");
      in_flight_since_ = 0;
      if (!r.error.empty() || r.status != 200) {
        for (const std::string& v : values) ledger_.Unknown(v);
        if (!r.error.empty()) return;  // the proxy is gone
      } else {
        const auto& offsets = r.Json().at("offsets").as_array();
        for (size_t i = 0; i < values.size(); ++i) {
          if (i < offsets.size() && offsets[i].at("error_code").is_null()) {
            ledger_.Acked(values[i]);
          } else {
            ledger_.Unknown(values[i]);
          }
        }
      }
      next += kStep;
      std::this_thread::sleep_until(next);
    }
  }

  Ledger& ledger_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> in_flight_since_{0};  // steady clock, ns; 0: no request on the wire
  std::mt19937 rng_{16};
  std::map<std::string, double> owed_;
  std::map<std::string, int64_t> sent_;
};

// One run of the proxy binary, its log in its own file.
class ProxyRun {
 public:
  ProxyRun(const std::string& config, const std::string& log) : log_(log) {
    child_ = std::make_unique<Child>(
        std::vector<std::string>{std::string(SALTPROXY_BINARY_DIR) + "/proxy/saltproxy",
                                 "--config", config},
        log);
  }
  // The HTTP port, once the log says the proxy started (0 if it did not).
  uint16_t WaitStarted() {
    static const std::regex started("event=saltproxy_started .*http_port=([0-9]+)");
    uint16_t port = 0;
    WaitUntil([&] {
      std::smatch m;
      const std::string log = Log();
      if (!std::regex_search(log, m, started)) return false;
      port = static_cast<uint16_t>(std::stoi(m[1]));
      return true;
    });
    return port;
  }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  Child& child() { return *child_; }

 private:
  std::string log_;
  std::unique_ptr<Child> child_;
};

bool HotKeysSalted(uint16_t port) {
  HttpClient client(port);
  HttpResult r = client.Get("/saltmap");
  if (r.status != 200) return false;
  PublishedSaltMap map;
  std::string error;
  if (!ParseSaltMap(r.body, &map, &error)) return false;
  int salted = 0;
  for (const KeyLayout& l : map.layouts) {
    salted += l.action == "salted" &&
              std::find(kHotKeys.begin(), kHotKeys.end(), l.key) != kHotKeys.end();
  }
  return salted == static_cast<int>(kHotKeys.size());
}

int64_t NumberOf(const std::string& value) {
  int64_t n = -1;
  (void)absl::SimpleAtoi(value.substr(value.find('#') + 1), &n);
  return n;
}

class RestartRealKafkaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RealKafka& kafka = RealKafka::Get();
    ASSERT_FALSE(kafka.bootstrap().empty());
    ASSERT_THAT(kafka.CreateTopic(kTopic, kPartitions), IsOk());
    dir_ = kafka.dir() + "/restart-test";
    std::filesystem::create_directories(dir_);
    const std::string config = dir_ + "/saltproxy.yaml";
    std::ofstream(config) << absl::StrCat(R"(
instance_id: )", kInstance, R"(
log_level: info
http: {listen: 127.0.0.1:0}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), R"(
  # Records wait 100 ms in the upstream queue: at the kill, some that took their numbers are
  # still there and never written, so the old run leaves gaps that readers must not wait for.
  librdkafka: {linger.ms: 100}
detection: {half_life: 500ms, hot_share: 0.05, hot_min_rps: 5, cold_ratio: 0.5, hold_down: 2s}
salting:
  tick: 50ms
  cooled_retention: 1m
  defaults: {strategy: salt, min_salts: 2, max_salts: 4}
)");
    Ledger& ledger = *(ledger_ = new Ledger());
    Producer producer(ledger);

    // The first run: both keys turn hot and are salted, then records flow salted for a while.
    ProxyRun first(config, dir_ + "/first.log");
    const uint16_t first_port = first.WaitStarted();
    ASSERT_NE(first_port, 0) << first.Log();
    producer.Start(first_port);
    ASSERT_TRUE(WaitUntil([&] { return HotKeysSalted(first_port); })) << first.Log();
    const size_t salted_from = ledger.acked();
    ASSERT_TRUE(WaitUntil([&] { return ledger.acked() >= salted_from + 1500; }));
    // Killed as a crash while a request is in flight, just as its records' 100 ms linger ends:
    // some of its partitions' batches are on their way to the broker, others still queued, so
    // of the numbers the hot keys took some are written and some never (gaps readers must
    // close, not wait for). Aimed by the request's age, asserted on nothing but counts.
    ASSERT_TRUE(WaitUntil(
        [&] { return producer.InFlightFor() >= std::chrono::milliseconds(103); },
        std::chrono::seconds(60), std::chrono::milliseconds(1)));
    first.child().Signal(SIGKILL);
    const int status = first.child().Wait();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    producer.Stop();
    first_run_acked_ = ledger.acked();

    // The second run, same configuration and instance id, at once.
    second_ = new ProxyRun(config, dir_ + "/second.log");
    const uint16_t second_port = second_->WaitStarted();
    ASSERT_NE(second_port, 0) << second_->Log();
    producer.Start(second_port);
    ASSERT_TRUE(WaitUntil([&] { return ledger.acked() >= first_run_acked_ + 2500; }))
        << second_->Log();
    producer.Stop();
    second_->child().Signal(SIGTERM);
    const int second_status = second_->child().Wait();
    ASSERT_TRUE(WIFEXITED(second_status)) << second_->Log();
    std::printf("restart: %zu records acknowledged (%zu before the kill), %zu unknown\n",
                ledger.acked(), first_run_acked_, ledger.unknown());
  }

  static void TearDownTestSuite() {
    delete second_;
    second_ = nullptr;
    delete ledger_;
    ledger_ = nullptr;
  }

  static std::string dir_;
  static Ledger* ledger_;
  static ProxyRun* second_;
  static size_t first_run_acked_;
};

std::string RestartRealKafkaTest::dir_;
Ledger* RestartRealKafkaTest::ledger_ = nullptr;
ProxyRun* RestartRealKafkaTest::second_ = nullptr;
size_t RestartRealKafkaTest::first_run_acked_ = 0;

TEST_F(RestartRealKafkaTest, TheRestartedProxyResumesItsLayoutsOnTheSamePartitions) {
  ASSERT_NE(ledger_, nullptr);
  RealKafka& kafka = RealKafka::Get();
  // Every map this instance published, in order.
  absl::StatusOr<std::vector<ConsumedRecord>> control =
      kafka.ConsumeAll("_saltproxy_saltmap", -1, absl::Seconds(60));
  ASSERT_THAT(control, IsOk());
  std::vector<PublishedSaltMap> maps;
  for (const ConsumedRecord& r : *control) {
    if (r.key != absl::StrCat("saltmap/", kInstance) || !r.value) continue;
    PublishedSaltMap map;
    std::string error;
    ASSERT_TRUE(ParseSaltMap(*r.value, &map, &error)) << error;
    maps.push_back(std::move(map));
  }
  // The second run's first map is the first with resumed layouts; the one before it is the
  // last the first run published.
  size_t first_resumed = 0;
  while (first_resumed < maps.size() &&
         std::none_of(maps[first_resumed].layouts.begin(), maps[first_resumed].layouts.end(),
                      [](const KeyLayout& l) { return l.resumed; })) {
    ++first_resumed;
  }
  ASSERT_LT(first_resumed, maps.size()) << "no map with resumed layouts";
  ASSERT_GT(first_resumed, 0u);
  const PublishedSaltMap& last = maps[first_resumed - 1];
  const PublishedSaltMap& resumed = maps[first_resumed];
  EXPECT_GT(resumed.epoch, last.epoch);
  EXPECT_NE(second_->Log().find(absl::StrCat("event=saltmap_resumed layouts=",
                                             resumed.layouts.size(), " map_epoch=", last.epoch)),
            std::string::npos)
      << second_->Log();

  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka.ConsumeAll(kTopic, -1, absl::Seconds(60));
  ASSERT_THAT(records, IsOk());
  uint64_t second_run_from = UINT64_MAX;  // the second run's first epoch
  for (const KeyLayout& l : resumed.layouts) second_run_from = std::min(second_run_from, l.epoch);

  for (const std::string& key : kHotKeys) {
    SCOPED_TRACE(key);
    auto find = [&](const PublishedSaltMap& map) -> const KeyLayout* {
      for (const KeyLayout& l : map.layouts) {
        if (l.key == key) return &l;
      }
      return nullptr;
    };
    const KeyLayout* before = find(last);
    const KeyLayout* after = find(resumed);
    ASSERT_NE(before, nullptr);
    ASSERT_NE(after, nullptr);
    EXPECT_EQ(before->action, "salted");
    EXPECT_TRUE(after->resumed);
    EXPECT_EQ(after->action, before->action);
    EXPECT_EQ(after->destination, before->destination);
    EXPECT_EQ(after->partitions, before->partitions);
    EXPECT_EQ(after->since_seq, 0);

    // Each old partition's cut-over point lies between the two runs' records there.
    std::map<int32_t, int64_t> cutover;
    for (const CutOverPoint& c : after->cutover) cutover[c.partition] = c.max_offset;
    int64_t first_n = INT64_MAX;  // the second run's first record of the key, by number
    const ConsumedRecord* first = nullptr;
    int64_t under_resumed = 0;
    for (const ConsumedRecord& r : *records) {
      if (r.Header(kHeaderOriginalKey) != key) continue;
      uint64_t epoch = 0;
      ASSERT_TRUE(absl::SimpleAtoi(r.Header(kHeaderEpoch).value_or(""), &epoch));
      const bool second_run = epoch >= second_run_from;
      if (auto c = cutover.find(r.partition); c != cutover.end()) {
        if (second_run) {
          EXPECT_GT(r.offset, c->second) << "partition " << r.partition;
        } else {
          EXPECT_LE(r.offset, c->second) << "partition " << r.partition;
        }
      }
      if (epoch == after->epoch) {
        ++under_resumed;
        // On a partition of the layout before the restart, under the key that names it.
        EXPECT_NE(std::find(after->partitions.begin(), after->partitions.end(), r.partition),
                  after->partitions.end())
            << r.partition;
        EXPECT_EQ(r.key, SaltedKeyFor(key, r.partition, kPartitions));
      }
      if (second_run && NumberOf(*r.value) < first_n) {
        first_n = NumberOf(*r.value);
        first = &r;
      }
    }
    for (int32_t p : before->partitions) EXPECT_TRUE(cutover.contains(p)) << p;
    // Numbers the first run gave the key and never wrote (lost in the crash): below its
    // highest one, readers must know them lost rather than wait.
    std::set<int64_t> first_run_seqs;
    for (const ConsumedRecord& r : *records) {
      uint64_t epoch = 0;
      int64_t seq = -1;
      if (r.Header(kHeaderOriginalKey) != key ||
          !absl::SimpleAtoi(r.Header(kHeaderEpoch).value_or(""), &epoch) ||
          epoch >= second_run_from ||
          !absl::SimpleAtoi(r.Header(kHeaderSequence).value_or(""), &seq)) {
        continue;
      }
      first_run_seqs.insert(seq);
    }
    const int64_t gaps = first_run_seqs.empty()
                             ? 0
                             : *first_run_seqs.rbegin() + 1 -
                                   static_cast<int64_t>(first_run_seqs.size());
    ASSERT_NE(first, nullptr) << "the second run wrote nothing of the key";
    EXPECT_EQ(first->Header(kHeaderEpoch), absl::StrCat(after->epoch));
    EXPECT_EQ(first->Header(kHeaderSequence), "0");
    EXPECT_GT(under_resumed, 0);
    std::printf("%s: %zu partitions resumed, %lld records under the resumed layout, "
                "%lld numbers of the first run lost before its last written one\n",
                key.c_str(), after->partitions.size(), static_cast<long long>(under_resumed),
                static_cast<long long>(gaps));
  }
}

TEST_F(RestartRealKafkaTest, TheOrderedReaderReleasesEveryAcknowledgedRecordInOrder) {
  ASSERT_NE(ledger_, nullptr);
  SaltConsumerOptions options;
  options.bootstrap_servers = RealKafka::Get().bootstrap();
  options.topic = kTopic;
  options.reassembly.max_wait = std::chrono::seconds(60);  // no release out of proven order
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  ASSERT_NE(consumer, nullptr) << error;

  const std::set<std::string> acked = ledger_->acked_values();
  std::map<std::string, std::vector<int64_t>> released;  // acknowledged numbers, per key
  std::map<std::string, int> copies;                     // every value released
  size_t acked_released = 0;
  int64_t forced = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(150);
  while (acked_released < acked.size() && std::chrono::steady_clock::now() < deadline) {
    for (ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      ASSERT_TRUE(r.key.has_value());
      const std::string& value = *r.record.value;
      forced += r.forced;
      if (++copies[value] == 1 && acked.contains(value)) {
        released[*r.key].push_back(NumberOf(value));
        ++acked_released;
      }
    }
  }
  const ReassemblerStats stats = consumer->stats();
  std::printf("ordered reader: %zu of %zu acknowledged records released, %zu keys, "
              "%llu released in all, forced %llu + %llu, duplicates dropped %llu, held %zu, "
              "numbers known unwritten %llu\n",
              acked_released, acked.size(), released.size(),
              static_cast<unsigned long long>(stats.released),
              static_cast<unsigned long long>(stats.forced_by_timeout),
              static_cast<unsigned long long>(stats.forced_by_buffer),
              static_cast<unsigned long long>(stats.duplicates), stats.held,
              static_cast<unsigned long long>(stats.unwritten));
  EXPECT_EQ(acked_released, acked.size()) << "acknowledged records not released";
  EXPECT_EQ(stats.forced_by_timeout + stats.forced_by_buffer, 0u);
  EXPECT_EQ(forced, 0);
  for (const auto& [value, n] : copies) EXPECT_EQ(n, 1) << value << " released " << n << " times";
  for (const auto& [key, numbers] : released) {
    for (size_t i = 1; i < numbers.size(); ++i) {
      ASSERT_LT(numbers[i - 1], numbers[i])
          << key << ": " << numbers[i] << " released after " << numbers[i - 1];
    }
  }
}

// The same records, through the library's Reassembler alone, in orders a live reader meets
// when it lags on some partitions: the new run's records before the old run's last ones.
TEST_F(RestartRealKafkaTest, TheReassemblerIsExactWhicheverPartitionItReadsFirst) {
  ASSERT_NE(ledger_, nullptr);
  RealKafka& kafka = RealKafka::Get();
  absl::StatusOr<std::vector<ConsumedRecord>> control =
      kafka.ConsumeAll("_saltproxy_saltmap", -1, absl::Seconds(60));
  ASSERT_THAT(control, IsOk());
  absl::StatusOr<std::vector<ConsumedRecord>> consumed =
      kafka.ConsumeAll(kTopic, -1, absl::Seconds(60));
  ASSERT_THAT(consumed, IsOk());
  std::map<int32_t, std::vector<ConsumerRecord>> by_partition;
  for (const ConsumedRecord& c : *consumed) {
    ConsumerRecord r;
    r.topic = c.topic;
    r.partition = c.partition;
    r.offset = c.offset;
    r.key = c.key;
    r.value = c.value;
    for (const auto& [name, value] : c.headers) r.headers.emplace_back(name, value.value_or(""));
    by_partition[c.partition].push_back(std::move(r));
  }
  for (auto& [p, records] : by_partition) {
    std::sort(records.begin(), records.end(),
              [](const ConsumerRecord& a, const ConsumerRecord& b) { return a.offset < b.offset; });
  }
  const std::set<std::string> acked = ledger_->acked_values();
  enum class Order { kAscending, kDescending, kInterleaved };
  for (Order order : {Order::kAscending, Order::kDescending, Order::kInterleaved}) {
    SCOPED_TRACE(order == Order::kAscending    ? "partitions 0 to 7, each whole"
                 : order == Order::kDescending ? "partitions 7 to 0, each whole"
                                               : "a record of each partition in turn");
    SaltMapHistory map;
    for (const ConsumedRecord& c : *control) {
      std::string error;
      if (c.value) {
        ASSERT_TRUE(map.Apply(*c.value, &error)) << error;
      }
    }
    ReassemblerOptions options;
    options.max_wait = std::chrono::hours(1);  // time does not pass: nothing is forced
    Reassembler reassembler(&map, options);
    const auto now = Reassembler::Clock::now();
    reassembler.OnMapUpdate(now);
    std::vector<std::pair<int32_t, size_t>> feed;  // (partition, index)
    if (order == Order::kInterleaved) {
      for (size_t i = 0;; ++i) {
        bool any = false;
        for (const auto& [p, records] : by_partition) {
          if (i < records.size()) feed.emplace_back(p, i), any = true;
        }
        if (!any) break;
      }
    } else {
      for (const auto& [p, records] : by_partition) {
        for (size_t i = 0; i < records.size(); ++i) feed.emplace_back(p, i);
      }
      if (order == Order::kDescending) {
        std::stable_sort(feed.begin(), feed.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
      }
    }
    std::map<std::string, std::vector<int64_t>> released;
    std::map<std::string, int> copies;
    for (const auto& [p, i] : feed) {
      reassembler.Add(by_partition[p][i], kTopic, now);
      for (ReleasedRecord& r : reassembler.TakeReleased()) {
        const std::string& value = *r.record.value;
        if (++copies[value] == 1 && acked.contains(value)) {
          released[*r.key].push_back(NumberOf(value));
        }
      }
    }
    size_t acked_released = 0;
    for (const auto& [key, numbers] : released) {
      acked_released += numbers.size();
      for (size_t i = 1; i < numbers.size(); ++i) {
        ASSERT_LT(numbers[i - 1], numbers[i])
            << key << ": " << numbers[i] << " released after " << numbers[i - 1];
      }
    }
    for (const auto& [value, n] : copies) EXPECT_EQ(n, 1) << value;
    const ReassemblerStats stats = reassembler.stats();
    EXPECT_EQ(acked_released, acked.size()) << "acknowledged records still held or dropped";
    EXPECT_EQ(stats.held, 0u);
    EXPECT_EQ(stats.duplicates, 0u);
    std::printf("reassembler: %zu of %zu acknowledged released, %llu in all, %zu held, "
                "%llu dropped as duplicates, %llu numbers known unwritten\n",
                acked_released, acked.size(), static_cast<unsigned long long>(stats.released),
                stats.held, static_cast<unsigned long long>(stats.duplicates),
                static_cast<unsigned long long>(stats.unwritten));
  }
}

}  // namespace
}  // namespace saltproxy
