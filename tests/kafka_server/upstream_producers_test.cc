// The Kafka listener's records leave through the Forwarder's upstream producers
// (upstream.producers librdkafka producers, two by default, a partition always through the same
// one): what the listener relies on, on the embedded mock cluster. tests/forward has the
// Forwarder's other tests.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/forward/embedded_cluster.h"
#include "proxy/forward/forwarder.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;

struct Delivered {
  int32_t partition;
  int64_t offset;
  int sequence;  // the order the record was produced in
};

class Reports {
 public:
  DeliveryCallback Callback(int sequence) {
    return [this, sequence](const DeliveryReport& r) {
      std::lock_guard<std::mutex> lock(mu_);
      if (r.status.ok()) {
        delivered_.push_back({r.partition, r.offset, sequence});
      } else {
        ++failed_;
      }
      cv_.notify_all();
    };
  }
  std::vector<Delivered> Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return delivered_.size() + failed_ >= n; });
    return delivered_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Delivered> delivered_;
  size_t failed_ = 0;
};

Record MakeRecord(int sequence) {
  Record r;
  r.topic = "orders";
  r.value = std::to_string(sequence);
  return r;
}

class UpstreamProducersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EmbeddedCluster::Start(1, {{"orders", 8}});
    ASSERT_THAT(cluster, IsOk());
    cluster_ = std::move(*cluster);
    config_.bootstrap_servers = cluster_->bootstrap_servers();
    config_.delivery_timeout = absl::Seconds(10);
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

TEST_F(UpstreamProducersTest, EveryPartitionKeepsProduceOrderAcrossProducers) {
  for (int producers : {2, 1, 3}) {  // upstream.producers: the default, then others
    SCOPED_TRACE(producers);
    config_.producers = producers;
    auto forwarder = Make();
    Reports reports;
    constexpr int kRecords = 4000;
    for (int i = 0; i < kRecords; ++i) {
      // Bursts of one partition, then the next, as a client's produce requests arrive.
      const int32_t partition = (i / 25) % 8;
      ASSERT_THAT(forwarder->Produce(MakeRecord(i), partition, reports.Callback(i)), IsOk());
    }
    std::vector<Delivered> delivered = reports.Wait(kRecords);
    ASSERT_EQ(delivered.size(), static_cast<size_t>(kRecords));
    std::map<int32_t, std::vector<Delivered>> by_partition;
    for (const Delivered& d : delivered) by_partition[d.partition].push_back(d);
    EXPECT_EQ(by_partition.size(), 8u);
    for (auto& [partition, records] : by_partition) {
      // Reports of a partition arrive in produce order, with offsets in produce order.
      for (size_t i = 1; i < records.size(); ++i) {
        EXPECT_GT(records[i].sequence, records[i - 1].sequence) << "partition " << partition;
        EXPECT_EQ(records[i].offset, records[i - 1].offset + 1) << "partition " << partition;
      }
    }
    EXPECT_EQ(forwarder->QueueDepth(), 0);
  }
}

TEST_F(UpstreamProducersTest, QueueBoundHoldsForAllProducersTogether) {
  config_.max_queued_records = 6;
  config_.librdkafka["linger.ms"] = "1000";  // keep the records queued while the test fills it
  auto forwarder = Make();
  Reports reports;
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 50 && refused.ok(); ++i) {
    refused = forwarder->Produce(MakeRecord(i), i % 8, reports.Callback(i));  // every producer
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(accepted, 6);
  EXPECT_EQ(reports.Wait(accepted).size(), static_cast<size_t>(accepted));
  // Delivered records free their room.
  EXPECT_THAT(forwarder->Produce(MakeRecord(100), 3, reports.Callback(100)), IsOk());
  EXPECT_EQ(reports.Wait(accepted + 1).size(), static_cast<size_t>(accepted + 1));
}

TEST_F(UpstreamProducersTest, QueuedBytesBoundHoldsForAllProducersTogether) {
  config_.max_queued_bytes = 1 << 20;
  config_.librdkafka["linger.ms"] = "1000";
  auto forwarder = Make();
  Reports reports;
  int accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 50 && refused.ok(); ++i) {
    Record r = MakeRecord(i);
    r.value = std::string(300 << 10, 'v');  // three fit in 1 MiB, the fourth does not
    refused = forwarder->Produce(std::move(r), i % 8, reports.Callback(i));
    if (refused.ok()) ++accepted;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(reports.Wait(accepted).size(), static_cast<size_t>(accepted));
}

TEST_F(UpstreamProducersTest, RefusedRecordKeepsItsValue) {
  auto forwarder = Make();
  Reports reports;
  Record r = MakeRecord(1);
  r.value = std::string(2 << 20, 'x');  // over message.max.bytes (1 MB): refused at once
  EXPECT_THAT(forwarder->Produce(std::move(r), 1, reports.Callback(1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The value is handed to librdkafka without a copy; on an error it is the caller's again.
  ASSERT_TRUE(r.value.has_value());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(r.value->size(), size_t{2} << 20);
}

}  // namespace
}  // namespace saltproxy
