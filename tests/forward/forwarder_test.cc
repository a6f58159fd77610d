#include "proxy/forward/forwarder.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "proxy/forward/embedded_cluster.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::saltproxy::testing::WaitUntil;

// Collects delivery reports, each with the number of the record it is for (the order it was
// produced in), and lets a test wait for them with a deadline.
class Reports {
 public:
  DeliveryCallback Callback(int sequence = 0) {
    return [this, sequence](const DeliveryReport& r) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(r);
      sequences_.push_back(sequence);
      cv_.notify_all();
    };
  }
  std::vector<DeliveryReport> Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return reports_.size() >= n; });
    return reports_;
  }
  int SequenceOf(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return sequences_[i];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DeliveryReport> reports_;
  std::vector<int> sequences_;
};

Record MakeRecord(const std::string& topic, const std::string& key) {
  Record r;
  r.topic = topic;
  r.key = key;
  r.value = "value";
  r.headers.push_back({"h", "1"});
  return r;
}

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EmbeddedCluster::Start(1, {{"orders", 4}});
    ASSERT_THAT(cluster, IsOk());
    cluster_ = std::move(*cluster);
    config_.bootstrap_servers = cluster_->bootstrap_servers();
    config_.delivery_timeout = absl::Seconds(5);
    config_.metadata_refresh = absl::Milliseconds(200);
  }
  std::unique_ptr<Forwarder> Make() {
    auto f = Forwarder::Create(config_, metrics_, /*cache_only_lookups=*/true);
    EXPECT_THAT(f, IsOk());
    return f.ok() ? std::move(*f) : nullptr;
  }
  std::unique_ptr<EmbeddedCluster> cluster_;
  UpstreamConfig config_;
  Metrics metrics_;
};

TEST_F(ForwarderTest, DeliveryReportCarriesPartitionAndOffset) {
  auto forwarder = Make();
  Reports reports;
  ASSERT_THAT(forwarder->Produce(MakeRecord("orders", "k"), 2, reports.Callback()), IsOk());
  ASSERT_THAT(forwarder->Produce(MakeRecord("orders", "k"), 2, reports.Callback()), IsOk());
  std::vector<DeliveryReport> r = reports.Wait(2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[0].status.ok()) << r[0].status;
  EXPECT_EQ(r[0].topic, "orders");
  EXPECT_EQ(r[0].partition, 2);
  EXPECT_EQ(r[1].offset, r[0].offset + 1);
}

// The bound holds for all upstream producers together: records go to every partition, so
// through every producer.
TEST_F(ForwarderTest, FullQueueIsPushedBackNotBuffered) {
  config_.max_queued_records = 5;
  config_.librdkafka["linger.ms"] = "1000";  // keep the queue full while the test fills it
  auto forwarder = Make();
  Reports reports;
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 50 && refused.ok(); ++i) {
    refused = forwarder->Produce(MakeRecord("orders", "k"), i % 4, reports.Callback());
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(accepted, 5);
  EXPECT_EQ(reports.Wait(accepted).size(), static_cast<size_t>(accepted));
  EXPECT_NE(metrics_.Serialize().find(
                "saltproxy_backpressure_events_total{bound=\"upstream_queue\"} 1"),
            std::string::npos);
  // Delivered records free their room.
  EXPECT_THAT(forwarder->Produce(MakeRecord("orders", "k"), 3, reports.Callback()), IsOk());
  EXPECT_EQ(reports.Wait(accepted + 1).size(), static_cast<size_t>(accepted + 1));
}

TEST_F(ForwarderTest, QueuedBytesBoundHoldsForAllProducersTogether) {
  config_.max_queued_bytes = 1 << 20;
  config_.librdkafka["linger.ms"] = "1000";
  auto forwarder = Make();
  Reports reports;
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 50 && refused.ok(); ++i) {
    Record r = MakeRecord("orders", "k");
    r.value = std::string(300 << 10, 'v');  // three fit in 1 MiB, the fourth does not
    refused = forwarder->Produce(std::move(r), i % 4, reports.Callback());
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(reports.Wait(accepted).size(), static_cast<size_t>(accepted));
}

