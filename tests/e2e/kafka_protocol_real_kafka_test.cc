// Unmodified Kafka clients produce through saltproxy's Kafka listener into a real broker:
// kcat (librdkafka) with every compression codec, plain and idempotent, with headers; a real
// consumer of the broker finds every record exactly once, with the same key, value and
// headers, in per-key order, on the partition the client chose (librdkafka's CRC32, the Java
// client's murmur2). And a retried idempotent batch, sent twice by hand, is written once.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "proxy/kafka/metadata_client.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"
#include "saltproxy/partitioner.h"
#include "testing/process.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::ConsumedRecord;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Shell;
using ::saltproxy::testing::WaitUntil;

class KafkaProtocolRealKafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: warn
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0}
# Seven keys are all hot by share; this test is about compatibility, so nothing is salted.
salting: {control_topic: "", defaults: {strategy: "off"}}
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
  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
  std::string proxy_;
};

TEST_F(KafkaProtocolRealKafkaTest, MetadataCarriesTheClustersTopicIds) {
  ASSERT_THAT(kafka_->CreateTopic("with-id", 3), IsOk());
  absl::StatusOr<kafka::TopicIds> broker = kafka::FetchTopicIds(kafka_->bootstrap(), absl::Seconds(10));
  ASSERT_THAT(broker, IsOk());
  ASSERT_TRUE(broker->contains("with-id"));
  EXPECT_NE(broker->at("with-id"), kafka::Uuid{});
  // Asked of saltproxy with the same request, Metadata v12 names the broker's id (as soon as
  // saltproxy has asked the cluster: at start, then at once for a topic it did not know).
  absl::StatusOr<kafka::TopicIds> proxied;
  int attempts = 0;
  WaitUntil([&] {
    ++attempts;
    proxied = kafka::FetchTopicIds(proxy_, absl::Seconds(10));
    return !proxied.ok() || proxied->contains("with-id");
  });
  ASSERT_THAT(proxied, IsOk());
  ASSERT_TRUE(proxied->contains("with-id")) << "saltproxy never gave the topic's id";
  std::printf("saltproxy gave the id after %d attempts\n", attempts);
  EXPECT_EQ(proxied->at("with-id"), broker->at("with-id"));
}

