// Hot-key detection per topic: which keys carry a large share of a topic's traffic right now.
//
// Per record (any thread, no lock): the key's hash goes into the calling thread's own count-min
// sketch for the topic (conservative update); a key whose estimate crosses a low offer
// threshold is offered, once per control step, to the control step through the thread's own
// bounded single-producer queue. About 16-18 ns a record on one core of the benchmark machine,
// hashing included; 11-13 ns through ObserveBatch (benchmarks/detect).
//
// Per control step (one thread, every tick): counts decay exponentially with the configured
// half-life (each thread's sketch applies the decay itself, at its next record, so that it
// stays its only writer); the thread sketches are summed cell by cell; the offered keys and the
// current top keys are re-estimated from the sum, so that their estimates are rates
// (records/s = decayed count × ln 2 / half-life) with an error bound (epsilon × the topic's
// rate); the top_k are kept. A key turns hot when its rate reaches the hot threshold and turns
// cold only after it stayed below the cold threshold for the hold-down time.
//
//   HotKeyDetector detector(config);
//   detector.Observe("clicks", key, bytes);                  // ingress threads
//   detector.ObserveBatch("clicks", keys, bytes);            // or a batch's keys at once
//   for (const HotKeyEvent& e : detector.Tick(absl::Now()))  // the control thread
//     LogEvent(...);
//   std::shared_ptr<const DetectorSnapshot> s = detector.Snapshot();
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/detect/sketch.h"
#include "proxy/detect/thresholds.h"

namespace saltproxy {

struct DetectorConfig {
  // The sketch: estimates exceed true counts by at most epsilon × the topic's count with
  // probability 1 − delta; the width is capped so that one thread's sketch of one topic fits
  // in max_sketch_bytes.
  double epsilon = 1e-4;
  double delta = 0.01;
  size_t max_sketch_bytes = 256 << 10;
  bool conservative_update = true;
  uint64_t seed = 0x5a17c0de;
  // Counts halve every half_life: the rates follow the traffic of the last few half-lives.
  absl::Duration half_life = absl::Seconds(2);
  // Keys tracked per topic (the hot ones and the nearest to hot).
  int top_k = 256;
  // When a key turns hot and cold (thresholds.h), for every topic but those in topic_thresholds.
  Thresholds thresholds;
  // Topics tracked; records of further topics are not counted (and a metric says so).
  int max_topics = 1000;
  // Offers per thread per control step waiting for the control step; beyond it they drop.
  int offer_queue = 4096;
  // Topics whose thresholds differ from the ones above.
  absl::flat_hash_map<std::string, TopicThresholds> topic_thresholds;

  absl::Status Validate() const;
  Thresholds ThresholdsFor(std::string_view topic) const;
};

struct HotKeyEvent {
  enum class Kind { kHot, kCold };
  Kind kind;
  std::string topic;
  std::string key;
  double rate_rps = 0;
  double share = 0;  // of the topic's rate
  absl::Time at;
};

struct TrackedKey {
  std::string key;
  double rate_rps = 0;
  // The rate of the records of the last 1/8 to 1/4 of a half-life (0 until the key has been
  // tracked for a control step): a key on the rise reaches its rate here within that window,
  // where rate_rps, a decayed average, lags by half-lives. Noisier; not used for hot and cold.
  double recent_rps = 0;
  double rate_bps = 0;          // rate × the topic's mean record size (an approximation)
  double error_bound_rps = 0;   // epsilon × the topic's rate
  double share = 0;             // of the topic's rate
  double partition_share = 0;   // of one partition's capacity
  bool hot = false;
  absl::Time hot_since = absl::InfinitePast();
};

struct TopicHeatView {
  std::string topic;
  double rate_rps = 0;
  double recent_rps = 0;  // as TrackedKey's
  double rate_bps = 0;
  int32_t partitions = 0;
  double hot_threshold_rps = 0;
  std::vector<TrackedKey> keys;  // top keys by rate, hot ones included
};

struct DetectorSnapshot {
  absl::Time at = absl::InfinitePast();
  std::vector<TopicHeatView> topics;
};

class HotKeyDetector {
 public:
  // `partitions_of` tells a topic's partition count (for partition-share thresholds); it may be
  // null, in which case those thresholds use one partition.
  explicit HotKeyDetector(DetectorConfig config,
                          std::function<int32_t(const std::string&)> partitions_of = nullptr);
  ~HotKeyDetector();
  HotKeyDetector(const HotKeyDetector&) = delete;
  HotKeyDetector& operator=(const HotKeyDetector&) = delete;

