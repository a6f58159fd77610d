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
// And, as a broker's log gives it, a batch is acknowledged only once every earlier batch of its
// partition is written: pipelined batches are written upstream side by side, so a later one can
// be written while an earlier one fails. Answering the later one with success would tell the
// client the earlier one was written too (librdkafka then reports its records delivered without
// resending them): so a written batch waits for the batches before it (Settlement::kWaiting),
// and is answered OUT_OF_ORDER_SEQUENCE_NUMBER if one of them failed, which makes the client
// resend from the failed one.
//
// A producer id the registry does not know (issued before a restart) is adopted at the batch's
// sequence, so clients survive a proxy restart. Memory is bounded: at most max_producers
// producers, the least recently used forgotten first, and kWindow batches per partition.
//
//   ProducerRegistry registry(10000);
//   auto id = registry.Init();
//   BatchCheck check = registry.Begin(key, epoch, first_seq, last_seq);
//   ... produce ... registry.Complete(key, check.attempt, base_offset, wait, &run);
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
  kDuplicate,        // answer `base_offset` without producing
  kDuplicatePending, // the first attempt is in flight: the waiter runs when it completes
  kOutOfOrder,       // OUT_OF_ORDER_SEQUENCE_NUMBER
  kInvalidEpoch,     // INVALID_PRODUCER_EPOCH
};

struct BatchCheck {
  BatchVerdict verdict = BatchVerdict::kNew;
  int64_t base_offset = -1;  // for kDuplicate
  // For kNew: this attempt's own id, for Complete and Fail. A batch's sequence numbers do not
  // name it: once it is forgotten (an earlier batch failed, a new epoch), the client's resend
  // takes the same numbers while the first attempt may still be in flight upstream.
  uint64_t attempt = 0;
};

class ProducerRegistry {
 public:
  static constexpr size_t kWindow = 5;  // batches remembered per partition, as brokers do
  // Runs when the first attempt of a duplicate settles: its base offset, or -1 if it failed.
  using Waiter = std::function<void(int64_t base_offset)>;
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
  // The batch was written at `base_offset`. `wait` is called only for kWaiting, for the
  // callback to keep (most batches settle at once: no callback is made for them). Batches after
  // it that were waiting for it, and duplicates waiting for them, are added to `run`.
  // An attempt no longer in the window (forgotten since) settles nothing: kEarlierFailed.
  Settlement Complete(const ProducerPartition& key, uint64_t attempt, int64_t base_offset,
                      absl::FunctionRef<Settled()> wait, Deferred* run);
  // The batch failed: forget it and every later batch, so that the client's resends are accepted
  // as new; those later batches, and duplicates waiting for any of them, settle as failed (added
  // to `run`).
  // An attempt no longer in the window changes nothing.
  void Fail(const ProducerPartition& key, uint64_t attempt, Deferred* run);

  size_t producers() const;

 private:
  struct Batch {
    uint64_t attempt;
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset = -1;
    bool done = false;     // written
    bool settled = false;  // written, and every batch before it too
    Settled on_settled;    // a written batch waiting for earlier ones
    std::vector<Waiter> waiters;
  };
  struct PartitionState {
    int16_t epoch = 0;
    int32_t next_seq = 0;
    // Newest last: the last kWindow settled ones, and any unsettled ones after them.
    std::list<Batch> batches;
  };
  struct Producer {
    int16_t epoch = 0;
    absl::flat_hash_map<std::string, PartitionState> partitions;  // "topic\npartition"
    std::list<int64_t>::iterator lru;
  };
  Producer& Touch(int64_t producer_id, int16_t epoch, Deferred* run);
  BatchCheck BeginLocked(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                         int32_t last_seq, Waiter waiter, Deferred* run);
  // Hands the batch's waiting callback and duplicates' waiters to `run`, told it failed.
  static void SettleFailed(Batch& b, Deferred* run);
  // Settles every batch still waiting in `partitions` as failed, through `run`.
  static void Abandon(absl::flat_hash_map<std::string, PartitionState>& partitions,
                      Deferred* run);
  static std::string PartitionKey(const ProducerPartition& key);

  const size_t max_producers_;
  mutable std::mutex mu_;
  int64_t next_id_;
  uint64_t next_attempt_ = 1;
  absl::flat_hash_map<int64_t, Producer> producers_;
  std::list<int64_t> lru_;  // most recently used first
};

}  // namespace saltproxy
