// The consumer's view of saltproxy's salt map: every layout a key has had, by epoch, as read
// from the control topic (or GET /saltmap). Each published map holds a proxy instance's current
// layouts; applying maps one after the other builds the history that reassembly needs, because
// a record names the epoch it was routed under, and a layout names the cut-over points where
// the key's previous layout ended.
//
//   saltproxy::SaltMapHistory history;
//   std::string error;
//   if (!history.Apply(control_record_value, &error)) log(error);
//   const saltproxy::KeyLayout* layout = history.Find("proxy-1", 42);   // the layout of epoch 42
//   std::vector<saltproxy::KeyLayout> all = history.Layouts("clicks", "concert-2026");
//
// Not thread-safe: one owner (the consumer's poll loop) applies and reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <vector>

namespace saltproxy {

// Where a key's previous layout ended in one partition: the key has no record there beyond
// max_offset (-1: none at all) from before the change.
struct CutOverPoint {
  std::string topic;
  int32_t partition = -1;
  int64_t max_offset = -1;
};

// One layout of one key: from `epoch` on, the key's records (sequence numbers from since_seq)
// go to `partitions` of `destination` (salt i to partitions[i]).
struct KeyLayout {
  std::string instance;     // the proxy instance that routed them
  std::string topic;        // the source topic producers wrote to
  std::string key;          // the original key
  std::string action;       // "salted", "rerouted", or "cooled" (back to its default partition)
  std::string destination;  // topic holding the records: the source or its hot topic
  std::vector<int32_t> partitions;
  uint64_t epoch = 0;
  int64_t since_seq = 0;
  std::vector<CutOverPoint> cutover;  // the previous layout's partitions
  // As published, for people and for a restarted proxy (RFC 3339; "" when absent): when the
  // key turned hot, and when this layout took effect.
  std::string hot_since;
  std::string changed_at;
  // Published by a restarted proxy that took the layout over from its last run's map.
  bool resumed = false;
};

// One published map as it is: what SaltMapHistory::Apply applies, and what a restarted proxy
// reads back to resume its layouts.
struct PublishedSaltMap {
  std::string instance;
  uint64_t epoch = 0;
  std::vector<KeyLayout> layouts;  // in the map's order
};

// Parses one map ({"epoch":…,"instance":…,"topics":{…}}). False, with `error` set, when it is
// not one.
bool ParseSaltMap(std::string_view json, PublishedSaltMap* map, std::string* error);

class SaltMapHistory {
 public:
  // At most `max_layouts` layouts are kept; beyond it the oldest epochs are forgotten (records
  // that name them are then released by the reassembler's lag policy).
  explicit SaltMapHistory(size_t max_layouts = 1000000) : max_layouts_(max_layouts) {}

  // Applies one published map ({"epoch":…,"instance":…,"topics":{…}}). False, with `error`
  // set, when it is not one; the history is then unchanged.
  bool Apply(std::string_view json, std::string* error);

  // A layout `instance` published under `epoch`, or nullptr when none is (yet) known. (A change
  // takes one epoch; a restarted instance resuming its layouts may give several keys one.)
  const KeyLayout* Find(std::string_view instance, uint64_t epoch) const;
  // The layout of `key` in `topic` that `instance` published under `epoch`, or nullptr.
  const KeyLayout* Find(std::string_view topic, std::string_view key, std::string_view instance,
                        uint64_t epoch) const;

  // Every known layout of `key` in `topic`, by epoch (valid until the next Apply). Before the
  // first of them, and after a cooled layout leaves the map, the key is on its Java default
  // partition of `topic`.
  std::vector<const KeyLayout*> Layouts(std::string_view topic, std::string_view key) const;

  // The layout in force for `key` at `epoch` (the newest one at or before it), or nullptr: the
  // key was on its default partition then (as far as the map that was read knows).
  const KeyLayout* LayoutAt(std::string_view topic, std::string_view key, uint64_t epoch) const;

  // True when some layout of `key` in `topic` is "cooled"; `id` is topic, a NUL byte, key.
  // (Cheap: the reassembler asks it for every record of a cold key.)
  bool HasCooled(const std::string& id) const { return cooled_ids_.contains(id); }

  // True when some known layout sends records to `topic` (e.g. a hot topic).
  bool NamesDestination(std::string_view topic) const {
    return destinations_.find(topic) != destinations_.end();
  }

  // The highest epoch applied for `instance` (0: none).
  uint64_t LatestEpoch(std::string_view instance) const;
  size_t size() const { return by_epoch_.size(); }
  // Maps applied so far; a consumer's "map version" for waiting on updates.
  uint64_t updates() const { return updates_; }

 private:
  // (instance, epoch, topic, key)
  using EpochKey = std::tuple<std::string, uint64_t, std::string, std::string>;
  using KeyKey = std::tuple<std::string, std::string, std::string>;  // (topic, key, instance)
  void Forget();

  size_t max_layouts_;
  uint64_t updates_ = 0;
  std::map<EpochKey, KeyLayout, std::less<>> by_epoch_;
  std::map<KeyKey, std::vector<uint64_t>, std::less<>> by_key_;  // epochs, ascending
  std::map<std::string, uint64_t, std::less<>> latest_;
  std::unordered_set<std::string> cooled_ids_;
  std::set<std::string, std::less<>> destinations_;
};

}  // namespace saltproxy
