#include "proxy/salting/router.h"

#include <boost/json.hpp>

#include <algorithm>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/strings.h"
#include "proxy/common/log.h"
#include "proxy/salting/footprint.h"
#include "saltproxy/salting.h"

namespace saltproxy {
namespace {

// Delivery reports of one partition arrive in produce order (the upstream producer is
// idempotent), so "delivered >= the submitted count sampled earlier" means every record sent to
// that partition before the sample has been delivered or has failed.
struct PartitionCounters {
  std::atomic<uint64_t> submitted{0};
  std::atomic<uint64_t> delivered{0};
  std::atomic<int64_t> last_offset{-1};
  std::atomic<int64_t> recent{0};  // decayed record count, for load-aware spreading
  std::atomic<uint64_t> bytes{0};   // key and value bytes routed here
  // Records whose client named this topic and that the Java default partitioner (or the
  // client) would have put on this partition: the "without saltproxy" picture.
  std::atomic<uint64_t> plain{0};
};

size_t PayloadSize(const Record& r) {
  return (r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0);
}

std::string_view ActionName(RouteAction action) {
  switch (action) {
    case RouteAction::kPassed: return "cooled";
    case RouteAction::kClientPartition: return "client_partition";
    case RouteAction::kSalted: return "salted";
    case RouteAction::kRerouted: return "rerouted";
  }
  return "unknown";
}



// The partitions of a key's salts: salt 0 stays on the key's default partition (where its
// records went while it was cold); the partitions of its current layout in that topic are kept,
// in order, as far as they go (so that a count that grows or shrinks moves as little as it can);
// the rest are the partitions with the least hot load planned on them, ties broken by a hash of
// (key, partition) so that keys turning hot together spread differently. Placing salts where the
// other hot keys are not, instead of where a hash of the salted key falls, is what lets a key
// reach an even load with few salts: hashed salts collide and leave partitions no hot key can
// fill (benchmarks/salting/skew_benchmark).
std::vector<int32_t> PlaceSalts(std::string_view key, int32_t salts, int32_t partitions,
                                const std::vector<int32_t>& keep,
                                const std::vector<double>& planned) {
  std::vector<int32_t> result;
  if (salts <= 0 || partitions <= 0) return result;
  salts = std::min(salts, partitions);
  std::vector<bool> used(static_cast<size_t>(partitions), false);
  auto take = [&](int32_t p) {
    if (p < 0 || p >= partitions || used[static_cast<size_t>(p)]) return;
    used[static_cast<size_t>(p)] = true;
    result.push_back(p);
  };
  take(DefaultPartition(key, partitions));
  for (int32_t p : keep) {
    if (static_cast<int32_t>(result.size()) >= salts) break;
    take(p);
  }
  if (static_cast<int32_t>(result.size()) < salts) {
    const uint64_t seed = murmur2(key.data(), key.size());
    std::vector<int32_t> candidates;
    for (int32_t p = 0; p < partitions; ++p) {
      if (!used[static_cast<size_t>(p)]) candidates.push_back(p);
    }
    auto rank = [&](int32_t p) {
      // splitmix64 of (key hash, partition): stable across processes and builds.
      uint64_t z = (seed << 32 | static_cast<uint32_t>(p)) + 0x9e3779b97f4a7c15ULL;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      return std::make_pair(planned[static_cast<size_t>(p)], z ^ (z >> 31));
    };
    const size_t want = static_cast<size_t>(salts) - result.size();
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<ptrdiff_t>(want),
                      candidates.end(),
                      [&](int32_t a, int32_t b) { return rank(a) < rank(b); });
    for (size_t i = 0; i < want; ++i) take(candidates[i]);
  }
  return result;
}

}  // namespace

struct Router::TopicRuntime {
  TopicRuntime(std::string n, int32_t p)
      : name(std::move(n)), partitions(p), counters(new PartitionCounters[p > 0 ? p : 1]) {}
  const std::string name;
  const int32_t partitions;
  std::unique_ptr<PartitionCounters[]> counters;
  // Where cold keys' records went off their default partition (a Kafka client's partitioner),
  // and the partition counts the topic had before this one: a key turning hot cuts over from
  // its default partitions under each and from its footprint. Both carry over to the runtime
  // that replaces this one when partitions are added.
  std::shared_ptr<ColdFootprint> footprint = std::make_shared<ColdFootprint>();
  std::vector<int32_t> earlier_partitions;
  std::atomic<uint64_t> records_in{0};  // records whose client named this topic
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> stamps_dropped{0};  // records that came with saltproxy's own headers
};

struct Router::KeyRuntime {
  // A stamped record takes its sequence number and is queued upstream under `mu`, so that on
  // every partition the numbers reach the cluster in order, whichever ingress threads carry the
  // key, and a record refused on the spot gives its number back instead of leaving a gap that
  // readers would wait for.
  std::mutex mu;
  int64_t next_seq = 0;  // guarded by mu
  bool holding = false;  // guarded by mu
  std::deque<std::pair<Record, DeliveryCallback>> held;  // guarded by mu
  absl::Status refused;  // guarded by mu; set by FailHeld: no more holding
  // A stamped record failed after it was queued: its number is a gap in the key's sequence
  // that readers would wait for. The control step renumbers the key (a new episode).
  std::atomic<bool> gap{false};
};

