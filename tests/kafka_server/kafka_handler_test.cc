// The Kafka handler against a sink that delivers when the test says, so that the order in which
// an idempotent producer's batches are written, and what each is answered, is in the test's
// hands.
#include "proxy/kafka_server/kafka_handler.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/common/retry_after.h"
#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"
#include "proxy/kafka/wire.h"
#include "proxy/salting/router.h"
#include "testing/held_sink.h"

namespace saltproxy {
namespace {

using namespace ::saltproxy::kafka;  // NOLINT: the protocol's names, as the handler uses them

using ::saltproxy::testing::FixedUpstream;
using ::saltproxy::testing::HeldSink;

struct Answer {
  int16_t error = -1;
  int64_t base_offset = -1;
  int32_t throttle_time_ms = -1;
};

class KafkaHandlerTest : public ::testing::Test {
 protected:
  // Produce v7 of one batch of one record, sequence `seq`, from the registry's producer.
  void Produce(int32_t correlation, int32_t seq) { Produce(correlation, seq, 1); }
  // Produce v7 of one batch of `records` records (values "v<seq>", "v<seq+1>", …) for partition
  // 0 of "t", sequence `seq` on (or no producer id, when seq < 0).
  void Produce(int32_t correlation, int32_t seq, int records) {
    RecordBatch batch;
    batch.producer_id = seq >= 0 ? id.producer_id : -1;
    batch.producer_epoch = seq >= 0 ? id.epoch : -1;
    batch.base_sequence = seq;
    for (int i = 0; i < records; ++i) {
      BatchRecord r;
      r.offset_delta = i;
      r.key = "k";
      r.value = absl::StrCat("v", (seq >= 0 ? seq : 0) + i);
      batch.records.push_back(r);
    }
    WireWriter w;
    w.Int16(kProduce);
    w.Int16(7);
    w.Int32(correlation);
    w.NullableString(std::string("test"), false);
    w.NullableString(std::nullopt, false);  // no transactional id
    w.Int16(-1);                            // acks=all
    w.Int32(30000);
    w.ArrayLength(1, false);
    w.String("t", false);
    w.ArrayLength(1, false);
    w.Int32(0);
    w.NullableBytes(EncodeRecordBatch(batch, Compression::kNone), false);
    handler.Handle(w.data(), connection, FrameReply([this](FrameReply::Kind, std::string payload) {
                     WireReader in(payload);
                     int32_t correlation = in.Int32();
                     in.ArrayLength(false);
                     in.String(false);
                     in.ArrayLength(false);
                     in.Int32();
                     Answer a;
                     a.error = in.Int16();
                     a.base_offset = in.Int64();
                     in.Int64();  // log_append_time_ms
                     in.Int64();  // log_start_offset
                     a.throttle_time_ms = in.Int32();
                     answers[correlation] = a;
                   }));
  }

  // ApiVersions v3 on `connection`, the client naming its software as `name`.
  void Hello(const std::string& name) {
    WireWriter w;
    w.Int16(kApiVersions);
    w.Int16(3);
    w.Int32(0);
    w.NullableString(std::string("test"), false);
    w.EmptyTaggedFields();
    w.String(name, true);
    w.String("1.0", true);
    w.EmptyTaggedFields();
    bool answered = false;
    handler.Handle(w.data(), connection, FrameReply([&](FrameReply::Kind kind, std::string) {
                     answered = kind == FrameReply::Kind::kRespond;
                   }));
    ASSERT_TRUE(answered);
  }

  uint64_t connection = 1;  // the one Produce and Hello use
  Metrics metrics;
  HeldSink sink;
  FixedUpstream upstream{1};
  ProducerRegistry registry{100};
  ProducerRegistry::Issued id = registry.Init();
  KafkaHandler handler{KafkaHandlerOptions{}, sink, upstream, registry, metrics};
  std::map<int32_t, Answer> answers;  // by correlation id

