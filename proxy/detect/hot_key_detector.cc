#include "proxy/detect/hot_key_detector.h"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/strings.h"
#include "proxy/detect/key_hash.h"

namespace saltproxy {
namespace {

std::atomic<uint64_t> g_next_detector_id{1};

// Owner-thread updates of a value other threads read.
void AddRelaxed(std::atomic<double>& a, double v) {
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t Load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Whether a topic name is the one a thread saw last, inline: a call to memcmp for a few bytes
// was a noticeable share of a record's cost.
[[gnu::always_inline]] inline bool SameName(std::string_view a, const std::string& b) {
  const size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8) {
      if (Load64(p + i) != Load64(q + i)) return false;
    }
    return Load64(p + n - 8) == Load64(q + n - 8);
  }
  if (n >= 4) return ((Load32(p) ^ Load32(q)) | (Load32(p + n - 4) ^ Load32(q + n - 4))) == 0;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != q[i]) return false;
  }
  return true;
}

// a && b with neither tested by a branch of its own: GCC turns `a & b` of two comparisons into
// two jumps, and on a skewed stream the first (is the key above the offer threshold?) is a coin
// flip, mispredicted half the time; both together are rarely true, so their branch is predicted.
[[gnu::always_inline]] inline bool Both(bool a, bool b) {
  unsigned v = static_cast<unsigned>(a) & static_cast<unsigned>(b);
  asm("" : "+r"(v));  // the value is opaque to the optimizer: it cannot split the test again
  return v != 0;
}

// The thread's state in the detector it used last: a thread-local of a trivial type, so that
// reading it needs no initialization guard.
struct LocalEntry {
  uint64_t detector;
  HotKeyDetector::ThreadState* state;
};
thread_local LocalEntry t_last_detector{0, nullptr};


}  // namespace

Thresholds DetectorConfig::ThresholdsFor(std::string_view topic) const {
  if (topic_thresholds.empty()) return thresholds;
  auto it = topic_thresholds.find(Sv(topic));
  return it == topic_thresholds.end() ? thresholds : thresholds.With(it->second);
}

absl::Status DetectorConfig::Validate() const {
  if (absl::StatusOr<SketchShape> s = SketchShape::ForErrorBound(epsilon, delta, max_sketch_bytes);
      !s.ok()) {
    return s.status();
  }
  if (half_life <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("half_life: expected a positive duration");
  }
  if (top_k < 1) return absl::InvalidArgumentError("top_k: expected 1 or more");
  auto check = [](const Thresholds& t, const std::string& where) -> absl::Status {
    if (t.hot_rps < 0 || t.hot_share < 0 || t.hot_partition_share < 0 ||
        t.partition_capacity_rps < 0 || t.hot_min_rps < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "hot thresholds: expected 0 (unset) or more"));
    }
    if (t.hot_rps == 0 && t.hot_share == 0 && t.hot_partition_share == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "set one hot threshold: hot_rps, hot_share or hot_partition_share"));
    }
    if (!(t.cold_ratio > 0 && t.cold_ratio <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "cold_ratio: expected a number in (0, 1]"));
    }
    if (t.hold_down < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "hold_down: expected 0 or more"));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = check(thresholds, ""); !s.ok()) return s;
  for (const auto& [topic, unused] : topic_thresholds) {
    if (absl::Status s = check(ThresholdsFor(topic), absl::StrCat("topic ", topic, ": "));
        !s.ok()) {
      return s;
    }
  }
  if (max_topics < 1) return absl::InvalidArgumentError("max_topics: expected 1 or more");
  if (offer_queue < 16) return absl::InvalidArgumentError("offer_queue: expected 16 or more");
  return absl::OkStatus();
}

struct HotKeyDetector::ThreadTopic {
  ThreadTopic(SketchShape shape, bool conservative) : sketch(shape, conservative) {}
  CountMinSketch sketch;
  std::atomic<double> records{0};  // decayed, like the sketch
  std::atomic<double> bytes{0};
};

struct HotKeyDetector::ThreadState {
  using Topic = ThreadTopic;
  struct Offer {
    int topic = -1;
    std::string key;
  };