namespace {

// Removes saltproxy's own headers from a record; true if it had any.
bool DropStampHeaders(Record& record) {
  auto ours = [](const RecordHeader& h) {
    return h.key == kHeaderOriginalKey || h.key == kHeaderInstance || h.key == kHeaderSequence ||
           h.key == kHeaderEpoch;
  };
  auto first = std::remove_if(record.headers.begin(), record.headers.end(), ours);
  if (first == record.headers.end()) return false;
  record.headers.erase(first, record.headers.end());
  return true;
}

// Every partition of `topic` a cold record of `key` may be on: its default partition under the
// topic's partition count now and under each it had before, and where its clients' own
// partitioners put it (the footprint, a superset). A key turning hot cuts over from them all.
std::vector<int32_t> ColdPartitions(const Router::TopicRuntime& topic, std::string_view key) {
  const uint32_t hash = murmur2(key.data(), key.size());
  std::vector<int32_t> partitions = topic.footprint->Partitions(hash, topic.partitions);
  partitions.push_back(DefaultPartition(key, topic.partitions));
  for (int32_t earlier : topic.earlier_partitions) {
    partitions.push_back(DefaultPartition(key, earlier));
  }
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
  return partitions;
}

struct RouteEntry {
  SaltMapEntry map;
  std::shared_ptr<Router::TopicRuntime> destination;
  std::shared_ptr<Router::KeyRuntime> runtime;
  std::string epoch_text;
  bool holding = false;
};

RouteEntry MakeEntry(const SaltMapEntry& map, std::shared_ptr<Router::KeyRuntime> runtime,
                     std::shared_ptr<Router::TopicRuntime> destination, bool holding) {
  RouteEntry entry;
  entry.map = map;
  entry.runtime = std::move(runtime);
  entry.destination = std::move(destination);
  entry.epoch_text = absl::StrCat(map.epoch);
  entry.holding = holding;
  return entry;
}

}  // namespace

struct Router::Snapshot {
  uint64_t version = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<TopicRuntime>> topics;
  // source topic → key → entry
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, RouteEntry>> keys;
};

struct Router::Transition {
  std::string topic;
  std::string key;
  SaltMapEntry next;
  std::shared_ptr<TopicRuntime> next_destination;
  std::shared_ptr<KeyRuntime> runtime;
  std::vector<std::pair<std::shared_ptr<TopicRuntime>, int32_t>> old_partitions;
  // The key was cold or cooled: its old partitions are where its cold records went, known once
  // its records are held (ColdPartitions, when the targets are sampled), from this runtime.
  std::shared_ptr<TopicRuntime> cold_source;
  std::vector<uint64_t> targets;  // empty until sampled, transition_grace after holding began
  absl::Time holding_since;
  std::string_view what;          // for the log line
  bool renumber = false;          // the key's numbers start again at 0 (a new episode)
};

Router::Router(Upstream& upstream, HeatTracker* heat, RouterOptions options)
    : upstream_(upstream), heat_(heat), options_(std::move(options)),
      snapshot_(std::make_shared<Snapshot>()),
      epoch_(options_.first_epoch),
      published_epoch_(options_.first_epoch) {}

Router::~Router() = default;

std::shared_ptr<const Router::Snapshot> Router::Current() {
  // One cached snapshot per thread: the lock is taken only when the snapshot changed.
  struct Cache {
    const Router* owner = nullptr;
    uint64_t version = std::numeric_limits<uint64_t>::max();
    std::shared_ptr<const Snapshot> snapshot;
  };
  thread_local Cache cache;
  uint64_t version = version_.load(std::memory_order_acquire);
  if (cache.owner != this || cache.version != version || !cache.snapshot) {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    cache.owner = this;
    cache.snapshot = snapshot_;
    cache.version = snapshot_->version;
  }
  return cache.snapshot;
}

void Router::Publish(std::shared_ptr<Snapshot> next) {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  next->version = snapshot_->version + 1;
  snapshot_ = std::move(next);
  version_.store(snapshot_->version, std::memory_order_release);
}

std::shared_ptr<Router::TopicRuntime> Router::TopicFor(const std::string& topic) {
  std::shared_ptr<const Snapshot> snap = Current();
  if (auto it = snap->topics.find(topic); it != snap->topics.end()) return it->second;
  std::optional<int32_t> partitions = upstream_.CachedPartitions(topic);
  if (!partitions || *partitions <= 0) return nullptr;
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  if (auto it = snapshot_->topics.find(topic); it != snapshot_->topics.end()) return it->second;
  auto next = std::make_shared<Snapshot>(*snapshot_);
  auto runtime = std::make_shared<TopicRuntime>(topic, *partitions);
  next->topics[topic] = runtime;
  next->version = snapshot_->version + 1;
  snapshot_ = std::move(next);
  version_.store(snapshot_->version, std::memory_order_release);
  return runtime;
}

absl::Status Router::Submit(Record&& record, DeliveryCallback done) {
  std::shared_ptr<const Snapshot> snap = Current();
  return Route(*snap, std::move(record), std::move(done));
}

void Router::LookupTopic(const std::string& topic,
                         absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) {
  upstream_.LookupTopic(topic, std::move(done));
}

