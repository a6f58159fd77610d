// Restores per-key order across saltproxy's salted partitions. Fed the records one reader
// consumes from every partition of a topic and of its hot topic (each partition in offset
// order), it releases each key's records in the order the producer sent them, holding a record
// back only until the ones before it have arrived.
//
// The rules (README.md, "The reassembly algorithm", says them for porting):
//  - a record is held behind any held record of the same key from the same partition;
//  - a stamped record (saltproxy-* headers) carries its proxy instance, the epoch of its layout
//    and a sequence number per (instance, key) that starts at 0 when a hot episode starts (a
//    layout with since_seq 0: the key turned hot, or its instance restarted or renumbered it)
//    and runs without gaps across the episode's layouts:
//    * seq 0: released once the instance's earlier episodes of the key hold nothing and every
//      cut-over point of the episode's layouts up to its own is passed: the partition was read
//      up to max_offset and the key has no held record there at or below it (so its records
//      from before the episode went first);
//    * seq s > 0: released right after the same instance's record s - 1 of the same episode;
//    * once a later episode of the instance began and every cut-over point of this episode's
//      layouts and of that start is read, the episode is closed: numbers still missing were
//      never written, and its held records go lowest number first;
//    * a record whose identity (instance, episode, seq) was released already is a duplicate
//      and dropped; one the lag policy skipped goes late, marked forced;
//  - an unstamped record (a cold key) is released at once, unless it follows a hot episode of
//    the key that ended by cooling: then it also waits for that cooled layout's cut-over points;
//  - lag policy: a record held longer than max_wait is released anyway, and what it skipped is
//    counted (gaps); when more than max_buffered records are held, the oldest go the same way.
//
//   saltproxy::SaltMapHistory map;
//   saltproxy::Reassembler reassembler(&map, {});
//   reassembler.Add(std::move(record), "clicks", now);   // for every record read
//   reassembler.OnMapUpdate(now);                         // after map.Apply
//   reassembler.Poll(now);                                // now and then: the lag policy
//   for (saltproxy::ReleasedRecord& r : reassembler.TakeReleased()) ...
//
// Not thread-safe: one reader owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "saltproxy/salt_map.h"

namespace saltproxy {

// A record as a Kafka consumer returns it.
struct ConsumerRecord {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t timestamp_ms = -1;

  // The first header called `name`, or nullptr.
  const std::string* Header(std::string_view name) const;
};

// What saltproxy stamped on a salted or rerouted record (include/saltproxy/salting.h).
struct SaltStamp {
  std::string original_key;
  std::string instance;
  int64_t seq = -1;
  uint64_t epoch = 0;
};

// The stamp of `record`, or nullopt when it has none (or a malformed one).
std::optional<SaltStamp> ReadStamp(const ConsumerRecord& record);

// The original key of `record`: its saltproxy-key header, else its key (unsalted when it looks
// salted and lies in a hot topic; see UnsaltedKey).
std::optional<std::string> OriginalKey(const ConsumerRecord& record);

struct ReleasedRecord {
  ConsumerRecord record;     // as consumed (topic, partition, offset, salted key, headers)
  std::string source_topic;  // the topic its producer wrote to
  std::optional<std::string> key;  // the original key
  bool salted = false;             // it carried saltproxy's stamp
  bool forced = false;             // released by the lag policy, not in proven order
};

struct ReassemblerOptions {
  // How long a record may wait for the ones before it; then it is released and the gap counted.
  std::chrono::milliseconds max_wait{10000};
  // Records held at most, over all keys; beyond it the oldest are released (counted).
  size_t max_buffered = 200000;
  // This reader's share of the keys: it keeps keys with murmur2(key) % key_ranges == key_range
  // and skips the others (other readers take them). 1 and 0: every key.
  int key_ranges = 1;
  int key_range = 0;
};

struct ReassemblerStats {
  uint64_t released = 0;
  uint64_t released_in_order = 0;  // released by the rules, without the lag policy
  uint64_t forced_by_timeout = 0;  // released after max_wait
  uint64_t forced_by_buffer = 0;   // released because max_buffered was reached
  uint64_t missing = 0;            // sequence numbers skipped by forced releases
  uint64_t duplicates = 0;         // dropped: a record of that identity was released already
  // Sequence numbers a closed episode never wrote (its proxy took them, then the record failed
  // or died with the proxy): known missing, not waited for.
  uint64_t unwritten = 0;
  uint64_t skipped = 0;            // other readers' keys
  size_t held = 0;                 // records waiting now
};

class Reassembler {
 public:
  using Clock = std::chrono::steady_clock;

