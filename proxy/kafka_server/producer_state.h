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
// A producer id the registry does not know (issued before a restart) is adopted at the batch's
// sequence, so clients survive a proxy restart. Memory is bounded: at most max_producers
// producers, the least recently used forgotten first, and kWindow batches per partition.
//
//   ProducerRegistry registry(10000);
//   auto id = registry.Init();
//   BatchCheck check = registry.Begin(key, epoch, first_seq, last_seq);
//   ... produce ... registry.Complete(key, first_seq, base_offset);
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

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
};

class ProducerRegistry {
 public:
  static constexpr size_t kWindow = 5;  // batches remembered per partition, as brokers do
  // Runs when the first attempt of a duplicate completes: its base offset, or -1 if it failed.
  using Waiter = std::function<void(int64_t base_offset)>;

  explicit ProducerRegistry(size_t max_producers);

  struct Issued {
    int64_t producer_id;
    int16_t epoch;
  };
  // A new producer id at epoch 0; or, when the client names its current id and epoch (KIP-360),
  // the same id at the next epoch.
  Issued Init(int64_t current_id = -1, int16_t current_epoch = -1);

  // `waiter` is kept only for kDuplicatePending.
  BatchCheck Begin(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                   int32_t last_seq, Waiter waiter = nullptr);
  void Complete(const ProducerPartition& key, int32_t first_seq, int64_t base_offset);
  // The first attempt failed: forget it so that the client's retry is accepted as new.
  void Fail(const ProducerPartition& key, int32_t first_seq);

  size_t producers() const;

 private:
  struct Batch {
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset = -1;
    bool done = false;
    std::vector<Waiter> waiters;
  };
  struct PartitionState {
    int16_t epoch = 0;
    int32_t next_seq = 0;
    std::list<Batch> batches;  // newest last, at most kWindow
  };
  struct Producer {
    int16_t epoch = 0;
    absl::flat_hash_map<std::string, PartitionState> partitions;  // "topic\npartition"
    std::list<int64_t>::iterator lru;
  };
  Producer& Touch(int64_t producer_id, int16_t epoch);
  static std::string PartitionKey(const ProducerPartition& key);

  const size_t max_producers_;
  mutable std::mutex mu_;
  int64_t next_id_;
  absl::flat_hash_map<int64_t, Producer> producers_;
  std::list<int64_t> lru_;  // most recently used first
};

}  // namespace saltproxy
