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

void ProducerRegistry::SettleFailed(Batch& b, Deferred* run) {
  if (b.on_settled) run->push_back([f = std::move(b.on_settled)] { f(false); });
  for (Waiter& w : b.waiters) run->push_back([w = std::move(w)] { w(-1); });
  b.waiters.clear();
}

void ProducerRegistry::Abandon(absl::flat_hash_map<std::string, PartitionState>& partitions,
                               Deferred* run) {
  for (auto& [name, state] : partitions) {
    for (Batch& b : state.batches) SettleFailed(b, run);
  }
  partitions.clear();
}

ProducerRegistry::Producer& ProducerRegistry::Touch(int64_t producer_id, int16_t epoch,
                                                    Deferred* run) {
  auto it = producers_.find(producer_id);
  if (it != producers_.end()) {
    lru_.erase(it->second.lru);
    lru_.push_front(producer_id);
    it->second.lru = lru_.begin();
    return it->second;
  }
  while (producers_.size() >= max_producers_ && !lru_.empty()) {
    auto evicted = producers_.find(lru_.back());
    if (evicted != producers_.end()) {
      Abandon(evicted->second.partitions, run);
      producers_.erase(evicted);
    }
    lru_.pop_back();
  }
  lru_.push_front(producer_id);
  Producer& p = producers_[producer_id];
  p.epoch = epoch;
  p.lru = lru_.begin();
  return p;
}

ProducerRegistry::Issued ProducerRegistry::Init(int64_t current_id, int16_t current_epoch) {
  Deferred run;  // batches of the old epoch still waiting settle as failed, outside the lock
  Issued issued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_id >= 0 && current_epoch >= 0 && current_epoch < INT16_MAX) {
      Producer& p = Touch(current_id, current_epoch, &run);
      p.epoch = static_cast<int16_t>(current_epoch + 1);
      Abandon(p.partitions, &run);
      issued = {current_id, p.epoch};
    } else {
      int64_t id = next_id_++;
      Touch(id, 0, &run);
      issued = {id, 0};
    }
  }
  for (auto& f : run) f();
  return issued;
}

BatchCheck ProducerRegistry::Begin(const ProducerPartition& key, int16_t epoch, int32_t first_seq,
                                   int32_t last_seq, Waiter waiter, Deferred* run) {
  Deferred local;
  BatchCheck check;
  {
    std::lock_guard<std::mutex> lock(mu_);
    check = BeginLocked(key, epoch, first_seq, last_seq, std::move(waiter), run ? run : &local);
  }
  for (auto& f : local) f();
  return check;
}

BatchCheck ProducerRegistry::BeginLocked(const ProducerPartition& key, int16_t epoch,
                                         int32_t first_seq, int32_t last_seq, Waiter waiter,
                                         Deferred* run) {
  Producer& producer = Touch(key.producer_id, epoch, run);
  if (epoch < producer.epoch) return {BatchVerdict::kInvalidEpoch};
  if (epoch > producer.epoch) {
    producer.epoch = epoch;
    Abandon(producer.partitions, run);
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
      if (b.settled) return {BatchVerdict::kDuplicate, b.base_offset};
      if (waiter) b.waiters.push_back(std::move(waiter));
      return {BatchVerdict::kDuplicatePending};
    }
  }
  if (first_seq != state.next_seq) return {BatchVerdict::kOutOfOrder};
  Batch& batch = state.batches.emplace_back();
  batch.attempt = next_attempt_++;
  batch.first_seq = first_seq;
  batch.last_seq = last_seq;
  // Forget the oldest settled batches beyond the window; unsettled ones stay until they settle
  // (a client has at most a few batches in flight per partition).
  while (state.batches.size() > kWindow && state.batches.front().settled) {
    state.batches.pop_front();
  }
  // Sequences wrap at INT32_MAX back to 0, as the protocol says.
  state.next_seq = last_seq == INT32_MAX ? 0 : last_seq + 1;
  return {BatchVerdict::kNew, -1, batch.attempt};
}

Settlement ProducerRegistry::Complete(const ProducerPartition& key, uint64_t attempt,
                                      int64_t base_offset, absl::FunctionRef<Settled()> wait,
                                      Deferred* run) {
  std::lock_guard<std::mutex> lock(mu_);
  auto p = producers_.find(key.producer_id);
  // A producer forgotten (least recently used) while its batch was in flight: nothing is known
  // of the batches before it, which may yet fail. Not acknowledged: the client resends (this
  // batch is then written twice) rather than take an earlier failed batch for written.
  if (p == producers_.end()) return Settlement::kEarlierFailed;
  auto s = p->second.partitions.find(PartitionKey(key));
  // Gone from the window: an earlier batch failed and took it along (or a newer epoch began).
  if (s == p->second.partitions.end()) return Settlement::kEarlierFailed;
  std::list<Batch>& batches = s->second.batches;
  auto self = batches.end();
  for (auto b = batches.begin(); b != batches.end(); ++b) {
    if (b->attempt == attempt) self = b;
  }
  // Forgotten: an earlier batch failed and took it along, and the client may have resent it.
  if (self == batches.end()) return Settlement::kEarlierFailed;
  self->done = true;
  self->base_offset = base_offset;
  // Settle, in order, every written batch no unwritten one precedes.
  for (Batch& b : batches) {
    if (b.settled) continue;
    if (!b.done) break;
    b.settled = true;
    if (&b != &*self && b.on_settled) {
      run->push_back([f = std::move(b.on_settled)] { f(true); });
    }
    for (Waiter& w : b.waiters) run->push_back([w = std::move(w), o = b.base_offset] { w(o); });
    b.waiters.clear();
  }
  if (self->settled) return Settlement::kSettled;
  self->on_settled = wait();
  return Settlement::kWaiting;
}

void ProducerRegistry::Fail(const ProducerPartition& key, uint64_t attempt, Deferred* run) {
  std::lock_guard<std::mutex> lock(mu_);
  auto p = producers_.find(key.producer_id);
  if (p == producers_.end()) return;
  auto s = p->second.partitions.find(PartitionKey(key));
  if (s == p->second.partitions.end()) return;
  PartitionState& state = s->second;
  for (auto it = state.batches.begin(); it != state.batches.end(); ++it) {
    if (it->attempt != attempt) continue;
    // The client resends this batch and the ones after it: expect it again, and let every
    // batch after it that waits (written or not), and every duplicate waiting, hear it failed.
    for (auto later = it; later != state.batches.end(); ++later) SettleFailed(*later, run);
    state.next_seq = it->first_seq;
    state.batches.erase(it, state.batches.end());
    break;
  }
}

size_t ProducerRegistry::producers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return producers_.size();
}

}  // namespace saltproxy
