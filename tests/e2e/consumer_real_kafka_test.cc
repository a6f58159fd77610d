// Issue 7 end to end: numbered records for many keys go through saltproxy into a real broker
// while two keys turn hot, change salt count, get rerouted to the hot topic, cool down, leave
// the map and turn hot again. Read back through the consumer library: the ordered reader gives
// every key exactly its producer's order, nothing lost, nothing twice; three unordered readers
// in one consumer group map every record back to its key and lose nothing.
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
#include "absl/strings/str_join.h"
#include "proxy/app.h"
#include "saltproxy/consumer.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;

constexpr int kPartitions = 16;
constexpr auto kStep = std::chrono::milliseconds(50);

// Records per second of each key, in one phase of the run. A phase lasts until the proxy's salt
// map shows what it is for (`done`), so that the run goes through every change however fast or
// slow the machine is; `deadline` only bounds a run that never gets there.
struct Phase {
  std::string what;
  std::map<std::string, int> rates;
};

// What the proxy's salt map has shown of a key so far.
struct Seen {
  std::set<int> salt_counts;
  bool salted = false, rerouted = false, cooled = false, left = false, hot_again = false;
};

class ConsumerRealKafkaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RealKafka& kafka = RealKafka::Get();
    ASSERT_FALSE(kafka.bootstrap().empty());
    ASSERT_THAT(kafka.CreateTopic("orders", kPartitions), IsOk());
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: e2e-consumer
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 4194304}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), R"(
detection: {half_life: 500ms, hot_share: 0.05, hot_min_rps: 5, cold_ratio: 0.5, hold_down: 1s}
salting:
  tick: 50ms
  cooled_retention: 2s
  defaults: {strategy: salt_then_reroute, partition_target_rps: 300, headroom: 1,
             min_salts: 2, max_salts: 6, hot_topic_partitions: 4}
)"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = app->release();
    Produce();
  }

  static void TearDownTestSuite() {
    if (app_) (void)app_->Shutdown();
    delete app_;
    app_ = nullptr;
  }

  // Sends the phases' records, paced in 50 ms steps, each "key#n" numbered per key, and
  // moves to the next phase when the salt map (GET /saltmap, looked at every step) shows it.
  static void Produce() {
    std::map<std::string, int> background;
    for (int i = 0; i < 200; ++i) background[absl::StrCat("bg-", i)] = 6;
    auto with = [&](std::map<std::string, int> hot) {
      hot.insert(background.begin(), background.end());
      return hot;
    };
    const std::vector<Phase> phases = {
        {"A and B turn hot", with({{"A", 400}, {"B", 400}})},
        {"A's salt count changes; B is rerouted", with({{"A", 1200}, {"B", 2400}})},
        {"A cools and leaves the map", with({{"A", 20}, {"B", 2400}})},
        {"A turns hot again", with({{"A", 400}, {"B", 400}})},
    };
    std::map<std::string, Seen> seen;
    auto done = [&](size_t phase) {
      const Seen& a = seen["A"];
      const Seen& b = seen["B"];
      switch (phase) {
        case 0: return a.salted && b.salted;
        case 1: return a.salt_counts.size() >= 2 && b.rerouted;
        case 2: return a.left;
        default: return a.hot_again;
      }
    };
    HttpClient client(app_->http_port());
    HttpClient watcher(app_->http_port());
    std::mt19937 rng(7);
    std::map<std::string, double> owed;
    auto next = std::chrono::steady_clock::now();
    for (size_t p = 0; p < phases.size(); ++p) {
      const Phase& phase = phases[p];
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (!done(p)) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "phase never done: " << phase.what;
        std::vector<std::string> keys;
        for (const auto& [key, rate] : phase.rates) {
          owed[key] += rate * std::chrono::duration<double>(kStep).count();
          for (; owed[key] >= 1; owed[key] -= 1) keys.push_back(key);
        }
        std::shuffle(keys.begin(), keys.end(), rng);
        std::string body = R"({"records":[)";
        for (size_t i = 0; i < keys.size(); ++i) {
          const std::string value = absl::StrCat(keys[i], "#", sent_[keys[i]]++);
          absl::StrAppend(&body, i ? "," : "", R"({"key":")", absl::Base64Escape(keys[i]),
                          R"(","value":")", absl::Base64Escape(value), R"("})");
        }
        body += "]}";
        total_ += static_cast<int64_t>(keys.size());
        HttpResult r = client.Post("/topics/orders", body, "application/vnd.kafka.binary.v2+json");
        ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
        for (const auto& o : r.Json().at("offsets").as_array()) {
          ASSERT_TRUE(o.at("error_code").is_null()) << boost::json::serialize(o);
        }
        // What the map shows now.
        HttpResult map = watcher.Get("/saltmap");
        ASSERT_EQ(map.status, 200);
        std::set<std::string> present;
        if (const auto* orders = map.Json().at("topics").as_object().if_contains("orders")) {
          for (const auto& k : orders->at("keys").as_array()) {
            const std::string key(k.at("key").as_string());
            const std::string action(k.at("action").as_string());
            Seen& s = seen[key];
            present.insert(key);
            if (action == "cooled") {
              s.cooled = true;
              continue;
            }
            if (s.left) s.hot_again = true;
            (action == "rerouted" ? s.rerouted : s.salted) = true;
            s.salt_counts.insert(static_cast<int>(k.at("salts").to_number<int64_t>()));
          }
        }
        for (auto& [key, s] : seen) s.left |= s.cooled && !present.contains(key);
        next += kStep;
        std::this_thread::sleep_until(next);
      }
    }
    // A layout's records go out only once the map naming its epoch is on the control topic:
    // the reader finds every map it needs there.
  }

  static App* app_;
  static std::map<std::string, int64_t> sent_;
  static int64_t total_;
};