  // Any thread; never blocks.
  void Observe(std::string_view topic, std::string_view key, size_t bytes);
  // The keys of several records of one topic, `bytes` their size in total: counts exactly as
  // Observe on each key in turn, but hashes a group of keys and prefetches their sketch cells
  // before updating any, so that the cache misses of a group overlap. Any thread; never blocks.
  void ObserveBatch(std::string_view topic, std::span<const std::string_view> keys, size_t bytes);

  // The control step. One thread.
  std::vector<HotKeyEvent> Tick(absl::Time now);

  // Between control steps, on the control step's thread: whether a key not hot at the last step
  // (offered since, or tracked and below the threshold) already counts twice its topic's hot
  // threshold, so that a step now would find it hot. Cheap (a few sketch cells per new key, no lock on the record path):
  // the control loop asks it every few milliseconds and runs its step early, so that a key that
  // turns hot in a burst is salted within milliseconds, not at the next 100 ms step.
  bool RisingKeyWaiting();

  // The state at the last control step (never null).
  std::shared_ptr<const DetectorSnapshot> Snapshot() const;
  // GET /hotkeys: {"topics":{"t":{"rate_rps":…,"hot_threshold_rps":…,"hot_keys":[{"key":…,
  // "rate_rps":…,"rate_bps":…,"error_bound_rps":…,"share":…,"hot_since":"…"}]}}}
  std::string HotKeysJson() const;
  // Bytes held by every thread's sketches.
  size_t SketchBytes() const;
  const SketchShape& shape() const { return shape_; }

  struct ThreadState;
  struct ThreadTopic;
  struct TopicState;

 private:
  ThreadState& Local();
  ThreadState& NewLocal();
  // Applies the decay the control step decided since this thread's last record.
  void CatchUp(ThreadState& ts, double halvings);
  // The calling thread's counts of a topic, created at first use; null beyond max_topics.
  ThreadTopic* TopicFor(ThreadState& ts, std::string_view topic);
  ThreadTopic* NewTopicFor(ThreadState& ts, std::string_view topic);
  void ObserveSlow(std::string_view topic, std::string_view key, size_t bytes);
  // One record of a known topic.
  void Count(ThreadState& ts, ThreadTopic& t, std::string_view key, size_t bytes);
  // A key whose estimate reached the offer threshold goes to the control step.
  void Offer(ThreadState& ts, int topic, std::string_view key);
  // ObserveBatch's counting, for a sketch of kDepth rows (0: any depth).
  template <uint32_t kDepth>
  void CountBatch(ThreadState& ts, ThreadTopic& t, std::span<const std::string_view> keys);

  const DetectorConfig config_;
  SketchShape shape_;
  std::function<int32_t(const std::string&)> partitions_of_;
  const uint64_t id_;
  const uint64_t mixed_seed_;  // KeyHashSeed(config_.seed)

  // Cumulative half-lives elapsed, as decided by the control step; each thread sketch catches
  // up to it at its next record.
  std::atomic<double> halvings_{0};
  // Per-topic offer thresholds (decayed counts), by topic index; written by the control step.
  std::unique_ptr<std::atomic<uint32_t>[]> offer_threshold_;

  mutable std::mutex threads_mu_;
  std::vector<std::unique_ptr<ThreadState>> threads_;  // guarded by threads_mu_
  // Topic names → index, append-only, read by every thread: guarded by topics_mu_ for writes;
  // threads cache the indices they use.
  mutable std::mutex topics_mu_;
  absl::flat_hash_map<std::string, int> topic_index_;
  std::vector<std::unique_ptr<TopicState>> topics_;  // control thread
  absl::Time last_tick_ = absl::InfinitePast();
  // RisingKeyWaiting's keys: offered since the last step and not tracked, with their hashes.
  struct NewKey {
    int topic;
    uint64_t hash;
  };
  std::vector<NewKey> new_keys_;  // control thread

  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const DetectorSnapshot> snapshot_;
};

}  // namespace saltproxy
