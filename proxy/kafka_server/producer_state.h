// saltproxy as the producer-id authority for idempotent Kafka clients. It issues producer ids
// and epochs (InitProducerId) and, per (producer, topic, partition) the client wrote to, keeps
// the sequence ranges of the most recent batches, as a broker does:
//
//   - a batch whose first sequence is the next expected one is new;
//   - a batch equal to a recent one is a duplicate (a retry): it is answered with the offset
//     the first attempt got, or, while the first attempt is still in flight, when it completes;
//   - any other sequence is OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is
//     INVALID_PRODUCER_EPOCH.
//
// Unlike a broker's, a batch can be partly written: its records go to several partitions (a hot
// key's salts) and some can fail while others are written. A failed batch is kept, with which
// of its records were written, and its retry (the same sequence range) is kRetry: only the
// records not written yet are produced, and the answer is the one a broker gives for a batch
// written once. Until it is retried, a batch after it is not acknowledged (its answer would tell
// the client the failed one was written) and a new batch is OUT_OF_ORDER_SEQUENCE_NUMBER, as a
// broker's log gives it.
//
// And a batch is acknowledged only once every earlier batch of its partition is written:
// pipelined batches are written upstream side by side, so a later one can be written while an
// earlier one fails. A written batch waits for the batches before it (Settlement::kWaiting), and
// is answered OUT_OF_ORDER_SEQUENCE_NUMBER if one of them failed, which makes the client resend
// from the failed one; its own resend is then a duplicate, not written again.
//
// A producer id the registry does not know (issued before a restart, or forgotten) is adopted at
// the batch's sequence, so clients survive a proxy restart; what the previous run wrote of its
// first batches is not known, and those records are counted (Doubts). Memory is bounded: at most
// max_producers producers, the least recently used forgotten first, and kWindow settled batches
// per partition (unsettled ones, at most what a client has in flight, stay until they settle).
//
//   ProducerRegistry registry(10000);
//   auto id = registry.Init();
//   BatchCheck check = registry.Begin(key, epoch, first_seq, last_seq);
//   ... produce (for kRetry, only the records check.written says were not) ...
//   registry.Complete(key, check.attempt, base_offset, wait, &run);   // or Fail(…, written, …)
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"

namespace saltproxy {

struct ProducerPartition {
  int64_t producer_id = -1;
  std::string topic;
  int32_t partition = -1;
  bool operator==(const ProducerPartition&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const ProducerPartition& p) {
    return H::combine(std::move(h), p.producer_id, p.topic, p.partition);
  }
};

enum class Settlement {
  kSettled,        // it and every earlier batch of its partition are written: answer it
  kWaiting,        // an earlier batch is in flight: `settled` runs when the outcome is known
  kEarlierFailed,  // an earlier batch failed: answer OUT_OF_ORDER_SEQUENCE_NUMBER
};

enum class BatchVerdict {
  kNew,              // produce it, then Complete() or Fail()
  kRetry,            // a failed batch again: produce the records `written` says were not
  kDuplicate,        // answer `base_offset` without producing
  kDuplicatePending, // the first attempt is in flight: the waiter runs when it completes
  kOutOfOrder,       // OUT_OF_ORDER_SEQUENCE_NUMBER
  kInvalidEpoch,     // INVALID_PRODUCER_EPOCH
};

// What the attempts of a batch wrote so far, kept by the registry between a failure and the
// retry. The offsets are the handler's, for the answer (KafkaHandler: a base offset is given
// only when every record sits on the client's partition at base + its index).
struct BatchWrites {
  enum Record : uint8_t {
    kUnwritten,      // failed: not written
    kWritten,        // written upstream
    kMaybeWritten,   // failed, but the upstream may have written it (timed out in flight)
  };
  std::vector<Record> records;  // by index in the batch; empty: none written
  static constexpr int64_t kNoBase = INT64_MIN;
  int64_t base = kNoBase;  // offset - index of the written records, when they all agree
  bool scattered = false;  // a written record is not at base + its index on the partition
  int32_t Count(Record r) const;
};

struct BatchCheck {
  BatchVerdict verdict = BatchVerdict::kNew;
  int64_t base_offset = -1;  // for kDuplicate
  // For kNew and kRetry: this attempt's own id, for Complete and Fail. A batch's sequence
  // numbers do not name it: once it is forgotten (a new epoch, a resend in other ranges), the
  // client's resend takes the same numbers while the first attempt may still be in flight.
  uint64_t attempt = 0;
  BatchWrites written;  // for kRetry
};

class ProducerRegistry {
 public:
  static constexpr size_t kWindow = 5;  // batches remembered per partition, as brokers do
  // Runs when the first attempt of a duplicate settles: written (and at what base offset, -1
  // when unknown), or not.
  using Waiter = std::function<void(bool written, int64_t base_offset)>;
  // Runs when a batch that waited for earlier ones settles: true if they were all written.
  using Settled = std::function<void(bool written)>;
  // Callbacks that Complete and Fail hand back instead of running, so that their caller runs
  // them once it holds no lock of its own.
  using Deferred = std::vector<std::function<void()>>;