  ThreadState(int max_topics, int queue)
      : topics(new std::atomic<Topic*>[max_topics]), max_topics(max_topics), ring(queue) {
    for (int i = 0; i < max_topics; ++i) topics[i].store(nullptr, std::memory_order_relaxed);
  }
  ~ThreadState() {
    for (int i = 0; i < max_topics; ++i) delete topics[i].load(std::memory_order_relaxed);
  }

  // Written by the owner (release), read by the control step (acquire).
  std::unique_ptr<std::atomic<Topic*>[]> topics;
  const int max_topics;
  std::atomic<double> applied_halvings{0};
  // Offers: a single-producer (owner), single-consumer (control step) ring.
  std::vector<Offer> ring;
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> tail{0};

  // The control step's: offers up to here have been looked at by RisingKeyWaiting.
  uint64_t peeked = 0;

  // Owner-only.
  double halvings = 0;
  // Keys offered since the last decay step, direct-mapped by hash: a collision only means a key
  // is offered twice, which the control step absorbs.
  std::array<uint64_t, 1024> offered{};
  absl::flat_hash_map<std::string, int> topic_cache;
  // The topic of the last record, its index and its counts.
  std::string last_topic;
  int last_index = -1;
  Topic* last = nullptr;
  const std::atomic<uint32_t>* last_threshold = nullptr;  // its offer threshold
};

// A decayed count's recent past: two earlier samples of it, the older one between one and two
// windows back once there is one, so that the records that arrived since can be told apart from
// what decayed. A rising key's decayed average lags its rate (it reaches 1 − 2^(−t/half-life) of
// it t after the rise: 29 % after 1 s at the default 2 s), its recent count does not.
struct RecentCount {
  struct Sample {
    absl::Time at = absl::InfinitePast();
    double count = 0;
  };
  Sample older, newer;

  // The rate of the records counted since the older sample (the newer one while it is the
  // only one); 0 without one. `count` is the decayed count now. What arrived at a steady rate r
  // over a span s is decayed to r·(half-life/ln 2)·(1 − 2^(−s/half-life)) by now.
  double RateSince(absl::Time now, double count, double half_life_s) const {
    const Sample& from = older.at != absl::InfinitePast() ? older : newer;
    if (from.at == absl::InfinitePast() || now <= from.at) return 0;
    const double span = absl::ToDoubleSeconds(now - from.at);
    const double kept = std::exp2(-span / half_life_s);
    const double arrived = count - from.count * kept;
    return std::max(0.0, arrived * std::log(2.0) / half_life_s / (1 - kept));
  }
  // Takes a sample when the newer one is at least `window` old.
  void Remember(absl::Time now, double count, absl::Duration window) {
    if (newer.at != absl::InfinitePast() && now - newer.at < window) return;
    older = newer;
    newer = {now, count};
  }
};

struct HotKeyDetector::TopicState {
  struct Candidate {
    uint64_t hash = 0;
    double rate = 0;
    double recent_rate = 0;
    RecentCount recent;
    absl::Time tracked_since = absl::InfinitePast();  // the step that first took its offer
    bool hot = false;
    absl::Time hot_since = absl::InfinitePast();
    absl::Time below_since = absl::InfinitePast();
  };
  std::string name;
  absl::flat_hash_map<std::string, Candidate> candidates;
  RecentCount recent;  // of the topic's records
  double hot_rps = 0;    // the hot threshold at the last step
  double hot_count = 0;  // the same as a decayed count (0: none)
};

HotKeyDetector::HotKeyDetector(DetectorConfig config,
                               std::function<int32_t(const std::string&)> partitions_of)
    : config_(std::move(config)),
      partitions_of_(std::move(partitions_of)),
      id_(g_next_detector_id.fetch_add(1)),
      mixed_seed_(KeyHashSeed(config_.seed)),
      offer_threshold_(new std::atomic<uint32_t>[config_.max_topics]),
      snapshot_(std::make_shared<DetectorSnapshot>()) {
  absl::StatusOr<SketchShape> shape =
      SketchShape::ForErrorBound(config_.epsilon, config_.delta, config_.max_sketch_bytes);
  shape_ = shape.ok() ? *shape : SketchShape{1024, 4};
  for (int i = 0; i < config_.max_topics; ++i) offer_threshold_[i].store(2);
}

