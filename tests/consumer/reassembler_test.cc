#include "saltproxy/reassembler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "consumer/map_builder.h"
#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::MapJson;
using ::testing::ElementsAre;
using Clock = Reassembler::Clock;

constexpr int kPartitions = 8;
constexpr int kHotPartitions = 4;
const std::string kTopic = "clicks";
const std::string kHot = "clicks.hot";

// How the producers of a key choose its partition while it is cold.
enum class Partitioner {
  kMurmur2,  // every key: the Java client's, or HTTP through saltproxy
  kMixed,    // half the keys from librdkafka's default (CRC32), which saltproxy keeps
};

// librdkafka's consistent_random for a non-empty key: CRC32 (IEEE, reflected) % partitions.
int32_t Crc32Partition(const std::string& key, int32_t partitions) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : key) {
    crc ^= c;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return static_cast<int32_t>((crc ^ 0xFFFFFFFFu) % static_cast<uint32_t>(partitions));
}

// A model of saltproxy's router (proxy/salting/router.cc) writing into partition logs: cold keys
// on the partition their producer chose without headers; hot keys stamped and spread over their
// layout's partitions; every change under a new epoch whose cut-over points are the old
// partitions' last offsets (a key that was cold or cooled: its default partition and its
// producer's); a cooled key stamped on its producer's partition; a cooled key's layout expiring
// (its sequence then starts over). Each change publishes the whole current map, as the router
// does.
//
// Several instances share the partition logs and the production clock (World); each numbers
// and lays out keys on its own, and its records' values say which instance carried them.
struct World {
  std::map<std::pair<std::string, int32_t>, std::vector<ConsumerRecord>> logs;
  int64_t clock = 0;
};

class RouterModel {
 public:
  explicit RouterModel(uint32_t seed, std::string instance = "proxy-1", World* world = nullptr,
                       Partitioner partitioner = Partitioner::kMurmur2)
      : rng_(seed), instance_(std::move(instance)), partitioner_(partitioner),
        world_(world ? world : &own_world_), logs_(world_->logs), clock_(world_->clock) {}

  // The partition the key's producer chose: CRC32 for every other key when mixed.
  int32_t ClientPartition(const std::string& key) const {
    const bool crc = partitioner_ == Partitioner::kMixed && (key.back() - '0') % 2 == 1;
    return crc ? Crc32Partition(key, kPartitions) : DefaultPartition(key, kPartitions);
  }

  // `lost`: a hot key's record is numbered but never written (it failed upstream, or died with
  // a proxy that crashed).
  void Produce(const std::string& key, bool lost = false) {
    KeyRuntime& k = keys_[key];
    if (lost && k.layout) {
      ++k.next_seq;
      ++lost_;
      return;
    }
    ConsumerRecord r;
    r.value = (instance_ == "proxy-1" ? key : key + "/" + instance_) + "#" +
              std::to_string(k.produced++);
    r.timestamp_ms = clock_++;  // the production order, across keys
    if (!k.layout) {
      r.topic = kTopic;
      r.partition = ClientPartition(key);
      r.key = key;
    } else {
      const KeyLayout& l = *k.layout;
      int salt = std::uniform_int_distribution<int>(0, l.partitions.size() - 1)(rng_);
      r.topic = l.destination;
      r.partition = l.action == "cooled" ? ClientPartition(key) : l.partitions[salt];
      r.key = l.action == "cooled" ? key : SaltedKey(key, salt);
      r.headers = {{std::string(kHeaderOriginalKey), key},
                   {std::string(kHeaderInstance), instance_},
                   {std::string(kHeaderSequence), std::to_string(k.next_seq++)},
                   {std::string(kHeaderEpoch), std::to_string(l.epoch)}};
    }
    std::vector<ConsumerRecord>& log = logs_[{r.topic, r.partition}];
    r.offset = static_cast<int64_t>(log.size());
    log.push_back(std::move(r));
  }