TEST_F(ForwarderTest, RefusalsByTheRecordBoundLeaveTheByteBoundWhole) {
  config_.max_queued_records = 10;
  config_.max_queued_bytes = 1 << 20;
  config_.librdkafka["linger.ms"] = "1000";
  auto forwarder = Make();
  Reports reports;
  for (int i = 0; i < 10; ++i) {
    ASSERT_THAT(forwarder->Produce(MakeRecord("orders", "k"), i % 4, reports.Callback()), IsOk());
  }
  for (int i = 0; i < 20; ++i) {  // refused by the record bound, each with 300 KiB
    Record r = MakeRecord("orders", "k");
    r.value = std::string(300 << 10, 'v');
    EXPECT_THAT(forwarder->Produce(std::move(r), i % 4, reports.Callback()),
                StatusIs(absl::StatusCode::kResourceExhausted));
  }
  ASSERT_EQ(reports.Wait(10).size(), 10u);
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) {
    Record r = MakeRecord("orders", "k");
    r.value = std::string(300 << 10, 'v');
    refused = forwarder->Produce(std::move(r), i % 4, reports.Callback());
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(accepted, 3) << "the byte bound no longer holds";
  EXPECT_EQ(reports.Wait(10 + accepted).size(), static_cast<size_t>(10 + accepted));
}

TEST_F(ForwarderTest, EveryPartitionKeepsProduceOrderAcrossProducers) {
  for (int producers : {2, 1, 3}) {  // upstream.producers: the default, then others
    SCOPED_TRACE(producers);
    config_.producers = producers;
    auto forwarder = Make();
    Reports reports;
    constexpr int kRecords = 4000;
    for (int i = 0; i < kRecords; ++i) {
      // Bursts of one partition, then the next, as a client's produce requests arrive.
      const int32_t partition = (i / 25) % 4;
      Record r = MakeRecord("orders", "k");
      r.value = std::to_string(i);
      ASSERT_THAT(forwarder->Produce(std::move(r), partition, reports.Callback(i)), IsOk());
    }
    std::vector<DeliveryReport> delivered = reports.Wait(kRecords);
    ASSERT_EQ(delivered.size(), static_cast<size_t>(kRecords));
    std::map<int32_t, std::vector<std::pair<int, int64_t>>> by_partition;  // sequence, offset
    for (size_t i = 0; i < delivered.size(); ++i) {
      ASSERT_TRUE(delivered[i].status.ok()) << delivered[i].status;
      by_partition[delivered[i].partition].emplace_back(reports.SequenceOf(i), delivered[i].offset);
    }
    EXPECT_EQ(by_partition.size(), 4u);
    for (auto& [partition, records] : by_partition) {
      // Reports of a partition arrive in produce order, with offsets in produce order.
      for (size_t i = 1; i < records.size(); ++i) {
        EXPECT_GT(records[i].first, records[i - 1].first) << "partition " << partition;
        EXPECT_EQ(records[i].second, records[i - 1].second + 1) << "partition " << partition;
      }
    }
    EXPECT_EQ(forwarder->QueueDepth(), 0);
  }
}

double ForwardedTotal(Metrics& metrics) {
  const std::string text = metrics.Serialize();
  const std::string name = "\nsaltproxy_records_forwarded_total ";  // not the HELP line
  const size_t at = text.find(name);
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + name.size());
}