  // Hands `request` (a header and body written by the test) to the handler; the answer's body
  // after its correlation id, or nullopt when the connection was closed.
  std::optional<std::string> Ask(const std::string& request) {
    std::optional<std::string> answer;
    handler.Handle(request, 1, FrameReply([&](FrameReply::Kind kind, std::string payload) {
                     if (kind == FrameReply::Kind::kRespond) answer = payload.substr(4);
                   }));
    return answer;
  }
  std::string Counted(const std::string& api, const std::string& outcome) {
    const std::string series = absl::StrCat("saltproxy_kafka_unserved_requests_total{api=\"", api,
                                            "\",outcome=\"", outcome, "\"} ");
    const std::string text = metrics.Serialize();
    size_t at = text.find(series);
    return at == std::string::npos ? "absent"
                                   : text.substr(at + series.size(),
                                                 text.find('\n', at) - at - series.size());
  }
};

// A request header v1 (every API below, in the versions used, is not flexible).
WireWriter Header(int16_t api, int16_t version) {
  WireWriter w;
  w.Int16(api);
  w.Int16(version);
  w.Int32(7);
  w.NullableString(std::string("unserved-test"), false);
  return w;
}

TEST_F(KafkaHandlerTest, FindCoordinatorForATransactionIsRefusedForGoodWithTheReason) {
  WireWriter w = Header(kFindCoordinator, 2);
  w.String("my-transactions", false);
  w.Int8(kTransactionCoordinator);
  std::optional<std::string> answer = Ask(w.data());
  ASSERT_TRUE(answer.has_value()) << "the connection was closed";
  WireReader in(*answer);
  EXPECT_EQ(in.Int32(), 0);  // throttle time
  // Not COORDINATOR_NOT_AVAILABLE, which clients retry until their own timeout.
  EXPECT_EQ(in.Int16(), kClusterAuthorizationFailed);
  std::optional<std::string> message = in.NullableString(false);
  ASSERT_TRUE(message.has_value());
  EXPECT_NE(message->find("produce-only gateway"), std::string::npos) << *message;
  EXPECT_NE(message->find("transactional.id"), std::string::npos) << *message;
  EXPECT_EQ(in.Int32(), -1);  // node id
  EXPECT_EQ(in.String(false), "");
  EXPECT_EQ(in.Int32(), -1);  // port
  EXPECT_TRUE(in.ok());
  EXPECT_EQ(in.remaining(), 0u);
  EXPECT_EQ(Counted("find_coordinator", "refused"), "1");
}

TEST_F(KafkaHandlerTest, FindCoordinatorForAGroupIsAnsweredGroupAuthorizationFailed) {
  WireWriter v1 = Header(kFindCoordinator, 1);
  v1.String("my-group", false);
  v1.Int8(kGroupCoordinator);
  std::optional<std::string> answer = Ask(v1.data());
  ASSERT_TRUE(answer.has_value());
  WireReader in(*answer);
  in.Int32();
  EXPECT_EQ(in.Int16(), kGroupAuthorizationFailed);
  std::optional<std::string> message = in.NullableString(false);
  ASSERT_TRUE(message.has_value());
  EXPECT_NE(message->find("produce-only gateway"), std::string::npos) << *message;
  // v0: a group's key alone, and no throttle time or message in the answer.
  WireWriter v0 = Header(kFindCoordinator, 0);
  v0.String("my-group", false);
  answer = Ask(v0.data());
  ASSERT_TRUE(answer.has_value());
  WireReader in0(*answer);
  EXPECT_EQ(in0.Int16(), kGroupAuthorizationFailed);
  EXPECT_EQ(in0.Int32(), -1);
  EXPECT_EQ(in0.String(false), "");
  EXPECT_EQ(in0.Int32(), -1);
  EXPECT_EQ(in0.remaining(), 0u);
  EXPECT_EQ(Counted("find_coordinator", "refused"), "2");
}

TEST_F(KafkaHandlerTest, FetchGetsTopicAuthorizationFailedPerPartitionAndNoErrorAtTheTop) {
  WireWriter w = Header(kFetch, 11);
  w.Int32(-1);       // replica id
  w.Int32(500);      // max wait
  w.Int32(1);        // min bytes
  w.Int32(1 << 20);  // max bytes
  w.Int8(0);         // isolation level
  w.Int32(0);        // session id
  w.Int32(-1);       // session epoch
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(1, false);
  w.Int32(2);   // partition
  w.Int32(-1);  // current leader epoch
  w.Int64(0);   // fetch offset
  w.Int64(-1);  // log start offset
  w.Int32(1 << 20);
  w.ArrayLength(0, false);  // forgotten topics
  w.String("", false);      // rack id
  std::optional<std::string> answer = Ask(w.data());
  ASSERT_TRUE(answer.has_value());
  WireReader in(*answer);
  in.Int32();  // throttle time
  // An error here is, to the Java client, its fetch session's: it would fetch again for ever.
  EXPECT_EQ(in.Int16(), kNone);
  EXPECT_EQ(in.Int32(), 0);  // session id
  ASSERT_EQ(in.ArrayLength(false), 1);
  EXPECT_EQ(in.String(false), "t");
  ASSERT_EQ(in.ArrayLength(false), 1);
  EXPECT_EQ(in.Int32(), 2);
  EXPECT_EQ(in.Int16(), kTopicAuthorizationFailed);
  in.Int64();  // high watermark
  in.Int64();  // last stable offset
  in.Int64();  // log start offset
  in.ArrayLength(false);  // aborted transactions
  EXPECT_EQ(in.Int32(), -1);  // preferred read replica
  // Empty, not null: librdkafka takes a null for a parse failure and fetches again for ever.
  std::optional<std::string_view> records = in.NullableBytes(false);
  ASSERT_TRUE(records.has_value());
  EXPECT_TRUE(records->empty());
  EXPECT_TRUE(in.ok());
  EXPECT_EQ(Counted("fetch", "refused"), "1");
}

TEST_F(KafkaHandlerTest, ListOffsetsGetsTopicAuthorizationFailedPerPartition) {
  // v1, as kafka-go's Reader sends it without asking ApiVersions first: it was closed, and
  // kafka-go showed "unexpected EOF".
  WireWriter w = Header(kListOffsets, 1);
  w.Int32(-1);  // replica id
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(2, false);
  for (int32_t p : {0, 1}) {
    w.Int32(p);
    w.Int64(-2);  // the earliest offset
  }
  std::optional<std::string> answer = Ask(w.data());
  ASSERT_TRUE(answer.has_value()) << "the connection was closed";
  WireReader in(*answer);
  ASSERT_EQ(in.ArrayLength(false), 1);  // no throttle time before v2
  EXPECT_EQ(in.String(false), "t");
  ASSERT_EQ(in.ArrayLength(false), 2);
  for (int32_t p : {0, 1}) {
    EXPECT_EQ(in.Int32(), p);
    EXPECT_EQ(in.Int16(), kTopicAuthorizationFailed);
    EXPECT_EQ(in.Int64(), -1);  // timestamp
    EXPECT_EQ(in.Int64(), -1);  // offset
  }
  EXPECT_TRUE(in.ok());
  EXPECT_EQ(in.remaining(), 0u);
  EXPECT_EQ(Counted("list_offsets", "refused"), "1");
}

TEST_F(KafkaHandlerTest, CreateTopicsIsRefusedPerTopicWithTheReason) {
  WireWriter w = Header(kCreateTopics, 4);
  w.ArrayLength(2, false);
  for (const char* name : {"a", "b"}) {
    w.String(name, false);
    w.Int32(3);   // partitions
    w.Int16(1);   // replication factor
    w.ArrayLength(0, false);
    w.ArrayLength(1, false);
    w.String("cleanup.policy", false);
    w.NullableString(std::string("compact"), false);
  }
  w.Int32(30000);
  w.Bool(false);
  std::optional<std::string> answer = Ask(w.data());
  ASSERT_TRUE(answer.has_value());
  WireReader in(*answer);
  EXPECT_EQ(in.Int32(), 0);  // throttle time
  ASSERT_EQ(in.ArrayLength(false), 2);
  for (const char* name : {"a", "b"}) {
    EXPECT_EQ(in.String(false), name);
    EXPECT_EQ(in.Int16(), kClusterAuthorizationFailed);
    std::optional<std::string> message = in.NullableString(false);
    ASSERT_TRUE(message.has_value());
    EXPECT_NE(message->find("produce-only gateway"), std::string::npos) << *message;
  }
  EXPECT_EQ(in.remaining(), 0u);
  EXPECT_EQ(Counted("create_topics", "refused"), "1");
}

TEST_F(KafkaHandlerTest, AnUnknownApiClosesTheConnectionAndIsCounted) {
  WireWriter w = Header(/*DeleteTopics*/ 20, 1);
  w.ArrayLength(0, false);
  w.Int32(30000);
  FrameReply::Kind kind = FrameReply::Kind::kRespond;
  handler.Handle(w.data(), 1, FrameReply([&](FrameReply::Kind k, std::string) { kind = k; }));
  EXPECT_EQ(kind, FrameReply::Kind::kClose);
  EXPECT_EQ(Counted("unknown", "closed"), "1");
  EXPECT_EQ(Counted("fetch", "refused"), "0");
}

TEST_F(KafkaHandlerTest, ProduceV2IsAnsweredUnsupportedVersionPerPartitionInItsOwnLayout) {
  WireWriter w;
  w.Int16(kProduce);
  w.Int16(2);
  w.Int32(9);
  w.NullableString(std::string("old-client"), false);
  w.Int16(1);  // acks=1, and no transactional id before it in v2
  w.Int32(30000);
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(2, false);
  for (int32_t p : {0, 3}) {
    w.Int32(p);
    w.NullableBytes(std::string("a message set of format v1"), false);
  }
  std::optional<std::string> answer;
  FrameReply::Kind kind = FrameReply::Kind::kClose;
  handler.Handle(w.data(), 1, FrameReply([&](FrameReply::Kind k, std::string payload) {
                   kind = k;
                   answer = std::move(payload);
                 }));
  ASSERT_TRUE(answer.has_value());
  ASSERT_EQ(kind, FrameReply::Kind::kRespond) << *answer;
  WireReader in(*answer);
  EXPECT_EQ(in.Int32(), 9);  // correlation id
  ASSERT_EQ(in.ArrayLength(false), 1);
  EXPECT_EQ(in.String(false), "t");
  ASSERT_EQ(in.ArrayLength(false), 2);
  for (int32_t p : {0, 3}) {
    EXPECT_EQ(in.Int32(), p);
    EXPECT_EQ(in.Int16(), kUnsupportedVersion);
    EXPECT_EQ(in.Int64(), -1);  // base offset
    in.Int64();                 // log append time (v2)
  }
  EXPECT_EQ(in.Int32(), 0);  // throttle time
  EXPECT_TRUE(in.ok());
  EXPECT_EQ(in.remaining(), 0u);
  EXPECT_TRUE(sink.records.empty());
}

TEST_F(KafkaHandlerTest, AnEmptyRecordsFieldOrABatchWithoutRecordsIsRefusedAsInvalid) {
  RecordBatch empty;  // a well-formed batch of no records
  for (const std::string& records : {std::string(), EncodeRecordBatch(empty, Compression::kNone)}) {
    SCOPED_TRACE(records.size());
    WireWriter w;
    w.Int16(kProduce);
    w.Int16(7);
    w.Int32(4);
    w.NullableString(std::string("test"), false);
    w.NullableString(std::nullopt, false);
    w.Int16(-1);
    w.Int32(30000);
    w.ArrayLength(1, false);
    w.String("t", false);
    w.ArrayLength(1, false);
    w.Int32(0);
    w.NullableBytes(records, false);
    std::optional<std::string> answer;
    handler.Handle(w.data(), 1, FrameReply([&](FrameReply::Kind kind, std::string payload) {
                     if (kind == FrameReply::Kind::kRespond) answer = std::move(payload);
                   }));
    ASSERT_TRUE(answer.has_value());
    WireReader in(*answer);
    in.Int32();
    in.ArrayLength(false);
    in.String(false);
    in.ArrayLength(false);
    EXPECT_EQ(in.Int32(), 0);
    EXPECT_EQ(in.Int16(), kInvalidRecord);
    EXPECT_TRUE(sink.records.empty());
  }
}

TEST_F(KafkaHandlerTest, TheDecodedSizeBoundHoldsForAllPartitionsOfARequestTogether) {
  KafkaHandlerOptions options;
  options.max_decompressed_bytes = 1500 * kDecodedRecordCost;
  KafkaHandler bounded(options, sink, upstream, registry, metrics);
  RecordBatch batch;  // 1,000 records: one partition's fit, a second's do not
  batch.records.resize(1000);
  const std::string records = EncodeRecordBatch(batch, Compression::kZstd);
  WireWriter w;
  w.Int16(kProduce);
  w.Int16(7);
  w.Int32(5);
  w.NullableString(std::string("test"), false);
  w.NullableString(std::nullopt, false);
  w.Int16(1);
  w.Int32(30000);
  w.ArrayLength(1, false);
  w.String("t", false);
  w.ArrayLength(2, false);
  for (int i = 0; i < 2; ++i) {
    w.Int32(0);
    w.NullableBytes(records, false);
  }
  std::optional<std::string> answer;
  bounded.Handle(w.data(), 1, FrameReply([&](FrameReply::Kind kind, std::string payload) {
                   if (kind == FrameReply::Kind::kRespond) answer = std::move(payload);
                 }));
  ASSERT_EQ(sink.records.size(), 1000u);  // the first partition's
  for (size_t i = 0; i < sink.records.size(); ++i) sink.Deliver(i, static_cast<int64_t>(i));
  ASSERT_TRUE(answer.has_value());
  WireReader in(*answer);
  in.Int32();
  in.ArrayLength(false);
  in.String(false);
  ASSERT_EQ(in.ArrayLength(false), 2);
  in.Int32();
  EXPECT_EQ(in.Int16(), kNone);
  in.Int64();  // base offset
  in.Int64();  // log append time
  in.Int64();  // log start offset (v5-v7: nothing after it)
  in.Int32();
  EXPECT_EQ(in.Int16(), kMessageTooLarge);
}

TEST_F(KafkaHandlerTest, ABatchWrittenBeforeTheOneBeforeItIsAnsweredAfterIt) {
  Produce(1, 0);
  Produce(2, 1);
  ASSERT_EQ(sink.records.size(), 2u);
  sink.Deliver(1, 8);  // the second batch is written first
  EXPECT_FALSE(answers.contains(2)) << "acknowledged before the batch before it was written";
  sink.Deliver(0, 7);
  ASSERT_TRUE(answers.contains(1) && answers.contains(2));
  EXPECT_EQ(answers[1].error, kNone);
  EXPECT_EQ(answers[1].base_offset, 7);
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, 8);
}

TEST_F(KafkaHandlerTest, ABatchWrittenAfterTheOneBeforeItFailedIsNotAcknowledged) {
  // Answered "written", the second batch would tell librdkafka the first was written too, and
  // it would report the first batch's record delivered without resending it.
  Produce(1, 0);
  Produce(2, 1);
  ASSERT_EQ(sink.records.size(), 2u);
  sink.Deliver(1, 8);
  sink.Fail(0);
  ASSERT_TRUE(answers.contains(1) && answers.contains(2));
  EXPECT_EQ(answers[1].error, kRequestTimedOut);
  EXPECT_EQ(answers[2].error, kOutOfOrderSequenceNumber);
  // The client resends from the first batch: it is written; the second, written already, is
  // not written again, and is answered with its first attempt's offset once the first is in.
  answers.clear();
  Produce(3, 0);
  Produce(4, 1);
  ASSERT_EQ(sink.records.size(), 3u);
  EXPECT_EQ(sink.records[2].value, "v0");
  EXPECT_FALSE(answers.contains(4)) << "acknowledged before the batch before it was written";
  sink.Deliver(2, 9);
  EXPECT_EQ(answers[3].error, kNone);
  EXPECT_EQ(answers[3].base_offset, 9);
  EXPECT_EQ(answers[4].error, kNone);
  EXPECT_EQ(answers[4].base_offset, 8);
}

// A partition's base offset tells the client where each of its records is (base + index): it is
// given only when that holds, and -1 (unknown) otherwise; never a wrong one.
TEST_F(KafkaHandlerTest, ABatchWrittenContiguouslyInOrderOnItsPartitionIsAnsweredItsBaseOffset) {
  Produce(1, -1, 3);
  ASSERT_EQ(sink.records.size(), 3u);
  // Reports may come in any order; the offsets are what count.
  sink.DeliverTo(2, "t", 0, 12);
  sink.DeliverTo(0, "t", 0, 10);
  sink.DeliverTo(1, "t", 0, 11);
  ASSERT_TRUE(answers.contains(1));
  EXPECT_EQ(answers[1].error, kNone);
  EXPECT_EQ(answers[1].base_offset, 10);
}

// The Java client reads a base offset of -1 as "unknown" for each record; librdkafka (as Sarama
// and kafka-python) computes base + index whatever the base, so -1 would tell it 0, 1, … for
// the records after the first: it is told -n, every record's offset negative.
TEST_F(KafkaHandlerTest, ABatchNotWrittenContiguouslyInOrderOnItsPartitionGetsAnUnknownOffset) {
  struct Case {
    const char* what;
    std::vector<std::tuple<std::string, int32_t, int64_t>> at;  // per record: topic, partition
  };
  const std::vector<Case> cases = {
      {"another record between them", {{"t", 0, 10}, {"t", 0, 12}, {"t", 0, 13}}},
      {"out of the client's order", {{"t", 0, 11}, {"t", 0, 10}, {"t", 0, 12}}},
      {"one salted to another partition", {{"t", 0, 10}, {"t", 3, 11}, {"t", 0, 12}}},
      {"one rerouted to the hot topic", {{"t", 0, 10}, {"t.hot", 0, 11}, {"t", 0, 12}}},
  };
  int32_t correlation = 0;
  for (const auto& [software, unknown] :
       std::vector<std::pair<std::string, int64_t>>{{"apache-kafka-java", -1}, {"librdkafka", -3}}) {
    ++connection;
    Hello(software);
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(software, ": ", c.what));
      sink.Clear();
      Produce(++correlation, -1, 3);
      ASSERT_EQ(sink.records.size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        sink.DeliverTo(i, std::get<0>(c.at[i]), std::get<1>(c.at[i]), std::get<2>(c.at[i]));
      }
      ASSERT_TRUE(answers.contains(correlation));
      EXPECT_EQ(answers[correlation].error, kNone);  // written: success, where unknown
      EXPECT_EQ(answers[correlation].base_offset, unknown);
    }
  }
}