  // action: "salted", "rerouted", "cooled".
  void Change(const std::string& key, const std::string& action, int salts) {
    KeyRuntime& k = keys_[key];
    KeyLayout next;
    next.instance = instance_;
    next.topic = kTopic;
    next.key = key;
    next.action = action;
    next.destination = action == "rerouted" ? kHot : kTopic;
    if (action == "cooled") {
      next.partitions = {DefaultPartition(key, kPartitions)};
    } else {
      // Salt 0 on the key's default partition, the others after it (the proxy chooses them;
      // the reassembler reads them from the layout, whatever they are).
      const int32_t n = action == "rerouted" ? kHotPartitions : kPartitions;
      const int32_t first = DefaultPartition(key, n);
      for (int32_t i = 0; i < salts; ++i) next.partitions.push_back((first + i) % n);
    }
    if (!k.layout || k.layout->action == "cooled") {
      // Cold or cooled: from where its records went, its default partition and its producer's.
      if (!k.layout) k.next_seq = 0;  // a new runtime
      std::set<int32_t> cold = {DefaultPartition(key, kPartitions), ClientPartition(key)};
      for (int32_t p : cold) next.cutover.push_back({kTopic, p, LastOffset(kTopic, p)});
    } else {
      for (int32_t p : k.layout->partitions) {
        next.cutover.push_back({k.layout->destination, p, LastOffset(k.layout->destination, p)});
      }
    }
    next.epoch = ++epoch_;
    next.since_seq = k.next_seq;
    k.layout = next;
    k.changed_at = clock_;
    Publish();
  }

  // The proxy restarts (same instance): every key with a layout resumes it under a new epoch,
  // its numbering from 0, with cut-over points at the ends of the partitions its records went
  // to (a cooled key's: where a cold key's go).
  void Restart() {
    ++epoch_;
    for (auto& [key, k] : keys_) {
      if (!k.layout) continue;
      KeyLayout next = *k.layout;
      next.cutover.clear();
      std::set<int32_t> went(next.partitions.begin(), next.partitions.end());
      if (next.action == "cooled") went.insert(ClientPartition(key));
      for (int32_t p : went) {
        next.cutover.push_back({next.destination, p, LastOffset(next.destination, p)});
      }
      next.epoch = epoch_;
      next.since_seq = 0;
      k.next_seq = 0;
      k.layout = next;
      k.changed_at = clock_;
    }
    Publish();
  }

  // A cooled key leaves the map after its retention (Cooled() records ago at least).
  void Expire(const std::string& key) {
    keys_[key].layout.reset();
    ++epoch_;
    Publish();
  }

  const KeyLayout* LayoutOf(const std::string& key) {
    auto it = keys_.find(key);
    return it == keys_.end() || !it->second.layout ? nullptr : &*it->second.layout;
  }
  int64_t Produced(const std::string& key) { return keys_[key].produced; }
  int64_t lost() const { return lost_; }
  // Records produced since the key's layout last changed.
  int64_t SinceChange(const std::string& key) { return clock_ - keys_[key].changed_at; }
  std::map<std::pair<std::string, int32_t>, std::vector<ConsumerRecord>>& logs() { return logs_; }
  // Each map with the production clock when it was published.
  const std::vector<std::pair<int64_t, std::string>>& published() const { return published_; }

 private:
  struct KeyRuntime {
    std::optional<KeyLayout> layout;
    int64_t next_seq = 0;
    int64_t produced = 0;
    int64_t changed_at = 0;
  };

  int64_t LastOffset(const std::string& topic, int32_t p) {
    return static_cast<int64_t>(logs_[{topic, p}].size()) - 1;
  }
  void Publish() {
    std::vector<KeyLayout> current;
    for (const auto& [key, k] : keys_) {
      if (k.layout) current.push_back(*k.layout);
    }
    published_.emplace_back(clock_, MapJson(instance_, epoch_, current));
  }

  std::mt19937 rng_;
  std::string instance_;
  const Partitioner partitioner_;
  World own_world_;
  World* world_;
  std::map<std::string, KeyRuntime> keys_;
  std::map<std::pair<std::string, int32_t>, std::vector<ConsumerRecord>>& logs_;
  uint64_t epoch_ = 0;
  int64_t& clock_;
  int64_t lost_ = 0;
  std::vector<std::pair<int64_t, std::string>> published_;
};

// How the reader interleaves partitions.
enum class ReadOrder { kRandom, kOnePartitionAtATime, kHotTopicFirst };

struct SimulationResult {
  std::map<std::string, std::vector<std::string>> released;  // key -> values, release order
  ReassemblerStats stats;
  int changes = 0;
  int restarts = 0;
  int64_t lost = 0;  // numbered, never written
  int64_t written = 0;
};

