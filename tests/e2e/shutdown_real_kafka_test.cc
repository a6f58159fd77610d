// Shutdown under load in front of a real broker: HTTP clients and raw Kafka-protocol clients
// produce one record per request, each record unique, while App::Shutdown runs (what SIGTERM
// runs). Each client notes what its request got: an answer that says written, one that says
// not, or none (the connection closed: a request the proxy never read). Then the topic is read
// whole and held against those notes:
//   - every record answered "written" is in the topic exactly once;
//   - no record whose request got no answer is in the topic (the bug: written, never answered);
//   - with the broker stopped (SIGSTOP), every request sent well before shutdown began (so read
//     and in flight) gets an answer, and Shutdown returns within shutdown_timeout plus a margin.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/app.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;

enum class Outcome { kWritten, kNotWritten, kNoAnswer };

// What one request (one record, its value unique) got, and when it was sent.
struct Note {
  std::string value;
  Outcome outcome;
  absl::Time sent;  // when the request was whole on the socket
  absl::Time answered;
};

class Notes {
 public:
  void Add(Note note) {
    std::lock_guard<std::mutex> lock(mu_);
    notes_.push_back(std::move(note));
  }
  std::vector<Note> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(notes_);
  }

 private:
  std::mutex mu_;
  std::vector<Note> notes_;
};

// Produces one record per request over one keep-alive connection until the proxy is gone.
void HttpProducer(uint16_t port, const std::string& topic, int id, const std::atomic<bool>& done,
                  Notes& notes) {
  for (int n = 0; !done.load();) {
    HttpClient client(port);
    bool refused = false;
    while (!done.load()) {
      const std::string value = absl::StrCat("h", id, "-", n++);
      const absl::Time before = absl::Now();
      HttpResult r = client.Post(absl::StrCat("/topics/", topic),
                                 absl::StrCat(R"({"records":[{"key":"k)", id, R"(","value":")",
                                              value, R"("}]})"));
      const absl::Time after = absl::Now();
      if (!r.error.empty()) {
        // Connection refused (the listener is closed) or closed without an answer.
        refused = r.error.find("refused") != std::string::npos;
        if (!refused) notes.Add({value, Outcome::kNoAnswer, before, after});
        break;
      }
      bool written = false;
      if (r.status == 200) {
        const auto& offsets = r.Json().at("offsets").as_array();
        written = offsets.size() == 1 && offsets[0].as_object().at("error_code").is_null();
      }
      notes.Add({value, written ? Outcome::kWritten : Outcome::kNotWritten, before, after});
    }
    if (refused) return;
  }
}

// One Kafka request frame out, one answer frame back; false when the connection ended first.
bool RoundTrip(boost::asio::ip::tcp::socket& s, const std::string& payload, std::string* answer,
               absl::Time* sent) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  std::string frame = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  frame += payload;
  boost::system::error_code ec;
  boost::asio::write(s, boost::asio::buffer(frame), ec);
  if (sent) *sent = absl::Now();
  if (ec) return false;
  uint8_t size[4];
  boost::asio::read(s, boost::asio::buffer(size), ec);
  if (ec) return false;
  answer->assign((size[0] << 24) | (size[1] << 16) | (size[2] << 8) | size[3], '\0');
  boost::asio::read(s, boost::asio::buffer(*answer), ec);
  return !ec;
}