TEST_F(KafkaHandlerTest, AClosedConnectionsClientIsForgotten) {
  Hello("apache-kafka-java");
  handler.Closed(connection);
  Produce(1, -1, 2);
  sink.DeliverTo(0, "t", 0, 10);
  sink.DeliverTo(1, "t", 1, 10);
  ASSERT_TRUE(answers.contains(1));
  EXPECT_EQ(answers[1].base_offset, -2);
}

TEST_F(KafkaHandlerTest, ARetriedBatchIsAnsweredTheFirstAttemptsUnknownOffsetWithSuccess) {
  Produce(1, 0, 2);
  ASSERT_EQ(sink.records.size(), 2u);
  sink.DeliverTo(0, "t", 0, 10);
  sink.DeliverTo(1, "t", 5, 4);  // salted elsewhere
  ASSERT_EQ(answers[1].error, kNone);
  EXPECT_EQ(answers[1].base_offset, -2);
  Produce(2, 0, 2);  // the client did not get the answer and sends it again
  EXPECT_EQ(sink.records.size(), 2u);
  ASSERT_TRUE(answers.contains(2));
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, -2);
}

// A record that failed after it was sent may have been written all the same: the retry
// produces it again (at least once), and it is counted as possibly written twice; a record that
// failed without leaving is produced again uncounted, and one written is not produced again.
TEST_F(KafkaHandlerTest, ARetryProducesAgainWhatMayHaveBeenWrittenAndCountsIt) {
  Produce(1, 0, 3);
  ASSERT_EQ(sink.records.size(), 3u);
  sink.Deliver(0, 10);
  sink.Fail(1, /*maybe_written=*/true);
  sink.Fail(2, /*maybe_written=*/false);
  ASSERT_EQ(answers[1].error, kRequestTimedOut);
  Produce(2, 0, 3);
  ASSERT_EQ(sink.records.size(), 5u);
  EXPECT_EQ(sink.records[3].value, "v1");
  EXPECT_EQ(sink.records[4].value, "v2");
  sink.Deliver(3, 11);
  sink.Deliver(4, 12);
  ASSERT_TRUE(answers.contains(2));
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, 10);  // as it happens, contiguous on the partition
  const std::string text = metrics.Serialize();
  EXPECT_NE(text.find("saltproxy_kafka_idempotent_records_maybe_duplicated_total{reason="
                      "\"possibly_written\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nsaltproxy_kafka_idempotent_records_skipped_total 1\n"),
            std::string::npos);
}