// Keys change layout at random (hot, salt count changes, rerouted, cooled, expired, hot
// again) while records flow, and the proxy now and then restarts, losing some of the numbers its
// hot keys took just before; then one reader reads every partition in `order`, learning the
// map late, and releases through a Reassembler that never times out.
//
// As in the proxy, a cooled key keeps its stamped layout for a retention (kRetention records
// here) before it leaves the map, and the reader learns each map within that retention of the
// records produced after it (kMapLag): an unstamped record is known to follow a cooled episode
// only through the map.
constexpr int64_t kRetention = 400;
constexpr int64_t kMapLag = 300;
SimulationResult Simulate(uint32_t seed, ReadOrder order, int records = 20000,
                          int instances = 1, Partitioner partitioner = Partitioner::kMurmur2) {
  World world;
  std::vector<std::unique_ptr<RouterModel>> models;
  for (int i = 0; i < instances; ++i) {
    models.push_back(std::make_unique<RouterModel>(
        seed * 31 + i, "proxy-" + std::to_string(i + 1), &world, partitioner));
  }
  std::mt19937 rng(seed * 7919 + 1);
  std::geometric_distribution<int> skew(0.15);
  SimulationResult result;
  const int keys = 40;
  int lossy = 0;  // records left before an instance restarts, some of its records lost
  RouterModel* restarting = nullptr;
  for (int i = 0; i < records; ++i) {
    if (lossy == 0 && std::uniform_int_distribution<int>(0, 999)(rng) < 1) {
      lossy = 30;
      restarting = models[std::uniform_int_distribution<int>(0, instances - 1)(rng)].get();
    }
    if (lossy > 0 && --lossy == 0) {
      restarting->Restart();
      ++result.restarts;
    }
    // Each record (and each change) goes through one of the instances.
    RouterModel& model = *models[std::uniform_int_distribution<int>(0, instances - 1)(rng)];
    if (std::uniform_int_distribution<int>(0, 99)(rng) < 2) {
      std::string key = "k" + std::to_string(std::min(keys - 1, skew(rng) % 8));
      const KeyLayout* l = model.LayoutOf(key);
      int salts = std::uniform_int_distribution<int>(2, 5)(rng);
      int dice = std::uniform_int_distribution<int>(0, 99)(rng);
      if (!l) {
        model.Change(key, dice < 75 ? "salted" : "rerouted", salts);
      } else if (l->action == "cooled") {
        if (dice < 60 && model.SinceChange(key) > kRetention) {
          model.Expire(key);
        } else {
          model.Change(key, "salted", salts);
        }
      } else if (dice < 40) {
        model.Change(key, l->action, salts);
      } else if (dice < 60) {
        model.Change(key, l->action == "salted" ? "rerouted" : "salted", salts);
      } else {
        model.Change(key, "cooled", 1);
      }
      ++result.changes;
    }
    model.Produce("k" + std::to_string(std::min(keys - 1, skew(rng))),
                  lossy > 0 && &model == restarting &&
                      std::uniform_int_distribution<int>(0, 2)(rng) == 0);
  }
  for (const auto& m : models) result.lost += m->lost();
  result.written = records - result.lost;
  // Every instance's maps, in the order they were published.
  std::vector<std::pair<int64_t, std::string>> published;
  for (const auto& m : models) {
    published.insert(published.end(), m->published().begin(), m->published().end());
  }
  std::stable_sort(published.begin(), published.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  SaltMapHistory map;
  ReassemblerOptions options;
  options.max_wait = std::chrono::hours(1);
  options.max_buffered = 1 << 30;
  Reassembler reassembler(&map, options);
  std::vector<std::pair<std::string, int32_t>> partitions;
  for (const auto& [p, log] : world.logs) partitions.push_back(p);
  if (order == ReadOrder::kHotTopicFirst) {
    std::stable_partition(partitions.begin(), partitions.end(),
                          [](const auto& p) { return p.first == kHot; });
  }
  std::map<std::pair<std::string, int32_t>, size_t> next;
  size_t maps_applied = 0;
  Clock::time_point now{};
  auto take = [&] {
    for (ReleasedRecord& r : reassembler.TakeReleased()) {
      ASSERT_TRUE(r.key.has_value());
      EXPECT_FALSE(r.forced);
      // By producer path: the key, and the instance when it is not the first.
      const std::string& value = *r.record.value;
      result.released[value.substr(0, value.find('#'))].push_back(value);
    }
  };
  size_t cursor = 0;
  for (;;) {
    std::vector<size_t> open;
    for (size_t i = 0; i < partitions.size(); ++i) {
      if (next[partitions[i]] < world.logs[partitions[i]].size()) open.push_back(i);
    }
    if (open.empty()) break;
    size_t pick;
    if (order == ReadOrder::kRandom) {
      pick = open[std::uniform_int_distribution<size_t>(0, open.size() - 1)(rng)];
    } else {
      while (next[partitions[cursor]] >= world.logs[partitions[cursor]].size()) ++cursor;
      pick = cursor;
    }
    const auto& p = partitions[pick];
    ConsumerRecord r = world.logs[p][next[p]++];
    // The map is learnt late, a little at a time, but within kMapLag of the records after it.
    auto apply = [&] {
      std::string error;
      EXPECT_TRUE(map.Apply(published[maps_applied++].second, &error)) << error;
      reassembler.OnMapUpdate(now);
    };
    while (maps_applied < published.size() &&
           published[maps_applied].first < r.timestamp_ms - kMapLag) {
      apply();
    }
    if (maps_applied < published.size() &&
        std::uniform_int_distribution<int>(0, 99)(rng) < 5) {
      apply();
    }
    reassembler.Add(std::move(r), kTopic, now);
    take();
  }
  while (maps_applied < published.size()) {
    std::string error;
    EXPECT_TRUE(map.Apply(published[maps_applied++].second, &error)) << error;
    reassembler.OnMapUpdate(now);
  }
  take();
  result.stats = reassembler.stats();
  for (int i = 0; i < instances * keys; ++i) {
    const std::string key = "k" + std::to_string(i % keys);
    RouterModel& model = *models[i / keys];
    const std::string path = i < keys ? key : key + "/proxy-" + std::to_string(i / keys + 1);
    std::vector<std::string> expected;
    for (int64_t n = 0; n < model.Produced(key); ++n) {
      expected.push_back(path + "#" + std::to_string(n));
    }
    const std::vector<std::string>& got = result.released[path];
    size_t first = 0;
    while (first < got.size() && first < expected.size() && got[first] == expected[first]) ++first;
    EXPECT_EQ(got, expected) << "path " << path << ", seed " << seed << ": " << got.size()
                             << " released of " << expected.size() << ", first difference at "
                             << first << ": "
                             << (first < got.size() ? got[first] : "(none)");
  }
  return result;
}

void ExpectEveryKeysOrderRestored(Partitioner partitioner) {
  uint64_t unwritten = 0;
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    for (ReadOrder order :
         {ReadOrder::kRandom, ReadOrder::kOnePartitionAtATime, ReadOrder::kHotTopicFirst}) {
      SimulationResult r = Simulate(seed, order, 20000, 1, partitioner);
      ASSERT_GT(r.changes, 100);
      ASSERT_GT(r.restarts, 3);
      EXPECT_EQ(r.stats.held, 0u);
      EXPECT_EQ(r.stats.forced_by_timeout + r.stats.forced_by_buffer, 0u);
      EXPECT_EQ(r.stats.duplicates, 0u);
      EXPECT_EQ(static_cast<int64_t>(r.stats.released), r.written);
      // Every number lost before a restart is known unwritten once the restart's cut-over is
      // read, except those after which the key wrote nothing more in its episode.
      EXPECT_LE(static_cast<int64_t>(r.stats.unwritten), r.lost);
      unwritten += r.stats.unwritten;
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_GT(unwritten, 0u);  // the restarts' gaps were met, and closed rather than waited out
}

TEST(ReassemblerTest, RestoresEveryKeysOrderWhateverThePartitionsReadOrder) {
  ExpectEveryKeysOrderRestored(Partitioner::kMurmur2);
}

// Kafka clients whose partitioner is not Java's keep their cold keys where they put them: the
// cut-over of a key turning hot names that partition, and a cooled key goes back there.
TEST(ReassemblerTest, RestoresEveryKeysOrderWhenClientsPartitionColdKeysTheirOwnWay) {
  int moved = 0;  // keys the CRC32 producers put elsewhere than murmur2
  for (int k = 0; k < 40; ++k) {
    const std::string key = "k" + std::to_string(k);
    if (k % 2 == 1 && Crc32Partition(key, kPartitions) != DefaultPartition(key, kPartitions)) {
      ++moved;
    }
  }
  ASSERT_GE(moved, 10);
  ExpectEveryKeysOrderRestored(Partitioner::kMixed);
}

// Two instances salt the same keys independently (their own layouts, epochs and numbers), into
// the same partitions: each producer path (key, instance) comes out in its own order, and one
// instance's held records never wait behind the other's.
TEST(ReassemblerTest, TwoInstancesSaltingTheSameKeysAreEachRestoredInOrder) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    for (ReadOrder order :
         {ReadOrder::kRandom, ReadOrder::kOnePartitionAtATime, ReadOrder::kHotTopicFirst}) {
      SimulationResult r = Simulate(seed, order, 20000, /*instances=*/2);
      EXPECT_EQ(r.stats.held, 0u);
      EXPECT_EQ(r.stats.forced_by_timeout + r.stats.forced_by_buffer, 0u);
      EXPECT_EQ(r.stats.duplicates, 0u);
      EXPECT_EQ(static_cast<int64_t>(r.stats.released), r.written);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

ConsumerRecord Stamped(const std::string& topic, int32_t partition, int64_t offset,
                       const std::string& key, int64_t seq, uint64_t epoch) {
  ConsumerRecord r;
  r.topic = topic;
  r.partition = partition;
  r.offset = offset;
  r.key = key;
  r.value = key + "#" + std::to_string(seq);
  r.headers = {{std::string(kHeaderOriginalKey), key},
               {std::string(kHeaderInstance), "proxy-1"},
               {std::string(kHeaderSequence), std::to_string(seq)},
               {std::string(kHeaderEpoch), std::to_string(epoch)}};
  return r;
}

ConsumerRecord Plain(int32_t partition, int64_t offset, const std::string& key,
                     const std::string& value) {
  ConsumerRecord r;
  r.topic = kTopic;
  r.partition = partition;
  r.offset = offset;
  r.key = key;
  r.value = value;
  return r;
}

KeyLayout Layout(const std::string& key, uint64_t epoch, std::vector<int32_t> partitions,
                 int64_t since_seq, std::vector<CutOverPoint> cutover) {
  KeyLayout l;
  l.instance = "proxy-1";
  l.topic = kTopic;
  l.key = key;
  l.action = "salted";
  l.destination = kTopic;
  l.partitions = std::move(partitions);
  l.epoch = epoch;
  l.since_seq = since_seq;
  l.cutover = std::move(cutover);
  return l;
}

std::vector<std::string> Values(std::vector<ReleasedRecord> released) {
  std::vector<std::string> values;
  for (const ReleasedRecord& r : released) values.push_back(*r.record.value);
  return values;
}

TEST(ReassemblerTest, FirstHotRecordWaitsUntilTheDefaultPartitionPassesTheCutOver) {
  SaltMapHistory map;
  std::string error;
  const int32_t p0 = DefaultPartition("a", kPartitions);
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 1, {Layout("a", 1, {p0, 6}, 0, {{kTopic, p0, 2}})}),
                        &error));
  Reassembler reassembler(&map, {});
  Clock::time_point now{};
  reassembler.Add(Plain(p0, 0, "a", "cold-0"), kTopic, now);
  reassembler.Add(Stamped(kTopic, 6, 0, "a", 0, 1), kTopic, now);  // read early, from p6
  reassembler.Add(Plain(p0, 1, "b", "other"), kTopic, now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("cold-0", "other"));
  EXPECT_EQ(reassembler.stats().held, 1u);
  reassembler.Add(Plain(p0, 2, "a", "cold-1"), kTopic, now);  // the cut-over point
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("cold-1", "a#0"));
  EXPECT_EQ(reassembler.stats().held, 0u);
}