  Reassembler(const SaltMapHistory* map, ReassemblerOptions options);
  ~Reassembler();
  Reassembler(const Reassembler&) = delete;
  Reassembler& operator=(const Reassembler&) = delete;

  // One consumed record; records of one partition come in offset order. `source_topic`: the
  // topic the producer wrote to (the topic read, or the one whose hot topic this is).
  void Add(ConsumerRecord record, std::string_view source_topic, Clock::time_point now);
  // A partition was read up to `offset` (inclusive) without a record to show for it (for
  // example a control record or an end of partition): positions decide cut-overs.
  void Advance(std::string_view topic, int32_t partition, int64_t offset, Clock::time_point now);
  // The salt map learnt new layouts: records waiting for one may go.
  void OnMapUpdate(Clock::time_point now);
  // The lag policy: releases what waited longer than max_wait.
  void Poll(Clock::time_point now);
  // Everything released since the last call, in release order.
  std::vector<ReleasedRecord> TakeReleased();

  // The highest offset read in a partition (-1: none yet).
  int64_t Position(std::string_view topic, int32_t partition) const;
  ReassemblerStats stats() const;

 private:
  struct Held;
  struct Chain;
  struct KeyState;
  using PartitionId = std::pair<std::string, int32_t>;

  KeyState& StateFor(const std::string& id);
  // Releases every record of `id` the rules allow; registers what the rest wait for.
  void Evaluate(const std::string& id, Clock::time_point now);
  bool Releasable(KeyState& ks, const Held& h);
  // The layouts of the hot episode of `epoch` (instance), from its start to it; empty when the
  // map does not know `epoch`. A layout with since_seq 0 starts an episode.
  std::vector<const KeyLayout*> EpisodeUpTo(KeyState& ks, std::string_view instance,
                                            uint64_t epoch) const;
  // The cooled layout an unstamped record of a key that has cooled before must follow, if any.
  const KeyLayout* GuardOfUnstamped(KeyState& ks, const Held& h, std::string_view instance) const;
  // The epoch of the first layout of `stamp`'s episode (which names its chain), or nullopt when
  // the map does not know the stamp's epoch yet.
  std::optional<uint64_t> EpisodeOf(KeyState& ks, const SaltStamp& stamp) const;
  Chain* ChainOf(KeyState& ks, const SaltStamp& stamp);
  // The map's layouts of the key, by epoch (cached until the map changes).
  const std::vector<const KeyLayout*>& LayoutsOf(KeyState& ks) const;
  // Whether every record of the key from before `layout` was read and released: the cut-over
  // points of the layout and of every earlier one of its instance are passed.
  bool Settled(KeyState& ks, const KeyLayout& layout, const Held* self);
  // Whether nothing more of the episode can come: a later episode of the instance began, and
  // the reader has read up to every cut-over point of the episode's layouts and of that start.
  bool EpisodeClosed(KeyState& ks, std::string_view instance, uint64_t first);
  // Every cut-over point of `layout` read up to (waits are registered for the others).
  bool CutOverReached(KeyState& ks, const KeyLayout& layout);
  // Reached, and the key holds no record from before it there.
  bool CutOverPassed(KeyState& ks, const KeyLayout& layout, const Held* self);
  void Release(KeyState& ks, std::deque<Held>& queue, bool forced);  // the queue's front
  void Release(KeyState& ks, Held&& h, bool forced);
  // Releases the record of `id` that has waited longest (lag policy).
  void ForceOne(const std::string& id, bool by_buffer);
  void AdvancePosition(const PartitionId& p, int64_t offset, Clock::time_point now);

  const SaltMapHistory* map_;
  ReassemblerOptions options_;
  std::map<PartitionId, int64_t> positions_;
  std::unordered_map<std::string, std::unique_ptr<KeyState>> keys_;
  // Keys holding records (checked by the lag policy and on map updates).
  std::set<std::string> blocked_;
  // Keys waiting for a partition to be read up to an offset.
  std::map<PartitionId, std::multimap<int64_t, std::string>> waiting_;
  std::vector<ReleasedRecord> released_;
  ReassemblerStats stats_;
};

}  // namespace saltproxy