HotKeyDetector::~HotKeyDetector() = default;

[[gnu::always_inline]] inline HotKeyDetector::ThreadState& HotKeyDetector::Local() {
  // The last detector this thread used answers without a loop (there is one in a proxy).
  if (t_last_detector.detector == id_) [[likely]] return *t_last_detector.state;
  return NewLocal();
}

HotKeyDetector::ThreadState& HotKeyDetector::NewLocal() {
  thread_local std::vector<LocalEntry> cache;
  for (const LocalEntry& e : cache) {
    if (e.detector == id_) {
      t_last_detector = e;
      return *e.state;
    }
  }
  auto state = std::make_unique<ThreadState>(config_.max_topics, config_.offer_queue);
  ThreadState* raw = state.get();
  raw->halvings = halvings_.load();
  raw->applied_halvings.store(raw->halvings);
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    threads_.push_back(std::move(state));
  }
  if (cache.size() >= 8) cache.erase(cache.begin());  // forget the oldest detector
  cache.push_back({id_, raw});
  t_last_detector = {id_, raw};
  return *raw;
}

void HotKeyDetector::CatchUp(ThreadState& ts, double halvings) {
  // This thread is its sketches' only writer: it applies the decay itself.
  const double factor = std::exp2(ts.halvings - halvings);
  for (int i = 0; i < ts.max_topics; ++i) {
    ThreadTopic* t = ts.topics[i].load(std::memory_order_relaxed);
    if (!t) continue;
    t->sketch.Scale(factor);
    t->records.store(t->records.load(std::memory_order_relaxed) * factor,
                     std::memory_order_relaxed);
    t->bytes.store(t->bytes.load(std::memory_order_relaxed) * factor, std::memory_order_relaxed);
  }
  ts.halvings = halvings;
  ts.applied_halvings.store(halvings, std::memory_order_release);
  ts.offered.fill(0);
}

[[gnu::always_inline]] inline HotKeyDetector::ThreadTopic* HotKeyDetector::TopicFor(
    ThreadState& ts, std::string_view topic) {
  if (ts.last != nullptr && SameName(topic, ts.last_topic)) [[likely]] return ts.last;
  return NewTopicFor(ts, topic);
}

HotKeyDetector::ThreadTopic* HotKeyDetector::NewTopicFor(ThreadState& ts,
                                                         std::string_view topic) {
  int index;
  auto it = ts.topic_cache.find(absl::string_view(topic.data(), topic.size()));
  if (it != ts.topic_cache.end()) {
    index = it->second;
  } else {
    std::lock_guard<std::mutex> lock(topics_mu_);
    auto known = topic_index_.find(absl::string_view(topic.data(), topic.size()));
    if (known != topic_index_.end()) {
      index = known->second;
    } else if (static_cast<int>(topic_index_.size()) < config_.max_topics) {
      index = static_cast<int>(topic_index_.size());
      topic_index_.emplace(std::string(topic), index);
    } else {
      return nullptr;  // over max_topics: not counted
    }
    ts.topic_cache.emplace(std::string(topic), index);
  }
  ThreadTopic* t = ts.topics[index].load(std::memory_order_relaxed);
  if (!t) {
    t = new ThreadTopic(shape_, config_.conservative_update);
    ts.topics[index].store(t, std::memory_order_release);
  }
  ts.last_topic.assign(topic.data(), topic.size());
  ts.last_index = index;
  ts.last = t;
  ts.last_threshold = &offer_threshold_[index];
  return t;
}

void HotKeyDetector::Offer(ThreadState& ts, int topic, std::string_view key) {
  const uint64_t head = ts.head.load(std::memory_order_relaxed);
  if (head - ts.tail.load(std::memory_order_acquire) < ts.ring.size()) {
    ThreadState::Offer& slot = ts.ring[head % ts.ring.size()];
    slot.topic = topic;
    slot.key.assign(key.data(), key.size());
    ts.head.store(head + 1, std::memory_order_release);
  }
}