App* ConsumerRealKafkaTest::app_ = nullptr;
std::map<std::string, int64_t> ConsumerRealKafkaTest::sent_;
int64_t ConsumerRealKafkaTest::total_ = 0;

TEST_F(ConsumerRealKafkaTest, OrderedReaderRestoresEveryKeysProducerOrder) {
  SaltConsumerOptions options;
  options.bootstrap_servers = RealKafka::Get().bootstrap();
  options.topic = "orders";
  options.reassembly.max_wait = std::chrono::seconds(60);  // no release out of proven order
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  ASSERT_NE(consumer, nullptr) << error;

  std::map<std::string, std::vector<std::string>> released;
  int64_t count = 0, from_hot_topic = 0, salted = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (count < total_ && std::chrono::steady_clock::now() < deadline) {
    for (ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      ASSERT_TRUE(r.key.has_value());
      ASSERT_FALSE(r.forced) << *r.record.value;
      released[*r.key].push_back(*r.record.value);
      ++count;
      if (r.record.topic == "orders.hot") ++from_hot_topic;
      if (r.salted) ++salted;
    }
  }
  ReassemblerStats stats = consumer->stats();
  EXPECT_EQ(count, total_);
  EXPECT_EQ(stats.held, 0u);
  EXPECT_EQ(stats.duplicates, 0u);
  EXPECT_EQ(stats.forced_by_timeout + stats.forced_by_buffer, 0u);
  for (const auto& [key, n] : sent_) {
    const std::vector<std::string>& got = released[key];
    ASSERT_EQ(static_cast<int64_t>(got.size()), n) << key;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[i], absl::StrCat(key, "#", i)) << "key " << key << " out of order at " << i;
    }
  }

  // What the run went through, as the map the reader followed tells it.
  const SaltMapHistory& map = consumer->salt_map();
  std::set<int> a_salts;
  bool a_cooled = false, a_hot_again = false, b_rerouted = false;
  for (const KeyLayout* l : map.Layouts("orders", "A")) {
    if (l->action == "salted") a_salts.insert(static_cast<int>(l->partitions.size()));
    if (l->action == "cooled") a_cooled = true;
    if (a_cooled && l->action != "cooled" && l->since_seq == 0) a_hot_again = true;
  }
  for (const KeyLayout* l : map.Layouts("orders", "B")) b_rerouted |= l->action == "rerouted";
  EXPECT_GE(a_salts.size(), 2u) << "A's salt count never changed";
  EXPECT_TRUE(a_cooled) << "A never cooled";
  EXPECT_TRUE(a_hot_again) << "A did not turn hot again after leaving the map";
  EXPECT_TRUE(b_rerouted) << "B was never rerouted";
  EXPECT_GT(from_hot_topic, 0);
  std::printf("ordered reader: %lld records, %lld salted, %lld from orders.hot, %zu layouts\n",
              static_cast<long long>(count), static_cast<long long>(salted),
              static_cast<long long>(from_hot_topic), map.size());
}

// An ordered reader that starts from the end finds the hot topic only once the proxy has made
// it and written to it: it must read that topic from the reader's start, not from its end.
TEST_F(ConsumerRealKafkaTest, FromTheEndAHotTopicMadeLaterIsReadFromTheReadersStart) {
  RealKafka& kafka = RealKafka::Get();
  ASSERT_THAT(kafka.CreateTopic("late", 2), IsOk());
  SaltConsumerOptions options;
  options.bootstrap_servers = kafka.bootstrap();
  options.topic = "late";
  options.from_beginning = false;
  options.metadata_refresh = std::chrono::seconds(5);  // finds late.hot well after its records
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  ASSERT_NE(consumer, nullptr) << error;
  consumer->Poll(std::chrono::milliseconds(200));
  ASSERT_THAT(kafka.CreateTopic("late.hot", 1), IsOk());
  HttpClient client(app_->http_port());
  std::string body = R"({"records":[)";
  for (int i = 0; i < 5; ++i) {
    absl::StrAppend(&body, i ? "," : "", R"({"key":"k","value":")", i, R"("})");
  }
  body += "]}";
  // The proxy may not know the topic yet in its first moments: a 404 produces nothing, so ask
  // again until it does.
  HttpResult r = client.Post("/topics/late.hot", body);
  for (int i = 0; i < 100 && r.status == 404; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r = client.Post("/topics/late.hot", body);
  }
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<std::string> values;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (values.size() < 5 && std::chrono::steady_clock::now() < deadline) {
    for (ReleasedRecord& released : consumer->Poll(std::chrono::milliseconds(100))) {
      if (released.record.topic == "late.hot") values.push_back(*released.record.value);
    }
  }
  EXPECT_EQ(values, (std::vector<std::string>{"\"0\"", "\"1\"", "\"2\"", "\"3\"", "\"4\""}))
      << "errors: " << absl::StrJoin(consumer->TakeErrors(), "; ");
}