TEST(ReassemblerTest, RecordNamingAnUnknownEpochWaitsForTheMap) {
  SaltMapHistory map;
  Reassembler reassembler(&map, {});
  Clock::time_point now{};
  reassembler.Add(Stamped(kTopic, 3, 0, "a", 0, 1), kTopic, now);
  EXPECT_TRUE(reassembler.TakeReleased().empty());
  std::string error;
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 1, {Layout("a", 1, {3, 4}, 0, {})}), &error));
  reassembler.OnMapUpdate(now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0"));
}

TEST(ReassemblerTest, LagPolicyReleasesAfterMaxWaitCountsTheGapAndKeepsALateRecord) {
  SaltMapHistory map;
  std::string error;
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 1, {Layout("a", 1, {3, 4}, 0, {})}), &error));
  ReassemblerOptions options;
  options.max_wait = std::chrono::seconds(5);
  Reassembler reassembler(&map, options);
  Clock::time_point t0{};
  reassembler.Add(Stamped(kTopic, 3, 0, "a", 0, 1), kTopic, t0);
  reassembler.Add(Stamped(kTopic, 3, 1, "a", 2, 1), kTopic, t0);  // seq 1 lags on partition 4
  reassembler.Add(Stamped(kTopic, 3, 2, "a", 3, 1), kTopic, t0);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0"));
  reassembler.Poll(t0 + std::chrono::seconds(4));
  EXPECT_TRUE(reassembler.TakeReleased().empty());
  reassembler.Poll(t0 + std::chrono::seconds(5));
  std::vector<ReleasedRecord> released = reassembler.TakeReleased();
  EXPECT_THAT(Values(released), ElementsAre("a#2", "a#3"));
  EXPECT_TRUE(released[0].forced);
  EXPECT_FALSE(released[1].forced);
  EXPECT_EQ(reassembler.stats().missing, 1u);
  EXPECT_EQ(reassembler.stats().forced_by_timeout, 1u);
  // The lagging record arrives: late, marked, not lost and not taken for a duplicate.
  reassembler.Add(Stamped(kTopic, 4, 0, "a", 1, 1), kTopic, t0 + std::chrono::seconds(6));
  released = reassembler.TakeReleased();
  EXPECT_THAT(Values(released), ElementsAre("a#1"));
  EXPECT_TRUE(released[0].forced);
  EXPECT_EQ(reassembler.stats().duplicates, 0u);
}

