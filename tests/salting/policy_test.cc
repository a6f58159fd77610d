#include "proxy/salting/policy.h"

#include <gtest/gtest.h>

namespace saltproxy {
namespace {

PolicyInput Input(double total, std::vector<KeyRate> hot, int32_t partitions = 16) {
  PolicyInput in;
  in.partitions = partitions;
  in.total_rps = total;
  in.hot = std::move(hot);
  return in;
}

TEST(PolicyTest, SaltsFillTheCapacityColdKeysLeaveFree) {
  TopicPolicy policy;
  policy.headroom = 1.0;
  policy.max_salts_per_share = 0;
  // 16 partitions at a mean of 1000/s; the cold keys put 12000/16 = 750/s on each, leaving 250:
  // a 1000/s key needs 4 partitions' worth of free capacity.
  auto d = DecideTopic("t", policy, Input(16000, {{"a", 1000}, {"b", 3000}}), {});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].action, RouteAction::kSalted);
  EXPECT_EQ(d[0].destination, "t");
  EXPECT_EQ(d[0].salts, 4);
  EXPECT_EQ(d[1].salts, 12);
}

TEST(PolicyTest, HeadroomMultipliesTheSalts) {
  TopicPolicy policy;
  policy.headroom = 2.0;
  policy.max_salts_per_share = 0;
  auto d = DecideTopic("t", policy, Input(16000, {{"a", 1000}, {"b", 3000}}), {});
  EXPECT_EQ(d[0].salts, 8);
  EXPECT_EQ(d[1].salts, 16);  // capped at the topic's partitions
}

TEST(PolicyTest, HotKeysTogetherSpanAboutHeadroomTimesThePartitions) {
  TopicPolicy policy;  // headroom 2
  policy.max_salts_per_share = 0;
  std::vector<KeyRate> hot;
  for (int i = 1; i <= 40; ++i) hot.push_back({"k" + std::to_string(i), 1000.0 / i});
  double hot_total = 0;
  for (const auto& k : hot) hot_total += k.rate_rps;
  auto d = DecideTopic("t", policy, Input(3 * hot_total, hot, 64), {});
  int total_salts = 0;
  for (const auto& k : d) {
    total_salts += k.salts;
    EXPECT_LT(k.salts, 64) << k.key << " should not need every partition";
  }
  EXPECT_GE(total_salts, 2 * 64);
}

TEST(PolicyTest, ByDefaultAKeyGetsAFewTimesItsShareOfThePartitions) {
  TopicPolicy policy;
  std::vector<KeyRate> hot;
  for (int i = 1; i <= 40; ++i) hot.push_back({"k" + std::to_string(i), 1000.0 / i});
  double hot_total = 0;
  for (const auto& k : hot) hot_total += k.rate_rps;
  // Hot keys carrying 80 % of the topic: at most 2.5 × share × partitions. Carrying a third:
  // at most share × partitions / (1/3), the fewest with which they reach every partition.
  for (auto [total, factor] : {std::pair{1.25 * hot_total, 2.5}, {3 * hot_total, 3.0}}) {
    auto d = DecideTopic("t", policy, Input(total, hot, 64), {});
    ASSERT_EQ(d.size(), hot.size());
    int total_salts = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      const double bound = std::max(2.0, std::ceil(factor * hot[i].rate_rps / total * 64));
      EXPECT_LE(d[i].salts, bound) << d[i].key << " of " << total;
      EXPECT_GE(d[i].salts, 2) << d[i].key;
      total_salts += d[i].salts;
    }
    EXPECT_GE(total_salts, 64) << "the hot keys must reach every partition";
  }
}

TEST(PolicyTest, MaxSaltsPerShareCapsAKeyByItsShareOfTheTopic) {
  // 16 partitions at a mean of 500/s; the cold keys put 3900/16 on each, leaving 256/s free.
  const std::vector<KeyRate> hot = {{"a", 1000}, {"b", 3000}, {"c", 100}};
  TopicPolicy policy;  // headroom 2
  policy.max_salts_per_share = 0;
  auto uncapped = DecideTopic("t", policy, Input(8000, hot), {});
  EXPECT_EQ(uncapped[0].salts, 8);   // 2 × 1000 / 256
  EXPECT_EQ(uncapped[1].salts, 16);  // 2 × 3000 / 256, capped at the partitions
  policy.max_salts_per_share = 2;
  auto d = DecideTopic("t", policy, Input(8000, hot), {});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].salts, 4);   // 2 × 1000/8000 × 16
  EXPECT_EQ(d[1].salts, 12);  // 2 × 3000/8000 × 16
  EXPECT_EQ(d[2].salts, 2);   // min_salts still applies
  // The same keys in a topic of 16000/s carry a quarter of it: the cap rises to share ×
  // partitions / (4100/16000), so that together they still reach all 16 partitions.
  d = DecideTopic("t", policy, Input(16000, hot), {});
  EXPECT_EQ(d[0].salts, 4);   // 1000/4100 × 16 = 3.9
  EXPECT_EQ(d[1].salts, 12);  // 3000/4100 × 16 = 11.7
  policy.max_salts_per_share = -1;
  EXPECT_FALSE(policy.Validate().ok());
}