// A plain (not idempotent) Kafka producer, acks=all, one record per Produce v7 request, on
// partition `id` modulo 4, until the proxy is gone.
void KafkaProducer(uint16_t port, const std::string& topic, int id, const std::atomic<bool>& done,
                   Notes& notes) {
  using namespace ::saltproxy::kafka;  // NOLINT
  int32_t correlation = 0;
  for (int n = 0; !done.load();) {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s(ioc);
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (ec) return;  // the listener is closed
    WireWriter metadata;
    metadata.Int16(kMetadata);
    metadata.Int16(1);
    metadata.Int32(++correlation);
    metadata.NullableString(std::string("shutdown-test"), false);
    metadata.ArrayLength(1, false);
    metadata.String(topic, false);
    std::string answer;
    if (!RoundTrip(s, metadata.data(), &answer, nullptr)) continue;
    while (!done.load()) {
      const std::string value = absl::StrCat("k", id, "-", n++);
      RecordBatch batch;
      BatchRecord record;
      record.key = absl::StrCat("k", id);
      record.value = value;
      batch.records.push_back(record);
      WireWriter w;
      w.Int16(kProduce);
      w.Int16(7);
      w.Int32(++correlation);
      w.NullableString(std::string("shutdown-test"), false);
      w.NullableString(std::nullopt, false);
      w.Int16(-1);
      w.Int32(30000);
      w.ArrayLength(1, false);
      w.String(topic, false);
      w.ArrayLength(1, false);
      w.Int32(id % 4);
      w.NullableBytes(EncodeRecordBatch(batch, Compression::kNone), false);
      absl::Time sent;
      if (!RoundTrip(s, w.data(), &answer, &sent)) {
        notes.Add({value, Outcome::kNoAnswer, sent, absl::Now()});
        break;
      }
      WireReader in(answer);
      in.Int32();  // correlation id
      in.ArrayLength(false);
      in.String(false);
      in.ArrayLength(false);
      in.Int32();  // partition
      const bool written = in.Int16() == kNone;
      notes.Add({value, written ? Outcome::kWritten : Outcome::kNotWritten, sent, absl::Now()});
    }
  }
}

class ShutdownRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
  }

  std::unique_ptr<App> StartApp(absl::Duration shutdown_timeout) {
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: info
shutdown_timeout: )", absl::FormatDuration(shutdown_timeout), R"(
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0}
# The keys are few and all hot by share; this test is about shutdown, so nothing is salted.
salting: {control_topic: "", defaults: {strategy: "off"}}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    EXPECT_THAT(config, IsOk());
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    EXPECT_THAT(app, IsOk());
    return app.ok() ? std::move(*app) : nullptr;
  }

  // Starts the producers, waits until `warm` requests were answered "written".
  void StartLoad(App& app, const std::string& topic, int warm) {
    for (int i = 0; i < kHttpProducers; ++i) {
      threads_.emplace_back(HttpProducer, app.http_port(), topic, i, std::cref(done_),
                            std::ref(notes_));
    }
    for (int i = 0; i < kKafkaProducers; ++i) {
      threads_.emplace_back(KafkaProducer, app.kafka_port(), topic, 100 + i, std::cref(done_),
                            std::ref(notes_));
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      std::vector<Note> so_far = notes_.Take();
      int written = 0;
      for (const Note& n : so_far) written += n.outcome == Outcome::kWritten;
      for (Note& n : so_far) notes_.Add(std::move(n));
      if (written >= warm) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "the load never reached " << warm << " written records";
  }

  std::vector<Note> StopLoad() {
    done_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    return notes_.Take();
  }

  // Holds the notes against the topic; returns the number of records answered "not written".
  int CheckAgainstTopic(const std::string& topic, const std::vector<Note>& notes) {
    absl::StatusOr<std::vector<ConsumedRecord>> records =
        kafka_->ConsumeAll(topic, -1, absl::Seconds(60));
    EXPECT_THAT(records, IsOk());
    if (!records.ok()) return 0;
    std::map<std::string, int> in_topic;
    for (const ConsumedRecord& r : *records) {
      std::string value = r.value.value_or("");
      // The HTTP records were sent in the JSON format: their value is the JSON text "h0-1".
      if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
      ++in_topic[value];
    }
    int written = 0, not_written = 0, no_answer = 0, errors_in_topic = 0;
    for (const Note& n : notes) {
      const int copies = in_topic.contains(n.value) ? in_topic[n.value] : 0;
      switch (n.outcome) {
        case Outcome::kWritten:
          ++written;
          EXPECT_EQ(copies, 1) << n.value << " was answered written";
          break;
        case Outcome::kNotWritten:
          ++not_written;
          errors_in_topic += copies > 0;
          EXPECT_LE(copies, 1) << n.value;
          break;
        case Outcome::kNoAnswer:
          ++no_answer;
          EXPECT_EQ(copies, 0) << n.value << " is in the topic but its client got no answer";
          break;
      }
    }
    EXPECT_EQ(records->size(), static_cast<size_t>(written + errors_in_topic))
        << "records in the topic that no request accounts for";
    std::cout << "requests: " << notes.size() << "; answered written " << written
              << ", answered not written " << not_written << " (of which in the topic "
              << errors_in_topic << "), no answer (never read) " << no_answer
              << "; records in topic " << records->size() << "\n";
    return not_written;
  }

  static constexpr int kHttpProducers = 6;
  static constexpr int kKafkaProducers = 3;
  RealKafka* kafka_ = nullptr;
  std::atomic<bool> done_{false};
  Notes notes_;
  std::vector<std::thread> threads_;
};

