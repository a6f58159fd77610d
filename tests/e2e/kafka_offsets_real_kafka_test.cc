// Kafka clients through saltproxy's Kafka listener into a real broker, held to what saltproxy
// told them: a librdkafka producer with its default partitioner (consistent_random: CRC32, not
// Java's murmur2) finds every cold record on the partition and at the offset its delivery report
// names, the partition librdkafka chose; with a hot key in the mix, the records saltproxy moved
// are reported at an unknown (negative) offset and the cold ones exactly. A Java producer (the
// kafka-clients defaults) gets RecordMetadata offsets that are exact or unknown, never wrong.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "saltproxy/partitioner.h"
#include "testing/http_client.h"
#include "testing/process.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Shell;
using ::saltproxy::testing::WaitUntil;

// What librdkafka's default partitioner picks for a non-empty key (CRC32 % partitions).
int32_t LibrdkafkaPartition(const std::string& key, int32_t partitions) {
  return rd_kafka_msg_partitioner_consistent(nullptr, key.data(), key.size(), partitions, nullptr,
                                             nullptr);
}

// A librdkafka producer with its defaults (partitioner consistent_random, acks=all), keeping
// each record's delivery report.
class Librdkafka {
 public:
  struct Sent {
    std::string key;
    std::string value;
    int32_t partition = -1;
    int64_t offset = -2;  // -2: no report yet
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  };

  explicit Librdkafka(const std::string& bootstrap) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char error[512];
    for (const auto& [name, value] : std::map<std::string, std::string>{
             {"bootstrap.servers", bootstrap}, {"linger.ms", "5"}}) {
      EXPECT_EQ(rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error),
                RD_KAFKA_CONF_OK)
          << error;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      Sent* sent = static_cast<Sent*>(m->_private);
      sent->partition = m->partition;
      sent->offset = m->offset;
      sent->err = m->err;
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    EXPECT_NE(rk_, nullptr) << error;
  }
  ~Librdkafka() {
    if (rk_) rd_kafka_destroy(rk_);
  }

  void Send(const std::string& topic, const std::string& key, const std::string& value) {
    sent_.push_back(std::make_unique<Sent>(Sent{key, value}));
    Sent* s = sent_.back().get();
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()),
        RD_KAFKA_V_KEY(const_cast<char*>(s->key.data()), s->key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(s->value.data()), s->value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    rd_kafka_poll(rk_, 0);
  }
  void Poll() { rd_kafka_poll(rk_, 0); }
  void Flush() { ASSERT_EQ(rd_kafka_flush(rk_, 60000), RD_KAFKA_RESP_ERR_NO_ERROR); }
  std::vector<Sent> reports() const {
    std::vector<Sent> out;
    for (const auto& s : sent_) out.push_back(*s);
    return out;
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::vector<std::unique_ptr<Sent>> sent_;
};

struct Where {
  int32_t partition;
  int64_t offset;
};

class KafkaOffsetsRealKafkaTest : public ::testing::Test {
 protected:
  static constexpr int32_t kPartitions = 8;

  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    // Only a key with 30 % of its topic turns hot; once hot it keeps exactly four salts and
    // stays hot for the whole test, so that no layout changes while cold records flow.
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: warn
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0}
detection: {half_life: 500ms, hot_share: 0.3, hot_min_rps: 5, cold_ratio: 0.5, hold_down: 10m}
salting:
  tick: 50ms
  control_topic: ""
  defaults: {strategy: salt, min_salts: 4, max_salts: 4, max_salts_per_share: 0}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = std::move(*app);
    proxy_ = absl::StrCat("127.0.0.1:", app_->kafka_port());
  }
  void TearDown() override {
    if (app_) app_->Shutdown().IgnoreError();
  }

  // Whether the salt map has `key` of `topic` salted (its layout in effect).
  bool Salted(const std::string& topic, const std::string& key) {
    HttpClient client(app_->http_port());
    const boost::json::value map = client.Get("/saltmap").Json();
    const boost::json::object& topics = map.at("topics").as_object();
    if (!topics.contains(topic)) return false;
    for (const auto& k : topics.at(topic).at("keys").as_array()) {
      if (k.at("key").as_string() == key && k.at("action").as_string() == "salted") return true;
    }
    return false;
  }

  // Sends `key` through `producer` until saltproxy has salted it.
  void Heat(Librdkafka& producer, const std::string& topic, const std::string& key, int* sent) {
    ASSERT_TRUE(WaitUntil([&] {
      for (int i = 0; i < 20; ++i) producer.Send(topic, key, absl::StrCat("heat-", (*sent)++));
      return Salted(topic, key);
    }));
    producer.Flush();
  }

  // Every record of `topic` by value (values are unique), read back from the broker.
  std::map<std::string, Where> ReadBack(const std::string& topic, int expected) {
    absl::StatusOr<std::vector<ConsumedRecord>> records =
        kafka_->ConsumeAll(topic, expected, absl::Seconds(60));
    EXPECT_THAT(records, IsOk());
    std::map<std::string, Where> at;
    if (!records.ok()) return at;
    EXPECT_EQ(records->size(), static_cast<size_t>(expected));
    for (const ConsumedRecord& r : *records) {
      EXPECT_TRUE(at.emplace(*r.value, Where{r.partition, r.offset}).second)
          << "written twice: " << *r.value;
    }
    return at;
  }

  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
  std::string proxy_;
};

