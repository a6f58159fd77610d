#include "saltproxy/reassembler.h"

#include <algorithm>
#include <charconv>

#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"

namespace saltproxy {
namespace {

template <typename T>
bool ParseDecimal(const std::string& text, T* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

const std::string* ConsumerRecord::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

std::optional<SaltStamp> ReadStamp(const ConsumerRecord& record) {
  const std::string* key = record.Header(kHeaderOriginalKey);
  const std::string* instance = record.Header(kHeaderInstance);
  const std::string* seq = record.Header(kHeaderSequence);
  const std::string* epoch = record.Header(kHeaderEpoch);
  if (!key || !instance || !seq || !epoch) return std::nullopt;
  SaltStamp stamp;
  if (!ParseDecimal(*seq, &stamp.seq) || !ParseDecimal(*epoch, &stamp.epoch) || stamp.seq < 0) {
    return std::nullopt;
  }
  stamp.original_key = *key;
  stamp.instance = *instance;
  return stamp;
}

std::optional<std::string> OriginalKey(const ConsumerRecord& record) {
  if (const std::string* original = record.Header(kHeaderOriginalKey)) return *original;
  return record.key;
}

struct Reassembler::Held {
  ConsumerRecord record;
  std::optional<SaltStamp> stamp;
  Clock::time_point arrived;
};

// The identities released of one hot episode of one proxy instance: its sequence numbers.
struct Reassembler::Chain {
  int64_t floor = 0;        // every number below it is released (or known never written)
  std::set<int64_t> above;  // numbers released at or above floor (after a forced release)
  bool started = false;     // a record of the episode was released
  bool closed = false;      // a later episode's cut-over was read: nothing more of it comes
  // One past the highest number released (the next in order).
  int64_t frontier() const { return above.empty() ? floor : std::max(floor, *above.rbegin() + 1); }
  bool released(int64_t seq) const { return seq < floor || above.contains(seq); }
  void Mark(int64_t seq) {
    if (seq == floor) {
      ++floor;
      while (!above.empty() && *above.begin() == floor) {
        above.erase(above.begin());
        ++floor;
      }
    } else if (seq > floor) {
      above.insert(seq);
    }
  }
};

struct Reassembler::KeyState {
  std::string id;
  std::string source_topic;
  std::string key;
  std::map<PartitionId, std::deque<Held>> queues;  // held records, per partition, offset order
  size_t held = 0;
  // By (instance, epoch of the episode's first layout).
  std::map<std::pair<std::string, uint64_t>, Chain> chains;
  std::set<std::pair<PartitionId, int64_t>> waits;  // registered in waiting_
  // The instances whose stamped records of the key were read.
  std::set<std::string, std::less<>> stamped_by;
  // Layouts (instance, epoch) every record before which was read and released.
  std::set<std::pair<std::string, uint64_t>> settled;
  // The map's layouts of the key, as of map update `layouts_version`.
  std::vector<const KeyLayout*> layouts;
  uint64_t layouts_version = ~uint64_t{0};
  // The episode (its first layout's epoch) of each (instance, epoch) seen.
  std::map<std::pair<std::string, uint64_t>, uint64_t> episodes;
};

Reassembler::Reassembler(const SaltMapHistory* map, ReassemblerOptions options)
    : map_(map), options_(options) {
  if (options_.key_ranges < 1) options_.key_ranges = 1;
}

Reassembler::~Reassembler() = default;

int64_t Reassembler::Position(std::string_view topic, int32_t partition) const {
  auto it = positions_.find(PartitionId{std::string(topic), partition});
  return it == positions_.end() ? -1 : it->second;
}

ReassemblerStats Reassembler::stats() const { return stats_; }

std::vector<ReleasedRecord> Reassembler::TakeReleased() {
  std::vector<ReleasedRecord> out;
  out.swap(released_);
  return out;
}

Reassembler::KeyState& Reassembler::StateFor(const std::string& id) {
  std::unique_ptr<KeyState>& ks = keys_[id];
  if (!ks) {
    ks = std::make_unique<KeyState>();
    ks->id = id;
  }
  return *ks;
}

void Reassembler::Add(ConsumerRecord record, std::string_view source_topic,
                      Clock::time_point now) {
  PartitionId pid{record.topic, record.partition};
  const int64_t offset = record.offset;
  std::optional<SaltStamp> stamp = ReadStamp(record);
  std::optional<std::string> key = stamp ? std::optional<std::string>(stamp->original_key)
                                         : record.key;
  if (key && options_.key_ranges > 1 &&
      static_cast<int>((murmur2(key->data(), key->size()) & 0x7fffffffu) %
                       static_cast<uint32_t>(options_.key_ranges)) != options_.key_range) {
    ++stats_.skipped;
    AdvancePosition(pid, offset, now);
    return;
  }
  std::string id;
  if (key) {
    id.reserve(source_topic.size() + 1 + key->size());
    id.append(source_topic).push_back('\0');
    id.append(*key);
  }
  auto existing = key ? keys_.find(id) : keys_.end();
  // The common case, a cold key nothing waits on: straight through.
  if (!stamp && existing == keys_.end() &&
      (!key || !map_->HasCooled(id))) {
    released_.push_back(ReleasedRecord{std::move(record), std::string(source_topic),
                                       std::move(key), false, false});
    ++stats_.released;
    ++stats_.released_in_order;
    AdvancePosition(pid, offset, now);
    return;
  }
  KeyState& ks = existing != keys_.end() ? *existing->second : StateFor(id);
  if (ks.source_topic.empty()) {
    ks.source_topic = std::string(source_topic);
    ks.key = *key;
  }
  if (stamp) {
    // A duplicate is a record whose identity (instance, episode, number) was released already;
    // one the chain went past without releasing (a forced release skipped it) goes now, late.
    if (Chain* chain = ChainOf(ks, *stamp)) {
      const bool duplicate = chain->released(stamp->seq);
      if (duplicate || (chain->started && stamp->seq < chain->frontier())) {
        if (duplicate) {
          ++stats_.duplicates;
        } else {
          Release(ks, Held{std::move(record), std::move(stamp), now}, /*forced=*/true);
        }
        AdvancePosition(pid, offset, now);
        Evaluate(id, now);
        return;
      }
    }
  }
  if (ks.held == 0) {
    // Nothing of the key waits: a record that may go needs no queue.
    Held h{std::move(record), std::move(stamp), now};
    if (Releasable(ks, h)) {
      Release(ks, std::move(h), /*forced=*/false);
      AdvancePosition(pid, offset, now);
      Evaluate(id, now);
      return;
    }
    record = std::move(h.record);
    stamp = std::move(h.stamp);
  }
  if (stamp && !ks.stamped_by.contains(stamp->instance)) ks.stamped_by.insert(stamp->instance);
  ks.queues[pid].push_back(Held{std::move(record), std::move(stamp), now});
  ++ks.held;
  ++stats_.held;
  blocked_.insert(id);
  AdvancePosition(pid, offset, now);
  Evaluate(id, now);
  while (stats_.held > options_.max_buffered) {
    // The bounded buffer: the record that has waited longest goes.
    std::string oldest;
    Clock::time_point when = Clock::time_point::max();
    for (const std::string& b : blocked_) {
      for (const auto& [p, q] : keys_[b]->queues) {
        if (!q.empty() && q.front().arrived < when) {
          when = q.front().arrived;
          oldest = b;
        }
      }
    }
    if (oldest.empty()) break;
    ForceOne(oldest, /*by_buffer=*/true);
  }
}

void Reassembler::Advance(std::string_view topic, int32_t partition, int64_t offset,
                          Clock::time_point now) {
  AdvancePosition(PartitionId{std::string(topic), partition}, offset, now);
}

void Reassembler::AdvancePosition(const PartitionId& pid, int64_t offset, Clock::time_point now) {
  int64_t& position = positions_.try_emplace(pid, -1).first->second;
  if (offset <= position) return;
  position = offset;
  auto w = waiting_.find(pid);
  if (w == waiting_.end()) return;
  std::vector<std::string> ready;
  auto end = w->second.upper_bound(offset);
  for (auto it = w->second.begin(); it != end; ++it) {
    auto ks = keys_.find(it->second);
    if (ks != keys_.end()) ks->second->waits.erase({pid, it->first});
    ready.push_back(it->second);
  }
  w->second.erase(w->second.begin(), end);
  if (w->second.empty()) waiting_.erase(w);
  std::sort(ready.begin(), ready.end());
  ready.erase(std::unique(ready.begin(), ready.end()), ready.end());
  for (const std::string& id : ready) Evaluate(id, now);
}

bool Reassembler::CutOverReached(KeyState& ks, const KeyLayout& layout) {
  for (const CutOverPoint& c : layout.cutover) {
    if (c.max_offset < 0) continue;
    PartitionId pid{c.topic, c.partition};
    auto position = positions_.find(pid);
    if (position == positions_.end() || position->second < c.max_offset) {
      if (ks.waits.insert({pid, c.max_offset}).second) {
        waiting_[pid].emplace(c.max_offset, ks.id);
      }
      return false;
    }
  }
  return true;
}

bool Reassembler::CutOverPassed(KeyState& ks, const KeyLayout& layout, const Held* self) {
  if (!CutOverReached(ks, layout)) return false;
  for (const CutOverPoint& c : layout.cutover) {
    if (c.max_offset < 0) continue;
    PartitionId pid{c.topic, c.partition};
    auto q = ks.queues.find(pid);
    if (q == ks.queues.end()) continue;
    for (const Held& held : q->second) {
      if (held.record.offset > c.max_offset) break;
      // The key's record from before the change is still held there (another instance's
      // stamped records are another producer path: not ordered with this one).
      if (&held != self && (!held.stamp || held.stamp->instance == layout.instance)) return false;
    }
  }
  return true;
}

bool Reassembler::Releasable(KeyState& ks, const Held& h) {
  if (!h.stamp) {
    if (!map_->HasCooled(ks.id)) return true;
    // An unstamped record does not say which instance carried it: it waits for what it would
    // follow on each instance that had the key hot.
    std::set<std::string_view> instances;
    for (const KeyLayout* layout : LayoutsOf(ks)) instances.insert(layout->instance);
    for (std::string_view instance : instances) {
      const KeyLayout* guard = GuardOfUnstamped(ks, h, instance);
      if (guard && !Settled(ks, *guard, &h)) return false;
    }
    return true;
  }
  const SaltStamp& s = *h.stamp;
  const KeyLayout* layout = map_->Find(ks.source_topic, ks.key, s.instance, s.epoch);
  std::optional<uint64_t> first = EpisodeOf(ks, s);
  if (!layout || !first) return false;  // the map has not shown this epoch yet
  const Chain& chain = ks.chains[{s.instance, *first}];
  if (chain.started && s.seq == chain.frontier()) return true;  // right after the one before
  if (!chain.started && s.seq == 0) {
    // The first record of a hot episode: after every record of the key from before its layout
    // (its cold ones, and the instance's earlier episodes) has been read and released.
    return Settled(ks, *layout, &h);
  }
  // A number is missing before it. Once the episode is closed (a later episode of the instance
  // began and everything up to its cut-over is read), what is missing was never written: the
  // held records go lowest number first, after everything before the episode.
  const KeyLayout* start = map_->Find(ks.source_topic, ks.key, s.instance, *first);
  if (!start || !EpisodeClosed(ks, s.instance, *first) || !Settled(ks, *start, &h)) return false;
  for (const auto& [pid, queue] : ks.queues) {
    for (const Held& other : queue) {
      if (other.stamp && other.stamp->instance == s.instance && other.stamp->seq < s.seq &&
          EpisodeOf(ks, *other.stamp) == first) {
        return false;  // a lower number is held (behind another record of its partition)
      }
    }
  }
  return true;
}

const std::vector<const KeyLayout*>& Reassembler::LayoutsOf(KeyState& ks) const {
  if (ks.layouts_version != map_->updates()) {
    ks.layouts = map_->Layouts(ks.source_topic, ks.key);
    ks.layouts_version = map_->updates();
  }
  return ks.layouts;
}

bool Reassembler::Settled(KeyState& ks, const KeyLayout& layout, const Held* self) {
  // The instance's layouts of the key up to `layout`; those settled once stay settled (what is
  // read stays read, and no record from before a passed cut-over can come later).
  if (ks.settled.contains({layout.instance, layout.epoch})) return true;
  std::vector<const KeyLayout*> layouts;
  for (const KeyLayout* l : LayoutsOf(ks)) {
    if (l->instance != layout.instance) continue;
    if (l->epoch > layout.epoch) break;
    if (ks.settled.contains({l->instance, l->epoch})) {
      layouts.clear();
    } else {
      layouts.push_back(l);
    }
  }
  for (const KeyLayout* l : layouts) {
    if (!CutOverPassed(ks, *l, self)) return false;
    ks.settled.insert({l->instance, l->epoch});
  }
  return true;
}

std::optional<uint64_t> Reassembler::EpisodeOf(KeyState& ks, const SaltStamp& stamp) const {
  auto cached = ks.episodes.find({stamp.instance, stamp.epoch});
  if (cached != ks.episodes.end()) return cached->second;
  std::vector<const KeyLayout*> episode = EpisodeUpTo(ks, stamp.instance, stamp.epoch);
  if (episode.empty()) return std::nullopt;
  ks.episodes.emplace(std::make_pair(stamp.instance, stamp.epoch), episode.front()->epoch);
  return episode.front()->epoch;
}

Reassembler::Chain* Reassembler::ChainOf(KeyState& ks, const SaltStamp& stamp) {
  std::optional<uint64_t> first = EpisodeOf(ks, stamp);
  return first ? &ks.chains[{stamp.instance, *first}] : nullptr;
}

bool Reassembler::EpisodeClosed(KeyState& ks, std::string_view instance, uint64_t first) {
  Chain& chain = ks.chains[{std::string(instance), first}];
  if (chain.closed) return true;
  // The episode's layouts and the next episode's first: all their cut-over points read.
  std::vector<const KeyLayout*> bounds;
  bool in = false, next = false;
  for (const KeyLayout* layout : LayoutsOf(ks)) {
    if (layout->instance != instance) continue;
    if (!in) {
      in = layout->epoch == first;
    } else if (layout->since_seq == 0) {
      next = true;
    }
    if (in) bounds.push_back(layout);
    if (next) break;
  }
  if (!next) return false;
  for (const KeyLayout* layout : bounds) {
    if (!CutOverReached(ks, *layout)) return false;
  }
  chain.closed = true;
  return true;
}

std::vector<const KeyLayout*> Reassembler::EpisodeUpTo(KeyState& ks, std::string_view instance,
                                                       uint64_t epoch) const {
  std::vector<const KeyLayout*> episode;
  for (const KeyLayout* layout : LayoutsOf(ks)) {
    if (layout->instance != instance) continue;
    if (layout->since_seq == 0) episode.clear();
    episode.push_back(layout);
    if (layout->epoch == epoch) return episode;
  }
  return {};
}

const KeyLayout* Reassembler::GuardOfUnstamped(KeyState& ks, const Held& h,
                                               std::string_view instance) const {
  // Where the record stands among `instance`'s layouts of the key, told by the cut-over points
  // on its partition: it came after the last layout whose point there lies below it (the anchor)
  // and before the next layout with a point there. An unstamped record that came after a
  // cooled layout (the anchor, or one between the anchor and that next layout, which says
  // nothing of this partition) follows it: it waits until that layout is settled. One that came
  // while the key was hot on `instance` is not that instance's (another instance's, or one its
  // client placed on a partition of its own) and waits for nothing there.
  auto point_here = [&](const KeyLayout& layout) -> const CutOverPoint* {
    for (const CutOverPoint& c : layout.cutover) {
      if (c.topic == h.record.topic && c.partition == h.record.partition) return &c;
    }
    return nullptr;
  };
  std::vector<const KeyLayout*> layouts;
  for (const KeyLayout* layout : LayoutsOf(ks)) {
    if (layout->instance == instance) layouts.push_back(layout);
  }
  size_t from = 0;
  const KeyLayout* guard = nullptr;
  for (size_t i = 0; i < layouts.size(); ++i) {
    const CutOverPoint* c = point_here(*layouts[i]);
    if (c && c->max_offset < h.record.offset) {
      from = i + 1;
      guard = layouts[i]->action == "cooled" ? layouts[i] : nullptr;
    }
  }
  for (size_t i = from; i < layouts.size(); ++i) {
    if (point_here(*layouts[i])) break;  // the record came before this layout took effect here
    if (layouts[i]->action == "cooled") guard = layouts[i];
  }
  return guard;
}

void Reassembler::Release(KeyState& ks, std::deque<Held>& queue, bool forced) {
  Held h = std::move(queue.front());
  queue.pop_front();
  --ks.held;
  --stats_.held;
  Release(ks, std::move(h), forced);
}

void Reassembler::Release(KeyState& ks, Held&& h, bool forced) {
  if (h.stamp) {
    const SaltStamp& stamp = *h.stamp;
    const KeyLayout* layout = map_->Find(ks.source_topic, ks.key, stamp.instance, stamp.epoch);
    if (Chain* chain_of = ChainOf(ks, stamp); chain_of && layout) {
      Chain& chain = *chain_of;
      // The number expected: the chain's next, or where the record's layout began.
      const int64_t expected = chain.started ? chain.frontier() : layout->since_seq;
      if (stamp.seq > expected) {
        if (forced) {
          stats_.missing += static_cast<uint64_t>(stamp.seq - expected);
        } else {
          // The episode is closed: the numbers before it were taken but never written.
          stats_.unwritten += static_cast<uint64_t>(stamp.seq - expected);
          if (chain.above.empty() && chain.floor >= expected) chain.floor = stamp.seq;
        }
      }
      chain.Mark(stamp.seq);
      chain.started = true;
    }
  }
  ++stats_.released;
  if (!forced) ++stats_.released_in_order;
  const bool salted = h.stamp.has_value();
  released_.push_back(
      ReleasedRecord{std::move(h.record), ks.source_topic, ks.key, salted, forced});
}

void Reassembler::Evaluate(const std::string& id, Clock::time_point now) {
  auto it = keys_.find(id);
  if (it == keys_.end()) return;
  KeyState& ks = *it->second;
  bool progress = true;
  while (progress && ks.held > 0) {
    progress = false;
    // The instances that stamped records of the key: once a record of each is held in a
    // partition, the rest of it is held behind them.
    const size_t instances = ks.stamped_by.size();
    for (auto& [pid, queue] : ks.queues) {
      // The instances of stamped records held earlier in the queue (views of ks.stamped_by).
      std::set<std::string_view> held_instances;
      for (size_t i = 0; i < queue.size();) {
        const Held& h = queue[i];
        // Held behind an earlier record of the partition still held: an unstamped one behind
        // any; a stamped one behind those its instance stamped (its numbers order it; what came
        // before its episode is ordered by the cut-over points, and another instance's records
        // are another producer path).
        const bool behind = h.stamp ? held_instances.contains(h.stamp->instance) : i > 0;
        if (behind) {
          if (held_instances.size() >= instances) break;
          ++i;
          continue;
        }
        if (h.stamp) {
          // Two copies of one record were held: the second is a duplicate once the first went.
          const Chain* chain = ChainOf(ks, *h.stamp);
          if (chain && chain->released(h.stamp->seq)) {
            queue.erase(queue.begin() + static_cast<ptrdiff_t>(i));
            --ks.held;
            --stats_.held;
            ++stats_.duplicates;
            progress = true;
            continue;
          }
        }
        if (!Releasable(ks, h)) {
          // A view of the key's own copy of the name: the queue moves its records as it erases.
          if (h.stamp) held_instances.insert(*ks.stamped_by.find(h.stamp->instance));
          if (i > 0 && held_instances.size() >= instances) break;
          ++i;
          continue;
        }
        Held released = std::move(queue[i]);
        queue.erase(queue.begin() + static_cast<ptrdiff_t>(i));
        --ks.held;
        --stats_.held;
        Release(ks, std::move(released), /*forced=*/false);
        progress = true;
      }
    }
  }
  std::erase_if(ks.queues, [](const auto& q) { return q.second.empty(); });
  if (ks.held > 0) return;
  blocked_.erase(id);
  // Nothing held: only the sequence chains are worth keeping (a cold key keeps nothing).
  if (ks.chains.empty()) {
    for (const auto& [pid, offset] : ks.waits) {
      auto w = waiting_.find(pid);
      if (w == waiting_.end()) continue;
      auto [lo, hi] = w->second.equal_range(offset);
      for (auto e = lo; e != hi; ++e) {
        if (e->second == id) {
          w->second.erase(e);
          break;
        }
      }
      if (w->second.empty()) waiting_.erase(w);
    }
    keys_.erase(it);
  }
}

void Reassembler::ForceOne(const std::string& id, bool by_buffer) {
  auto it = keys_.find(id);
  if (it == keys_.end()) return;
  KeyState& ks = *it->second;
  std::deque<Held>* oldest = nullptr;
  for (auto& [pid, queue] : ks.queues) {
    if (!queue.empty() && (!oldest || queue.front().arrived < oldest->front().arrived)) {
      oldest = &queue;
    }
  }
  if (!oldest) return;
  const Clock::time_point now = oldest->front().arrived;
  Release(ks, *oldest, /*forced=*/true);
  ++(by_buffer ? stats_.forced_by_buffer : stats_.forced_by_timeout);
  Evaluate(id, now);
}

void Reassembler::Poll(Clock::time_point now) {
  std::vector<std::string> blocked(blocked_.begin(), blocked_.end());
  for (const std::string& id : blocked) {
    for (;;) {
      auto it = keys_.find(id);
      if (it == keys_.end() || it->second->held == 0) break;
      Clock::time_point oldest = Clock::time_point::max();
      for (const auto& [pid, queue] : it->second->queues) {
        if (!queue.empty()) oldest = std::min(oldest, queue.front().arrived);
      }
      if (now - oldest < options_.max_wait) break;
      ForceOne(id, /*by_buffer=*/false);
    }
  }
}

void Reassembler::OnMapUpdate(Clock::time_point now) {
  std::vector<std::string> blocked(blocked_.begin(), blocked_.end());
  for (const std::string& id : blocked) Evaluate(id, now);
}

}  // namespace saltproxy