void HotKeyDetector::Observe(std::string_view topic, std::string_view key, size_t bytes) {
  // The common case, with no call but tail calls: this thread's state found at once, no decay
  // to catch up, the same topic as the last record. Everything else goes to ObserveSlow, so that
  // the fast path keeps its values in registers.
  if (t_last_detector.detector == id_) [[likely]] {
    ThreadState& ts = *t_last_detector.state;
    if (halvings_.load(std::memory_order_relaxed) == ts.halvings && ts.last != nullptr &&
        SameName(topic, ts.last_topic)) [[likely]] {
      Count(ts, *ts.last, key, bytes);
      return;
    }
  }
  ObserveSlow(topic, key, bytes);
}

void HotKeyDetector::ObserveSlow(std::string_view topic, std::string_view key, size_t bytes) {
  ThreadState& ts = Local();
  const double halvings = halvings_.load(std::memory_order_relaxed);
  if (halvings != ts.halvings) CatchUp(ts, halvings);
  ThreadTopic* t = TopicFor(ts, topic);
  if (t == nullptr) return;  // over max_topics
  Count(ts, *t, key, bytes);
}

[[gnu::always_inline]] inline void HotKeyDetector::Count(ThreadState& ts, ThreadTopic& t,
                                                         std::string_view key, size_t bytes) {
  AddRelaxed(t.records, 1.0);
  AddRelaxed(t.bytes, static_cast<double>(static_cast<int64_t>(bytes)));  // no sign test
  const uint64_t hash = KeyHashMixed(key.data(), key.size(), mixed_seed_);
  const uint32_t estimate = t.sketch.Add(hash);
  // Offered once per decay step.
  uint64_t& offered = ts.offered[hash & (ts.offered.size() - 1)];
  const uint32_t threshold = ts.last_threshold->load(std::memory_order_relaxed);
  if (Both(estimate >= threshold, offered != hash)) [[unlikely]] {
    offered = hash;
    Offer(ts, ts.last_index, key);
  }
}

void HotKeyDetector::ObserveBatch(std::string_view topic, std::span<const std::string_view> keys,
                                  size_t bytes) {
  if (keys.empty()) return;
  ThreadState& ts = Local();
  const double halvings = halvings_.load(std::memory_order_relaxed);
  if (halvings != ts.halvings) [[unlikely]] CatchUp(ts, halvings);
  ThreadTopic* t = TopicFor(ts, topic);
  if (t == nullptr) [[unlikely]] return;
  switch (t->sketch.shape().depth) {  // once per batch, not per key
    case 4:
      CountBatch<4>(ts, *t, keys);
      break;
    case 5:
      CountBatch<5>(ts, *t, keys);
      break;
    default:
      CountBatch<0>(ts, *t, keys);
  }
  AddRelaxed(t->records, static_cast<double>(keys.size()));
  AddRelaxed(t->bytes, static_cast<double>(bytes));
}

