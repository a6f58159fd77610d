#include "proxy/forward/upstream_stats.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proxy/metrics/metrics.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::testing::HasSubstr;

// One broker object as librdkafka's statistics have it (the fields UpstreamStats reads, among
// some it does not).
std::string Broker(const std::string& name, int64_t produce, int64_t txbytes, int64_t rtt_sum,
                   int64_t rtt_cnt, int64_t queue_sum, int64_t queue_cnt) {
  return absl::StrFormat(
      R"("%s": {"name": "%s", "nodeid": 1, "state": "UP", "tx": %d, "txbytes": %d,
         "req": {"Produce": %d, "Metadata": 3, "ApiVersion": 1},
         "int_latency": {"min": 1, "max": 9, "avg": 5, "sum": %d, "cnt": %d},
         "rtt": {"min": 1, "max": 9, "avg": 5, "sum": %d, "cnt": %d}})",
      name, name, produce + 4, txbytes, produce, queue_sum, queue_cnt, rtt_sum, rtt_cnt);
}

std::string Doc(const std::string& brokers) {
  return absl::StrCat(R"({"name": "saltproxy#producer-1", "type": "producer", "brokers": {)",
                      brokers, R"(}, "topics": {}})");
}

class UpstreamStatsTest : public ::testing::Test {
 protected:
  // The sample's value in the exposition, e.g. "saltproxy_upstream_produce_requests_total".
  double Value(const std::string& name) {
    const std::string text = metrics_.Serialize();
    size_t at = text.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name << " not in\n" << text;
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
  }
  Metrics metrics_;
  UpstreamStats stats_{metrics_.registry()};
};

TEST_F(UpstreamStatsTest, CountersMoveByWhatGrewSinceEachProducersLastDocument) {
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 10, 5000, 0, 0, 0, 0))), IsOk());
  ASSERT_THAT(stats_.Apply(1, Doc(Broker("b1:9092/1", 7, 3000, 0, 0, 0, 0))), IsOk());
  EXPECT_EQ(Value("saltproxy_upstream_produce_requests_total"), 17);
  EXPECT_EQ(Value("saltproxy_upstream_sent_bytes_total"), 8000);
  // Cumulative counters: the next document of producer 0 adds only what grew.
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 15, 5500, 0, 0, 0, 0) + "," +
                                  Broker("b2:9092/2", 2, 100, 0, 0, 0, 0))),
              IsOk());
  EXPECT_EQ(Value("saltproxy_upstream_produce_requests_total"), 24);
  EXPECT_EQ(Value("saltproxy_upstream_sent_bytes_total"), 8600);
}

// A broker object librdkafka made anew counts from zero again: the metric never moves backwards,
// and what the new object counted is added.
TEST_F(UpstreamStatsTest, ACounterThatStartsAgainAddsWhatItCountedSince) {
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 10, 5000, 0, 0, 0, 0))), IsOk());
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 3, 100, 0, 0, 0, 0))), IsOk());
  EXPECT_EQ(Value("saltproxy_upstream_produce_requests_total"), 13);
  EXPECT_EQ(Value("saltproxy_upstream_sent_bytes_total"), 5100);
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 5, 300, 0, 0, 0, 0))), IsOk());
  EXPECT_EQ(Value("saltproxy_upstream_produce_requests_total"), 15);
  EXPECT_EQ(Value("saltproxy_upstream_sent_bytes_total"), 5300);
}

TEST_F(UpstreamStatsTest, LatenciesAreWeightedMeansOfTheLatestWindows) {
  // Producer 0: 3 requests of 1 ms each; producer 1: 1 request of 5 ms. Mean: 2 ms.
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 3, 0, 3000, 3, 600, 3))), IsOk());
  ASSERT_THAT(stats_.Apply(1, Doc(Broker("b1:9092/1", 1, 0, 5000, 1, 200, 1))), IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.002);
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_queue_seconds"), 0.0002);
  // Producer 0's next window replaces its last one.
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 4, 0, 1000, 1, 200, 1))), IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.003);
  // A producer whose window is empty no longer weighs: producer 1's 5 ms is the mean.
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 4, 0, 0, 0, 0, 0))), IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.005);
  // No requests anywhere: the last mean stands rather than reading as zero latency.
  ASSERT_THAT(stats_.Apply(1, Doc(Broker("b1:9092/1", 1, 0, 0, 0, 0, 0))), IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.005);
}

TEST_F(UpstreamStatsTest, AConnectionGoneFromTheDocumentNoLongerWeighs) {
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 1, 0, 1000, 1, 0, 0) + "," +
                                  Broker("b2:9092/2", 1, 0, 9000, 1, 0, 0))),
              IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.005);
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 2, 0, 1000, 1, 0, 0))), IsOk());
  EXPECT_DOUBLE_EQ(Value("saltproxy_upstream_rtt_seconds"), 0.001);
}

TEST_F(UpstreamStatsTest, ADocumentThatIsNotStatisticsChangesNothing) {
  ASSERT_THAT(stats_.Apply(0, Doc(Broker("b1:9092/1", 10, 5000, 0, 0, 0, 0))), IsOk());
  EXPECT_THAT(stats_.Apply(0, "{\"brokers\": [1, 2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(stats_.Apply(0, "{\"name\": \"x\"}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"brokers\"")));
  EXPECT_EQ(Value("saltproxy_upstream_produce_requests_total"), 10);
}

}  // namespace
}  // namespace saltproxy
