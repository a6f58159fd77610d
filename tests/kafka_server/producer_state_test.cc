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
    if (check.verdict == BatchVerdict::kNew) attempts[{key.partition, first_seq}] = check.attempt;
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
  void Fail(int32_t first_seq) {
    ProducerRegistry::Deferred run;
    registry.Fail(Key(), attempts.at({0, first_seq}), &run);
    for (auto& f : run) f();
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
  int64_t answered = -2;
  EXPECT_EQ(Begin(Key(), 0, 0, 9, [&](int64_t o) { answered = o; }).verdict,
            BatchVerdict::kDuplicatePending);
  EXPECT_EQ(answered, -2);
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
  int64_t retried = -2;
  EXPECT_EQ(Begin(Key(), 0, 10, 19, [&](int64_t o) { retried = o; }).verdict,
            BatchVerdict::kDuplicatePending);
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
  int64_t second_retry = -2;
  ASSERT_EQ(Complete(10, 500, [&](bool written) { second = written; }), Settlement::kWaiting);
  ASSERT_EQ(Begin(Key(), 0, 10, 19, [&](int64_t o) { second_retry = o; }).verdict,
            BatchVerdict::kDuplicatePending);
  Fail(0);
  EXPECT_EQ(second, false);
  EXPECT_EQ(second_retry, -1);
  EXPECT_EQ(Complete(20, 510), Settlement::kEarlierFailed);
  // The client resends from the failed batch: all three are new again.
  EXPECT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew);
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

TEST_F(ProducerRegistryTest, FailedBatchCanBeRetriedAsNew) {
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  Fail(0);
  EXPECT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
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

TEST_F(ProducerRegistryTest, MemoryIsBoundedByMaxProducers) {
  ProducerRegistry small(3);
  for (int i = 0; i < 10; ++i) small.Init();
  EXPECT_EQ(small.producers(), 3u);
}

// The first attempts of a batch and of the one after it are in flight; the first fails, which
// forgets both, and the client resends both, as new. The second's first attempt then reports:
// it must settle nothing of the resend, which has the same sequence numbers.
TEST_F(ProducerRegistryTest, AForgottenAttemptThatIsWrittenLateSettlesNothingOfItsResend) {
  const uint64_t a = Begin(Key(), 0, 0, 9).attempt;
  const uint64_t b = Begin(Key(), 0, 10, 19).attempt;
  Fail(0);
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  const uint64_t b2 = Begin(Key(), 0, 10, 19).attempt;
  ASSERT_NE(b2, b);
  ASSERT_NE(a, attempts.at({0, 0}));
  ProducerRegistry::Deferred run;
  EXPECT_EQ(registry.Complete(Key(), b, 700, [] { return ProducerRegistry::Settled(); }, &run),
            Settlement::kEarlierFailed);
  EXPECT_TRUE(run.empty());
  ASSERT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew);
  EXPECT_EQ(Complete(0, 710), Settlement::kSettled);
  std::optional<bool> third;
  EXPECT_EQ(Complete(20, 730, [&](bool written) { third = written; }), Settlement::kWaiting)
      << "acknowledged while the resend before it is unwritten";
  Fail(10);
  EXPECT_EQ(third, false);
}

TEST_F(ProducerRegistryTest, AForgottenAttemptThatFailsLateLeavesItsResendAlone) {
  Begin(Key(), 0, 0, 9);
  const uint64_t b = Begin(Key(), 0, 10, 19).attempt;
  Fail(0);
  ASSERT_EQ(Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  ProducerRegistry::Deferred run;
  registry.Fail(Key(), b, &run);
  EXPECT_TRUE(run.empty());
  EXPECT_EQ(Begin(Key(), 0, 20, 29).verdict, BatchVerdict::kNew) << "the window was reset";
  EXPECT_EQ(Complete(0, 800), Settlement::kSettled);
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