TEST(ReassemblerTest, ARecordReadTwiceIsDroppedAsADuplicate) {
  SaltMapHistory map;
  std::string error;
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 1, {Layout("a", 1, {3, 4}, 0, {})}), &error));
  Reassembler reassembler(&map, {});
  Clock::time_point now{};
  reassembler.Add(Stamped(kTopic, 3, 0, "a", 0, 1), kTopic, now);
  reassembler.Add(Stamped(kTopic, 4, 0, "a", 1, 1), kTopic, now);
  reassembler.Add(Stamped(kTopic, 4, 0, "a", 1, 1), kTopic, now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0", "a#1"));
  EXPECT_EQ(reassembler.stats().duplicates, 1u);
}

TEST(ReassemblerTest, BufferIsBoundedByReleasingTheOldestFirst) {
  SaltMapHistory map;
  std::string error;
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 1, {Layout("a", 1, {3, 4}, 0, {})}), &error));
  ReassemblerOptions options;
  options.max_buffered = 3;
  Reassembler reassembler(&map, options);
  Clock::time_point t{};
  for (int seq = 2; seq <= 6; ++seq) {  // 0 and 1 never come
    reassembler.Add(Stamped(kTopic, 3, seq, "a", seq, 1), kTopic, t);
    t += std::chrono::milliseconds(1);
  }
  EXPECT_EQ(reassembler.stats().held, 0u);  // the first forced release unblocks the rest
  EXPECT_EQ(reassembler.stats().forced_by_buffer, 1u);
  EXPECT_EQ(reassembler.stats().missing, 2u);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#2", "a#3", "a#4", "a#5", "a#6"));
}

