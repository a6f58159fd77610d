// The detector on synthetic streams with a simulated clock: records are observed in ticks of
// 100 ms of simulated time, 1,000 records a tick (10,000 records/s).
#include "proxy/detect/hot_key_detector.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <map>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>

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
    config.thresholds.hot_rps = 0;
    config.thresholds.hot_partition_share = 0;
    config.thresholds.hot_share = 0.05;  // hot at 5 % of the topic
    config.thresholds.cold_ratio = 0.5;
    config.thresholds.hold_down = absl::Seconds(2);
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
  bad.thresholds.hot_share = 0;
  EXPECT_FALSE(bad.Validate().ok());
  bad = config;
  bad.thresholds.cold_ratio = 2;
  EXPECT_FALSE(bad.Validate().ok());
  bad = config;
  bad.epsilon = 0;
  EXPECT_FALSE(bad.Validate().ok());
}

TEST_F(DetectorTest, ATopicsOwnThresholdsApplyToItAlone) {
  // "calm" holds a key hot only at half of its records; "t" at the fixture's 5 %.
  config.topic_thresholds["calm"].hot_share = 0.5;
  config.topic_thresholds["calm"].hold_down = absl::ZeroDuration();
  ASSERT_TRUE(config.Validate().ok());
  for (int tick = 0; tick < 30; ++tick) {
    for (int i = 0; i < kPerTick; ++i) {
      std::string key = i % 5 == 0 ? "hot" : "cold-" + std::to_string(i % 5000);
      detector().Observe("t", key, 10);
      detector().Observe("calm", key, 10);
    }
    now += kTick;
    detector().Tick(now);
  }
  std::map<std::string, const TopicHeatView*> topics;
  for (const TopicHeatView& t : detector().Snapshot()->topics) topics[t.topic] = &t;
  ASSERT_EQ(topics.size(), 2u);
  auto hot_in = [&](const std::string& topic) {
    for (const TrackedKey& k : topics[topic]->keys) {
      if (k.key == "hot") return k.hot;
    }
    return false;
  };
  EXPECT_TRUE(hot_in("t"));      // 20 % of the records, over 5 %
  EXPECT_FALSE(hot_in("calm"));  // 20 %, under 50 %
  EXPECT_NEAR(topics["calm"]->hot_threshold_rps, 10 * topics["t"]->hot_threshold_rps,
              0.1 * topics["calm"]->hot_threshold_rps);
  EXPECT_EQ(config.ThresholdsFor("calm").hold_down, absl::ZeroDuration());
  EXPECT_EQ(config.ThresholdsFor("t").hold_down, config.thresholds.hold_down);
  // Setting one hot threshold of a topic clears the detector's others for it.
  config.thresholds.hot_rps = 100;
  EXPECT_EQ(config.ThresholdsFor("calm").hot_rps, 0);
  EXPECT_EQ(config.ThresholdsFor("t").hot_rps, 100);
}

TEST_F(DetectorTest, ATopicsBadThresholdIsNamedInTheError) {
  config.topic_thresholds["clicks"].cold_ratio = 2;
  absl::Status s = config.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("topic clicks: cold_ratio"), std::string::npos) << s.message();
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

// The decayed average of a key that just appeared is a fraction of its rate (1 − 2^(−t/h)); its
// recent count is its rate from the first control step that sees it.
TEST_F(DetectorTest, ARisingKeysRecentRateIsItsRateAtOnce) {
  for (int i = 0; i < 30; ++i) Step(0);
  ASSERT_EQ(Find("hot"), nullptr);
  Step(/*hot_every=*/5);  // 20 % of 10,000/s, from now
  const TrackedKey* hot = Find("hot");
  ASSERT_NE(hot, nullptr);
  // The average: about 7 % of 2,000 after 100 ms. The recent count at the first step counts the
  // key from when it could have been below the offer threshold (90 records here): about 60 %.
  EXPECT_LT(hot->rate_rps, 200);
  EXPECT_GT(hot->recent_rps, 1000);
  for (int i = 0; i < 5; ++i) Step(5);
  hot = Find("hot");
  EXPECT_LT(hot->rate_rps, 1000);
  EXPECT_NEAR(hot->recent_rps, 2000, 300);
  const TopicHeatView& topic = detector().Snapshot()->topics.at(0);
  EXPECT_NEAR(topic.recent_rps, 10000, 1000);
  // Once the key stops, its recent rate falls to nothing within a window; the average lags.
  for (int i = 0; i < 10; ++i) Step(0);
  hot = Find("hot");
  ASSERT_NE(hot, nullptr);
  EXPECT_LT(hot->recent_rps, 100);
  EXPECT_GT(hot->rate_rps, 200);
}

