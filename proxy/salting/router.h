// The router: the one place that decides where a record goes. Both ingresses hand their records
// to it (it is their RecordSink).
//
//  - A record whose client named a partition keeps it.
//  - A key that is not hot stays on the partition its Kafka client chose (Record::cold_partition)
//    or, from HTTP, goes where the Java default partitioner puts it (murmur2 of the key).
//  - A hot key is salted: each record goes to the least-loaded of the key's salt partitions
//    (by the proxy's own recent per-partition counts), under the salted key of that partition's
//    salt, with the saltproxy-* headers (include/saltproxy/salting.h). A key too hot for its
//    topic's max_salts is rerouted to the dedicated hot topic and salted there.
//
// The per-record path reads an immutable routing snapshot through a per-thread cache: no lock,
// unless the snapshot changed (a lock to pick up the new one) or the key is in transition.
//
// A change of a key's layout (turns hot, salt count changes, rerouted, cools) is made safe for
// ordering: the key's new records are held while every record already sent to the old layout's
// partitions is delivered; then the change takes effect under a new salt map epoch, whose entry
// carries the cut-over points (for each old partition, the highest offset the key can have
// there). The held records go out, in order, first, once the map that carries the new epoch is
// acknowledged by the control topic: a reader can always learn the epoch a record names. A cold
// key's old partitions are every partition its cold records may be on: its default one, and
// those its clients chose (ColdFootprint).
//
//   Router router(upstream, &detector, options);
//   router.Submit(std::move(record), done);   // any ingress thread
//   router.Tick(absl::Now());                 // the control thread, every options.tick
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "proxy/common/record.h"
#include "proxy/common/upstream.h"
#include "proxy/salting/heat.h"
#include "proxy/salting/policy.h"

namespace saltproxy {

struct RouterOptions {
  std::string instance_id = "saltproxy";
  TopicPolicy default_policy;
  absl::flat_hash_map<std::string, TopicPolicy> topic_policies;
  // Records held per key while its layout changes; beyond it, producers are pushed back.
  size_t max_held_records_per_key = 10000;
  // How long a cooled key keeps its headers (and its entry in the salt map) after it returned
  // to its default partition, so that consumers can order across the change.
  absl::Duration cooled_retention = absl::Minutes(1);
  // The compacted topic the salt map is published to ("" to publish nothing).
  std::string control_topic = "_saltproxy_saltmap";
  // Load-aware spreading halves the per-partition recent counts this often.
  absl::Duration load_half_life = absl::Seconds(1);
  // The epoch before the first change. Readers know a layout by (instance, epoch) and drop a
  // stamped record at or below the last one they released, so a restarted instance must not
  // count its epochs again from where the last run began: the proxy starts from the Unix time
  // in microseconds (a run would need more than a change per microsecond to catch up with the
  // next). Tests start from 0.
  uint64_t first_epoch = 0;
  // A layout change waits this long after its key's records began to be held before it samples
  // what was sent to the old layout: a record routed under the snapshot before the hold has
  // reached the producer by then. In time rather than steps, since steps may come early.
  absl::Duration transition_grace = absl::Milliseconds(50);
  // The time records are observed at; simulations inject their own.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// The highest offset a key can have in one partition of its previous layout.
struct CutOver {
  std::string topic;
  int32_t partition = -1;
  int64_t max_offset = -1;  // -1: the key sent nothing there
};

// One key of the published salt map.
struct SaltMapEntry {
  std::string topic;  // the source topic
  std::string key;
  RouteAction action = RouteAction::kSalted;  // kSalted, kRerouted, or kPassed (cooled)
  std::string destination;
  int32_t salts = 0;
  std::vector<int32_t> partitions;  // salt i's partition in `destination`
  uint64_t epoch = 0;               // when this layout took effect
  int64_t since_seq = 0;            // the key's first sequence number under this layout
  std::vector<CutOver> cutover;     // the previous layout's partitions, drained before `epoch`
  double rate_rps = 0;
  absl::Time hot_since;
  absl::Time changed_at;
  bool resumed = false;  // taken over at a restart from the last run's map (resume.h)
};

class Router : public RecordSink {
 public:
  Router(Upstream& upstream, HeatTracker* heat, RouterOptions options);
  ~Router() override;

  absl::Status Submit(Record&& record, DeliveryCallback done) override;
  absl::Status Admit(int64_t records) override { return upstream_.Admit(records); }
  bool Congested() const override { return upstream_.Congested(); }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override;

  // The control step: detection, policy, transitions, publication. One thread.
  void Tick(absl::Time now);
  // Between steps, from the control step's thread: whether to run the step now rather than at
  // its time (a new key is already hot: salted now, its records stop piling on one partition;
  // or the map of a change was acknowledged: its held records can go).
  bool WantsTickNow();

