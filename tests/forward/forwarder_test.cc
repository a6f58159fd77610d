#include "proxy/forward/forwarder.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "proxy/forward/embedded_cluster.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;

// Collects delivery reports and lets a test wait for them with a deadline.
class Reports {
 public:
  DeliveryCallback Callback() {
    return [this](const DeliveryReport& r) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(r);
      cv_.notify_all();
    };
  }
  std::vector<DeliveryReport> Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return reports_.size() >= n; });
    return reports_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DeliveryReport> reports_;
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

TEST_F(ForwarderTest, FullQueueIsPushedBackNotBuffered) {
  config_.max_queued_records = 5;
  config_.librdkafka["linger.ms"] = "1000";  // keep the queue full while the test fills it
  auto forwarder = Make();
  Reports reports;
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 50 && refused.ok(); ++i) {
    refused = forwarder->Produce(MakeRecord("orders", "k"), 0, reports.Callback());
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_LE(accepted, 5);
  EXPECT_EQ(reports.Wait(accepted).size(), static_cast<size_t>(accepted));
  EXPECT_NE(metrics_.Serialize().find(
                "saltproxy_backpressure_events_total{bound=\"upstream_queue\"} 1"),
            std::string::npos);
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
  for (int i = 0; i < 100 && !forwarder->Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(forwarder->Ready());
  absl::StatusOr<int32_t> known = absl::UnknownError("not called");
  forwarder->LookupTopic("orders", [&](absl::StatusOr<int32_t> r) { known = r; });
  EXPECT_THAT(known, IsOk());
  EXPECT_EQ(*known, 4);
  absl::StatusOr<int32_t> unknown = 0;
  forwarder->LookupTopic("nope", [&](absl::StatusOr<int32_t> r) { unknown = r; });
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ForwarderTest, RecordOverMessageMaxBytesIsRefusedAtOnce) {
  auto forwarder = Make();
  Reports reports;
  Record big = MakeRecord("orders", "k");
  big.value = std::string(2 << 20, 'x');  // over message.max.bytes (1 MB)
  EXPECT_THAT(forwarder->Produce(std::move(big), 0, reports.Callback()),
              StatusIs(absl::StatusCode::kInvalidArgument));
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

}  // namespace
}  // namespace saltproxy
