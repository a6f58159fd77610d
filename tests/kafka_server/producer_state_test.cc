#include "proxy/kafka_server/producer_state.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>

namespace saltproxy {
namespace {

class ProducerRegistryTest : public ::testing::Test {
 protected:
  ProducerRegistry registry{100};
  ProducerRegistry::Issued id = registry.Init();
  ProducerPartition Key(int32_t partition = 0) { return {id.producer_id, "t", partition}; }
  // Begin, remembering a new batch's attempt by its partition and first sequence number (the
  // latest attempt of those numbers), for Complete and Fail below.
  BatchCheck Begin(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                   int32_t last_seq, ProducerRegistry::Waiter waiter = nullptr) {
    BatchCheck check = registry.Begin(key, epoch, first_seq, last_seq, std::move(waiter));
    if (check.verdict == BatchVerdict::kNew || check.verdict == BatchVerdict::kRetry) {
      attempts[{key.partition, first_seq}] = check.attempt;
    }
    return check;
  }
  // Complete, running what it hands back at once (the handler runs it after its own lock).
  Settlement Complete(int32_t first_seq, int64_t offset,
                      ProducerRegistry::Settled settled = nullptr, int32_t partition = 0) {
    ProducerRegistry::Deferred run;
    Settlement s = registry.Complete(Key(partition), attempts.at({partition, first_seq}), offset,
                                     [&] { return std::move(settled); }, &run);
    for (auto& f : run) f();
    return s;
  }
  // Fail, with what the attempt (and earlier ones) wrote: none by default.
  void Fail(int32_t first_seq, BatchWrites written = {}) {
    ProducerRegistry::Deferred run;
    registry.Fail(Key(), attempts.at({0, first_seq}), std::move(written), &run);
    for (auto& f : run) f();
  }
  // A waiter that keeps what it is told: nullopt until then; -2 as the offset when unwritten.
  ProducerRegistry::Waiter Keep(std::optional<int64_t>* told) {
    return [told](bool written, int64_t offset) { *told = written ? offset : -2; };
  }
  std::map<std::pair<int32_t, int32_t>, uint64_t> attempts;
};

TEST_F(ProducerRegistryTest, InitIssuesDistinctIdsAtEpochZero) {
  ProducerRegistry::Issued other = registry.Init();
  EXPECT_NE(other.producer_id, id.producer_id);
  EXPECT_EQ(other.epoch, 0);
}

TEST_F(ProducerRegistryTest, InitWithCurrentIdBumpsTheEpoch) {
  ProducerRegistry::Issued bumped = registry.Init(id.producer_id, id.epoch);
  EXPECT_EQ(bumped.producer_id, id.producer_id);
  EXPECT_EQ(bumped.epoch, 1);
}

TEST_F(ProducerRegistryTest, ConsecutiveBatchesAreNew) {
  EXPECT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 10, 14).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, RetriedBatchIsAnsweredWithTheFirstOffset) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Complete(0, 1234), Settlement::kSettled);
  BatchCheck again = Begin(Key(), 0, 0, 9);
  EXPECT_EQ(again.verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(again.base_offset, 1234);
}

TEST_F(ProducerRegistryTest, RetryWhileTheFirstIsInFlightWaitsForIt) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  std::optional<int64_t> answered;
  EXPECT_EQ(Begin(Key(), 0, 0, 9, Keep(&answered)).verdict, BatchVerdict::kDuplicatePending);
  EXPECT_FALSE(answered.has_value());
  Complete(0, 77);
  EXPECT_EQ(answered, 77);
}

