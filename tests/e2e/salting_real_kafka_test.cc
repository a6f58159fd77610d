// Issue 6 end to end: a Zipf stream (exponent 1.2, 100,000 keys) through saltproxy's REST API
// into a real 16-partition topic. Read back from the broker: the hottest keys were salted, the
// partitions are even (max/mean at most 1.15), every record of a key that was not salted sits
// on its Java default partition, and the compacted control topic holds the map /saltmap serves.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "proxy/app.h"
#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/zipf.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Zipf;

constexpr int kPartitions = 16;
constexpr int kRecords = 240000;
constexpr int kBatch = 2000;

// The salt map without what moves at every tick (the rates), for comparing two copies.
boost::json::value Layout(boost::json::value map) {
  for (auto& [topic, t] : map.at("topics").as_object()) {
    for (auto& k : t.at("keys").as_array()) k.as_object().erase("rate_rps");
  }
  return map;
}

TEST(SaltingRealKafkaTest, ZipfStreamIsEvenedOutAndTheControlTopicMatchesTheMap) {
  RealKafka& kafka = RealKafka::Get();
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_THAT(kafka.CreateTopic("zipf", kPartitions), IsOk());
  absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: e2e-salting
log_level: warn
http: {listen: 127.0.0.1:0, max_body_bytes: 4194304}
upstream:
  bootstrap_servers: )", kafka.bootstrap(), R"(
detection: {half_life: 250ms, hold_down: 10m}
salting: {tick: 50ms, cooled_retention: 10m}
)"));
  ASSERT_THAT(config, IsOk());
  absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
  ASSERT_THAT(app, IsOk());

  Zipf zipf(100000, 1.2, 17);
  HttpClient client((*app)->http_port());
  for (int sent = 0; sent < kRecords; sent += kBatch) {
    std::string body = R"({"records":[)";
    for (int i = 0; i < kBatch; ++i) {
      body += absl::StrCat(i ? "," : "", R"({"key":")",
                           absl::Base64Escape(absl::StrCat("key-", zipf.Next())), R"(","value":")",
                           absl::Base64Escape(absl::StrCat(sent + i)), R"("})");
    }
    body += "]}";
    HttpResult r = client.Post("/topics/zipf", body, "application/vnd.kafka.binary.v2+json");
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
  }

  // The hottest keys were salted.
  HttpResult map = client.Get("/saltmap");
  ASSERT_EQ(map.status, 200);
  boost::json::value saltmap = map.Json();
  const auto& keys = saltmap.at("topics").at("zipf").at("keys").as_array();
  absl::flat_hash_map<std::string, int> salted;
  for (const auto& k : keys) salted[std::string(k.at("key").as_string())] = k.at("salts").as_int64();
  EXPECT_TRUE(salted.contains("key-0")) << "the hottest key was not salted";
  EXPECT_TRUE(salted.contains("key-1"));
  EXPECT_GE(salted["key-0"], 2);

  // Per-partition counts from the broker: even.
  absl::StatusOr<std::vector<int64_t>> ends = kafka.EndOffsets("zipf");
  ASSERT_THAT(ends, IsOk());
  int64_t total = 0, max = 0;
  for (int64_t e : *ends) {
    total += e;
    max = std::max(max, e);
  }
  ASSERT_EQ(total, kRecords);
  const double max_over_mean = static_cast<double>(max) * kPartitions / total;
  EXPECT_LE(max_over_mean, 1.15);
  std::printf("max/mean partition load from the broker: %.3f; %zu keys salted\n", max_over_mean,
              salted.size());

  // Every record without saltproxy headers is on its key's Java default partition; every
  // stamped record carries its original key and sits on one of that key's salt partitions.
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka.ConsumeAll("zipf", kRecords, absl::Minutes(3));
  ASSERT_THAT(records, IsOk());
  int stamped = 0;
  for (const ConsumedRecord& r : *records) {
    std::optional<std::string> original = r.Header(kHeaderOriginalKey);
    if (!original) {
      ASSERT_EQ(r.partition, DefaultPartition(*r.key, kPartitions)) << *r.key;
      continue;
    }
    ++stamped;
    ASSERT_EQ(UnsaltedKey(*r.key), *original);
    ASSERT_TRUE(r.Header(kHeaderSequence).has_value());
    ASSERT_TRUE(r.Header(kHeaderEpoch).has_value());
  }
  EXPECT_GT(stamped, kRecords / 4);

  // The control topic's latest map is the one /saltmap serves (the rates aside).
  boost::json::value published;
  for (int attempt = 0; attempt < 50; ++attempt) {
    absl::StatusOr<std::vector<ConsumedRecord>> control =
        kafka.ConsumeAll("_saltproxy_saltmap", -1, absl::Seconds(20));
    ASSERT_THAT(control, IsOk());
    boost::json::value now = client.Get("/saltmap").Json();
    for (const ConsumedRecord& r : *control) {
      if (r.key == "saltmap/e2e-salting") published = boost::json::parse(*r.value);
    }
    if (!published.is_null() && published.at("epoch") == now.at("epoch")) {
      EXPECT_EQ(Layout(published), Layout(now));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(published.is_null()) << "nothing published to the control topic";
  (*app)->Shutdown().IgnoreError();
}

}  // namespace
}  // namespace saltproxy