TEST(ReassemblerTest, KeyRangesSplitTheKeysBetweenReaders) {
  SaltMapHistory map;
  std::map<std::string, int> seen;
  for (int range = 0; range < 3; ++range) {
    ReassemblerOptions options;
    options.key_ranges = 3;
    options.key_range = range;
    Reassembler reassembler(&map, options);
    for (int k = 0; k < 300; ++k) {
      std::string key = "key-" + std::to_string(k);
      reassembler.Add(Plain(DefaultPartition(key, kPartitions), k, key, "v"), kTopic, {});
    }
    for (const ReleasedRecord& r : reassembler.TakeReleased()) ++seen[*r.key];
    EXPECT_GT(reassembler.stats().skipped, 150u);
  }
  EXPECT_EQ(seen.size(), 300u);
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1) << key;
}

TEST(ReassemblerTest, OriginalKeyComesFromTheHeaderWhenThereIsOne) {
  ConsumerRecord r = Stamped(kHot, 1, 0, "concert", 0, 1);
  r.key = SaltedKey("concert", 3);
  EXPECT_EQ(OriginalKey(r), "concert");
  ASSERT_TRUE(ReadStamp(r).has_value());
  EXPECT_EQ(ReadStamp(r)->seq, 0);
  r.headers[2].second = "12x";  // a malformed sequence number: no stamp
  EXPECT_FALSE(ReadStamp(r).has_value());
  EXPECT_EQ(OriginalKey(Plain(1, 0, "plain", "v")), "plain");
}