TEST_F(ProducerRegistryTest, AWrittenBatchWaitsForTheBatchesBeforeIt) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  std::optional<bool> second;
  EXPECT_EQ(Complete(10, 500, [&](bool written) { second = written; }), Settlement::kWaiting);
  EXPECT_FALSE(second.has_value()) << "answered before the batch before it was written";
  // A retry of the waiting batch waits too: answering it would acknowledge the first batch.
  std::optional<int64_t> retried;
  EXPECT_EQ(Begin(Key(), 0, 10, 19, Keep(&retried)).verdict, BatchVerdict::kDuplicatePending);
  EXPECT_EQ(Complete(0, 490), Settlement::kSettled);
  EXPECT_EQ(second, true);
  EXPECT_EQ(retried, 500);
}

TEST_F(ProducerRegistryTest, ABatchWrittenAfterAnEarlierOneFailedIsNotAcknowledged) {
  // Three batches in flight; the first fails upstream. The second was written before the
  // failure was known, the third after: neither may be answered with success, or the client
  // would take the first for written.
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew);
  std::optional<bool> second;
  std::optional<int64_t> second_retry;
  ASSERT_EQ(Complete(10, 500, [&](bool written) { second = written; }), Settlement::kWaiting);
  ASSERT_EQ(Begin(Key(), 0, 10, 19, Keep(&second_retry)).verdict,
            BatchVerdict::kDuplicatePending);
  Fail(0);
  EXPECT_EQ(second, false);
  EXPECT_EQ(second_retry, -2);
  EXPECT_EQ(Complete(20, 510), Settlement::kEarlierFailed);
  // The client resends from the failed batch: it is retried; the two after it were written
  // and are not written again, but answered once the first is.
  EXPECT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kRetry);
  std::optional<int64_t> second_again, third_again;
  EXPECT_EQ(Begin(Key(), 0, 10, 19, Keep(&second_again)).verdict,
            BatchVerdict::kDuplicatePending);
  EXPECT_EQ(Begin(Key(), 0, 20, 29, Keep(&third_again)).verdict,
            BatchVerdict::kDuplicatePending);
  EXPECT_FALSE(second_again.has_value());
  EXPECT_EQ(Complete(0, 520), Settlement::kSettled);
  EXPECT_EQ(second_again, 500);
  EXPECT_EQ(third_again, 510);
}

TEST_F(ProducerRegistryTest, AFailedBatchIsRetriedForTheRecordsItDidNotWrite) {
  ASSERT_EQ(Begin(Key(), 0, 0, 3).verdict, BatchVerdict::kNew);
  BatchWrites written;
  written.records = {BatchWrites::kWritten, BatchWrites::kUnwritten, BatchWrites::kWritten,
                     BatchWrites::kMaybeWritten};
  written.base = 40;
  Fail(0, written);
  BatchCheck retry = Begin(Key(), 0, 0, 3);
  ASSERT_EQ(retry.verdict, BatchVerdict::kRetry);
  EXPECT_EQ(retry.written.records, written.records);
  EXPECT_EQ(retry.written.base, 40);
  EXPECT_FALSE(retry.written.scattered);
  // The retry is the batch's attempt now; written, the batch is a plain duplicate.
  EXPECT_EQ(Complete(0, 40), Settlement::kSettled);
  BatchCheck again = Begin(Key(), 0, 0, 3);
  EXPECT_EQ(again.verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(again.base_offset, 40);
  // It failing again keeps what both attempts wrote: the registry holds what it is told.
  ASSERT_EQ(Begin(Key(), 0, 4, 5).verdict, BatchVerdict::kNew);
  written.records = {BatchWrites::kWritten, BatchWrites::kUnwritten};
  Fail(4, written);
  ASSERT_EQ(Begin(Key(), 0, 4, 5).verdict, BatchVerdict::kRetry);
  written.records[1] = BatchWrites::kUnwritten;
  Fail(4, written);
  EXPECT_EQ(Begin(Key(), 0, 4, 5).written.Count(BatchWrites::kWritten), 1);
}

TEST_F(ProducerRegistryTest, WhileABatchIsFailedWhatComesAfterItIsOutOfOrder) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Complete(10, 500), Settlement::kWaiting);
  Fail(0);
  // As a broker, which would not have written them: a new batch, and the resend of the
  // written one before the failed one is resent.
  EXPECT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kOutOfOrder);
  EXPECT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kOutOfOrder);
  EXPECT_EQ(registry.TakeDoubts().forgotten, 0);
}