TEST_F(KafkaOffsetsRealKafkaTest, LibrdkafkasColdRecordsAreWhereAndAtWhatItsReportsSay) {
  const std::string topic = "offsets-crc32-cold";
  ASSERT_THAT(kafka_->CreateTopic(topic, kPartitions), IsOk());
  constexpr int kKeys = 40;
  constexpr int kRecords = 2000;
  int off_murmur2 = 0;  // keys librdkafka puts elsewhere than the Java client would
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = absl::StrCat("user-", k);
    off_murmur2 += LibrdkafkaPartition(key, kPartitions) != DefaultPartition(key, kPartitions);
  }
  ASSERT_GE(off_murmur2, kKeys / 2);
  Librdkafka producer(proxy_);
  for (int i = 0; i < kRecords; ++i) {
    producer.Send(topic, absl::StrCat("user-", i % kKeys), absl::StrCat("v-", i));
  }
  producer.Flush();
  const std::map<std::string, Where> at = ReadBack(topic, kRecords);
  int exact = 0;
  for (const Librdkafka::Sent& s : producer.reports()) {
    ASSERT_EQ(s.err, RD_KAFKA_RESP_ERR_NO_ERROR) << s.value << ": " << rd_kafka_err2str(s.err);
    EXPECT_EQ(s.partition, LibrdkafkaPartition(s.key, kPartitions)) << s.key;
    auto it = at.find(s.value);
    ASSERT_NE(it, at.end()) << "lost: " << s.value;
    EXPECT_EQ(it->second.partition, s.partition) << s.value;
    EXPECT_EQ(it->second.offset, s.offset) << s.value;
    exact += it->second.partition == s.partition && it->second.offset == s.offset;
  }
  std::printf("librdkafka, cold keys: %d of %d records where and at what the report says "
              "(%d of %d keys off murmur2's partition)\n",
              exact, kRecords, off_murmur2, kKeys);
}

TEST_F(KafkaOffsetsRealKafkaTest, LibrdkafkasMovedRecordsAreReportedUnknownAndColdOnesExact) {
  const std::string topic = "offsets-crc32-hot";
  ASSERT_THAT(kafka_->CreateTopic(topic, kPartitions), IsOk());
  const std::string hot = "hot";
  // Cold keys off the hot key's partition: a partition's batch then holds only cold records,
  // whose base offset can be exact, or only hot ones.
  std::vector<std::string> cold;
  for (int k = 0; cold.size() < 30; ++k) {
    const std::string key = absl::StrCat("user-", k);
    if (LibrdkafkaPartition(key, kPartitions) != LibrdkafkaPartition(hot, kPartitions)) {
      cold.push_back(key);
    }
  }
  Librdkafka producer(proxy_);
  int heat = 0;
  Heat(producer, topic, hot, &heat);
  if (HasFatalFailure()) return;
  const size_t heated = producer.reports().size();
  constexpr int kMixed = 2000;
  for (int i = 0; i < kMixed; ++i) {
    const std::string& key = i % 2 == 0 ? hot : cold[(i / 2) % cold.size()];
    producer.Send(topic, key, absl::StrCat("mixed-", i));
  }
  producer.Flush();
  ASSERT_TRUE(Salted(topic, hot)) << "the hot key's layout changed while cold records flowed";
  const std::map<std::string, Where> at = ReadBack(topic, static_cast<int>(heated) + kMixed);
  const std::vector<Librdkafka::Sent> reports = producer.reports();
  int cold_exact = 0, cold_sent = 0, hot_unknown = 0, hot_exact = 0, hot_sent = 0;
  int moved = 0;
  for (size_t i = 0; i < reports.size(); ++i) {
    const Librdkafka::Sent& s = reports[i];
    ASSERT_EQ(s.err, RD_KAFKA_RESP_ERR_NO_ERROR) << s.value << ": " << rd_kafka_err2str(s.err);
    EXPECT_EQ(s.partition, LibrdkafkaPartition(s.key, kPartitions)) << s.key;
    auto it = at.find(s.value);
    ASSERT_NE(it, at.end()) << "lost: " << s.value;
    // Never a wrong offset: exact, or negative (unknown; librdkafka reports base + index of a
    // base it was told, -n for a batch of n).
    if (s.offset >= 0) {
      EXPECT_EQ(it->second.partition, s.partition) << s.value;
      EXPECT_EQ(it->second.offset, s.offset) << s.value;
    }
    if (i < heated) continue;  // the heating: partly cold, partly held, partly salted
    if (s.key == hot) {
      ++hot_sent;
      moved += it->second.partition != s.partition;
      (s.offset >= 0 ? hot_exact : hot_unknown)++;
    } else {
      ++cold_sent;
      cold_exact += s.offset >= 0;
    }
  }
  EXPECT_EQ(cold_exact, cold_sent) << "a cold record was answered an unknown offset";
  EXPECT_GT(moved, hot_sent / 2) << "the hot key's records were not spread";
  EXPECT_GE(hot_unknown, moved) << "moved records reported at an offset";
  std::printf("librdkafka with a hot key: cold %d of %d exact; hot %d sent, %d moved off the "
              "client's partition, %d reported unknown, %d exact\n",
              cold_exact, cold_sent, hot_sent, moved, hot_unknown, hot_exact);
}