// After a restart the client's producer id is a stranger's: its first batches may resend what
// the previous run wrote, and are counted as possibly written twice.
TEST_F(KafkaHandlerTest, ABatchOfAProducerThisRunDidNotIssueIsCountedAsADoubt) {
  id.producer_id += 1000;  // issued by "the previous run"
  Produce(1, 7, 4);
  ASSERT_EQ(sink.records.size(), 4u);
  EXPECT_NE(metrics.Serialize().find("saltproxy_kafka_idempotent_records_maybe_duplicated_total{"
                                     "reason=\"unknown_producer\"} 4\n"),
            std::string::npos);
  // Written: the request is answered, and nothing of it stays pending.
  for (size_t i = 0; i < 4; ++i) sink.Deliver(i, static_cast<int64_t>(i));
  EXPECT_TRUE(answers.contains(1));
}

TEST_F(KafkaHandlerTest, WhileTheClusterIsTooSlowProduceIsRefusedRetriablyWithAThrottle) {
  upstream.admit = WithRetryAfter(
      absl::ResourceExhaustedError("the upstream Kafka cluster is slower than the load"),
      absl::Milliseconds(2500));
  Produce(1, 0);
  // Answered at once, retriable, with the time the client should wait before it sends again
  // (KIP-219: a v6+ client sends nothing more to this broker meanwhile); nothing was sent.
  ASSERT_TRUE(answers.contains(1));
  EXPECT_EQ(answers[1].error, kNotEnoughReplicas);
  EXPECT_EQ(answers[1].throttle_time_ms, 2500);
  EXPECT_EQ(sink.records.size(), 0u);
  EXPECT_EQ(upstream.asked_to_admit, 1);
  // The sequence window never saw the refused batch: the idempotent client's retry of it (the
  // same sequence) is new, written once, and answered without a throttle.
  upstream.admit = absl::OkStatus();
  Produce(2, 0);
  ASSERT_EQ(sink.records.size(), 1u);
  sink.Deliver(0, 5);
  ASSERT_TRUE(answers.contains(2));
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, 5);
  EXPECT_EQ(answers[2].throttle_time_ms, 0);
}

