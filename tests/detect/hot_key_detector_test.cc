// The detector on synthetic streams with a simulated clock: records are observed in ticks of
// 100 ms of simulated time, 1,000 records a tick (10,000 records/s).
#include "proxy/detect/hot_key_detector.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <thread>

#include "testing/zipf.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::Zipf;

constexpr int kPerTick = 1000;
constexpr absl::Duration kTick = absl::Milliseconds(100);

class DetectorTest : public ::testing::Test {
 protected:
  DetectorTest() {
    config.half_life = absl::Seconds(1);
    config.hot_rps = 0;
    config.hot_partition_share = 0;
    config.hot_share = 0.05;  // hot at 5 % of the topic
    config.cold_ratio = 0.5;
    config.hold_down = absl::Seconds(2);
    config.epsilon = 1e-3;
    config.max_sketch_bytes = 1 << 20;
  }
  HotKeyDetector& detector() {
    if (!detector_) detector_ = std::make_unique<HotKeyDetector>(config);
    return *detector_;
  }
  // One tick of traffic: `hot_every` > 0 sends "hot" once every hot_every records, the rest are
  // spread over many cold keys. Returns the events of the tick.
  std::vector<HotKeyEvent> Step(int hot_every) {
    for (int i = 0; i < kPerTick; ++i) {
      ++sent;
      if (hot_every > 0 && sent % hot_every == 0) {
        detector().Observe("t", "hot", 10);
      } else {
        std::string key = "cold-" + std::to_string(sent % 5000);
        detector().Observe("t", key, 10);
      }
    }
    now += kTick;
    std::vector<HotKeyEvent> events = detector().Tick(now);
    all_events.insert(all_events.end(), events.begin(), events.end());
    return events;
  }
  int Count(HotKeyEvent::Kind kind) const {
    int n = 0;
    for (const auto& e : all_events) n += e.kind == kind && e.key == "hot";
    return n;
  }
  const TrackedKey* Find(const std::string& key) {
    for (const auto& t : detector().Snapshot()->topics) {
      for (const auto& k : t.keys) {
        if (k.key == key) return &k;
      }
    }
    return nullptr;
  }

  DetectorConfig config;
  std::unique_ptr<HotKeyDetector> detector_;
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  int64_t sent = 0;
  std::vector<HotKeyEvent> all_events;
};

TEST_F(DetectorTest, ConfigValidationExplains) {
  EXPECT_TRUE(config.Validate().ok());
  DetectorConfig bad = config;
  bad.hot_share = 0;
  EXPECT_FALSE(bad.Validate().ok());
  bad = config;
  bad.cold_ratio = 2;
  EXPECT_FALSE(bad.Validate().ok());
  bad = config;
  bad.epsilon = 0;
  EXPECT_FALSE(bad.Validate().ok());
}

TEST_F(DetectorTest, RatesAreRecordsPerSecond) {
  for (int i = 0; i < 50; ++i) Step(/*hot_every=*/5);  // "hot" is 20 % of 10,000/s
  const TopicHeatView& t = detector().Snapshot()->topics.at(0);
  EXPECT_NEAR(t.rate_rps, 10000, 1000);
  const TrackedKey* hot = Find("hot");
  ASSERT_NE(hot, nullptr);
  EXPECT_NEAR(hot->rate_rps, 2000, 250);
  EXPECT_NEAR(hot->share, 0.2, 0.025);
  EXPECT_GT(hot->error_bound_rps, 0);
  EXPECT_NEAR(hot->rate_bps, 20000, 2500);
}

TEST_F(DetectorTest, KeyThatTurnsHotMidStreamIsDetectedWithinBoundedRecords) {
  for (int i = 0; i < 30; ++i) Step(0);  // warm: no hot key at all
  ASSERT_EQ(Count(HotKeyEvent::Kind::kHot), 0);
  int64_t start = sent;
  for (int i = 0; i < 100 && Count(HotKeyEvent::Kind::kHot) == 0; ++i) Step(/*hot_every=*/10);
  ASSERT_EQ(Count(HotKeyEvent::Kind::kHot), 1);
  // A key jumping to 10 % crosses 5 % within a few ticks: at most 10,000 records.
  EXPECT_LE(sent - start, 10000);
}

TEST_F(DetectorTest, KeyHoveringAtTheThresholdDoesNotFlap) {
  for (int i = 0; i < 20; ++i) Step(0);
  // Alternate between just above (5.5 %) and just below (4.5 %) the hot threshold.
  for (int i = 0; i < 200; ++i) Step(i % 20 < 10 ? 18 : 22);
  EXPECT_EQ(Count(HotKeyEvent::Kind::kHot), 1);
  EXPECT_EQ(Count(HotKeyEvent::Kind::kCold), 0);
}