TEST_F(KafkaOffsetsRealKafkaTest, JavasRecordMetadataOffsetsAreExactOrUnknownNeverWrong) {
  const std::string topic = "offsets-java-hot";
  ASSERT_THAT(kafka_->CreateTopic(topic, kPartitions), IsOk());
  // The hot key salted before the Java producer starts (it sends in well under a second).
  Librdkafka heater(proxy_);
  int heated = 0;
  Heat(heater, topic, "hot", &heated);
  if (HasFatalFailure()) return;
  auto [rc, classpath] = Shell(std::string("bash ") + SALTPROXY_SOURCE_DIR +
                               "/tests/kafka/broker.sh classpath");
  ASSERT_EQ(rc, 0) << classpath;
  while (!classpath.empty() && classpath.back() == '\n') classpath.pop_back();
  classpath = classpath.substr(classpath.find_last_of('\n') + 1);
  const std::string classes = ::testing::TempDir() + "/saltproxy-java-offsets";
  auto [javac_rc, javac_out] = Shell(absl::StrCat(
      "mkdir -p ", classes, " && javac -cp '", classpath, "' -d ", classes, " ",
      SALTPROXY_SOURCE_DIR, "/tests/e2e/java/KeyedProducer.java"));
  ASSERT_EQ(javac_rc, 0) << javac_out;
  constexpr int kRecords = 2000;
  // Every second record is the hot key's.
  auto [java_rc, out] = Shell(absl::StrCat("java -Xmx256m -cp '", classpath, ":", classes,
                                           "' KeyedProducer ", proxy_, " ", topic, " ", kRecords,
                                           " none 2"));
  ASSERT_EQ(java_rc, 0) << out;
  const std::map<std::string, Where> at = ReadBack(topic, heated + kRecords);
  std::istringstream lines(out);
  std::string word, value;
  int32_t partition;
  int64_t offset;
  int seen = 0, exact = 0, unknown = 0;
  while (lines >> word) {
    if (word != "meta") continue;
    ASSERT_TRUE(lines >> value >> partition >> offset);
    ++seen;
    const int i = std::stoi(value.substr(value.find('-') + 1));
    const std::string key = i % 2 == 0 ? "hot" : absl::StrCat("key-", i % 7);
    EXPECT_EQ(partition, DefaultPartition(key, kPartitions)) << value;  // Java's murmur2
    auto it = at.find(value);
    ASSERT_NE(it, at.end()) << "lost: " << value;
    if (offset >= 0) {
      ++exact;
      EXPECT_EQ(it->second.partition, partition) << value;
      EXPECT_EQ(it->second.offset, offset) << value << " was told a wrong offset";
    } else {
      ++unknown;
    }
  }
  EXPECT_EQ(seen, kRecords);
  EXPECT_GT(unknown, 0) << "no record of the hot key was moved";
  std::printf("Java kafka-clients with a hot key: %d of %d RecordMetadata offsets exact, %d "
              "unknown, 0 wrong\n", exact, seen, unknown);
}

}  // namespace
}  // namespace saltproxy