TEST_F(KafkaHandlerTest, WhileTheClusterIsUnreachableProduceIsRefusedRetriablyAndNothingSent) {
  upstream.admit = absl::UnavailableError("the upstream Kafka cluster is unreachable");
  Produce(1, 0);
  // Answered at once, with the error clients retry without surfacing; nothing reached the sink.
  ASSERT_TRUE(answers.contains(1));
  EXPECT_EQ(answers[1].error, kNotEnoughReplicas);
  EXPECT_EQ(sink.records.size(), 0u);
  EXPECT_EQ(upstream.asked_to_admit, 1);
  // The sequence window never saw the refused batch: its retry is new, and written once.
  upstream.admit = absl::OkStatus();
  Produce(2, 0);
  ASSERT_EQ(sink.records.size(), 1u);
  sink.Deliver(0, 5);
  ASSERT_TRUE(answers.contains(2));
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, 5);
}

// An upstream that holds what it is asked to produce until the test writes or fails it, by
// partition, and the heat of one hot key: the real router between them salts the key's records
// over several partitions, so that one client batch fans out and can be written in part.
class FanOutUpstream : public Upstream {
 public:
  struct Produced {
    Record record;
    int32_t partition;
    DeliveryCallback done;
    bool settled = false;
  };
  absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) override {
    produced.push_back(Produced{std::move(record), partition, std::move(done)});
    return absl::OkStatus();
  }
  std::optional<int32_t> CachedPartitions(const std::string& topic) const override {
    if (topic != "t") return std::nullopt;
    return 8;
  }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    done(CachedPartitions(topic).value_or(0));
  }
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string&, int32_t,
                           const std::map<std::string, std::string>&) override {
    return absl::OkStatus();
  }
  // Settles every record not yet settled: written (at the partition's next offset), except on
  // `failing`, where it times out.
  void Settle(int32_t failing = -1) {
    for (Produced& p : produced) {
      if (p.settled) continue;
      p.settled = true;
      DeliveryReport r;
      r.topic = p.record.topic;
      r.partition = p.partition;
      if (p.partition == failing) {
        r.status = absl::DeadlineExceededError("message timed out");
      } else {
        r.offset = next_offset[p.partition]++;
        written.push_back(*p.record.value);
      }
      p.done(r);
    }
  }
  std::vector<Produced> produced;
  std::vector<std::string> written;  // values, in the order written
  std::map<int32_t, int64_t> next_offset;
};