TEST(PolicyTest, AbsoluteTargetIsHonoured) {
  TopicPolicy policy;
  policy.partition_target_rps = 1000;
  policy.headroom = 1.0;
  // Cold keys put 1600/16 = 100/s on each partition: 900/s free.
  auto d = DecideTopic("t", policy, Input(5200, {{"k", 3600}}), {});
  EXPECT_EQ(d[0].salts, 4);
}

TEST(PolicyTest, MinSaltsAppliesToABarelyHotKey) {
  TopicPolicy policy;
  policy.min_salts = 3;
  auto d = DecideTopic("t", policy, Input(100000, {{"k", 1}}), {});
  EXPECT_EQ(d[0].salts, 3);
}

TEST(PolicyTest, KeyTooHotForMaxSaltsIsReroutedToTheHotTopic) {
  TopicPolicy policy;
  policy.max_salts = 4;
  policy.hot_topic_partitions = 32;
  policy.headroom = 1.0;
  // Mean partition load 625/s: 6000/s alone needs 10 partitions > 4.
  auto d = DecideTopic("clicks", policy, Input(10000, {{"nike", 6000}}), {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].action, RouteAction::kRerouted);
  EXPECT_EQ(d[0].destination, "clicks.hot");
  EXPECT_EQ(d[0].salts, 10);  // ceil(6000 / 625), within the hot topic's 32
}

TEST(PolicyTest, KeyThatFitsInMaxSaltsStaysInItsTopic) {
  TopicPolicy policy;
  policy.max_salts = 12;
  auto d = DecideTopic("clicks", policy, Input(10000, {{"nike", 6000}}), {});
  EXPECT_EQ(d[0].action, RouteAction::kSalted);
  EXPECT_EQ(d[0].salts, 12);
}

TEST(PolicyTest, SaltOnlyStrategyCapsAtMaxSaltsInstead) {
  TopicPolicy policy;
  policy.strategy = Strategy::kSalt;
  policy.max_salts = 4;
  auto d = DecideTopic("clicks", policy, Input(10000, {{"nike", 6000}}), {});
  EXPECT_EQ(d[0].action, RouteAction::kSalted);
  EXPECT_EQ(d[0].salts, 4);
}

TEST(PolicyTest, RerouteStrategyMovesEveryHotKey) {
  TopicPolicy policy;
  policy.strategy = Strategy::kReroute;
  policy.hot_topic_pattern = "hot-{topic}";
  auto d = DecideTopic("clicks", policy, Input(10000, {{"a", 100}}), {});
  EXPECT_EQ(d[0].action, RouteAction::kRerouted);
  EXPECT_EQ(d[0].destination, "hot-clicks");
}

TEST(PolicyTest, OffStrategyDecidesNothing) {
  TopicPolicy policy;
  policy.strategy = Strategy::kOff;
  EXPECT_TRUE(DecideTopic("t", policy, Input(10000, {{"a", 9000}}), {}).empty());
}

TEST(PolicyTest, SaltCountRisesAtOnceButFallsOnlyWellBelow) {
  TopicPolicy policy;
  policy.headroom = 1.0;
  policy.partition_target_rps = 100;
  CurrentLayouts current;
  current["k"] = KeyDecision{"k", RouteAction::kSalted, "t", 8, 800};
  // With no cold traffic every partition is free: the need is rate / 100.
  EXPECT_EQ(DecideTopic("t", policy, Input(700, {{"k", 700}}), current)[0].salts, 8);  // keep
  EXPECT_EQ(DecideTopic("t", policy, Input(500, {{"k", 500}}), current)[0].salts, 5);  // fall
  EXPECT_EQ(DecideTopic("t", policy, Input(900, {{"k", 900}}), current)[0].salts, 9);  // rise
}

// After a load stops, or while a key cools, everything falls together and the need can seem to
// rise (the free capacity falls with the cold keys): salts grow only with the key's own rate.
TEST(PolicyTest, SaltsNeverGrowWhileTheKeysRateFalls) {
  TopicPolicy policy;
  policy.headroom = 1.0;
  CurrentLayouts current;
  current["k"] = KeyDecision{"k", RouteAction::kSalted, "t", 4, 1000};
  // 16 partitions; the topic's rate fell faster than the key's: the need is 16 salts.
  PolicyInput falling = Input(1000, {{"k", 900}});
  falling.partitions = 16;
  EXPECT_EQ(DecideTopic("t", policy, falling, current)[0].salts, 4);
  // The same need with the key's rate rising is met.
  PolicyInput rising = Input(1100, {{"k", 1050}});
  rising.partitions = 16;
  EXPECT_GT(DecideTopic("t", policy, rising, current)[0].salts, 4);
}

TEST(PolicyTest, ValidateExplainsBadValues) {
  TopicPolicy policy;
  policy.min_salts = 4;
  policy.max_salts = 2;
  EXPECT_FALSE(policy.Validate().ok());
  policy = TopicPolicy();
  policy.hot_topic_pattern = "hot";
  EXPECT_FALSE(policy.Validate().ok());
  EXPECT_TRUE(TopicPolicy().Validate().ok());
}

}  // namespace
}  // namespace saltproxy
