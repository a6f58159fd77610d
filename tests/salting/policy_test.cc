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
  auto d = DecideTopic("t", policy, Input(16000, {{"a", 1000}, {"b", 3000}}), {});
  EXPECT_EQ(d[0].salts, 8);
  EXPECT_EQ(d[1].salts, 16);  // capped at the topic's partitions
}

TEST(PolicyTest, HotKeysTogetherSpanAboutHeadroomTimesThePartitions) {
  TopicPolicy policy;  // headroom 4
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
  EXPECT_GE(total_salts, 3 * 64);
}

TEST(PolicyTest, MaxSaltsPerShareCapsAKeyByItsShareOfTheTopic) {
  TopicPolicy policy;  // headroom 4: 16 partitions at 1000/s, cold keys leave 250/s free
  auto uncapped = DecideTopic("t", policy, Input(16000, {{"a", 1000}, {"b", 3000}}), {});
  EXPECT_EQ(uncapped[0].salts, 16);  // 4 × 1000 / 250
  policy.max_salts_per_share = 2;
  auto d = DecideTopic("t", policy, Input(16000, {{"a", 1000}, {"b", 3000}, {"c", 100}}), {});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].salts, 2);  // 2 × 1000/16000 × 16
  EXPECT_EQ(d[1].salts, 6);  // 2 × 3000/16000 × 16
  EXPECT_EQ(d[2].salts, 2);  // min_salts still applies
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