TEST_F(ConsumerRealKafkaTest, ThreeUnorderedReadersInAGroupMapEveryKeyBackAndLoseNothing) {
  std::vector<std::unique_ptr<SaltConsumer>> readers;
  const std::string group = absl::StrCat("e2e-unordered-", std::random_device{}());
  for (int i = 0; i < 3; ++i) {
    SaltConsumerOptions options;
    options.bootstrap_servers = RealKafka::Get().bootstrap();
    options.topic = "orders";
    options.mode = SaltConsumer::Mode::kUnordered;
    options.group_id = group;
    std::string error;
    readers.push_back(SaltConsumer::Create(options, &error));
    ASSERT_NE(readers.back(), nullptr) << error;
  }
  std::set<std::string> seen;
  std::vector<int64_t> per_reader(readers.size(), 0);
  int64_t deliveries = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (static_cast<int64_t>(seen.size()) < total_ &&
         std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < readers.size(); ++i) {
      for (ReleasedRecord& r : readers[i]->Poll(std::chrono::milliseconds(20))) {
        ASSERT_TRUE(r.key.has_value());
        // The value names the key it was produced under: the key was mapped back.
        ASSERT_EQ(r.record.value->substr(0, r.record.value->find('#')), *r.key);
        seen.insert(*r.record.value);
        ++per_reader[i];
        ++deliveries;
      }
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), total_) << "records lost";
  int readers_with_records = 0;
  for (int64_t n : per_reader) readers_with_records += n > 0;
  EXPECT_EQ(readers_with_records, 3) << "the group did not share the partitions";
  // At-least-once: a rebalance may hand a partition over before its offsets were committed.
  std::printf("unordered group: %lld distinct records, %lld deliveries (%lld, %lld, %lld)\n",
              static_cast<long long>(seen.size()), static_cast<long long>(deliveries),
              static_cast<long long>(per_reader[0]), static_cast<long long>(per_reader[1]),
              static_cast<long long>(per_reader[2]));
  for (auto& r : readers) r->Close();
}

// Runs `command`, returns its stdout and exit status.
std::pair<std::string, int> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {"", -1};
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

const std::string kConsume = std::string(SALTPROXY_BINARY_DIR) + "/proxy/consume/saltproxy-consume";

TEST_F(ConsumerRealKafkaTest, CommandLineConsumerWritesEveryKeyInProducerOrder) {
  auto [out, status] = RunCommand(absl::StrCat(kConsume, " --bootstrap-servers ",
                                               RealKafka::Get().bootstrap(),
                                               " --topic orders --count ", total_,
                                               " --idle-exit 60000 2>/dev/null"));
  ASSERT_EQ(status, 0);
  std::map<std::string, int64_t> next;
  int64_t lines = 0, from_hot = 0;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "unterminated line";
    boost::json::object line = boost::json::parse(out.substr(start, end - start)).as_object();
    start = end + 1;
    ++lines;
    const std::string key(line.at("key").as_string());
    const std::string value(line.at("value").as_string());
    ASSERT_EQ(line.at("topic").as_string(), "orders");
    ASSERT_FALSE(line.contains("forced"));
    if (line.contains("from")) {
      EXPECT_EQ(line.at("from").as_string(), "orders.hot");
      EXPECT_TRUE(line.at("salted").as_bool());
      ++from_hot;
    }
    ASSERT_EQ(value, absl::StrCat(key, "#", next[key]++)) << "line " << lines;
  }
  EXPECT_EQ(lines, total_);
  EXPECT_GT(from_hot, 0);
  for (const auto& [key, n] : sent_) EXPECT_EQ(next[key], n) << key;
}

TEST(ConsumeCliTest, BadArgumentsAreRefusedWithUsage) {
  EXPECT_EQ(RunCommand(kConsume + " --topic t 2>/dev/null").second, 2);  // no servers
  EXPECT_EQ(RunCommand(kConsume + " -b h:1 --topic t --key-range 3 2>/dev/null").second, 2);
  EXPECT_EQ(RunCommand(kConsume + " -b h:1 --topic t --key-range 4/4 2>/dev/null").second, 2);
  EXPECT_EQ(RunCommand(kConsume + " -b h:1 --topic t --bogus 2>/dev/null").second, 2);
  auto [usage, status] = RunCommand(kConsume + " --help");
  EXPECT_EQ(status, 0);
  EXPECT_NE(usage.find("--key-range"), std::string::npos);
}

}  // namespace
}  // namespace saltproxy