class OneHotKey : public HeatTracker {
 public:
  void Observe(std::string_view, std::string_view, size_t) override {}
  std::vector<TopicHeat> Tick(absl::Time) override {
    return {TopicHeat{"t", 8000, {KeyRate{"nike", 4000}}}};
  }
};

class FanOutTest : public ::testing::Test {
 protected:
  FanOutTest() {
    RouterOptions options;
    options.control_topic = "";
    options.default_policy.partition_target_rps = 1750;
    options.default_policy.headroom = 1.5;
    router = std::make_unique<Router>(upstream, &heat, options);
    absl::Time now = absl::FromUnixSeconds(1'700'000'000);
    for (int i = 0; i < 4; ++i) {  // hold, sample, drain: "nike" salted
      router->Tick(now += absl::Milliseconds(100));
      upstream.Settle();
    }
    salts = router->Entries().at(0).partitions;
    handler = std::make_unique<KafkaHandler>(KafkaHandlerOptions{}, *router, upstream, registry,
                                             metrics);
  }

  // Produce v7: one idempotent batch of `records` records of "nike" for partition 0 of "t",
  // values "<tag>-0", "<tag>-1", …; its answer lands in answers[correlation].
  void Produce(int32_t correlation, int32_t seq, int records, const std::string& tag) {
    RecordBatch batch;
    batch.producer_id = id.producer_id;
    batch.producer_epoch = id.epoch;
    batch.base_sequence = seq;
    for (int i = 0; i < records; ++i) {
      BatchRecord r;
      r.offset_delta = i;
      r.key = "nike";
      r.value = absl::StrCat(tag, "-", i);
      batch.records.push_back(r);
    }
    WireWriter w;
    w.Int16(kProduce);
    w.Int16(7);
    w.Int32(correlation);
    w.NullableString(std::string("test"), false);
    w.NullableString(std::nullopt, false);
    w.Int16(-1);
    w.Int32(30000);
    w.ArrayLength(1, false);
    w.String("t", false);
    w.ArrayLength(1, false);
    w.Int32(0);
    w.NullableBytes(EncodeRecordBatch(batch, Compression::kNone), false);
    handler->Handle(w.data(), 1, FrameReply([this](FrameReply::Kind, std::string payload) {
                      WireReader in(payload);
                      int32_t correlation = in.Int32();
                      in.ArrayLength(false);
                      in.String(false);
                      in.ArrayLength(false);
                      in.Int32();
                      Answer a;
                      a.error = in.Int16();
                      a.base_offset = in.Int64();
                      answers[correlation] = a;
                    }));
  }
  // The values produced upstream from `from` on.
  std::vector<std::string> ProducedSince(size_t from) const {
    std::vector<std::string> values;
    for (size_t i = from; i < upstream.produced.size(); ++i) {
      values.push_back(*upstream.produced[i].record.value);
    }
    return values;
  }
  double Metric(const std::string& series) {
    const std::string text = metrics.Serialize();
    size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
  }

  FanOutUpstream upstream;
  OneHotKey heat;
  std::unique_ptr<Router> router;
  std::vector<int32_t> salts;
  Metrics metrics;
  ProducerRegistry registry{100};
  ProducerRegistry::Issued id = registry.Init();
  std::unique_ptr<KafkaHandler> handler;
  std::map<int32_t, Answer> answers;
};

// Issue 16: a batch partly written before an outage was retried by the client and written whole
// again (2,959 records twice on a broker kill). Now the retry writes only what is missing.
TEST_F(FanOutTest, ARetriedBatchWritesOnlyTheRecordsItsFailedAttemptDidNotWrite) {
  ASSERT_GE(salts.size(), 3u);
  const size_t before = upstream.produced.size();
  Produce(1, 0, 12, "a");
  const std::vector<std::string> first = ProducedSince(before);
  ASSERT_EQ(first.size(), 12u);
  std::set<int32_t> spread;
  for (size_t i = before; i < upstream.produced.size(); ++i) {
    spread.insert(upstream.produced[i].partition);
  }
  ASSERT_GE(spread.size(), 3u) << "the batch did not fan out";
  // The partition of salt 1 times out; the others are written.
  const int32_t failing = salts[1];
  std::set<std::string> lost;
  for (size_t i = before; i < upstream.produced.size(); ++i) {
    if (upstream.produced[i].partition == failing) lost.insert(*upstream.produced[i].record.value);
  }
  ASSERT_FALSE(lost.empty());
  ASSERT_LT(lost.size(), 12u);
  upstream.Settle(failing);
  ASSERT_TRUE(answers.contains(1));
  EXPECT_EQ(answers[1].error, kRequestTimedOut);
  // The client resends the batch as it was: only the lost records reach the upstream.
  const size_t retried = upstream.produced.size();
  Produce(2, 0, 12, "a");
  const std::vector<std::string> again = ProducedSince(retried);
  EXPECT_EQ(std::set<std::string>(again.begin(), again.end()), lost);
  EXPECT_EQ(again.size(), lost.size());
  upstream.Settle();
  ASSERT_TRUE(answers.contains(2));
  EXPECT_EQ(answers[2].error, kNone);
  EXPECT_EQ(answers[2].base_offset, -12);  // written, but not at 12 offsets of partition 0
  // Each record written once.
  std::map<std::string, int> times;
  for (const std::string& v : upstream.written) ++times[v];
  for (int i = 0; i < 12; ++i) EXPECT_EQ(times[absl::StrCat("a-", i)], 1) << "a-" << i;
  EXPECT_EQ(Metric("saltproxy_kafka_idempotent_records_skipped_total"),
            static_cast<double>(12 - lost.size()));
  EXPECT_EQ(Metric("saltproxy_kafka_idempotent_batches_retried_total"), 1);
  // Asked again (its answer lost), it is a duplicate: nothing is produced.
  const size_t settled = upstream.produced.size();
  Produce(3, 0, 12, "a");
  EXPECT_EQ(upstream.produced.size(), settled);
  EXPECT_EQ(answers[3].error, kNone);
}

// Pipelined: the second batch is written while the first partly fails. The second is answered
// OUT_OF_ORDER_SEQUENCE_NUMBER (a broker would not have it), the client resends both: the first
// writes its missing records, the second nothing, and both are answered with success.
TEST_F(FanOutTest, ABatchWrittenAfterAPartlyFailedOneIsNotWrittenAgainOnTheResend) {
  const size_t before = upstream.produced.size();
  Produce(1, 0, 10, "a");
  Produce(2, 10, 10, "b");
  ASSERT_EQ(upstream.produced.size(), before + 20);
  const int32_t failing = salts[1];
  size_t lost = 0;
  for (size_t i = before; i < before + 10; ++i) lost += upstream.produced[i].partition == failing;
  ASSERT_GT(lost, 0u);
  // The first batch's records on `failing` time out; the second's are all written.
  for (size_t i = before; i < before + 10; ++i) {
    FanOutUpstream::Produced& p = upstream.produced[i];
    if (p.partition != failing) continue;
    p.settled = true;
    DeliveryReport r;
    r.status = absl::DeadlineExceededError("message timed out");
    p.done(r);
  }
  upstream.Settle();
  EXPECT_EQ(answers[1].error, kRequestTimedOut);
  EXPECT_EQ(answers[2].error, kOutOfOrderSequenceNumber);
  const size_t resent = upstream.produced.size();
  Produce(3, 0, 10, "a");
  Produce(4, 10, 10, "b");
  EXPECT_EQ(upstream.produced.size(), resent + lost) << "the written records were sent again";
  EXPECT_FALSE(answers.contains(4)) << "acknowledged before the batch before it was written";
  upstream.Settle();
  EXPECT_EQ(answers[3].error, kNone);
  EXPECT_EQ(answers[4].error, kNone);
  std::map<std::string, int> times;
  for (const std::string& v : upstream.written) ++times[v];
  for (const char* tag : {"a", "b"}) {
    for (int i = 0; i < 10; ++i) EXPECT_EQ(times[absl::StrCat(tag, "-", i)], 1) << tag << i;
  }
}

}  // namespace
}  // namespace saltproxy
