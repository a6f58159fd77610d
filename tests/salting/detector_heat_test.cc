// The detector as the router's heat: the rates the policy gets. A key on the rise is given its
// recent rate, never more than its topic's.
#include "proxy/salting/detector_heat.h"

#include <gtest/gtest.h>

#include <string>

namespace saltproxy {
namespace {

class DetectorHeatTest : public ::testing::Test {
 protected:
  DetectorHeatTest() : detector_(Config()), heat_(detector_) {}
  static DetectorConfig Config() {
    DetectorConfig config;
    config.half_life = absl::Seconds(1);
    config.thresholds.hot_share = 0.05;
    config.thresholds.hot_min_rps = 0;
    return config;
  }
  // One step of 100 ms: `cold` records over many keys, then `burst` records of "b".
  std::vector<TopicHeat> Step(int cold, int burst) {
    for (int i = 0; i < cold; ++i) heat_.Observe("t", "cold-" + std::to_string(sent_++ % 5000), 10);
    for (int i = 0; i < burst; ++i) heat_.Observe("t", "b", 10);
    now_ += absl::Milliseconds(100);
    return heat_.Tick(now_);
  }

  HotKeyDetector detector_;
  DetectorHeat heat_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  int64_t sent_ = 0;
};

TEST_F(DetectorHeatTest, ARisingKeyGetsItsRecentRateFromItsFirstHotStep) {
  for (int i = 0; i < 20; ++i) Step(800, 0);
  std::vector<TopicHeat> heats;
  for (int i = 0; i < 3; ++i) heats = Step(800, 200);  // "b": 2,000/s of 10,000/s, from now
  ASSERT_EQ(heats.size(), 1u);
  ASSERT_EQ(heats[0].hot.size(), 1u);
  EXPECT_EQ(heats[0].hot[0].key, "b");
  // Its decayed average is under 20 % of that after 300 ms; the heat is about its rate.
  EXPECT_NEAR(heats[0].hot[0].rate_rps, 2000, 400);
  EXPECT_NEAR(heats[0].total_rps, 10000, 1500);
}

// A burst within one step: the key, offered since the last step, counts from that step, the
// topic over its longer window; the key is still not given more than the whole topic.
TEST_F(DetectorHeatTest, NoKeyIsGivenMoreThanItsTopic) {
  for (int i = 0; i < 20; ++i) Step(1000, 0);
  std::vector<TopicHeat> heats = Step(1000, 20000);
  ASSERT_EQ(heats.size(), 1u);
  ASSERT_EQ(heats[0].hot.size(), 1u);
  EXPECT_GT(heats[0].hot[0].rate_rps, 0);
  EXPECT_LE(heats[0].hot[0].rate_rps, heats[0].total_rps);
}

}  // namespace
}  // namespace saltproxy