absl::Status Router::ProduceTo(const std::shared_ptr<TopicRuntime>& topic, int32_t partition,
                               Record&& record, DeliveryCallback done, RouteAction action,
                               int32_t salt, uint64_t epoch) {
  if (partition < 0 || partition >= topic->partitions) {
    return absl::NotFoundError(absl::StrCat("topic ", topic->name, " has no partition ",
                                            partition));
  }
  PartitionCounters& c = topic->counters[partition];
  c.submitted.fetch_add(1, std::memory_order_relaxed);
  c.recent.fetch_add(1, std::memory_order_relaxed);
  c.bytes.fetch_add(PayloadSize(record), std::memory_order_relaxed);
  if (record.topic != topic->name) record.topic = topic->name;
  // The callback keeps the topic's counters alive until the report arrives.
  std::shared_ptr<TopicRuntime> keep = topic;
  absl::Status queued = upstream_.Produce(
      std::move(record), partition,
      [&c, keep, done = std::move(done), action, salt, epoch](const DeliveryReport& r) mutable {
        if (r.status.ok()) {
          int64_t seen = c.last_offset.load(std::memory_order_relaxed);
          while (r.offset > seen &&
                 !c.last_offset.compare_exchange_weak(seen, r.offset, std::memory_order_relaxed)) {
          }
        }
        c.delivered.fetch_add(1, std::memory_order_release);
        DeliveryReport report = r;
        report.action = action;
        report.salt = salt;
        report.epoch = epoch;
        done(report);
      });
  if (!queued.ok()) c.delivered.fetch_add(1, std::memory_order_release);
  return queued;
}

