#include "proxy/kafka_server/producer_state.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace saltproxy {

ProducerRegistry::ProducerRegistry(size_t max_producers)
    : max_producers_(max_producers),
      // Ids from the start time, so that a restarted proxy does not hand out an id that a
      // client of the previous run still uses.
      next_id_(absl::ToUnixMillis(absl::Now()) * 1000) {}

std::string ProducerRegistry::PartitionKey(const ProducerPartition& key) {
  return absl::StrCat(key.topic, "\n", key.partition);
}

ProducerRegistry::Producer& ProducerRegistry::Touch(int64_t producer_id, int16_t epoch) {
  auto it = producers_.find(producer_id);
  if (it != producers_.end()) {
    lru_.erase(it->second.lru);
    lru_.push_front(producer_id);
    it->second.lru = lru_.begin();
    return it->second;
  }
  while (producers_.size() >= max_producers_ && !lru_.empty()) {
    producers_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(producer_id);
  Producer& p = producers_[producer_id];
  p.epoch = epoch;
  p.lru = lru_.begin();
  return p;
}

ProducerRegistry::Issued ProducerRegistry::Init(int64_t current_id, int16_t current_epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (current_id >= 0 && current_epoch >= 0 && current_epoch < INT16_MAX) {
    Producer& p = Touch(current_id, current_epoch);
    p.epoch = static_cast<int16_t>(current_epoch + 1);
    p.partitions.clear();
    return {current_id, p.epoch};
  }
  int64_t id = next_id_++;
  Touch(id, 0);
  return {id, 0};
}

BatchCheck ProducerRegistry::Begin(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                                   int32_t last_seq, Waiter waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  Producer& producer = Touch(key.producer_id, epoch);
  if (epoch < producer.epoch) return {BatchVerdict::kInvalidEpoch};
  if (epoch > producer.epoch) {
    producer.epoch = epoch;
    producer.partitions.clear();
  }
  std::string pkey = PartitionKey(key);
  auto it = producer.partitions.find(pkey);
  if (it == producer.partitions.end()) {
    // A partition (or producer) not seen yet: adopt the client's sequence.
    PartitionState& state = producer.partitions[pkey];
    state.epoch = epoch;
    state.next_seq = first_seq;
    it = producer.partitions.find(pkey);
  }
  PartitionState& state = it->second;
  for (Batch& b : state.batches) {
    if (b.first_seq == first_seq && b.last_seq == last_seq) {
      if (b.done) return {BatchVerdict::kDuplicate, b.base_offset};
      if (waiter) b.waiters.push_back(std::move(waiter));
      return {BatchVerdict::kDuplicatePending};
    }
  }
  if (first_seq != state.next_seq) return {BatchVerdict::kOutOfOrder};
  state.batches.push_back(Batch{first_seq, last_seq});
  if (state.batches.size() > kWindow) state.batches.pop_front();
  // Sequences wrap at INT32_MAX back to 0, as the protocol says.
  state.next_seq = last_seq == INT32_MAX ? 0 : last_seq + 1;
  return {BatchVerdict::kNew};
}

void ProducerRegistry::Complete(const ProducerPartition& key, int32_t first_seq,
                                int64_t base_offset) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto p = producers_.find(key.producer_id);
    if (p == producers_.end()) return;
    auto s = p->second.partitions.find(PartitionKey(key));
    if (s == p->second.partitions.end()) return;
    for (Batch& b : s->second.batches) {
      if (b.first_seq == first_seq) {
        b.done = true;
        b.base_offset = base_offset;
        waiters.swap(b.waiters);
      }
    }
  }
  for (Waiter& w : waiters) w(base_offset);
}

void ProducerRegistry::Fail(const ProducerPartition& key, int32_t first_seq) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto p = producers_.find(key.producer_id);
    if (p == producers_.end()) return;
    auto s = p->second.partitions.find(PartitionKey(key));
    if (s == p->second.partitions.end()) return;
    PartitionState& state = s->second;
    for (auto it = state.batches.begin(); it != state.batches.end(); ++it) {
      if (it->first_seq == first_seq) {
        waiters.swap(it->waiters);
        // The client retries this batch (and resends the ones after it): expect it again.
        state.next_seq = first_seq;
        state.batches.erase(it, state.batches.end());
        break;
      }
    }
  }
  for (Waiter& w : waiters) w(-1);
}

size_t ProducerRegistry::producers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return producers_.size();
}

}  // namespace saltproxy
