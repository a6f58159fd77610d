#include "proxy/kafka_server/producer_state.h"

#include <gtest/gtest.h>

namespace saltproxy {
namespace {

class ProducerRegistryTest : public ::testing::Test {
 protected:
  ProducerRegistry registry{100};
  ProducerRegistry::Issued id = registry.Init();
  ProducerPartition Key(int32_t partition = 0) { return {id.producer_id, "t", partition}; }
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
  EXPECT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(Key(), 0, 10, 14).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, RetriedBatchIsAnsweredWithTheFirstOffset) {
  ASSERT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  registry.Complete(Key(), 0, 1234);
  BatchCheck again = registry.Begin(Key(), 0, 0, 9);
  EXPECT_EQ(again.verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(again.base_offset, 1234);
}

TEST_F(ProducerRegistryTest, RetryWhileTheFirstIsInFlightWaitsForIt) {
  ASSERT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  int64_t answered = -2;
  EXPECT_EQ(registry.Begin(Key(), 0, 0, 9, [&](int64_t o) { answered = o; }).verdict,
            BatchVerdict::kDuplicatePending);
  EXPECT_EQ(answered, -2);
  registry.Complete(Key(), 0, 77);
  EXPECT_EQ(answered, 77);
}

TEST_F(ProducerRegistryTest, GapIsOutOfOrder) {
  ASSERT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(Key(), 0, 12, 20).verdict, BatchVerdict::kOutOfOrder);
}

TEST_F(ProducerRegistryTest, OlderEpochIsRejected) {
  registry.Init(id.producer_id, id.epoch);  // epoch 1
  EXPECT_EQ(registry.Begin(Key(), 1, 0, 0).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(Key(), 0, 1, 1).verdict, BatchVerdict::kInvalidEpoch);
}

TEST_F(ProducerRegistryTest, PartitionsHaveTheirOwnSequences) {
  EXPECT_EQ(registry.Begin(Key(0), 0, 0, 4).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(Key(1), 0, 0, 4).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, FailedBatchCanBeRetriedAsNew) {
  ASSERT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  ASSERT_EQ(registry.Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
  registry.Fail(Key(), 0);
  EXPECT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kNew);
  EXPECT_EQ(registry.Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kNew);
}

TEST_F(ProducerRegistryTest, OnlyTheLastFiveBatchesAreRemembered) {
  for (int32_t b = 0; b < 6; ++b) {
    ASSERT_EQ(registry.Begin(Key(), 0, b * 10, b * 10 + 9).verdict, BatchVerdict::kNew);
    registry.Complete(Key(), b * 10, b * 100);
  }
  EXPECT_EQ(registry.Begin(Key(), 0, 50, 59).verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(registry.Begin(Key(), 0, 10, 19).verdict, BatchVerdict::kDuplicate);
  EXPECT_EQ(registry.Begin(Key(), 0, 0, 9).verdict, BatchVerdict::kOutOfOrder);
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

}  // namespace
}  // namespace saltproxy