TEST_F(ProducerRegistryTest, AFailedBatchResentInOtherRangesIsForgottenAndItsWrittenCounted) {
  // A client that splits a failed batch (the Java client does for MESSAGE_TOO_LARGE) resends its
  // records under new ranges from the same first number: what was written is written again.
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Complete(10, 500), Settlement::kWaiting);
  BatchWrites written;
  written.records.assign(10, BatchWrites::kUnwritten);
  for (int i = 0; i < 4; ++i) written.records[i] = BatchWrites::kWritten;
  Fail(0, written);
  EXPECT_EQ(Begin(Key(), 0, 0, 4).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.TakeDoubts().forgotten, 4 + 10);
  EXPECT_EQ(Begin(Key(), 0, 5, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, ANewEpochSettlesTheOldEpochsWaitingBatchesAsFailed) {
  // A batch waiting for an earlier one when the client moves to a new epoch must still be
  // answered (the connection answers in request order: one that never is stalls it).
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  std::optional<bool> second;
  ASSERT_EQ(Complete(10, 500, [&](bool written) { second = written; }), Settlement::kWaiting);
  registry.Init(id.producer_id, id.epoch);
  EXPECT_EQ(second, false);
  EXPECT_EQ(Complete(0, 490), Settlement::kEarlierFailed);
  // The same through a batch of the newer epoch arriving first.
  ASSERT_EQ(Begin(Key(1), 1, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(1), 1, 10, 19).verdict, BatchVerdict::kNew);
  std::optional<bool> third;
  ProducerRegistry::Deferred run;
  ASSERT_EQ(registry.Complete(
                Key(1), attempts.at({1, 10}), 600,
                [&]() -> ProducerRegistry::Settled { return [&](bool w) { third = w; }; }, &run),
            Settlement::kWaiting);
  EXPECT_EQ(Begin(Key(1), 2, 0, 0).verdict, BatchVerdict::kNew);
  EXPECT_EQ(third, false);
}

TEST_F(ProducerRegistryTest, GapIsOutOfOrder) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 12, 20).verdict, BatchVerdict::kOutOfOrder);
}

TEST_F(ProducerRegistryTest, OlderEpochIsRejected) {
  registry.Init(id.producer_id, id.epoch);  // epoch 1
  EXPECT_EQ(Begin(Key(), 1, 0, 0).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 1, 1).verdict, BatchVerdict::kInvalidEpoch);
}

TEST_F(ProducerRegistryTest, PartitionsHaveTheirOwnSequences) {
  EXPECT_EQ(Begin(Key(0), 0, 0, 4).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(1), 0, 0, 4).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, OnlyTheLastFiveBatchesAreRemembered) {
  for (int32_t b = 0; b < 6; ++b) {
    ASSERT_EQ(Begin(Key(), 0, b * 10, b * 10 + 9).verdict, BatchVerdict::kNew);
    ASSERT_EQ(Complete(b * 10, b * 100), Settlement::kSettled);
  }
  EXPECT_EQ(Begin(Key(), 0, 50, 59).verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kOutOfOrder);
}

TEST_F(ProducerRegistryTest, UnknownProducerIsAdoptedAtItsSequence) {
  ProducerPartition stranger{424242, "t", 0};
  EXPECT_EQ(registry.Begin(stranger, 3, 57, 60).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(stranger, 3, 61, 61).verdict, BatchVerdict::kNew);
}

