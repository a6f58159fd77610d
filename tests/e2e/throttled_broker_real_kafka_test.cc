// A real broker alive but slower than the load: a client quota (producer_byte_rate, 300 kB/s for
// every client id, set through the AlterClientQuotas API) against 16 HTTP clients that each keep
// a 150-record (155 kB) request in flight, about 2.5 MB together, 8 s of the broker's rate; and
// a raw Kafka-protocol client producing one record a request beside them. Every record is
// unique. saltproxy runs with its defaults (max_queue_delay 5 s, delivery_timeout 30 s).
//
// What must hold, in counts, not timings:
//   - every HTTP request is answered: 200 (its records written, each where the answer says) or
//     429 with 42901 and Retry-After (none of its records written); no record fails upstream
//     (none waited past delivery_timeout);
//   - saltproxy pushed back: some requests got 429, the Kafka client NOT_ENOUGH_REPLICAS with a
//     throttle time, and saltproxy_records_refused_total{reason="upstream_slow"} counts exactly
//     their records;
//   - /readyz stays 200 throughout: the cluster is slow, not gone.
// The answer times are printed, not asserted. A quota lets the first few megabytes through at
// once and only then mutes the connection to pay for them, so what is admitted in the first
// seconds, before anything says the broker is slow, waits longest (up to 13-16 s here; then
// about the bound). Before: no 429 at all, answers after up to 34 s, records timed out
// upstream, and /readyz turned 503 while the broker muted saltproxy's producing connections.
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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
using ::saltproxy::testing::WaitUntil;

constexpr char kTopic[] = "throttled-e2e";
constexpr char kJson[] = "application/vnd.kafka.json.v2+json";
constexpr double kProducerByteRate = 300'000;
constexpr int kHttpClients = 16;
constexpr int kRecordsPerRequest = 150;
constexpr int kValueBytes = 1000;
constexpr int kWrittenRequestsPerClient = 3;  // each client goes on until this many 200s

// One Kafka request and its answer, after the answer's size: `payload` holds the request
// header and body.
std::string RoundTrip(boost::asio::ip::tcp::socket& s, const std::string& payload) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
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

// AlterClientQuotas v0 (API key 49) with the default client-id entity: `producer_byte_rate`
// for every client of the broker. librdkafka 2.0 has no client-quota API; the request is small.
absl::Status SetDefaultProducerByteRate(const std::string& bootstrap, double rate) {
  const size_t colon = bootstrap.rfind(':');
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address(bootstrap.substr(0, colon)),
             static_cast<uint16_t>(std::stoi(bootstrap.substr(colon + 1)))},
            ec);
  if (ec) return absl::UnavailableError(ec.message());
  kafka::WireWriter w;
  w.Int16(49);  // AlterClientQuotas
  w.Int16(0);
  w.Int32(1);   // correlation id
  w.NullableString(std::string("throttled-e2e"), false);
  w.ArrayLength(1, false);  // entries
  w.ArrayLength(1, false);  // entity
  w.String("client-id", false);
  w.NullableString(std::nullopt, false);  // null name: the default entity
  w.ArrayLength(1, false);                // ops
  w.String("producer_byte_rate", false);
  w.Int64(std::bit_cast<int64_t>(rate));  // FLOAT64
  w.Bool(false);                          // remove
  w.Bool(false);                          // validate_only
  const std::string bytes = RoundTrip(s, w.data());
  kafka::WireReader r(bytes);
  r.Int32();  // correlation id
  r.Int32();  // throttle_time_ms
  if (r.ArrayLength(false) != 1) return absl::InternalError("AlterClientQuotas: no entry");
  const int16_t error = r.Int16();
  const std::optional<std::string> message = r.NullableString(false);
  if (!r.ok() || error != 0) {
    return absl::InternalError(
        absl::StrCat("AlterClientQuotas: error ", error, " ", message.value_or("")));
  }
  return absl::OkStatus();
}

// What the clients were told, by record id.
struct Told {
  std::mutex mu;
  std::map<std::string, std::pair<int32_t, int64_t>> written;  // HTTP: id → (partition, offset)
  std::set<std::string> written_kafka;
  std::set<std::string> refused;  // 429 or NOT_ENOUGH_REPLICAS: must not be on the broker
  int64_t refused_http_records = 0;
  int64_t refused_kafka_records = 0;
  int http_200 = 0, http_429 = 0, http_other = 0;
  int kafka_throttled = 0;  // refusals that carried a throttle time
  std::vector<std::string> problems;
  std::vector<absl::Duration> took_200;  // for the figures printed, not asserted
  absl::Duration slowest_429;
};

class ThrottledBrokerRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    ASSERT_THAT(kafka_->CreateTopic(kTopic, 4), IsOk());
    ASSERT_THAT(SetDefaultProducerByteRate(kafka_->bootstrap(), kProducerByteRate), IsOk());
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
    // Ready (the cluster answered a metadata request, the topic is known) before the load.
    ASSERT_TRUE(
        WaitUntil([&] { return HttpClient(app_->http_port()).Get("/readyz").status == 200; }));
  }
  void TearDown() override {
    if (app_) app_->Shutdown().IgnoreError();
  }
  double Metric(const std::string& series) {
    const std::string text = HttpClient(app_->http_port()).Get("/metrics").body;
    const size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
  }

  // Keeps one request in flight until kWrittenRequestsPerClient were written and the Kafka
  // client was refused once (the load goes on until then); after a 429 it waits what
  // Retry-After says, as a client should.
  void HttpProducer(int client, Told& told) {
    HttpClient http(app_->http_port());
    const std::string padding(kValueBytes, 'x');
    int written = 0;
    const absl::Time give_up = absl::Now() + absl::Minutes(2);  // a bound on the test, no more
    auto more = [&] {
      std::lock_guard<std::mutex> lock(told.mu);
      return (written < kWrittenRequestsPerClient || told.kafka_throttled == 0) &&
             absl::Now() < give_up;
    };
    for (int attempt = 0; more(); ++attempt) {
      std::vector<std::string> ids;
      std::string body = R"({"records":[)";
      for (int i = 0; i < kRecordsPerRequest; ++i) {
        ids.push_back(absl::StrCat("h", client, "-", attempt, "-", i));
        absl::StrAppend(&body, i ? "," : "", R"({"key":")", ids.back(), R"(","value":")",
                        padding, R"("})");
      }
      body += "]}";
      const absl::Time sent = absl::Now();
      const HttpResult r = http.Post(absl::StrCat("/topics/", kTopic), body, kJson);
      const absl::Duration took = absl::Now() - sent;
      int retry_after = 0;
      {
        std::lock_guard<std::mutex> lock(told.mu);
        Note(r, ids, took, told, &written, &retry_after);
      }
      std::this_thread::sleep_for(std::chrono::seconds(retry_after));
    }
  }
  // Notes what one HTTP answer said (told.mu held); `retry_after`: what a 429 asks to wait.
  static void Note(const HttpResult& r, const std::vector<std::string>& ids, absl::Duration took,
                   Told& told, int* written, int* retry_after) {
    if (r.status == 429) {
      ++told.http_429;
      told.slowest_429 = std::max(told.slowest_429, took);
      told.refused_http_records += static_cast<int64_t>(ids.size());
      told.refused.insert(ids.begin(), ids.end());
      if (r.Json().at("error_code").as_int64() != 42901) {
        told.problems.push_back(absl::StrCat("429 with ", r.body));
      }
      const auto header = r.headers.find("Retry-After");
      if (header == r.headers.end() || !absl::SimpleAtoi(header->second, retry_after) ||
          *retry_after < 1) {
        told.problems.push_back("429 without a Retry-After of a second or more");
        *retry_after = 1;
      }
      return;
    }
    if (r.status != 200) {
      ++told.http_other;
      told.problems.push_back(absl::StrCat("HTTP ", r.status, " ", r.error, " ", r.body));
      return;
    }
    ++told.http_200;
    ++*written;
    told.took_200.push_back(took);
    const boost::json::array& offsets = r.Json().at("offsets").as_array();
    if (offsets.size() != ids.size()) {
      told.problems.push_back(absl::StrCat("200 with ", offsets.size(), " offsets"));
      return;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      const boost::json::object& o = offsets[i].as_object();
      if (!o.at("error_code").is_null()) {
        told.problems.push_back(absl::StrCat(ids[i], " failed: ", boost::json::serialize(o)));
        continue;
      }
      told.written[ids[i]] = {static_cast<int32_t>(o.at("partition").as_int64()),
                              o.at("offset").as_int64()};
    }
  }

  // Produce v7, acks=all, one keyless record to partition 0 a request, until `stop`; after a
  // refusal it waits the answer's throttle time, as a KIP-219 client does.
  void KafkaProducer(const std::atomic<bool>& stop, Told& told) {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s(ioc);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), app_->kafka_port()});
    for (int32_t n = 0; !stop.load(); ++n) {
      const std::string id = absl::StrCat("k-", n);
      kafka::RecordBatch batch;
      kafka::BatchRecord record;
      record.value = id;
      batch.records.push_back(record);
      kafka::WireWriter w;
      w.Int16(kafka::kProduce);
      w.Int16(7);
      w.Int32(n);
      w.NullableString(std::string("throttled-e2e"), false);
      w.NullableString(std::nullopt, false);
      w.Int16(-1);
      w.Int32(30000);
      w.ArrayLength(1, false);
      w.String(kTopic, false);
      w.ArrayLength(1, false);
      w.Int32(0);
      w.NullableBytes(kafka::EncodeRecordBatch(batch, kafka::Compression::kNone), false);
      const std::string bytes = RoundTrip(s, w.data());
      kafka::WireReader r(bytes);
      r.Int32();              // correlation id
      r.ArrayLength(false);   // topics
      r.String(false);
      r.ArrayLength(false);   // partitions
      r.Int32();              // index
      const int16_t error = r.Int16();
      r.Int64();              // base offset
      r.Int64();              // log append time
      r.Int64();              // log start offset
      const int32_t throttle_ms = r.Int32();
      int32_t pause_ms = 0;
      {
        std::lock_guard<std::mutex> lock(told.mu);
        if (!r.ok()) {
          told.problems.push_back("an undecodable Produce answer");
        } else if (error == kafka::kNone) {
          told.written_kafka.insert(id);
        } else if (error == kafka::kNotEnoughReplicas) {
          told.refused.insert(id);
          ++told.refused_kafka_records;
          if (throttle_ms > 0) ++told.kafka_throttled;
          pause_ms = std::max(throttle_ms, 100);  // else retry.backoff.ms, as clients do
        } else {
          told.problems.push_back(absl::StrCat("Kafka Produce error ", error));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
  }

  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
};

TEST_F(ThrottledBrokerRealKafkaTest, SlowBrokerIsPushedBackWithinTheBoundAndStaysReady) {
  Told told;
  std::atomic<bool> stop{false};
  std::atomic<int> readyz_checks{0};
  std::atomic<int> readyz_not_200{0};
  std::thread readiness([&] {
    HttpClient http(app_->http_port());
    while (!stop.load()) {
      if (http.Get("/readyz").status != 200) readyz_not_200.fetch_add(1);
      readyz_checks.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::thread kafka_client([&] { KafkaProducer(stop, told); });
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kHttpClients; ++c) clients.emplace_back([&, c] { HttpProducer(c, told); });
  for (std::thread& t : clients) t.join();
  const absl::Duration load = absl::Now() - start;
  stop = true;
  kafka_client.join();
  readiness.join();

  std::sort(told.took_200.begin(), told.took_200.end());
  auto percentile = [&](double p) {
    return told.took_200.empty()
               ? absl::ZeroDuration()
               : told.took_200[static_cast<size_t>(p * (told.took_200.size() - 1))];
  };
  std::cout << "load of " << absl::FormatDuration(load) << ": HTTP " << told.http_200 << " x 200 ("
            << told.written.size() << " records, answered in p50 "
            << absl::FormatDuration(percentile(0.5)) << ", p90 "
            << absl::FormatDuration(percentile(0.9)) << ", max "
            << absl::FormatDuration(percentile(1)) << "), " << told.http_429 << " x 429 ("
            << told.refused_http_records << " records, slowest answer "
            << absl::FormatDuration(told.slowest_429) << "); Kafka " << told.written_kafka.size()
            << " written, " << told.refused_kafka_records << " refused ("
            << told.kafka_throttled << " with a throttle time); /readyz " << readyz_checks.load()
            << " checks, " << readyz_not_200.load() << " not 200\n";

  for (const std::string& problem : told.problems) ADD_FAILURE() << problem;
  EXPECT_EQ(told.http_other, 0);
  EXPECT_GE(told.http_200, kHttpClients * kWrittenRequestsPerClient);
  // saltproxy pushed back, on both listeners, and counted exactly what it refused.
  EXPECT_GT(told.http_429, 0) << "the broker was slower than the load and nothing was refused";
  EXPECT_GT(told.kafka_throttled, 0);
  EXPECT_EQ(Metric("saltproxy_records_refused_total{reason=\"upstream_slow\"}"),
            static_cast<double>(told.refused_http_records + told.refused_kafka_records));
  EXPECT_EQ(Metric("saltproxy_records_refused_total{reason=\"upstream_unreachable\"}"), 0);
  EXPECT_EQ(Metric("saltproxy_records_failed_total{error=\"_MSG_TIMED_OUT\"}"), 0);
  // Slow, not gone.
  EXPECT_GT(readyz_checks.load(), 0);
  EXPECT_EQ(readyz_not_200.load(), 0);

  // The topic against what the clients were told: every written record once, where its answer
  // said; nothing refused.
  const int expected = static_cast<int>(told.written.size() + told.written_kafka.size());
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll(kTopic, expected, absl::Seconds(120));
  ASSERT_THAT(records, IsOk());
  std::map<std::string, int> seen;
  int misplaced = 0, refused_but_written = 0;
  for (const ConsumedRecord& r : *records) {
    // HTTP records: the key is the id as JSON text; Kafka records: the value is the id.
    std::string id = r.key ? r.key->substr(1, r.key->size() - 2) : r.value.value_or("");
    ++seen[id];
    if (told.refused.contains(id)) ++refused_but_written;
    auto it = told.written.find(id);
    if (it != told.written.end() && it->second != std::make_pair(r.partition, r.offset)) {
      ++misplaced;
    }
  }
  int missing = 0, duplicated = 0;
  for (const auto& [id, where] : told.written) {
    if (!seen.contains(id)) ++missing;
  }
  for (const std::string& id : told.written_kafka) {
    if (!seen.contains(id)) ++missing;
  }
  for (const auto& [id, count] : seen) {
    if (count > 1) ++duplicated;
  }
  EXPECT_EQ(static_cast<int>(records->size()), expected);
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(misplaced, 0);
  EXPECT_EQ(refused_but_written, 0);
}

}  // namespace
}  // namespace saltproxy