template <uint32_t kDepth>
void HotKeyDetector::CountBatch(ThreadState& ts, ThreadTopic& t,
                                std::span<const std::string_view> keys) {
  const int index = ts.last_index;
  const uint32_t threshold = offer_threshold_[index].load(std::memory_order_relaxed);
  // Groups of keys: hash them all and locate (prefetch) their cells, then count them in order,
  // so that the memory accesses of a group overlap.
  constexpr size_t kGroup = 16;
  uint64_t hashes[kGroup];
  uint32_t cells[kGroup][kDepth ? kDepth : 1];
  for (size_t begin = 0; begin < keys.size(); begin += kGroup) {
    const size_t n = std::min(kGroup, keys.size() - begin);
    const std::string_view* group = keys.data() + begin;
    for (size_t i = 0; i < n; ++i) {
      hashes[i] = KeyHashMixed(group[i].data(), group[i].size(), mixed_seed_);
      if constexpr (kDepth > 0) {
        t.sketch.Locate<kDepth>(hashes[i], cells[i], /*prefetch=*/true);
      } else {
        t.sketch.Prefetch(hashes[i]);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const uint64_t hash = hashes[i];
      uint32_t estimate;
      if constexpr (kDepth > 0) {
        estimate = t.sketch.AddAt<kDepth>(cells[i]);
      } else {
        estimate = t.sketch.Add(hash);
      }
      uint64_t& offered = ts.offered[hash & (ts.offered.size() - 1)];
      if (Both(estimate >= threshold, offered != hash)) [[unlikely]] {
        offered = hash;
        Offer(ts, index, group[i]);
      }
    }
  }
}

std::vector<HotKeyEvent> HotKeyDetector::Tick(absl::Time now) {
  std::vector<HotKeyEvent> events;
  const double half_life_s = absl::ToDoubleSeconds(config_.half_life);
  const absl::Time previous_tick = last_tick_;
  if (last_tick_ != absl::InfinitePast() && now > last_tick_) {
    halvings_.store(halvings_.load() + absl::ToDoubleSeconds(now - last_tick_) / half_life_s,
                    std::memory_order_relaxed);
  }
  last_tick_ = now;
  const double global = halvings_.load();
  // A decayed count c stands for a rate of c·ln2/half_life records per second.
  const double to_rate = std::log(2.0) / half_life_s;
  // Recent rates are counted over one to two eighths of a half-life (0.25-0.5 s by default).
  const absl::Duration recent_window = config_.half_life / 8;

  std::vector<ThreadState*> threads;
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    for (const auto& t : threads_) threads.push_back(t.get());
  }
  {
    std::lock_guard<std::mutex> lock(topics_mu_);
    while (topics_.size() < topic_index_.size()) topics_.push_back(std::make_unique<TopicState>());
    for (const auto& [name, index] : topic_index_) topics_[index]->name = name;
  }
  // Offers become candidates.
  for (ThreadState* ts : threads) {
    const uint64_t head = ts->head.load(std::memory_order_acquire);
    uint64_t tail = ts->tail.load(std::memory_order_relaxed);
    for (; tail < head; ++tail) {
      ThreadState::Offer& offer = ts->ring[tail % ts->ring.size()];
      if (offer.topic >= 0 && offer.topic < static_cast<int>(topics_.size())) {
        auto [it, added] = topics_[offer.topic]->candidates.try_emplace(offer.key);
        it->second.hash = KeyHash(offer.key.data(), offer.key.size(), config_.seed);
        if (added) it->second.tracked_since = now;
        if (added && previous_tick != absl::InfinitePast()) {
          // Offered since the last step: then, no thread had counted it up to the offer
          // threshold, so its recent rate is known from its first step on.
          it->second.recent.newer = {
              previous_tick, static_cast<double>(threads.size()) *
                                 offer_threshold_[offer.topic].load(std::memory_order_relaxed)};
        }
      }
    }
    ts->tail.store(tail, std::memory_order_release);
    ts->peeked = tail;
  }
  new_keys_.clear();

  auto snapshot = std::make_shared<DetectorSnapshot>();
  snapshot->at = now;
  for (size_t index = 0; index < topics_.size(); ++index) {
    TopicState& topic = *topics_[index];
    // Each thread's sketch counts as of its own last decay: weigh it to the common time.
    struct Part {
      const ThreadTopic* topic;
      double weight;
    };
    std::vector<Part> parts;
    double records = 0, bytes = 0;
    for (ThreadState* ts : threads) {
      const ThreadTopic* t = ts->topics[index].load(std::memory_order_acquire);
      if (!t) continue;
      double weight = std::exp2(ts->applied_halvings.load(std::memory_order_acquire) - global);
      parts.push_back({t, weight});
      records += weight * t->records.load(std::memory_order_relaxed);
      bytes += weight * t->bytes.load(std::memory_order_relaxed);
    }
    const double rate = records * to_rate;
    const double recent_rate = topic.recent.RateSince(now, records, half_life_s);
    topic.recent.Remember(now, records, recent_window);
    const double mean_size = records > 0 ? bytes / records : 0;
    const int32_t partitions =
        std::max<int32_t>(1, partitions_of_ ? partitions_of_(topic.name) : 1);
    const Thresholds th = config_.ThresholdsFor(topic.name);
    double hot = th.hot_rps;
    if (hot <= 0 && th.hot_share > 0) hot = th.hot_share * rate;
    if (hot <= 0) {
      double capacity =
          th.partition_capacity_rps > 0 ? th.partition_capacity_rps : rate / partitions;
      hot = th.hot_partition_share * capacity;
    }
    hot = std::max(hot, th.hot_min_rps);
    topic.hot_rps = hot;
    topic.hot_count = hot / to_rate;
    const double cold = th.cold_ratio * hot;
    // Offer keys above a quarter of the cold threshold (each thread sees only part of a key).
    const double offer_count = std::max(2.0, 0.25 * cold / to_rate / std::max<size_t>(1, parts.size()));
    offer_threshold_[index].store(
        static_cast<uint32_t>(std::min(offer_count, 4.0e9)), std::memory_order_relaxed);

    // Re-estimate every candidate from the sum of the thread sketches.
    for (auto& [key, c] : topic.candidates) {
      double estimate = 0;
      // Each thread's estimate bounds its share of the key's count from above, and conservative
      // update keeps each one tight; their sum bounds the key's count.
      for (const Part& p : parts) estimate += p.weight * p.topic->sketch.Estimate(c.hash);
      c.rate = estimate * to_rate;
      c.recent_rate = c.recent.RateSince(now, estimate, half_life_s);
      c.recent.Remember(now, estimate, recent_window);
    }
    // Keep the top_k by rate (hot keys are at the top by definition of the threshold).
    if (static_cast<int>(topic.candidates.size()) > config_.top_k) {
      std::vector<std::pair<double, std::string>> by_rate;
      for (const auto& [key, c] : topic.candidates) by_rate.emplace_back(c.rate, key);
      std::nth_element(by_rate.begin(), by_rate.begin() + config_.top_k, by_rate.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      for (size_t i = config_.top_k; i < by_rate.size(); ++i) {
        auto it = topic.candidates.find(by_rate[i].second);
        if (it != topic.candidates.end() && !it->second.hot) topic.candidates.erase(it);
      }
    }
    TopicHeatView view;
    view.topic = topic.name;
    view.rate_rps = rate;
    view.recent_rps = recent_rate;
    view.rate_bps = bytes * to_rate;
    view.partitions = partitions;
    view.hot_threshold_rps = hot;
    for (auto& [key, c] : topic.candidates) {
      if (!c.hot && c.rate >= hot && hot > 0) {
        c.hot = true;
        c.hot_since = now;
        c.below_since = absl::InfinitePast();
        events.push_back({HotKeyEvent::Kind::kHot, topic.name, key, c.rate,
                          rate > 0 ? c.rate / rate : 0, now});
      } else if (c.hot && c.rate < cold) {
        if (c.below_since == absl::InfinitePast()) c.below_since = now;
        if (now - c.below_since >= th.hold_down) {
          c.hot = false;
          c.hot_since = absl::InfinitePast();
          events.push_back({HotKeyEvent::Kind::kCold, topic.name, key, c.rate,
                            rate > 0 ? c.rate / rate : 0, now});
        }
      } else if (c.hot) {
        c.below_since = absl::InfinitePast();
      }
      TrackedKey k;
      k.key = key;
      k.rate_rps = c.rate;
      k.recent_rps = c.recent_rate;
      k.rate_bps = c.rate * mean_size;
      k.error_bound_rps = shape_.epsilon() * rate;
      k.share = rate > 0 ? c.rate / rate : 0;
      double capacity =
          th.partition_capacity_rps > 0 ? th.partition_capacity_rps : rate / partitions;
      k.partition_share = capacity > 0 ? c.rate / capacity : 0;
      k.hot = c.hot;
      k.hot_since = c.hot_since;
      view.keys.push_back(std::move(k));
    }
    std::sort(view.keys.begin(), view.keys.end(),
              [](const TrackedKey& a, const TrackedKey& b) { return a.rate_rps > b.rate_rps; });
    snapshot->topics.push_back(std::move(view));
  }
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_ = std::move(snapshot);
  }
  return events;
}

