#include "proxy/kafka_server/producer_state.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace saltproxy {
namespace {

BatchCheck Verdict(BatchVerdict verdict, int64_t base_offset = -1, uint64_t attempt = 0) {
  BatchCheck check;
  check.verdict = verdict;
  check.base_offset = base_offset;
  check.attempt = attempt;
  return check;
}

}  // namespace

ProducerRegistry::ProducerRegistry(size_t max_producers)
    : max_producers_(max_producers),
      // Ids from the start time, so that a restarted proxy does not hand out an id that a
      // client of the previous run still uses.
      next_id_(absl::ToUnixMillis(absl::Now()) * 1000) {}

std::string ProducerRegistry::PartitionKey(const ProducerPartition& key) {
  return absl::StrCat(key.topic, "\n", key.partition);
}

int32_t BatchWrites::Count(Record r) const {
  int32_t n = 0;
  for (Record x : records) n += x == r;
  return n;
}

void ProducerRegistry::SettleFailed(Batch& b, Deferred* run) {
  if (b.on_settled) run->push_back([f = std::move(b.on_settled)] { f(false); });
  b.on_settled = nullptr;
  for (Waiter& w : b.waiters) run->push_back([w = std::move(w)] { w(false, -1); });
  b.waiters.clear();
}

void ProducerRegistry::Forget(PartitionState& state, std::list<Batch>::iterator from,
                              Deferred* run) {
  for (auto b = from; b != state.batches.end(); ++b) {
    SettleFailed(*b, run);
    // Written but not acknowledged: the client sends these records again.
    if (b->done && !b->settled) {
      doubts_.forgotten += static_cast<int64_t>(b->last_seq) - b->first_seq + 1;
    } else if (b->failed) {
      doubts_.forgotten += b->written.Count(BatchWrites::kWritten);
    }
  }
  state.batches.erase(from, state.batches.end());
}

void ProducerRegistry::Abandon(absl::flat_hash_map<std::string, PartitionState>& partitions,
                               Deferred* run) {
  for (auto& [name, state] : partitions) Forget(state, state.batches.begin(), run);
  partitions.clear();
}

bool ProducerRegistry::EarlierFailed(const std::list<Batch>& batches,
                                     std::list<Batch>::const_iterator b) {
  for (auto it = batches.begin(); it != b; ++it) {
    if (it->failed) return true;
  }
  return false;
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
  const bool known = producers_.contains(key.producer_id);
  Producer& producer = Touch(key.producer_id, epoch, run);
  if (!known) producer.adopted = true;
  if (epoch < producer.epoch) return Verdict(BatchVerdict::kInvalidEpoch);
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
    // A producer adopted mid-stream may be resending what the previous run wrote: as many
    // batches as a client has in flight per partition (5 at most when idempotent).
    if (producer.adopted) state.unverified = static_cast<int>(kWindow);
    it = producer.partitions.find(pkey);
  }
  PartitionState& state = it->second;
  for (auto b = state.batches.begin(); b != state.batches.end(); ++b) {
    if (b->first_seq != first_seq || b->last_seq != last_seq) continue;
    if (b->settled) return Verdict(BatchVerdict::kDuplicate, b->base_offset);
    // A broker would not have this batch while an earlier one is unwritten: the client must
    // resend that one first.
    if (EarlierFailed(state.batches, b)) return Verdict(BatchVerdict::kOutOfOrder);
    if (b->failed) {
      b->failed = false;
      b->attempt = next_attempt_++;
      BatchCheck retry = Verdict(BatchVerdict::kRetry, -1, b->attempt);
      retry.written = b->written;
      return retry;
    }
    if (waiter) b->waiters.push_back(std::move(waiter));
    return Verdict(BatchVerdict::kDuplicatePending);
  }
  for (auto b = state.batches.begin(); b != state.batches.end(); ++b) {
    if (!b->failed) continue;
    // A failed batch is not retried as it was: the client resends from its first sequence
    // number in other ranges (a batch split as too large), or gave up on it. The former takes
    // its place; its records and the later batches' may be written a second time.
    if (first_seq != b->first_seq) return Verdict(BatchVerdict::kOutOfOrder);
    state.next_seq = first_seq;
    Forget(state, b, run);
    break;
  }
  if (first_seq != state.next_seq) return Verdict(BatchVerdict::kOutOfOrder);
  Batch& batch = state.batches.emplace_back();
  batch.attempt = next_attempt_++;
  batch.first_seq = first_seq;
  batch.last_seq = last_seq;
  if (state.unverified > 0) {
    --state.unverified;
    doubts_.unknown_producer += static_cast<int64_t>(last_seq) - first_seq + 1;
  }
  // Forget the oldest settled batches beyond the window; unsettled ones stay until they settle
  // (a client has at most a few batches in flight per partition).
  while (state.batches.size() > kWindow && state.batches.front().settled) {
    state.batches.pop_front();
  }
  // Sequences wrap at INT32_MAX back to 0, as the protocol says.
  state.next_seq = last_seq == INT32_MAX ? 0 : last_seq + 1;
  return Verdict(BatchVerdict::kNew, -1, batch.attempt);
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
  // Gone from the window: a newer epoch began, or the client resent in other ranges.
  if (s == p->second.partitions.end()) return Settlement::kEarlierFailed;
  std::list<Batch>& batches = s->second.batches;
  auto self = batches.end();
  for (auto b = batches.begin(); b != batches.end(); ++b) {
    if (b->attempt == attempt) self = b;
  }
  if (self == batches.end()) return Settlement::kEarlierFailed;
  self->done = true;
  self->base_offset = base_offset;
  self->written = BatchWrites();
  // Settle, in order, every written batch no unwritten one precedes.
  for (Batch& b : batches) {
    if (b.settled) continue;
    if (!b.done) break;
    b.settled = true;
    if (&b != &*self && b.on_settled) {
      run->push_back([f = std::move(b.on_settled)] { f(true); });
    }
    b.on_settled = nullptr;
    for (Waiter& w : b.waiters) {
      run->push_back([w = std::move(w), o = b.base_offset] { w(true, o); });
    }
    b.waiters.clear();
  }
  if (self->settled) return Settlement::kSettled;
  // Written, after a batch that failed: not acknowledged until that one is retried (the client
  // resends from it, and this one's resend is then a duplicate).
  if (EarlierFailed(batches, self)) return Settlement::kEarlierFailed;
  self->on_settled = wait();
  return Settlement::kWaiting;
}

void ProducerRegistry::Fail(const ProducerPartition& key, uint64_t attempt, BatchWrites written,
                            Deferred* run) {
  std::lock_guard<std::mutex> lock(mu_);
  auto p = producers_.find(key.producer_id);
  if (p == producers_.end()) return;
  auto s = p->second.partitions.find(PartitionKey(key));
  if (s == p->second.partitions.end()) return;
  std::list<Batch>& batches = s->second.batches;
  for (auto it = batches.begin(); it != batches.end(); ++it) {
    if (it->attempt != attempt) continue;
    it->failed = true;
    it->written = std::move(written);
    // The client resends from this batch: duplicates waiting for it, and written batches after
    // it waiting to settle, hear it failed (those are kept: their resends are duplicates).
    for (auto later = it; later != batches.end(); ++later) SettleFailed(*later, run);
    break;
  }
}

ProducerRegistry::Doubts ProducerRegistry::TakeDoubts() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(doubts_, Doubts());
}

size_t ProducerRegistry::producers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return producers_.size();
}

}  // namespace saltproxy