  explicit ProducerRegistry(size_t max_producers);

  struct Issued {
    int64_t producer_id;
    int16_t epoch;
  };
  // A new producer id at epoch 0; or, when the client names its current id and epoch (KIP-360),
  // the same id at the next epoch.
  Issued Init(int64_t current_id = -1, int16_t current_epoch = -1);

  // `waiter` is kept only for kDuplicatePending. A newer epoch (or a producer forgotten to make
  // room) abandons the batches still waiting: they settle as failed, through `run` (without
  // one, before Begin returns).
  BatchCheck Begin(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                   int32_t last_seq, Waiter waiter = nullptr, Deferred* run = nullptr);
  // The batch is written, all of it (with earlier attempts'), at `base_offset` (-1: unknown).
  // `wait` is called only for kWaiting, for the callback to keep (most batches settle at once:
  // no callback is made for them). Batches after it that were waiting for it, and duplicates
  // waiting for them, are added to `run`. An attempt no longer in the window (forgotten since)
  // settles nothing: kEarlierFailed, as does a batch after one that failed.
  Settlement Complete(const ProducerPartition& key, uint64_t attempt, int64_t base_offset,
                      absl::FunctionRef<Settled()> wait, Deferred* run);
  // Some records of the batch failed; `written` says which were written, over all its attempts.
  // The batch is kept for its retry. Duplicates waiting for it, and written batches after it
  // waiting to settle, settle as failed (added to `run`): the client resends from it. An
  // attempt no longer in the window changes nothing.
  void Fail(const ProducerPartition& key, uint64_t attempt, BatchWrites written, Deferred* run);

  // Records that may have been written twice, counted since the last call (for metrics).
  struct Doubts {
    // Of the first kWindow batches of each partition of a producer this run did not know
    // (issued before a restart, or forgotten): its previous attempts may have been written.
    int64_t unknown_producer = 0;
    // Written records of batches forgotten unsettled (a new epoch, a producer forgotten, a
    // resend in other sequence ranges): the client may send them again.
    int64_t forgotten = 0;
  };
  Doubts TakeDoubts();

  size_t producers() const;

 private:
  struct Batch {
    uint64_t attempt;
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset = -1;
    bool done = false;     // written
    bool failed = false;   // an attempt failed and no retry is in flight
    bool settled = false;  // written, and every batch before it too
    BatchWrites written;   // a failed batch's records written so far
    Settled on_settled;    // a written batch waiting for earlier ones
    std::vector<Waiter> waiters;
  };
  struct PartitionState {
    int16_t epoch = 0;
    int32_t next_seq = 0;
    // Batches still counted in Doubts::unknown_producer (a producer adopted mid-stream).
    int unverified = 0;
    // Newest last: the last kWindow settled ones, and any unsettled ones after them.
    std::list<Batch> batches;
  };
  struct Producer {
    int16_t epoch = 0;
    bool adopted = false;  // first seen in a batch, not issued by Init in this run
    absl::flat_hash_map<std::string, PartitionState> partitions;  // "topic\npartition"
    std::list<int64_t>::iterator lru;
  };
  Producer& Touch(int64_t producer_id, int16_t epoch, Deferred* run);
  BatchCheck BeginLocked(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                         int32_t last_seq, Waiter waiter, Deferred* run);
  // Hands the batch's waiting callback and duplicates' waiters to `run`, told it failed.
  static void SettleFailed(Batch& b, Deferred* run);
  // Settles every batch still waiting in `partitions` as failed, through `run`, and forgets
  // them (their written records counted in doubts_.forgotten).
  void Abandon(absl::flat_hash_map<std::string, PartitionState>& partitions, Deferred* run);
  // Forgets `from` and every batch after it, as Abandon does.
  void Forget(PartitionState& state, std::list<Batch>::iterator from, Deferred* run);
  static bool EarlierFailed(const std::list<Batch>& batches, std::list<Batch>::const_iterator b);
  static std::string PartitionKey(const ProducerPartition& key);

  const size_t max_producers_;
  mutable std::mutex mu_;
  int64_t next_id_;
  uint64_t next_attempt_ = 1;
  Doubts doubts_;
  absl::flat_hash_map<int64_t, Producer> producers_;
  std::list<int64_t> lru_;  // most recently used first
};

}  // namespace saltproxy
