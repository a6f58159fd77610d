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

TEST(PolicyTest, SaltCountFollowsRateOverAdaptiveTarget) {
  TopicPolicy policy;
  // Mean partition load 10000/16 = 625/s; 4000/s with headroom 1.5 needs ceil(9.6) = 10 salts.
  auto d = DecideTopic("t", policy, Input(10000, {{"nike", 4000}}), {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].action, RouteAction::kSalted);
  EXPECT_EQ(d[0].destination, "t");
  EXPECT_EQ(d[0].salts, 10);
}

TEST(PolicyTest, SaltCountStaysNearTwiceShareTimesPartitions) {
  TopicPolicy policy;
  for (double share : {0.02, 0.05, 0.1, 0.3, 0.5}) {
    auto d = DecideTopic("t", policy, Input(1000, {{"k", share * 1000}}, 64), {});
    ASSERT_EQ(d.size(), 1u);
    EXPECT_LE(d[0].salts, std::max(2.0, 2 * share * 64 + 1)) << share;
    EXPECT_GE(d[0].salts, std::min(64.0, share * 64)) << share;
  }
}

TEST(PolicyTest, AbsoluteTargetIsHonoured) {
  TopicPolicy policy;
  policy.partition_target_rps = 1000;
  policy.headroom = 1.0;
  auto d = DecideTopic("t", policy, Input(100000, {{"k", 3500}}), {});
  EXPECT_EQ(d[0].salts, 4);
}

TEST(PolicyTest, MinSaltsAppliesToABarelyHotKey) {
  TopicPolicy policy;
  policy.min_salts = 3;
  auto d = DecideTopic("t", policy, Input(10000, {{"k", 10}}), {});
  EXPECT_EQ(d[0].salts, 3);
}

TEST(PolicyTest, KeyTooHotForMaxSaltsIsReroutedToTheHotTopic) {
  TopicPolicy policy;
  policy.max_salts = 4;
  policy.hot_topic_partitions = 32;
  auto d = DecideTopic("clicks", policy, Input(10000, {{"nike", 6000}}), {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].action, RouteAction::kRerouted);
  EXPECT_EQ(d[0].destination, "clicks.hot");
  EXPECT_EQ(d[0].salts, 15);  // ceil(1.5 * 6000 / 625), within the hot topic's 32
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
  // Need 7 (within three quarters of 8): keep 8.
  EXPECT_EQ(DecideTopic("t", policy, Input(1e6, {{"k", 700}}), current)[0].salts, 8);
  // Need 5: fall to 5.
  EXPECT_EQ(DecideTopic("t", policy, Input(1e6, {{"k", 500}}), current)[0].salts, 5);
  // Need 9: rise to 9.
  EXPECT_EQ(DecideTopic("t", policy, Input(1e6, {{"k", 900}}), current)[0].salts, 9);
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