bool HotKeyDetector::RisingKeyWaiting() {
  if (last_tick_ == absl::InfinitePast()) return false;
  std::vector<ThreadState*> threads;
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    for (const auto& t : threads_) threads.push_back(t.get());
  }
  // The offers since the last look, of keys not tracked: the ring keeps them until the step.
  constexpr size_t kMaxNewKeys = 4096;
  for (ThreadState* ts : threads) {
    const uint64_t head = ts->head.load(std::memory_order_acquire);
    for (uint64_t i = std::max(ts->peeked, ts->tail.load(std::memory_order_relaxed)); i < head;
         ++i) {
      const ThreadState::Offer& offer = ts->ring[i % ts->ring.size()];
      if (offer.topic < 0 || offer.topic >= static_cast<int>(topics_.size())) continue;
      const TopicState& topic = *topics_[offer.topic];
      if (topic.hot_count <= 0 || topic.candidates.contains(offer.key)) continue;
      if (new_keys_.size() < kMaxNewKeys) {
        new_keys_.push_back(
            {offer.topic, KeyHash(offer.key.data(), offer.key.size(), config_.seed)});
      }
    }
    ts->peeked = head;
  }
  // Their counts, and those of the tracked keys not hot yet (one offered just before the last
  // step is tracked from there on), summed over the threads as the step sums them.
  const double global = halvings_.load();
  auto over = [&](int topic, uint64_t hash) {
    double count = 0;
    for (ThreadState* ts : threads) {
      const ThreadTopic* t = ts->topics[topic].load(std::memory_order_acquire);
      if (!t) continue;
      count += std::exp2(ts->applied_halvings.load(std::memory_order_acquire) - global) *
               t->sketch.Estimate(hash);
    }
    return count >= 2 * topics_[topic]->hot_count;
  };
  for (const NewKey& k : new_keys_) {
    if (over(k.topic, k.hash)) return true;
  }
  // Of the tracked keys, those first tracked at the last step or at a quarter of the threshold
  // or more there: the others are far from it, and the control loop asks every few
  // milliseconds, over every topic.
  for (size_t topic = 0; topic < topics_.size(); ++topic) {
    const TopicState& t = *topics_[topic];
    if (t.hot_count <= 0) continue;
    for (const auto& [key, c] : t.candidates) {
      if (!c.hot && (c.tracked_since == last_tick_ || c.rate >= 0.25 * t.hot_rps) &&
          over(static_cast<int>(topic), c.hash)) {
        return true;
      }
    }
  }
  return false;
}