TEST_F(ShutdownRealKafkaTest, UnderLoadEveryAnswerMatchesTheTopic) {
  const std::string topic = "shutdown-healthy";
  ASSERT_THAT(kafka_->CreateTopic(topic, 4), IsOk());
  std::unique_ptr<App> app = StartApp(absl::Seconds(10));
  ASSERT_NE(app, nullptr);
  StartLoad(*app, topic, 300);
  const absl::Time t0 = absl::Now();
  absl::Status stopped = app->Shutdown();
  const absl::Duration took = absl::Now() - t0;
  app.reset();  // whatever Shutdown left open closes here, so no client waits for ever
  std::vector<Note> notes = StopLoad();
  std::cout << "shutdown took " << absl::FormatDuration(took) << ": " << stopped << "\n";
  EXPECT_THAT(stopped, IsOk());
  int answered_after = 0;
  for (const Note& n : notes) answered_after += n.outcome != Outcome::kNoAnswer && n.answered > t0;
  std::cout << "requests answered after shutdown began: " << answered_after << "\n";
  CheckAgainstTopic(topic, notes);
}

// Stops the broker (SIGSTOP) and resumes it however the test ends.
class StoppedBroker {
 public:
  explicit StoppedBroker(pid_t pid) : pid_(pid), stopped_(kill(pid, SIGSTOP) == 0) {}
  StoppedBroker(const StoppedBroker&) = delete;
  StoppedBroker& operator=(const StoppedBroker&) = delete;
  ~StoppedBroker() { kill(pid_, SIGCONT); }
  bool stopped() const { return stopped_; }

 private:
  const pid_t pid_;
  const bool stopped_;
};

TEST_F(ShutdownRealKafkaTest, BrokerStoppedShutdownAnswersEveryRequestInTime) {
  const std::string topic = "shutdown-broker-stopped";
  ASSERT_THAT(kafka_->CreateTopic(topic, 4), IsOk());
  const absl::Duration timeout = absl::Seconds(5);
  std::unique_ptr<App> app = StartApp(timeout);
  ASSERT_NE(app, nullptr);
  StartLoad(*app, topic, 100);
  std::ifstream pid_file(kafka_->dir() + "/pid");
  pid_t pid = 0;
  ASSERT_TRUE(pid_file >> pid) << kafka_->dir();
  std::optional<StoppedBroker> broker_stopped;
  broker_stopped.emplace(pid);
  ASSERT_TRUE(broker_stopped->stopped());
  // Every producer now has a request in flight that the broker will not answer.
  absl::SleepFor(absl::Seconds(2));
  const absl::Time t0 = absl::Now();
  absl::Status stopped = app->Shutdown();
  const absl::Duration took = absl::Now() - t0;
  app.reset();  // whatever Shutdown left open closes here, so no client waits for ever
  // What the process does after Shutdown (main.cc): destroy the App.
  const absl::Duration exited = absl::Now() - t0;
  std::vector<Note> notes = StopLoad();
  broker_stopped.reset();  // the broker goes on before the topic is read
  std::cout << "shutdown with the broker stopped took " << absl::FormatDuration(took)
            << " (App destroyed after " << absl::FormatDuration(exited) << "): " << stopped
            << "\n";
  // A deadline, not a timing measurement: the sequence is bounded by the timeout (5 s), and the
  // margin is generous for a loaded machine.
  EXPECT_LT(exited, timeout + absl::Seconds(4));
  EXPECT_FALSE(stopped.ok()) << "records were in flight to a stopped broker";
  // Requests sent a second or more before shutdown began, and not answered by then, were read
  // and in flight to the stopped broker: each has an answer.
  int in_flight = 0;
  for (const Note& n : notes) {
    if (n.sent >= t0 - absl::Seconds(1)) continue;
    if (n.outcome != Outcome::kNoAnswer && n.answered < t0) continue;
    ++in_flight;
    EXPECT_NE(n.outcome, Outcome::kNoAnswer) << n.value << " was in flight and got no answer";
  }
  EXPECT_GE(in_flight, (kHttpProducers + kKafkaProducers) / 2);
  EXPECT_GT(CheckAgainstTopic(topic, notes), 0);
}

}  // namespace
}  // namespace saltproxy
