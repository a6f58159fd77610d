// Reassembly beside a plain consumer, in one run, on a real broker (tests/kafka/broker.sh):
//
//   cmake --build build --target consumer_benchmark && build/benchmarks/consumer/consumer_benchmark
//
// 1. Live: a producer sends a Zipf stream (exponent 1.2, 10,000 keys, 16 partitions) through
//    saltproxy at a fixed rate while its hot keys are salted and rerouted; a plain librdkafka
//    consumer and the ordered SaltConsumer read it at the same time. Latency = release time -
//    record timestamp, so the difference is what reassembly adds (waiting for a record's
//    predecessors on other partitions, and for the salt map).
// 2. Catch-up: each reader reads the whole topic (and its hot topic) from the beginning, twice,
//    alternating, and the better run counts: records/s.
//
// Last recorded table (2026-11-29, 2 cores shared by broker, proxy, producer and readers):
//   | reader | catch-up records/s | live p50 ms | live p99 ms |
//   | plain librdkafka consumer | 335307 | 9 | 34 |
//   | ordered SaltConsumer | 200611 | 11 | 43 |
//   | ratio / added | 0.60 | +2 | +9 |
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "saltproxy/consumer.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/zipf.h"

namespace saltproxy {
namespace {

using Clock = std::chrono::steady_clock;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::RealKafka;

constexpr int kPartitions = 16;
constexpr int kRate = 20000;  // records/s during the live phase
constexpr int kSeconds = 10;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Reading {
  int64_t records = 0;
  double seconds = 0;
  std::vector<int64_t> latencies_ms;
};

// A plain consumer of every partition of `topics`, from the beginning, until `expected` records.
Reading PlainRead(const std::vector<std::string>& topics, int64_t expected, bool live) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", RealKafka::Get().bootstrap().c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", "bench-plain", err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(32);
  for (const std::string& t : topics) {
    int partitions = t.ends_with(".hot") ? 4 : kPartitions;
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(list, t.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  Reading reading;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + std::chrono::seconds(120);
  while (reading.records < expected && Clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (!m->err) {
      ++reading.records;
      // What a consumer does with a record at least: look at its key and value.
      ConsumerRecord r;
      if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value = std::string(static_cast<const char*>(m->payload), m->len);
      if (live) {
        rd_kafka_timestamp_type_t type;
        reading.latencies_ms.push_back(NowMs() - rd_kafka_message_timestamp(m, &type));
      }
    }
    rd_kafka_message_destroy(m);
  }
  reading.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return reading;
}

Reading SaltRead(const std::string& topic, int64_t expected, bool live) {
  SaltConsumerOptions options;
  options.bootstrap_servers = RealKafka::Get().bootstrap();
  options.topic = topic;
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  Reading reading;
  if (!consumer) {
    std::fprintf(stderr, "SaltConsumer: %s\n", error.c_str());
    return reading;
  }
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + std::chrono::seconds(120);
  while (reading.records < expected && Clock::now() < deadline) {
    for (const ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      ++reading.records;
      if (live) reading.latencies_ms.push_back(NowMs() - r.record.timestamp_ms);
    }
  }
  reading.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ReassemblerStats s = consumer->stats();
  std::fprintf(stderr, "ordered reader: in order %llu, forced %llu, duplicates %llu\n",
               static_cast<unsigned long long>(s.released_in_order),
               static_cast<unsigned long long>(s.forced_by_timeout + s.forced_by_buffer),
               static_cast<unsigned long long>(s.duplicates));
  consumer->Close();
  return reading;
}

int64_t Percentile(std::vector<int64_t> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

int Run() {
  RealKafka& kafka = RealKafka::Get();
  if (kafka.bootstrap().empty()) return 1;
  if (!kafka.CreateTopic("bench", kPartitions).ok()) return 1;
  absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: bench
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 16777216, max_records_per_request: 100000}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), R"(
detection: {half_life: 1s, hold_down: 10m}
salting:
  tick: 50ms
  defaults: {strategy: salt_then_reroute, max_salts: 8, hot_topic_partitions: 4}
)"));
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
  if (!app.ok()) return 1;

  // Live phase: produce at kRate for kSeconds while both readers follow.
  const int64_t total = static_cast<int64_t>(kRate) * kSeconds;
  Reading plain_live, salt_live;
  std::thread plain_thread([&] { plain_live = PlainRead({"bench", "bench.hot"}, total, true); });
  std::thread salt_thread([&] { salt_live = SaltRead("bench", total, true); });
  {
    HttpClient client((*app)->http_port());
    saltproxy::testing::Zipf zipf(10000, 1.2, 11);
    constexpr int kBatch = kRate / 20;  // every 50 ms
    Clock::time_point next = Clock::now();
    for (int64_t sent = 0; sent < total; sent += kBatch) {
      std::string body = R"({"records":[)";
      for (int i = 0; i < kBatch; ++i) {
        absl::StrAppend(&body, i ? "," : "", R"({"key":")",
                        absl::Base64Escape(absl::StrCat("key-", zipf.Next())), R"(","value":")",
                        absl::Base64Escape(absl::StrCat(sent + i)), R"("})");
      }
      body += "]}";
      auto r = client.Post("/topics/bench", body, "application/vnd.kafka.binary.v2+json");
      if (r.status != 200) {
        std::fprintf(stderr, "produce: %d %s\n", r.status, r.body.substr(0, 200).c_str());
        return 1;
      }
      next += std::chrono::milliseconds(50);
      std::this_thread::sleep_until(next);
    }
  }
  plain_thread.join();
  salt_thread.join();

  // Catch-up phase: whole topic from the beginning, alternating, best of two.
  Reading plain_best, salt_best;
  for (int round = 0; round < 2; ++round) {
    Reading p = PlainRead({"bench", "bench.hot"}, total, false);
    Reading s = SaltRead("bench", total, false);
    if (p.records == total && (plain_best.seconds == 0 || p.seconds < plain_best.seconds)) plain_best = p;
    if (s.records == total && (salt_best.seconds == 0 || s.seconds < salt_best.seconds)) salt_best = s;
  }
  (void)(*app)->Shutdown();
  kafka.Stop();

  auto rate = [](const Reading& r) { return r.seconds > 0 ? r.records / r.seconds : 0.0; };
  std::printf("| reader | catch-up records/s | live p50 ms | live p99 ms | live records |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  std::printf("| plain librdkafka consumer | %.0f | %lld | %lld | %lld |\n", rate(plain_best),
              static_cast<long long>(Percentile(plain_live.latencies_ms, 0.5)),
              static_cast<long long>(Percentile(plain_live.latencies_ms, 0.99)),
              static_cast<long long>(plain_live.records));
  std::printf("| ordered SaltConsumer | %.0f | %lld | %lld | %lld |\n", rate(salt_best),
              static_cast<long long>(Percentile(salt_live.latencies_ms, 0.5)),
              static_cast<long long>(Percentile(salt_live.latencies_ms, 0.99)),
              static_cast<long long>(salt_live.records));
  std::printf("| ratio / added | %.2f | %+lld | %+lld | |\n",
              rate(plain_best) > 0 ? rate(salt_best) / rate(plain_best) : 0.0,
              static_cast<long long>(Percentile(salt_live.latencies_ms, 0.5) -
                                     Percentile(plain_live.latencies_ms, 0.5)),
              static_cast<long long>(Percentile(salt_live.latencies_ms, 0.99) -
                                     Percentile(plain_live.latencies_ms, 0.99)));
  return plain_best.records == total && salt_best.records == total ? 0 : 1;
}

}  // namespace
}  // namespace saltproxy

int main() { return saltproxy::Run(); }
