#include "proxy/salting/footprint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

#include "saltproxy/partitioner.h"

namespace saltproxy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

uint32_t Hash(const std::string& key) { return murmur2(key.data(), key.size()); }

TEST(ColdFootprintTest, NothingNotedIsNoPartition) {
  ColdFootprint footprint;
  EXPECT_THAT(footprint.Partitions(Hash("k"), 16), IsEmpty());
  footprint.Note(Hash("other"), 3);
  EXPECT_THAT(footprint.Partitions(Hash("k"), 16), IsEmpty());
}

TEST(ColdFootprintTest, EveryPartitionNotedForAKeyIsNamedInOrder) {
  ColdFootprint footprint;
  footprint.Note(Hash("k"), 9);
  footprint.Note(Hash("k"), 2);
  footprint.Note(Hash("k"), 9);
  EXPECT_THAT(footprint.Partitions(Hash("k"), 16), ElementsAre(2, 9));
}

// Never one too few, whatever shares the key's slot: a superset is the promise.
TEST(ColdFootprintTest, ManyKeysLeaveEachKeyASupersetOfItsOwnPartitions) {
  ColdFootprint footprint;
  std::vector<std::pair<std::string, int32_t>> sent;
  for (int i = 0; i < 100000; ++i) {
    std::string key = "key-" + std::to_string(i);
    int32_t p = static_cast<int32_t>((Hash(key) >> 7) % 64);
    footprint.Note(Hash(key), p);
    sent.emplace_back(std::move(key), p);
  }
  size_t named = 0;
  for (const auto& [key, p] : sent) {
    std::vector<int32_t> partitions = footprint.Partitions(Hash(key), 64);
    ASSERT_TRUE(std::set<int32_t>(partitions.begin(), partitions.end()).contains(p)) << key;
    named += partitions.size();
  }
  // About six keys a slot: a cut-over names a few partitions of 64, not all of them.
  EXPECT_LT(named / sent.size(), 12u);
}

TEST(ColdFootprintTest, PartitionsSixtyFourApartShareABit) {
  ColdFootprint footprint;
  footprint.Note(Hash("k"), 70);
  EXPECT_THAT(footprint.Partitions(Hash("k"), 200), ElementsAre(6, 70, 134, 198));
  EXPECT_THAT(footprint.Partitions(Hash("k"), 64), ElementsAre(6));
}

TEST(ColdFootprintTest, ThreadsNotingAtOnceLoseNothing) {
  ColdFootprint footprint;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&footprint, t] {
      for (int32_t p = t; p < 64; p += 4) footprint.Note(Hash("k"), p);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(footprint.Partitions(Hash("k"), 64).size(), 64u);
}

}  // namespace
}  // namespace saltproxy