// Reports are applied to the queue bounds and the metrics a poll at a time; a caller must still
// find its record counted, and its room in the queue free, by the time it hears of it.
TEST_F(ForwarderTest, ARecordIsCountedAndItsRoomFreedBeforeItsCallerHears) {
  config_.max_queued_records = 4;
  auto forwarder = Make();
  std::mutex mu;
  std::condition_variable cv;
  int heard = 0;
  int counted_late = 0;
  auto callback = [&](const DeliveryReport& report) {
    EXPECT_TRUE(report.status.ok()) << report.status;
    std::lock_guard<std::mutex> lock(mu);  // reports come from two delivery threads
    ++heard;
    if (ForwardedTotal(metrics_) < heard) ++counted_late;
    cv.notify_all();
  };
  for (int round = 1; round <= 5; ++round) {
    for (int i = 0; i < 4; ++i) {
      ASSERT_THAT(forwarder->Produce(MakeRecord("orders", absl::StrCat("k", i)), i, callback),
                  IsOk())
          << "round " << round << ": the queue still holds records already reported";
    }
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return heard == 4 * round; }));
  }
  EXPECT_EQ(counted_late, 0);
  EXPECT_EQ(ForwardedTotal(metrics_), 20);
}

TEST_F(ForwarderTest, LookupKnowsConfiguredTopicsAndRefusesOthers) {
  auto forwarder = Make();
  ASSERT_TRUE(WaitUntil([&] { return forwarder->Ready(); }));
  absl::StatusOr<int32_t> known = absl::UnknownError("not called");
  forwarder->LookupTopic("orders", [&](absl::StatusOr<int32_t> r) { known = r; });
  EXPECT_THAT(known, IsOk());
  EXPECT_EQ(*known, 4);
  absl::StatusOr<int32_t> unknown = 0;
  forwarder->LookupTopic("nope", [&](absl::StatusOr<int32_t> r) { unknown = r; });
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ForwarderTest, RecordOverMessageMaxBytesIsRefusedAtOnce) {
  config_.librdkafka["message.max.bytes"] = "1000000";  // the client's own limit, set lower
  auto forwarder = Make();
  Reports reports;
  Record big = MakeRecord("orders", "k");
  big.value = std::string(2 << 20, 'x');  // over message.max.bytes (1 MB)
  EXPECT_THAT(forwarder->Produce(std::move(big), 0, reports.Callback()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The value is handed to librdkafka without a copy; on an error it is the caller's again.
  ASSERT_TRUE(big.value.has_value());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(big.value->size(), size_t{2} << 20);
}

TEST_F(ForwarderTest, FlushWaitsForEveryQueuedRecord) {
  auto forwarder = Make();
  Reports reports;
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT(forwarder->Produce(MakeRecord("orders", "k"), i % 4, reports.Callback()), IsOk());
  }
  EXPECT_THAT(forwarder->Flush(absl::Seconds(30)), IsOk());
  EXPECT_EQ(forwarder->QueueDepth(), 0);
  EXPECT_EQ(reports.Wait(0).size(), 100u);  // every caller told before Flush returns
}

// librdkafka's statistics reach the upstream request metrics: every partition's records went
// out in Produce requests, at least one per partition (librdkafka puts one in each).
TEST_F(ForwarderTest, StatisticsCountTheProduceRequestsSent) {
  config_.statistics_interval = absl::Milliseconds(100);
  auto forwarder = Make();
  Reports reports;
  for (int i = 0; i < 40; ++i) {
    ASSERT_THAT(forwarder->Produce(MakeRecord("orders", "k"), i % 4, reports.Callback()), IsOk());
  }
  ASSERT_EQ(reports.Wait(40).size(), 40u);
  auto requests = [&] {
    const std::string text = metrics_.Serialize();
    const std::string name = "\nsaltproxy_upstream_produce_requests_total ";
    size_t at = text.find(name);
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size()));
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (requests() < 4 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_GE(requests(), 4);
  EXPECT_LE(requests(), 40);
  EXPECT_NE(metrics_.Serialize().find("saltproxy_upstream_rtt_seconds "), std::string::npos);
}

}  // namespace
}  // namespace saltproxy