// Between steps the control loop asks whether a step now would find a new key hot: yes once a
// key not hot at the last step counts twice the hot threshold, no for steady traffic and no
// once the step has made it hot.
TEST_F(DetectorTest, ARisingKeyIsSeenBetweenSteps) {
  for (int i = 0; i < 30; ++i) Step(0);
  EXPECT_FALSE(detector().RisingKeyWaiting());
  // Hot is 5 % of 10,000/s: 500/s, a decayed count of about 720 at a 1 s half-life.
  for (int i = 0; i < 1000; ++i) detector().Observe("t", "burst", 10);
  EXPECT_FALSE(detector().RisingKeyWaiting());  // under twice that
  for (int i = 0; i < 1000; ++i) detector().Observe("t", "burst", 10);
  EXPECT_TRUE(detector().RisingKeyWaiting());
  now += absl::Milliseconds(20);
  detector().Tick(now);
  ASSERT_NE(Find("burst"), nullptr);
  EXPECT_TRUE(Find("burst")->hot);
  EXPECT_FALSE(detector().RisingKeyWaiting());
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
  EXPECT_GE(now - stopped, config.thresholds.hold_down);
  EXPECT_LE(now - stopped, config.thresholds.hold_down + absl::Seconds(5));
}

TEST_F(DetectorTest, ZipfHeavyHittersMatchExactCounts) {
  config.thresholds.hot_share = 0.01;
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
  config.thresholds.hot_share = 0.001;
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

TEST_F(DetectorTest, ObserveBatchCountsAsObserveOnEachKey) {
  // The same Zipf stream, record by record into one detector and in batches of every size
  // (1 to 100: shorter and longer than the batch's groups of 16) into another, with decay steps
  // between: the same topics, rates, tracked keys and hot keys.
  config.thresholds.hot_share = 0.01;
  config.top_k = 1 << 20;  // none dropped: which of two keys of equal rates goes is arbitrary
  HotKeyDetector one(config), batched(config);
  Zipf zipf(20000, 1.1, 8);
  std::vector<std::string> keys;
  std::mt19937_64 rng(5);
  for (int tick = 0; tick < 40; ++tick) {
    for (const char* topic : {"t", "u"}) {
      keys.clear();
      for (int i = 0; i < kPerTick; ++i) {
        // Keys of 1 to 90 bytes: every path of the key hash.
        const size_t rank = zipf.Next();
        std::string key = "k" + std::to_string(rank);
        key.resize(std::max<size_t>(key.size(), rank * 7919 % 91), '.');
        keys.push_back(std::move(key));
      }
      for (const std::string& key : keys) one.Observe(topic, key, 10);
      for (size_t begin = 0; begin < keys.size();) {
        const size_t n = std::min<size_t>(keys.size() - begin, 1 + rng() % 100);
        std::vector<std::string_view> views(keys.begin() + begin, keys.begin() + begin + n);
        batched.ObserveBatch(topic, views, 10 * n);
        begin += n;
      }
    }
    now += kTick;
    // Events and tracked keys compared as sets: keys of equal rates may come in either order.
    auto events = [](const std::vector<HotKeyEvent>& events) {
      std::set<std::tuple<std::string, std::string, int>> set;
      for (const HotKeyEvent& e : events) set.emplace(e.topic, e.key, static_cast<int>(e.kind));
      return set;
    };
    ASSERT_EQ(events(one.Tick(now)), events(batched.Tick(now))) << "tick " << tick;
  }
  const auto sa = one.Snapshot(), sb = batched.Snapshot();
  ASSERT_EQ(sa->topics.size(), 2u);
  ASSERT_EQ(sb->topics.size(), 2u);
  int hot = 0;
  for (size_t t = 0; t < 2; ++t) {
    EXPECT_EQ(sa->topics[t].topic, sb->topics[t].topic);
    EXPECT_DOUBLE_EQ(sa->topics[t].rate_rps, sb->topics[t].rate_rps);
    EXPECT_DOUBLE_EQ(sa->topics[t].rate_bps, sb->topics[t].rate_bps);
    auto tracked = [](const TopicHeatView& view) {
      std::map<std::string, std::pair<double, bool>> map;
      for (const TrackedKey& k : view.keys) map[k.key] = {k.rate_rps, k.hot};
      return map;
    };
    EXPECT_EQ(tracked(sa->topics[t]), tracked(sb->topics[t])) << sa->topics[t].topic;
    for (const TrackedKey& k : sa->topics[t].keys) hot += k.hot;
  }
  EXPECT_GT(hot, 0);  // the comparison covered hot keys
  batched.ObserveBatch("t", {}, 0);  // an empty batch is fine
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