TEST_F(KafkaProtocolRealKafkaTest, KcatProducesThroughSaltproxyWithEveryCodec) {
  const std::string topic = "kcat-e2e";
  ASSERT_THAT(kafka_->CreateTopic(topic, 6), IsOk());
  const std::vector<std::string> codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
  const int kPerRun = 40;
  int n = 0;
  std::string outputs;  // every kcat run's output, shown if a record goes missing
  for (const std::string& codec : codecs) {
    for (bool idempotent : {false, true}) {
      std::string input = ::testing::TempDir() + "/kcat-input.txt";
      {
        std::ofstream out(input);
        for (int i = 0; i < kPerRun; ++i, ++n) out << "key-" << n % 7 << ":" << codec << "-" << n << "\n";
      }
      std::string command = absl::StrCat(
          "kcat -P -b ", proxy_, " -t ", topic, " -K: -z ", codec, " -H origin=kcat -H codec=",
          codec, idempotent ? " -X enable.idempotence=true" : "", " -l ", input, " 2>&1");
      FILE* pipe = popen(command.c_str(), "r");
      ASSERT_NE(pipe, nullptr);
      char buf[512];
      std::string output;
      while (fgets(buf, sizeof buf, pipe)) output += buf;
      ASSERT_EQ(pclose(pipe), 0) << command << "\n" << output;
      absl::StrAppend(&outputs, command, "\n", output);
    }
  }
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll(topic, n, absl::Seconds(60));
  ASSERT_THAT(records, IsOk()) << outputs;
  ASSERT_EQ(records->size(), static_cast<size_t>(n));  // nothing lost
  std::sort(records->begin(), records->end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::set<int> seen;
  std::map<std::string, int> last;  // key → last record number, in partition order
  for (const ConsumedRecord& r : *records) {
    ASSERT_TRUE(r.key && r.value);
    const std::string& value = *r.value;
    int number = std::stoi(value.substr(value.find('-') + 1));
    EXPECT_TRUE(seen.insert(number).second) << "duplicate " << number;
    EXPECT_EQ(*r.key, absl::StrCat("key-", number % 7));
    EXPECT_EQ(r.Header("origin"), "kcat");
    EXPECT_EQ(r.Header("codec"), value.substr(0, value.find('-')));
    // Where kcat's partitioner (librdkafka's default, consistent_random: CRC32) put it.
    EXPECT_EQ(r.partition, rd_kafka_msg_partitioner_consistent(nullptr, r.key->data(),
                                                               r.key->size(), 6, nullptr, nullptr))
        << *r.key;
    auto it = last.find(*r.key);
    if (it != last.end()) {
      EXPECT_GT(number, it->second) << "out of order for " << *r.key;
    }
    last[*r.key] = number;
  }
}

TEST_F(KafkaProtocolRealKafkaTest, JavaProducerWithDefaultSettingsAndLz4AndZstd) {
  const std::string topic = "java-e2e";
  ASSERT_THAT(kafka_->CreateTopic(topic, 6), IsOk());
  auto [rc, classpath] = Shell(std::string("bash ") + SALTPROXY_SOURCE_DIR +
                               "/tests/kafka/broker.sh classpath");
  ASSERT_EQ(rc, 0) << classpath;
  // The last line is the classpath (a first run also reports its download before it).
  while (!classpath.empty() && classpath.back() == '\n') classpath.pop_back();
  classpath = classpath.substr(classpath.find_last_of('\n') + 1);
  const std::string classes = ::testing::TempDir() + "/saltproxy-java";
  auto [javac_rc, javac_out] = Shell(absl::StrCat(
      "mkdir -p ", classes, " && javac -cp '", classpath, "' -d ", classes, " ",
      SALTPROXY_SOURCE_DIR, "/tests/e2e/java/KeyedProducer.java"));
  ASSERT_EQ(javac_rc, 0) << javac_out;
  const int kPerRun = 300;
  // The kafka-clients defaults: idempotent, acks=all; then lz4 and zstd.
  for (const char* codec : {"none", "lz4", "zstd"}) {
    auto [java_rc, out] = Shell(absl::StrCat("java -Xmx256m -cp '", classpath, ":", classes,
                                             "' KeyedProducer ", proxy_, " ", topic, " ",
                                             kPerRun, " ", codec));
    ASSERT_EQ(java_rc, 0) << out;
  }
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll(topic, 3 * kPerRun, absl::Seconds(60));
  ASSERT_THAT(records, IsOk());
  ASSERT_EQ(records->size(), static_cast<size_t>(3 * kPerRun));
  std::sort(records->begin(), records->end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::set<std::string> seen;
  std::map<std::string, int> last;  // codec/key → last number in partition order
  for (const ConsumedRecord& r : *records) {
    ASSERT_TRUE(r.key && r.value);
    EXPECT_TRUE(seen.insert(*r.value).second) << "duplicate " << *r.value;
    EXPECT_EQ(r.Header("origin"), "java");
    std::string codec = r.value->substr(0, r.value->find('-'));
    int number = std::stoi(r.value->substr(r.value->find('-') + 1));
    EXPECT_EQ(*r.key, absl::StrCat("key-", number % 7));
    EXPECT_EQ(r.partition, DefaultPartition(*r.key, 6));
    std::string order_key = codec + "/" + *r.key;
    if (last.contains(order_key)) {
      EXPECT_GT(number, last[order_key]) << order_key;
    }
    last[order_key] = number;
  }
}

TEST_F(KafkaProtocolRealKafkaTest, KafkajsProducerFromNpm) {
  const std::string topic = "kafkajs-e2e";
  ASSERT_THAT(kafka_->CreateTopic(topic, 6), IsOk());
  const std::string modules = std::string(SALTPROXY_SOURCE_DIR) + "/.cache/node";
  auto [npm_rc, npm_out] = Shell(absl::StrCat(
      "test -d ", modules, "/node_modules/kafkajs || npm install --prefix ", modules,
      " --no-audit --no-fund kafkajs@2.2.4"));
  ASSERT_EQ(npm_rc, 0) << npm_out;
  const int kRecords = 300;
  auto [rc, out] = Shell(absl::StrCat("NODE_PATH=", modules, "/node_modules node ",
                                      SALTPROXY_SOURCE_DIR, "/tests/e2e/node/produce.js ", proxy_,
                                      " ", topic, " ", kRecords));
  ASSERT_EQ(rc, 0) << out;
  absl::StatusOr<std::vector<ConsumedRecord>> records =
      kafka_->ConsumeAll(topic, kRecords, absl::Seconds(60));
  ASSERT_THAT(records, IsOk());
  ASSERT_EQ(records->size(), static_cast<size_t>(kRecords));
  std::sort(records->begin(), records->end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::set<std::string> seen;
  std::map<std::string, int> last;
  for (const ConsumedRecord& r : *records) {
    ASSERT_TRUE(r.key && r.value);
    EXPECT_TRUE(seen.insert(*r.value).second) << "duplicate " << *r.value;
    EXPECT_EQ(r.Header("origin"), "kafkajs");
    int number = std::stoi(r.value->substr(r.value->find('-') + 1));
    EXPECT_EQ(*r.key, absl::StrCat("key-", number % 7));
    EXPECT_EQ(r.partition, DefaultPartition(*r.key, 6));
    if (last.contains(*r.key)) {
      EXPECT_GT(number, last[*r.key]) << *r.key;
    }
    last[*r.key] = number;
  }
}

// Sends one request frame and reads one answer frame.
std::string RoundTrip(boost::asio::ip::tcp::socket& s, const std::string& payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
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

TEST_F(KafkaProtocolRealKafkaTest, RetriedIdempotentBatchIsWrittenOnce) {
  using namespace ::saltproxy::kafka;  // NOLINT
  const std::string topic = "idempotent-e2e";
  ASSERT_THAT(kafka_->CreateTopic(topic, 1), IsOk());
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), app_->kafka_port()});

  // Metadata v1 for the topic first, as every client does before producing.
  WireWriter metadata;
  metadata.Int16(kMetadata);
  metadata.Int16(1);
  metadata.Int32(0);
  metadata.NullableString(std::string("test"), false);
  metadata.ArrayLength(1, false);
  metadata.String(topic, false);
  RoundTrip(s, metadata.data());

  // InitProducerId v1.
  WireWriter init;
  init.Int16(kInitProducerId);
  init.Int16(1);
  init.Int32(1);
  init.NullableString(std::string("test"), false);
  init.NullableString(std::nullopt, false);
  init.Int32(60000);
  const std::string id_bytes = RoundTrip(s, init.data());
  WireReader id_answer(id_bytes);
  EXPECT_EQ(id_answer.Int32(), 1);  // correlation id
  id_answer.Int32();                // throttle
  ASSERT_EQ(id_answer.Int16(), kNone);
  int64_t pid = id_answer.Int64();
  int16_t epoch = id_answer.Int16();

  // The same Produce v7 request twice: a client retrying after a lost answer.
  RecordBatch batch;
  batch.producer_id = pid;
  batch.producer_epoch = epoch;
  batch.base_sequence = 0;
  for (int i = 0; i < 3; ++i) {
    BatchRecord r;
    r.offset_delta = i;
    r.key = "k";
    r.value = absl::StrCat("v", i);
    batch.records.push_back(r);
  }
  std::string records = EncodeRecordBatch(batch, Compression::kNone);
  auto produce = [&](int32_t correlation) {
    WireWriter w;
    w.Int16(kProduce);
    w.Int16(7);
    w.Int32(correlation);
    w.NullableString(std::string("test"), false);
    w.NullableString(std::nullopt, false);
    w.Int16(-1);
    w.Int32(30000);
    w.ArrayLength(1, false);
    w.String(topic, false);
    w.ArrayLength(1, false);
    w.Int32(0);
    w.NullableBytes(records, false);
    const std::string bytes = RoundTrip(s, w.data());
    WireReader answer(bytes);
    EXPECT_EQ(answer.Int32(), correlation);
    EXPECT_EQ(answer.ArrayLength(false), 1);
    EXPECT_EQ(answer.String(false), topic);
    EXPECT_EQ(answer.ArrayLength(false), 1);
    EXPECT_EQ(answer.Int32(), 0);
    EXPECT_EQ(answer.Int16(), kNone);
    return answer.Int64();  // base offset
  };
  int64_t first = produce(2);
  int64_t retried = produce(3);
  EXPECT_EQ(first, retried);
  // A gap in the sequence is refused.
  batch.base_sequence = 10;
  records = EncodeRecordBatch(batch, Compression::kNone);
  WireWriter gap;
  gap.Int16(kProduce);
  gap.Int16(7);
  gap.Int32(4);
  gap.NullableString(std::nullopt, false);
  gap.NullableString(std::nullopt, false);
  gap.Int16(-1);
  gap.Int32(30000);
  gap.ArrayLength(1, false);
  gap.String(topic, false);
  gap.ArrayLength(1, false);
  gap.Int32(0);
  gap.NullableBytes(records, false);
  const std::string gap_bytes = RoundTrip(s, gap.data());
  WireReader gap_answer(gap_bytes);
  gap_answer.Int32();
  gap_answer.ArrayLength(false);
  gap_answer.String(false);
  gap_answer.ArrayLength(false);
  gap_answer.Int32();
  EXPECT_EQ(gap_answer.Int16(), kOutOfOrderSequenceNumber);

  absl::StatusOr<std::vector<int64_t>> ends = kafka_->EndOffsets(topic);
  ASSERT_THAT(ends, IsOk());
  EXPECT_EQ((*ends)[0], 3) << "the retried batch was written twice";
}

TEST_F(KafkaProtocolRealKafkaTest, TransactionalProducersAreRefusedClearly) {
  using namespace ::saltproxy::kafka;  // NOLINT
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), app_->kafka_port()});
  WireWriter init;
  init.Int16(kInitProducerId);
  init.Int16(1);
  init.Int32(1);
  init.NullableString(std::nullopt, false);
  init.NullableString(std::string("my-transactions"), false);
  init.Int32(60000);
  const std::string bytes = RoundTrip(s, init.data());
  WireReader answer(bytes);
  answer.Int32();
  answer.Int32();
  EXPECT_EQ(answer.Int16(), kTransactionalIdAuthorizationFailed);
}

}  // namespace
}  // namespace saltproxy