// After a restart every client is a stranger, and its first batches per partition may be the
// resends of what the previous run wrote: at most a client's batches in flight (kWindow).
TEST_F(ProducerRegistryTest, AnUnknownProducersFirstBatchesPerPartitionAreCountedAsDoubts) {
  for (int32_t partition : {0, 1}) {
    ProducerPartition stranger{424242, "t", partition};
    for (int32_t b = 0; b < 7; ++b) {
      ASSERT_EQ(registry.Begin(stranger, 0, b * 2, b * 2 + 1).verdict, BatchVerdict::kNew);
    }
  }
  EXPECT_EQ(registry.TakeDoubts().unknown_producer, 2 * 5 * 2);
  EXPECT_EQ(registry.TakeDoubts().unknown_producer, 0);
  // A producer this run issued is not in doubt.
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.TakeDoubts().unknown_producer, 0);
}

TEST_F(ProducerRegistryTest, MemoryIsBoundedByMaxProducers) {
  ProducerRegistry small(3);
  for (int i = 0; i < 10; ++i) small.Init();
  EXPECT_EQ(small.producers(), 3u);
}

// The first attempts of a batch and of the one after it are in flight; the first fails and the
// client resends it in other ranges, which forgets both, and then the second as new. The
// second's first attempt then reports: it must settle nothing of the resend, which has the same
// sequence numbers.
TEST_F(ProducerRegistryTest, AForgottenAttemptThatIsWrittenLateSettlesNothingOfItsResend) {
  Begin(Key(), 0, 0, 9);
  const uint64_t b = Begin(Key(), 0, 10, 19).attempt;
  Fail(0);
  ASSERT_EQ(Begin(Key(), 0, 0, 4).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 5, 9).verdict, BatchVerdict::kNew);
  const uint64_t b2 = Begin(Key(), 0, 10, 19).attempt;
  ASSERT_NE(b2, b);
  ProducerRegistry::Deferred run;
  EXPECT_EQ(registry.Complete(Key(), b, 700, [] { return ProducerRegistry::Settled(); }, &run),
            Settlement::kEarlierFailed);
  EXPECT_TRUE(run.empty());
  ASSERT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Complete(0, 710), Settlement::kSettled);
  std::optional<bool> fourth;
  EXPECT_EQ(Complete(20, 730, [&](bool written) { fourth = written; }), Settlement::kWaiting)
      << "acknowledged while the resends before it are unwritten";
  Fail(10);
  EXPECT_EQ(fourth, false);
}

TEST_F(ProducerRegistryTest, AForgottenAttemptThatFailsLateLeavesItsResendAlone) {
  Begin(Key(), 0, 0, 9);
  const uint64_t b = Begin(Key(), 0, 10, 19).attempt;
  Fail(0);
  ASSERT_EQ(Begin(Key(), 0, 0, 4).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 5, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  ProducerRegistry::Deferred run;
  registry.Fail(Key(), b, BatchWrites(), &run);
  EXPECT_TRUE(run.empty());
  EXPECT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew) << "the window was reset";
  EXPECT_EQ(Complete(0, 800), Settlement::kSettled);
  EXPECT_EQ(Complete(5, 805), Settlement::kSettled);
  EXPECT_EQ(Complete(10, 810), Settlement::kSettled);
  EXPECT_EQ(Complete(20, 820), Settlement::kSettled);
}

TEST_F(ProducerRegistryTest, ABatchOfAProducerForgottenWhileItWasInFlightIsNotAcknowledged) {
  ProducerRegistry small(1);
  ProducerRegistry::Issued first = small.Init();
  const ProducerPartition key{first.producer_id, "t", 0};
  ASSERT_EQ(small.Begin(key, 0, 0, 9).verdict, BatchVerdict::kNew);
  const BatchCheck second = small.Begin(key, 0, 10, 19);
  small.Init();  // a second producer: the first is forgotten, its batches in flight
  ProducerRegistry::Deferred run;
  EXPECT_EQ(small.Complete(key, second.attempt, 500, [] { return ProducerRegistry::Settled(); },
                           &run),
            Settlement::kEarlierFailed)
      << "acknowledged while the batch before it may yet fail";
}

}  // namespace
}  // namespace saltproxy