// A restarted instance numbers a hot key from 0 again under a resumed layout. The old run's
// records read after the new run's first ones are neither dropped as duplicates nor released
// after them, and the number the old run took but never wrote is not waited for.
TEST(ReassemblerTest, ARestartsNewEpisodeFollowsTheOldRunsRecordsReadLate) {
  SaltMapHistory map;
  std::string error;
  const KeyLayout old_run = Layout("a", 10, {3, 4}, 0, {});
  KeyLayout resumed = Layout("a", 20, {3, 4}, 0, {{kTopic, 3, 1}, {kTopic, 4, 0}});
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 10, {old_run}), &error));
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 20, {resumed}), &error));
  Reassembler reassembler(&map, {});
  Clock::time_point now{};
  // Partition 3: old #0, old #2 (old #3 was numbered, then lost in the crash), new #0.
  // Partition 4: old #1, new #1. Partition 3 is read first.
  reassembler.Add(Stamped(kTopic, 3, 0, "a", 0, 10), kTopic, now);
  reassembler.Add(Stamped(kTopic, 3, 1, "a", 2, 10), kTopic, now);
  reassembler.Add(Stamped(kTopic, 3, 2, "a", 0, 20), kTopic, now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0"));
  reassembler.Add(Stamped(kTopic, 4, 0, "a", 1, 10), kTopic, now);
  reassembler.Add(Stamped(kTopic, 4, 1, "a", 1, 20), kTopic, now);
  std::vector<ReleasedRecord> released = reassembler.TakeReleased();
  ASSERT_EQ(released.size(), 4u);
  std::vector<std::pair<int32_t, int64_t>> order;
  for (const ReleasedRecord& r : released) {
    order.emplace_back(r.record.partition, r.record.offset);
    EXPECT_FALSE(r.forced);
  }
  EXPECT_THAT(order, ElementsAre(std::pair{4, 0L}, std::pair{3, 1L}, std::pair{3, 2L},
                                 std::pair{4, 1L}));
  EXPECT_EQ(reassembler.stats().duplicates, 0u);
  EXPECT_EQ(reassembler.stats().unwritten, 0u);  // nothing of the old run is missing before #2
  EXPECT_EQ(reassembler.stats().held, 0u);
}

// A number taken but never written (the record failed upstream, or died with its proxy) leaves a
// gap: once a later episode of the instance began and its cut-over is read, the gap is known
// and the records after it go, in order, without the lag policy.
TEST(ReassemblerTest, AGapIsClosedByTheNextEpisodesCutOver) {
  SaltMapHistory map;
  std::string error;
  ASSERT_TRUE(map.Apply(MapJson("proxy-1", 10, {Layout("a", 10, {3, 4}, 0, {})}), &error));
  Reassembler reassembler(&map, {});
  Clock::time_point now{};
  reassembler.Add(Stamped(kTopic, 3, 0, "a", 0, 10), kTopic, now);
  reassembler.Add(Stamped(kTopic, 3, 1, "a", 2, 10), kTopic, now);  // #1 never written
  reassembler.Add(Stamped(kTopic, 4, 0, "a", 3, 10), kTopic, now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0"));
  ASSERT_TRUE(map.Apply(
      MapJson("proxy-1", 11, {Layout("a", 11, {3, 4}, 0, {{kTopic, 3, 1}, {kTopic, 4, 0}})}),
      &error));
  reassembler.OnMapUpdate(now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#2", "a#3"));
  EXPECT_EQ(reassembler.stats().unwritten, 1u);
  EXPECT_EQ(reassembler.stats().forced_by_timeout + reassembler.stats().forced_by_buffer, 0u);
  reassembler.Add(Stamped(kTopic, 4, 1, "a", 0, 11), kTopic, now);
  EXPECT_THAT(Values(reassembler.TakeReleased()), ElementsAre("a#0"));
  EXPECT_EQ(reassembler.stats().held, 0u);
}

}  // namespace
}  // namespace saltproxy