absl::Status Router::Route(const Snapshot& snap, Record&& record, DeliveryCallback done,
                           Pass pass) {
  const bool first_pass = pass == Pass::kArrival;
  // saltproxy's own headers are saltproxy's to write: readers order a key's records by them,
  // and a record that comes with them (consumed and produced again with its headers, say)
  // would be taken for one of saltproxy's. They are dropped.
  const bool stamped = first_pass && DropStampHeaders(record);
  auto topic_it = snap.topics.find(record.topic);
  std::shared_ptr<TopicRuntime> topic =
      topic_it != snap.topics.end() ? topic_it->second : TopicFor(record.topic);
  if (!topic) {
    // Not in the metadata cache yet: the client's partition, or the upstream producer's choice
    // (murmur2).
    const int32_t partition = record.partition >= 0 ? record.partition : record.cold_partition;
    return upstream_.Produce(std::move(record), partition, std::move(done));
  }
  // Where the record goes while its key is cold: the Kafka client's choice, else murmur2's.
  const uint32_t key_hash = record.key ? murmur2(record.key->data(), record.key->size()) : 0;
  const int32_t default_partition =
      record.key ? static_cast<int32_t>((key_hash & 0x7fffffffu) %
                                        static_cast<uint32_t>(topic->partitions))
                 : -1;
  const int32_t cold_partition =
      record.cold_partition >= 0 ? record.cold_partition : default_partition;
  if (first_pass) {  // a held record coming back was counted when it first arrived
    topic->records_in.fetch_add(1, std::memory_order_relaxed);
    if (stamped) topic->stamps_dropped.fetch_add(1, std::memory_order_relaxed);
    topic->bytes_in.fetch_add(PayloadSize(record), std::memory_order_relaxed);
    const int32_t plain = record.partition >= 0 ? record.partition : cold_partition;
    if (plain >= 0 && plain < topic->partitions) {
      topic->counters[plain].plain.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (record.partition >= 0) {
    return ProduceTo(topic, record.partition, std::move(record), std::move(done),
                     RouteAction::kClientPartition, -1, 0);
  }
  if (!record.key) {
    return upstream_.Produce(std::move(record), -1, std::move(done));
  }
  const std::string& key = *record.key;
  if (heat_ && first_pass) heat_->Observe(record.topic, key, PayloadSize(record));
  const RouteEntry* entry = nullptr;
  if (auto keys = snap.keys.find(record.topic); keys != snap.keys.end()) {
    if (auto e = keys->second.find(key); e != keys->second.end()) entry = &e->second;
  }
  // A cold key's record off its default partition is noted, so that if the key turns hot its
  // cut-over names that partition too (ColdFootprint).
  const RouteAction cold_action =
      record.cold_partition >= 0 ? RouteAction::kClientPartition : RouteAction::kPassed;
  if (!entry) {
    if (cold_partition != default_partition) topic->footprint->Note(key_hash, cold_partition);
    return ProduceTo(topic, cold_partition, std::move(record), std::move(done), cold_action, -1,
                     0);
  }
  // Under the key's lock (the control step holds it already when it replays held records).
  std::unique_lock<std::mutex> key_lock(entry->runtime->mu, std::defer_lock);
  if (pass != Pass::kReplay) {
    key_lock.lock();
    // The key's layout is changing (set before the snapshot that says so is published, so a
    // record routed under an older snapshot is held too): wait for the new one.
    if (entry->runtime->holding) {
      if (!entry->runtime->refused.ok()) return entry->runtime->refused;
      if (entry->runtime->held.size() >= options_.max_held_records_per_key) {
        return absl::ResourceExhaustedError(
            "the key's layout is changing and too many of its records are waiting; retry later");
      }
      entry->runtime->held.emplace_back(std::move(record), std::move(done));
      return absl::OkStatus();
    }
    if (entry->holding) {
      // The change took effect between our snapshot and the lock: route under the new one.
      key_lock.unlock();
      std::shared_ptr<const Snapshot> fresh = Current();
      return Route(*fresh, std::move(record), std::move(done), Pass::kAgain);
    }
  }
  const SaltMapEntry& m = entry->map;
  const std::shared_ptr<TopicRuntime>& dest_ptr = entry->destination;
  TopicRuntime& dest = *dest_ptr;
  int32_t salt = 0;
  if (m.partitions.size() > 1) {
    // Load-aware spreading: the least-loaded of the key's salt partitions.
    int64_t best = std::numeric_limits<int64_t>::max();
    for (size_t i = 0; i < m.partitions.size(); ++i) {
      int64_t load = dest.counters[m.partitions[i]].recent.load(std::memory_order_relaxed);
      if (load < best) {
        best = load;
        salt = static_cast<int32_t>(i);
      }
    }
  }
  // A cooled key is cold again: its records go where a cold key's go, still stamped.
  const bool cooled = m.action == RouteAction::kPassed;
  int32_t partition = m.partitions[salt];
  if (cooled && record.cold_partition >= 0) {
    partition = record.cold_partition;
    if (partition != default_partition) dest.footprint->Note(key_hash, partition);
  }
  const int64_t seq = entry->runtime->next_seq;
  record.headers.push_back({std::string(kHeaderOriginalKey), key});
  record.headers.push_back({std::string(kHeaderInstance), options_.instance_id});
  record.headers.push_back({std::string(kHeaderSequence), absl::StrCat(seq)});
  record.headers.push_back({std::string(kHeaderEpoch), entry->epoch_text});
  if (!cooled) record.key = SaltedKeyFor(key, m.partitions[salt], dest.partitions);
  DeliveryCallback noted = [runtime = entry->runtime, done = std::move(done)](
                               const DeliveryReport& r) mutable {
    if (!r.status.ok()) runtime->gap.store(true, std::memory_order_relaxed);
    done(r);
  };
  absl::Status queued =
      ProduceTo(dest_ptr, partition, std::move(record), std::move(noted),
                cooled ? cold_action : m.action, cooled ? -1 : salt, m.epoch);
  if (queued.ok()) entry->runtime->next_seq = seq + 1;
  return queued;
}

void Router::DecayLoads(absl::Time now) {
  if (now - last_decay_ < options_.load_half_life) return;
  last_decay_ = now;
  std::shared_ptr<const Snapshot> snap = Current();
  for (const auto& [name, topic] : snap->topics) {
    for (int32_t p = 0; p < topic->partitions; ++p) {
      std::atomic<int64_t>& recent = topic->counters[p].recent;
      recent.fetch_sub(recent.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    }
  }
}

void Router::Reconfigure(const RouterOptions& options) {
  std::lock_guard<std::mutex> lock(control_mu_);
  options_.default_policy = options.default_policy;
  options_.topic_policies = options.topic_policies;
  options_.cooled_retention = options.cooled_retention;
  options_.load_half_life = options.load_half_life;
}

bool Router::WantsTickNow() {
  std::lock_guard<std::mutex> control_lock(control_mu_);
  for (const std::unique_ptr<Transition>& t : transitions_) {
    // A change whose map was just acknowledged: its held records can go.
    if (t->next.epoch != 0 && MapAcknowledged(t->next.epoch)) return true;
  }
  return heat_ != nullptr && heat_->RisingKeyWaiting();
}

void Router::Tick(absl::Time now) {
  std::lock_guard<std::mutex> control_lock(control_mu_);
  DecayLoads(now);
  std::vector<TopicHeat> heats;
  if (heat_) heats = heat_->Tick(now);

  absl::flat_hash_map<std::string, const Transition*> in_transition;
  for (const auto& t : transitions_) {
    in_transition[absl::StrCat(t->topic, "\n", t->key)] = t.get();
  }

  std::shared_ptr<const Snapshot> snap = Current();
  auto next = std::make_shared<Snapshot>(*snap);
  bool changed = false;

  // A topic whose partitions were increased gets a new runtime, so that keys left alone go where
  // the Java default partitioner now puts them. Salted keys keep their layout until it changes.
  for (auto& [name, runtime] : next->topics) {
    std::optional<int32_t> partitions = upstream_.CachedPartitions(name);
    if (partitions && *partitions > runtime->partitions) {
      LogEvent(LogLevel::kInfo, "topic_partitions_changed",
               {{"topic", name},
                {"from", absl::StrCat(runtime->partitions)},
                {"to", absl::StrCat(*partitions)}});
      auto wider = std::make_shared<TopicRuntime>(name, *partitions);
      wider->footprint = runtime->footprint;
      wider->earlier_partitions = runtime->earlier_partitions;
      wider->earlier_partitions.push_back(runtime->partitions);
      runtime = std::move(wider);
      changed = true;
    }
  }

  auto begin = [&](const std::string& topic, const std::string& key, SaltMapEntry layout,
                   std::shared_ptr<TopicRuntime> destination, std::string_view what) {
    auto transition = std::make_unique<Transition>();
    transition->topic = topic;
    transition->key = key;
    transition->what = what;
    transition->next_destination = std::move(destination);
    std::shared_ptr<TopicRuntime> source = next->topics[topic];
    auto& keys = next->keys[topic];
    auto it = keys.find(key);
    if (it == keys.end()) {
      // Was cold: its records went where its clients put them (ColdPartitions).
      transition->runtime = std::make_shared<KeyRuntime>();
      transition->cold_source = source;
      RouteEntry entry;
      entry.map.topic = topic;
      entry.map.key = key;
      entry.runtime = transition->runtime;
      it = keys.emplace(key, std::move(entry)).first;
      layout.hot_since = now;
    } else if (it->second.map.action == RouteAction::kPassed) {
      // Cooled: its records went where a cold key's go.
      transition->runtime = it->second.runtime;
      transition->cold_source = it->second.destination;
      layout.hot_since = now;
    } else {
      transition->runtime = it->second.runtime;
      for (int32_t p : it->second.map.partitions) {
        transition->old_partitions.emplace_back(it->second.destination, p);
      }
      layout.hot_since = it->second.map.hot_since;
    }
    {
      std::lock_guard<std::mutex> lock(transition->runtime->mu);
      transition->runtime->holding = true;
    }
    it->second.holding = true;
    transition->holding_since = now;
    transition->next = std::move(layout);
    transitions_.push_back(std::move(transition));
    changed = true;
  };

  absl::flat_hash_set<std::string> hot_topics_seen;
  for (TopicHeat& heat : heats) {
    const TopicPolicy& policy = options_.topic_policies.contains(heat.topic)
                                    ? options_.topic_policies.at(heat.topic)
                                    : options_.default_policy;
    hot_topics_seen.insert(heat.topic);
    std::shared_ptr<TopicRuntime> source = TopicFor(heat.topic);
    if (!source) continue;
    if (!next->topics.contains(heat.topic)) next->topics[heat.topic] = source;
    PolicyInput input;
    input.partitions = source->partitions;
    input.total_rps = heat.total_rps;
    input.hot = std::move(heat.hot);
    const std::string hot_topic = policy.HotTopicFor(heat.topic);
    if (std::optional<int32_t> hp = upstream_.CachedPartitions(hot_topic)) {
      input.hot_topic_partitions = *hp;
    }
    CurrentLayouts current;
    auto keys_it = next->keys.find(heat.topic);
    if (keys_it != next->keys.end()) {
      for (const auto& [key, entry] : keys_it->second) {
        if (entry.map.action == RouteAction::kPassed) continue;
        current[key] = KeyDecision{key, entry.map.action, entry.map.destination,
                                   entry.map.salts, entry.map.rate_rps};
      }
    }
    std::vector<KeyDecision> decisions = DecideTopic(heat.topic, policy, input, current);
    absl::flat_hash_set<std::string> hot_now;
    // The hot load planned on each partition of each destination topic: first the keys whose
    // layout stays (or is already changing), then the keys whose layout changes now, heaviest
    // first, each placed where the load planned so far is least (PlaceSalts).
    absl::flat_hash_map<std::string, std::vector<double>> planned;
    auto plan = [&](const std::string& destination, int32_t partitions) -> std::vector<double>& {
      std::vector<double>& load = planned[destination];
      if (load.size() != static_cast<size_t>(partitions)) {
        load.assign(static_cast<size_t>(partitions), 0.0);
      }
      return load;
    };
    auto add_plan = [&](const std::string& destination, int32_t partitions,
                        const std::vector<int32_t>& parts, double rate) {
      if (parts.empty() || partitions <= 0) return;
      std::vector<double>& load = plan(destination, partitions);
      for (int32_t p : parts) {
        if (p >= 0 && p < partitions) {
          load[static_cast<size_t>(p)] += rate / static_cast<double>(parts.size());
        }
      }
    };
    std::vector<KeyDecision*> changing;
    for (KeyDecision& d : decisions) {
      hot_now.insert(d.key);
      if (auto t = in_transition.find(absl::StrCat(heat.topic, "\n", d.key));
          t != in_transition.end()) {
        add_plan(t->second->next.destination, t->second->next_destination->partitions,
                 t->second->next.partitions, d.rate_rps);
        continue;
      }
      auto cur = current.find(d.key);
      if (cur != current.end() && cur->second.action == d.action &&
          cur->second.destination == d.destination && cur->second.salts == d.salts) {
        // Same layout: only the rate shown in the map moves.
        RouteEntry& entry = next->keys[heat.topic][d.key];
        entry.map.rate_rps = d.rate_rps;
        if (entry.destination) {
          add_plan(entry.map.destination, entry.destination->partitions, entry.map.partitions,
                   d.rate_rps);
        }
        continue;
      }
      changing.push_back(&d);
    }
    std::stable_sort(changing.begin(), changing.end(), [](const KeyDecision* a,
                                                          const KeyDecision* b) {
      return a->rate_rps > b->rate_rps;
    });
    for (KeyDecision* change : changing) {
      const KeyDecision& d = *change;
      auto cur = current.find(d.key);
      std::shared_ptr<TopicRuntime> dest = TopicFor(d.destination);
      if (!dest && d.action == RouteAction::kRerouted) {
        absl::Status created =
            upstream_.CreateTopic(d.destination, policy.hot_topic_partitions, {});
        if (!created.ok()) {
          LogEvent(LogLevel::kError, "hot_topic_create_failed",
                   {{"topic", d.destination}, {"reason", created.message()}});
        }
        dest = TopicFor(d.destination);
      }
      if (!dest) continue;
      if (!next->topics.contains(d.destination)) next->topics[d.destination] = dest;
      SaltMapEntry layout;
      layout.topic = heat.topic;
      layout.key = d.key;
      layout.action = d.action;
      layout.destination = d.destination;
      layout.salts = std::min(d.salts, dest->partitions);
      std::vector<int32_t> keep;
      if (cur != current.end() && cur->second.destination == d.destination) {
        keep = next->keys[heat.topic][d.key].map.partitions;
      }
      layout.partitions = PlaceSalts(d.key, layout.salts, dest->partitions, keep,
                                     plan(d.destination, dest->partitions));
      add_plan(d.destination, dest->partitions, layout.partitions, d.rate_rps);
      layout.rate_rps = d.rate_rps;
      std::string_view what = cur == current.end()                      ? "key_hot"
                              : cur->second.action != d.action          ? "key_rerouted"
                                                                        : "key_salts_changed";
      if (cur == current.end() && d.action == RouteAction::kRerouted) what = "key_rerouted";
      begin(heat.topic, d.key, std::move(layout), dest, what);
    }
    // Keys that are no longer hot return to their default partition.
    if (keys_it = next->keys.find(heat.topic); keys_it != next->keys.end()) {
      std::vector<std::string> cooling;
      for (const auto& [key, entry] : keys_it->second) {
        if (entry.map.action == RouteAction::kPassed || hot_now.contains(key) ||
            entry.holding || in_transition.contains(absl::StrCat(heat.topic, "\n", key))) {
          continue;
        }
        // Resumed at the restart: the detector has not counted the key long enough to say.
        if (entry.map.resumed && now - entry.map.changed_at < policy.resumed_hold) continue;
        cooling.push_back(key);
      }
      for (const std::string& key : cooling) {
        SaltMapEntry layout;
        layout.topic = heat.topic;
        layout.key = key;
        layout.action = RouteAction::kPassed;
        layout.destination = heat.topic;
        layout.salts = 1;
        layout.partitions = {DefaultPartition(key, source->partitions)};
        begin(heat.topic, key, std::move(layout), source, "key_cooled");
      }
    }
  }
  // A key whose stamped record failed after it was queued (an outage past delivery_timeout)
  // has a gap in its numbers, which readers would wait out: it starts a new episode under the
  // same layout, numbered from 0, whose cut-over tells readers the gap is final.
  std::vector<std::pair<std::string, std::string>> renumber;
  for (const auto& [topic, keys] : next->keys) {
    for (const auto& [key, entry] : keys) {
      if (!entry.holding && entry.map.epoch != 0 && entry.runtime &&
          entry.runtime->gap.load(std::memory_order_relaxed) &&
          !in_transition.contains(absl::StrCat(topic, "\n", key))) {
        renumber.emplace_back(topic, key);
      }
    }
  }
  for (const auto& [topic, key] : renumber) {
    const RouteEntry& entry = next->keys[topic][key];
    SaltMapEntry layout = entry.map;
    layout.epoch = 0;
    layout.cutover.clear();
    layout.resumed = false;
    begin(topic, key, std::move(layout), entry.destination, "key_renumbered");
    transitions_.back()->renumber = true;
  }
  // Cooled keys leave the map after their retention; their partition does not change.
  for (auto& [topic, keys] : next->keys) {
    std::vector<std::string> expired;
    for (const auto& [key, entry] : keys) {
      if (entry.map.action == RouteAction::kPassed && !entry.holding &&
          now - entry.map.changed_at > options_.cooled_retention) {
        expired.push_back(key);
      }
    }
    for (const std::string& key : expired) {
      keys.erase(key);
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      changed = true;
    }
  }
  if (changed) Publish(std::move(next));
  AdvanceTransitions(now);
  if (epoch() != published_epoch_ || republish_->exchange(false)) PublishSaltMap();
}

void Router::AdvanceTransitions(absl::Time now) {
  std::vector<std::unique_ptr<Transition>> pending;
  for (std::unique_ptr<Transition>& t : transitions_) {
    if (t->next.epoch != 0) {
      // Took effect: its held records wait for the map that names its epoch.
      if (MapAcknowledged(t->next.epoch)) {
        Release(*t);
      } else {
        pending.push_back(std::move(t));
      }
      continue;
    }
    if (t->targets.empty()) {
      // Grace after the holding snapshot was published: a record that was routed under the
      // previous snapshot (before the key was held) has reached the producer by then, so the
      // sample below counts it. Sampled in the step that published the hold, it could miss
      // such a record, and the held records could overtake it.
      if (now - t->holding_since < options_.transition_grace) {
        pending.push_back(std::move(t));
        continue;
      }
      if (t->cold_source) {
        for (int32_t p : ColdPartitions(*t->cold_source, t->key)) {
          t->old_partitions.emplace_back(t->cold_source, p);
        }
      }
      for (const auto& [topic, p] : t->old_partitions) {
        t->targets.push_back(topic->counters[p].submitted.load(std::memory_order_acquire) + 0);
      }
    }
    bool drained = true;
    for (size_t i = 0; i < t->old_partitions.size() && drained; ++i) {
      const auto& [topic, p] = t->old_partitions[i];
      drained = topic->counters[p].delivered.load(std::memory_order_acquire) >= t->targets[i];
    }
    if (!drained) {
      pending.push_back(std::move(t));
      continue;
    }
    // The old layout is drained: the change takes effect under a new epoch. The key stays held
    // until the map that carries the epoch is on the control topic: a record stamped with an
    // epoch that no reader can learn (the proxy crashed before publishing it) would wait in
    // every reader for ever.
    SaltMapEntry& m = t->next;
    m.epoch = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    m.changed_at = now;
    for (const auto& [topic, p] : t->old_partitions) {
      m.cutover.push_back(
          CutOver{topic->name, p, topic->counters[p].last_offset.load(std::memory_order_acquire)});
    }
    {
      std::lock_guard<std::mutex> lock(t->runtime->mu);
      if (t->renumber) {
        // Every record of the old numbering has its outcome now (the key was held until its
        // layout drained): the gap is final, and the numbers start again.
        t->runtime->next_seq = 0;
        t->runtime->gap.store(false, std::memory_order_relaxed);
      }
      m.since_seq = t->runtime->next_seq;  // nothing takes a number while the key is held
    }
    auto next = std::make_shared<Snapshot>(*Current());
    next->keys[t->topic][t->key] = MakeEntry(m, t->runtime, t->next_destination, /*holding=*/true);
    Publish(std::move(next));
    if (MapAcknowledged(m.epoch)) {
      Release(*t);
    } else {
      pending.push_back(std::move(t));
    }
  }
  transitions_ = std::move(pending);
}

bool Router::MapAcknowledged(uint64_t epoch) const {
  return options_.control_topic.empty() ||
         acked_epoch_->load(std::memory_order_acquire) >= epoch;
}

void Router::Release(Transition& t) {
  const SaltMapEntry& m = t.next;
  {
    std::lock_guard<std::mutex> lock(t.runtime->mu);
    // Held records go out first, in order, under the new layout; the new snapshot is
    // published only after them, so no newer record can overtake them.
    auto next = std::make_shared<Snapshot>(*Current());
    next->keys[t.topic][t.key] = MakeEntry(m, t.runtime, t.next_destination, /*holding=*/false);
    Snapshot staged = *next;
    while (!t.runtime->held.empty()) {
      auto [record, done] = std::move(t.runtime->held.front());
      t.runtime->held.pop_front();
      DeliveryCallback callback = std::move(done);
      auto shared_cb = std::make_shared<DeliveryCallback>(std::move(callback));
      absl::Status queued =
          Route(staged, std::move(record),
                [shared_cb](const DeliveryReport& r) { (*shared_cb)(r); }, Pass::kReplay);
      if (!queued.ok()) {
        DeliveryReport failed;
        failed.status = queued;
        (*shared_cb)(failed);
      }
    }
    Publish(std::move(next));
    t.runtime->holding = false;
  }
  LogEvent(LogLevel::kInfo, t.what,
           {{"topic", t.topic},
            {"key", ValidUtf8(t.key) ? t.key : absl::Base64Escape(t.key)},
            {"action", ActionName(m.action)},
            {"destination", m.destination},
            {"salts", absl::StrCat(m.salts)},
            {"rate_rps", absl::StrCat(static_cast<int64_t>(m.rate_rps))},
            {"epoch", absl::StrCat(m.epoch)}});
}

int Router::Resume(std::vector<SaltMapEntry> layouts, absl::Time now) {
  std::lock_guard<std::mutex> control_lock(control_mu_);
  // Every topic named gets its runtime first (TopicFor publishes a snapshot of its own).
  for (const SaltMapEntry& layout : layouts) {
    TopicFor(layout.topic);
    TopicFor(layout.destination);
    for (const CutOver& c : layout.cutover) TopicFor(c.topic);
  }
  auto next = std::make_shared<Snapshot>(*Current());
  int installed = 0;
  for (SaltMapEntry& layout : layouts) {
    std::shared_ptr<TopicRuntime> source = TopicFor(layout.topic);
    std::shared_ptr<TopicRuntime> dest = TopicFor(layout.destination);
    auto fits = [&](int32_t p) { return dest && p >= 0 && p < dest->partitions; };
    if (!source || !dest || layout.partitions.empty() ||
        !std::all_of(layout.partitions.begin(), layout.partitions.end(), fits)) {
      LogEvent(LogLevel::kWarn, "layout_not_resumed",
               {{"topic", layout.topic},
                {"key", ValidUtf8(layout.key) ? layout.key : absl::Base64Escape(layout.key)},
                {"destination", layout.destination},
                {"reason", "its topics or partitions are not in the cluster's metadata"}});
      continue;
    }
    for (const CutOver& c : layout.cutover) {
      std::shared_ptr<TopicRuntime> topic = TopicFor(c.topic);
      if (!topic || c.partition < 0 || c.partition >= topic->partitions) continue;
      std::atomic<int64_t>& last = topic->counters[c.partition].last_offset;
      int64_t seen = last.load(std::memory_order_relaxed);
      while (c.max_offset > seen && !last.compare_exchange_weak(seen, c.max_offset)) {
      }
    }
    layout.epoch = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    layout.since_seq = 0;
    auto transition = std::make_unique<Transition>();
    transition->topic = layout.topic;
    transition->key = layout.key;
    transition->what = "key_resumed";
    transition->next_destination = dest;
    transition->runtime = std::make_shared<KeyRuntime>();
    transition->runtime->holding = true;  // not shared yet
    transition->holding_since = now;
    next->keys[layout.topic][layout.key] =
        MakeEntry(layout, transition->runtime, dest, /*holding=*/true);
    transition->next = std::move(layout);
    transitions_.push_back(std::move(transition));
    ++installed;
  }
  Publish(std::move(next));
  if (installed > 0) PublishSaltMap();
  return installed;
}

void Router::FailHeld(const absl::Status& why) {
  for (std::unique_ptr<Transition>& t : transitions_) {
    std::deque<std::pair<Record, DeliveryCallback>> held;
    {
      std::lock_guard<std::mutex> lock(t->runtime->mu);
      t->runtime->refused = why;
      held.swap(t->runtime->held);
    }
    for (auto& [record, done] : held) {
      DeliveryReport failed;
      failed.topic = record.topic;
      failed.status = why;
      done(failed);
    }
  }
}

std::vector<SaltMapEntry> Router::Entries() const {
  std::shared_ptr<const Snapshot> snap;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snap = snapshot_;
  }
  std::vector<SaltMapEntry> entries;
  for (const auto& [topic, keys] : snap->keys) {
    for (const auto& [key, entry] : keys) {
      if (entry.map.epoch > 0) entries.push_back(entry.map);
    }
  }
  std::sort(entries.begin(), entries.end(), [](const SaltMapEntry& a, const SaltMapEntry& b) {
    return std::tie(a.topic, a.key) < std::tie(b.topic, b.key);
  });
  return entries;
}

std::string Router::SaltMapJson() const {
  namespace json = boost::json;
  json::object topics;
  for (const SaltMapEntry& e : Entries()) {
    json::object k;
    if (ValidUtf8(e.key)) {
      k["key"] = e.key;
    } else {
      k["key_base64"] = absl::Base64Escape(e.key);
    }
    k["action"] = std::string(ActionName(e.action));
    k["destination"] = e.destination;
    k["salts"] = e.salts;
    json::array partitions;
    for (int32_t p : e.partitions) partitions.push_back(p);
    k["partitions"] = std::move(partitions);
    k["epoch"] = e.epoch;
    k["since_seq"] = e.since_seq;
    json::array cutover;
    for (const CutOver& c : e.cutover) {
      cutover.push_back(json::object{{"topic", c.topic}, {"partition", c.partition},
                                     {"max_offset", c.max_offset}});
    }
    k["cutover"] = std::move(cutover);
    k["rate_rps"] = e.rate_rps;
    k["hot_since"] = Rfc3339(e.hot_since);
    k["changed_at"] = Rfc3339(e.changed_at);
    if (e.resumed) k["resumed"] = true;
    json::value& topic = topics[e.topic];
    if (!topic.is_object()) topic = json::object{{"keys", json::array()}};
    topic.as_object()["keys"].as_array().push_back(std::move(k));
  }
  json::object root;
  root["epoch"] = epoch();
  root["instance"] = options_.instance_id;
  root["topics"] = std::move(topics);
  return json::serialize(root);
}

void Router::PublishSaltMap() {
  uint64_t epoch_now = epoch();
  published_epoch_ = epoch_now;
  if (options_.control_topic.empty()) return;
  if (!upstream_.CachedPartitions(options_.control_topic)) {
    absl::Status created = upstream_.CreateTopic(
        options_.control_topic, 1, {{"cleanup.policy", "compact"}});
    if (!created.ok()) {
      LogEvent(LogLevel::kError, "control_topic_create_failed",
               {{"topic", options_.control_topic}, {"reason", created.message()}});
      published_epoch_ = 0;  // try again at the next tick
      return;
    }
  }
  Record record;
  record.topic = options_.control_topic;
  // One compacted record per instance: the latest map of each instance survives compaction.
  record.key = absl::StrCat("saltmap/", options_.instance_id);
  record.value = SaltMapJson();
  absl::Status queued = upstream_.Produce(
      std::move(record), 0,
      [epoch_now, republish = republish_, acked = acked_epoch_](const DeliveryReport& r) {
        if (!r.status.ok()) {
          LogEvent(LogLevel::kError, "saltmap_publish_failed",
                   {{"epoch", absl::StrCat(epoch_now)}, {"reason", r.status.message()}});
          republish->store(true);  // the next tick publishes the map of its time
          return;
        }
        uint64_t seen = acked->load(std::memory_order_relaxed);
        while (epoch_now > seen &&
               !acked->compare_exchange_weak(seen, epoch_now, std::memory_order_acq_rel)) {
        }
      });
  if (!queued.ok()) published_epoch_ = 0;
}

std::vector<Router::TopicStats> Router::Stats() const {
  std::shared_ptr<const Snapshot> snap;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snap = snapshot_;
  }
  std::vector<TopicStats> stats;
  for (const auto& [name, topic] : snap->topics) {
    TopicStats t;
    t.topic = name;
    t.records_in = topic->records_in.load(std::memory_order_relaxed);
    t.stamps_dropped = topic->stamps_dropped.load(std::memory_order_relaxed);
    t.bytes_in = topic->bytes_in.load(std::memory_order_relaxed);
    int64_t max_recent = 0;
    int64_t sum_recent = 0;
    for (int32_t p = 0; p < topic->partitions; ++p) {
      const PartitionCounters& c = topic->counters[p];
      t.records_out.push_back(c.submitted.load(std::memory_order_relaxed));
      t.bytes_out.push_back(c.bytes.load(std::memory_order_relaxed));
      t.plain_out.push_back(c.plain.load(std::memory_order_relaxed));
      int64_t recent = c.recent.load(std::memory_order_relaxed);
      max_recent = std::max(max_recent, recent);
      sum_recent += recent;
    }
    t.skew = sum_recent > 0 ? static_cast<double>(max_recent) * topic->partitions / sum_recent
                            : 1.0;
    if (auto keys = snap->keys.find(name); keys != snap->keys.end()) {
      for (const auto& [key, entry] : keys->second) {
        if (entry.map.action == RouteAction::kSalted || entry.map.action == RouteAction::kRerouted) {
          ++t.hot_keys;
          t.salts_in_use += entry.map.salts;
        }
      }
    }
    stats.push_back(std::move(t));
  }
  std::sort(stats.begin(), stats.end(),
            [](const TopicStats& a, const TopicStats& b) { return a.topic < b.topic; });
  return stats;
}

std::vector<uint64_t> Router::PartitionCounts(const std::string& topic) const {
  std::shared_ptr<const Snapshot> snap;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snap = snapshot_;
  }
  std::vector<uint64_t> counts;
  auto it = snap->topics.find(topic);
  if (it == snap->topics.end()) return counts;
  for (int32_t p = 0; p < it->second->partitions; ++p) {
    counts.push_back(it->second->counters[p].submitted.load(std::memory_order_relaxed));
  }
  return counts;
}

}  // namespace saltproxy