  // At start, before any record and before the control step runs: installs the layouts a
  // restarted instance takes over from its last run's map (resume.h; their epoch is 0). Each
  // takes effect at once under an epoch of its own, its key numbered from 0, and is held until
  // the map that names them all, published now, is acknowledged by the control topic. The
  // partitions of their cut-over points count as written up to there, so that a later change
  // of these keys cuts over above the old run's records too. Returns how many were installed
  // (a layout whose topics the metadata does not know, or whose partitions they lack, is not).
  int Resume(std::vector<SaltMapEntry> layouts, absl::Time now);

  // After the last control step (shutdown): the records held for layout changes that will not
  // finish now are failed with `why`, so that their clients are answered, and later records of
  // those keys are refused with it.
  void FailHeld(const absl::Status& why);

  // Applies a reloaded configuration's policies, cooled retention and load half-life from the
  // next control step on. The rest of RouterOptions needs a restart.
  void Reconfigure(const RouterOptions& options);

  // The salt map now: {"epoch":…,"instance":…,"topics":{"t":{"keys":[…]}}}.
  std::string SaltMapJson() const;
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  std::vector<SaltMapEntry> Entries() const;

  // What the router has seen and done, per topic it knows (for metrics and the live page).
  struct TopicStats {
    std::string topic;
    uint64_t records_in = 0;  // records produced to this topic by clients
    uint64_t bytes_in = 0;
    uint64_t stamps_dropped = 0;  // records that came with saltproxy's headers, dropped from them
    std::vector<uint64_t> records_out;  // per partition: records routed there (any source)
    std::vector<uint64_t> bytes_out;
    // per partition: where the client (or, from HTTP, the Java default partitioner) would have
    // put this topic's records
    std::vector<uint64_t> plain_out;
    double skew = 1.0;  // max / mean of the recent per-partition loads; 1.0 is even
    int hot_keys = 0;   // keys of this topic salted or rerouted now
    int salts_in_use = 0;
  };
  std::vector<TopicStats> Stats() const;

  // Records routed to each partition of `topic` since start (for metrics and tests).
  std::vector<uint64_t> PartitionCounts(const std::string& topic) const;

  struct TopicRuntime;
  struct KeyRuntime;
  struct Snapshot;

 private:
  struct Transition;

  std::shared_ptr<const Snapshot> Current();
  std::shared_ptr<TopicRuntime> TopicFor(const std::string& topic);
  // How a record reaches Route: on arrival; again, when a layout change raced its snapshot; or
  // replayed after being held during a change, by the control step, which holds the key's lock.
  // Only on arrival is it counted and observed.
  enum class Pass { kArrival, kAgain, kReplay };
  absl::Status Route(const Snapshot& snap, Record&& record, DeliveryCallback done,
                     Pass pass = Pass::kArrival);
  absl::Status ProduceTo(const std::shared_ptr<TopicRuntime>& topic, int32_t partition,
                         Record&& record, DeliveryCallback done, RouteAction action,
                         int32_t salt, uint64_t epoch);
  void Publish(std::shared_ptr<Snapshot> next);
  void PublishSaltMap();
  void AdvanceTransitions(absl::Time now);
  // True once a map whose epoch is at least `epoch` is on the control topic (always, when
  // nothing is published).
  bool MapAcknowledged(uint64_t epoch) const;
  // A change that took effect and whose map is published: its held records go out, in order,
  // and the key is routed under its new layout.
  void Release(Transition& t);
  void DecayLoads(absl::Time now);

  Upstream& upstream_;
  HeatTracker* heat_;
  // Per-record fields (instance_id, clock, max_held_records_per_key) never change; the control
  // step's fields change under control_mu_ (Reconfigure).
  RouterOptions options_;
  std::mutex control_mu_;

  // The current snapshot; readers cache it per thread and compare versions.
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::atomic<uint64_t> version_{0};
  std::atomic<uint64_t> epoch_{0};

  // Control-thread state.
  std::vector<std::unique_ptr<Transition>> transitions_;
  absl::Time last_decay_ = absl::InfinitePast();
  uint64_t published_epoch_ = 0;
  // Set by a publication the cluster failed (on a delivery thread): publish again.
  std::shared_ptr<std::atomic<bool>> republish_ = std::make_shared<std::atomic<bool>>(false);
  // The highest epoch of a map the cluster acknowledged (set on a delivery thread).
  std::shared_ptr<std::atomic<uint64_t>> acked_epoch_ =
      std::make_shared<std::atomic<uint64_t>>(0);
};

}  // namespace saltproxy