std::shared_ptr<const DetectorSnapshot> HotKeyDetector::Snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

size_t HotKeyDetector::SketchBytes() const {
  std::lock_guard<std::mutex> lock(threads_mu_);
  size_t bytes = 0;
  for (const auto& ts : threads_) {
    for (int i = 0; i < ts->max_topics; ++i) {
      if (ts->topics[i].load(std::memory_order_acquire)) bytes += shape_.bytes();
    }
  }
  return bytes;
}

std::string HotKeyDetector::HotKeysJson() const {
  namespace json = boost::json;
  std::shared_ptr<const DetectorSnapshot> snap = Snapshot();
  json::object topics;
  for (const TopicHeatView& t : snap->topics) {
    json::array keys;
    for (const TrackedKey& k : t.keys) {
      if (!k.hot) continue;
      json::object o;
      if (ValidUtf8(k.key)) {
        o["key"] = k.key;
      } else {
        o["key_base64"] = absl::Base64Escape(k.key);
      }
      o["rate_rps"] = k.rate_rps;
      o["rate_bps"] = k.rate_bps;
      o["error_bound_rps"] = k.error_bound_rps;
      o["share"] = k.share;
      o["partition_share"] = k.partition_share;
      o["hot_since"] = Rfc3339(k.hot_since);
      keys.push_back(std::move(o));
    }
    topics[t.topic] = json::object{{"rate_rps", t.rate_rps},
                                   {"rate_bps", t.rate_bps},
                                   {"hot_threshold_rps", t.hot_threshold_rps},
                                   {"hot_keys", std::move(keys)}};
  }
  return json::serialize(json::object{
      {"at", Rfc3339(snap->at)},
      {"topics", std::move(topics)}});
}

}  // namespace saltproxy
