// The control topic reader against librdkafka's in-process mock cluster: the last record of a
// key among many, read from the end backwards; the end of a partition; a topic or key that is
// not there; and a cluster that does not answer, which must end in an error, not a wait.
#include "proxy/forward/control_topic_reader.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "proxy/forward/embedded_cluster.h"
#include "proxy/forward/forwarder.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;

class ControlTopicReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EmbeddedCluster::Start(1, {{"_saltmap", 1}, {"clicks", 4}});
    ASSERT_THAT(cluster, IsOk());
    cluster_ = std::move(*cluster);
    config_.bootstrap_servers = cluster_->bootstrap_servers();
    auto forwarder = Forwarder::Create(config_, metrics_, /*cache_only_lookups=*/true);
    ASSERT_THAT(forwarder, IsOk());
    forwarder_ = std::move(*forwarder);
  }
  // Writes records in order and waits until the cluster has them all.
  void Write(const std::string& topic, int32_t partition,
             const std::vector<std::pair<std::string, std::string>>& records) {
    std::mutex mu;
    std::condition_variable cv;
    size_t done = 0;
    for (const auto& [key, value] : records) {
      Record r;
      r.topic = topic;
      r.key = key;
      r.value = value;
      ASSERT_THAT(forwarder_->Produce(std::move(r), partition,
                                      [&](const DeliveryReport& report) {
                                        EXPECT_TRUE(report.status.ok()) << report.status;
                                        std::lock_guard<std::mutex> lock(mu);
                                        ++done;
                                        cv.notify_all();
                                      }),
                  IsOk());
    }
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(
        cv.wait_for(lock, std::chrono::seconds(30), [&] { return done == records.size(); }));
  }
  std::unique_ptr<ControlTopicReader> Reader(absl::Duration timeout = absl::Seconds(30)) {
    auto reader = ControlTopicReader::Create(config_, absl::Now() + timeout);
    EXPECT_THAT(reader, IsOk());
    return reader.ok() ? std::move(*reader) : nullptr;
  }

  std::unique_ptr<EmbeddedCluster> cluster_;
  UpstreamConfig config_;
  Metrics metrics_;
  std::unique_ptr<Forwarder> forwarder_;
};

TEST_F(ControlTopicReaderTest, TheLastRecordOfAKeyIsFoundReadingFromTheEndBackwards) {
  std::vector<std::pair<std::string, std::string>> records;
  for (int i = 0; i < 5; ++i) records.emplace_back("saltmap/a", absl::StrCat("a-", i));
  for (int i = 0; i < 150; ++i) records.emplace_back("saltmap/b", absl::StrCat("b-", i));
  records.emplace_back("saltmap/a", "a-last");  // offset 155
  for (int i = 150; i < 250; ++i) records.emplace_back("saltmap/b", absl::StrCat("b-", i));
  Write("_saltmap", 0, records);

  std::unique_ptr<ControlTopicReader> reader = Reader();
  absl::StatusOr<std::optional<std::string>> a = reader->LastValue("_saltmap", 0, "saltmap/a", 8);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(*a, "a-last");
  // Windows of 8, 32 and 128 records back from the end (256): the third holds offset 155.
  EXPECT_EQ(reader->records_read(), 8 + 32 + 128);

  absl::StatusOr<std::optional<std::string>> b = reader->LastValue("_saltmap", 0, "saltmap/b", 8);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*b, "b-249");
}

TEST_F(ControlTopicReaderTest, AKeyOrTopicThatIsNotThereIsNone) {
  Write("_saltmap", 0, {{"saltmap/b", "b"}});
  std::unique_ptr<ControlTopicReader> reader = Reader();
  absl::StatusOr<std::optional<std::string>> missing =
      reader->LastValue("_saltmap", 0, "saltmap/a");
  ASSERT_THAT(missing, IsOk());
  EXPECT_FALSE(missing->has_value());
  absl::StatusOr<std::optional<std::string>> no_topic =
      reader->LastValue("_nothing_here", 0, "saltmap/a");
  ASSERT_THAT(no_topic, IsOk());
  EXPECT_FALSE(no_topic->has_value());
}

TEST_F(ControlTopicReaderTest, TheHighWatermarkIsWhereTheNextRecordGoes) {
  Write("clicks", 2, {{"k", "1"}, {"k", "2"}, {"k", "3"}});
  std::unique_ptr<ControlTopicReader> reader = Reader();
  absl::StatusOr<int64_t> end = reader->HighWatermark("clicks", 2);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(*end, 3);
  absl::StatusOr<int64_t> empty = reader->HighWatermark("clicks", 1);
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(*empty, 0);
}

// Nothing listens on the port: the reader gives up at its deadline with an error.
TEST_F(ControlTopicReaderTest, AClusterThatDoesNotAnswerIsAnErrorAtTheDeadline) {
  config_.bootstrap_servers = "127.0.0.1:1";
  std::unique_ptr<ControlTopicReader> reader = Reader(absl::Seconds(1));
  absl::StatusOr<std::optional<std::string>> map = reader->LastValue("_saltmap", 0, "saltmap/a");
  EXPECT_FALSE(map.ok());
}

}  // namespace
}  // namespace saltproxy