TEST_F(DetectorTest, KeyThatStopsDecaysToColdAfterTheHoldDown) {
  for (int i = 0; i < 30; ++i) Step(5);
  ASSERT_EQ(Count(HotKeyEvent::Kind::kHot), 1);
  absl::Time stopped = now;
  while (Count(HotKeyEvent::Kind::kCold) == 0 && now - stopped < absl::Seconds(30)) Step(0);
  ASSERT_EQ(Count(HotKeyEvent::Kind::kCold), 1);
  // Not before it decayed below the cold threshold and stayed there for the hold-down.
  EXPECT_GE(now - stopped, config.hold_down);
  EXPECT_LE(now - stopped, config.hold_down + absl::Seconds(5));
}

TEST_F(DetectorTest, ZipfHeavyHittersMatchExactCounts) {
  config.hot_share = 0.01;
  Zipf zipf(100000, 1.2, 1);
  absl::flat_hash_map<size_t, int> exact;
  for (int tick = 0; tick < 100; ++tick) {
    for (int i = 0; i < kPerTick; ++i) {
      size_t rank = zipf.Next();
      detector().Observe("t", "k" + std::to_string(rank), 8);
      if (tick >= 50) ++exact[rank];  // the last 5 s, five half-lives: what the rates reflect
    }
    now += kTick;
    detector().Tick(now);
  }
  // Keys well above the hot threshold are hot; keys well below the cold threshold (half of it:
  // hysteresis keeps a key hot between the two) are not.
  const TopicHeatView& t = detector().Snapshot()->topics.at(0);
  for (const auto& [rank, count] : exact) {
    double share = count / 50000.0;
    const TrackedKey* k = Find("k" + std::to_string(rank));
    if (share > 0.013) {
      ASSERT_NE(k, nullptr) << rank;
      EXPECT_TRUE(k->hot) << "rank " << rank << " share " << share;
    } else if (share < 0.004 && k) {
      EXPECT_FALSE(k->hot) << "rank " << rank << " share " << share;
    }
  }
  EXPECT_GT(t.rate_rps, 0);
}

TEST_F(DetectorTest, MemoryIsBoundedWhateverTheNumberOfKeys) {
  config.top_k = 16;
  config.hot_share = 0.001;
  for (int tick = 0; tick < 20; ++tick) {
    for (int i = 0; i < 5000; ++i) detector().Observe("t", "k" + std::to_string(tick * 5000 + i), 1);
    now += kTick;
    detector().Tick(now);
  }
  EXPECT_LE(detector().Snapshot()->topics.at(0).keys.size(), 16u);
  EXPECT_EQ(detector().SketchBytes(), detector().shape().bytes());  // one thread, one topic
}

TEST_F(DetectorTest, TopicsBeyondMaxTopicsAreNotCounted) {
  config.max_topics = 2;
  for (const char* topic : {"a", "b", "c"}) detector().Observe(topic, "k", 1);
  now += kTick;
  detector().Tick(now);
  EXPECT_EQ(detector().Snapshot()->topics.size(), 2u);
}

TEST_F(DetectorTest, ThreadsCountIntoOneView) {
  HotKeyDetector& d = detector();  // created here: the fixture's lazy creation is not thread-safe
  std::thread a([&] {
    for (int i = 0; i < 20000; ++i) d.Observe("t", i % 2 ? "hot" : "x" + std::to_string(i), 1);
  });
  std::thread b([&] {
    for (int i = 0; i < 20000; ++i) d.Observe("t", i % 2 ? "hot" : "y" + std::to_string(i), 1);
  });
  a.join();
  b.join();
  now += kTick;
  detector().Tick(now);
  now += kTick;
  detector().Tick(now);
  const TrackedKey* hot = Find("hot");
  ASSERT_NE(hot, nullptr);
  EXPECT_NEAR(hot->share, 0.5, 0.02);
  EXPECT_EQ(detector().SketchBytes(), 2 * detector().shape().bytes());
}

TEST_F(DetectorTest, HotKeysJsonListsHotKeysPerTopic) {
  for (int i = 0; i < 30; ++i) Step(5);
  boost::json::value v = boost::json::parse(detector().HotKeysJson());
  const auto& keys = v.at("topics").at("t").at("hot_keys").as_array();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].at("key").as_string(), "hot");
  EXPECT_GT(keys[0].at("rate_rps").as_double(), 0);
  EXPECT_TRUE(keys[0].as_object().contains("error_bound_rps"));
  EXPECT_TRUE(keys[0].as_object().contains("hot_since"));
}

}  // namespace
}  // namespace saltproxy
