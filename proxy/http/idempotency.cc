#include "proxy/http/idempotency.h"

#include "absl/time/clock.h"

namespace saltproxy {

void IdempotencyCache::Evict(absl::Time now) {
  while (!order_.empty()) {
    const auto& [created, key] = order_.front();
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.created == created) {
      const bool over = entries_.size() > capacity_;
      const bool expired = now - created > window_;
      // A pending key within capacity stays past its window: its client is still waiting.
      if (!over && (!expired || !it->second.done)) break;
      entries_.erase(it);
    }
    order_.pop_front();
  }
}

bool IdempotencyCache::Claim(const std::string& key, uint64_t body_hash, Responder& respond,
                             absl::Time now, unsigned http_version) {
  std::unique_lock<std::mutex> lock(mu_);
  Evict(now);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    entries_[key] = Entry{body_hash, now, false, nullptr, {}};
    order_.emplace_back(now, key);
    Evict(now);
    return false;
  }
  Entry& e = it->second;
  if (e.body_hash != body_hash) {
    lock.unlock();
    respond(JsonError(http_version, 422, 422,
                      "Idempotency-Key reused with a different request body; use a new key "
                      "for a new request"));
    return true;
  }
  if (e.done) {
    HttpResponse replay = *e.response;
    replay.set("Idempotent-Replayed", "true");
    lock.unlock();
    respond(std::move(replay));
    return true;
  }
  e.waiters.push_back(std::move(respond));
  return true;
}

void IdempotencyCache::Complete(const std::string& key, const HttpResponse& response,
                                bool replayable) {
  std::vector<Responder> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    // Only what wrote something is worth replaying; after a failure the client's retry runs
    // again.
    if (!replayable || response.result_int() >= 500 || response.result_int() == 429) {
      waiters.swap(it->second.waiters);
      entries_.erase(it);
    } else {
      it->second.done = true;
      it->second.response = std::make_shared<HttpResponse>(response);
      waiters.swap(it->second.waiters);
    }
  }
  for (Responder& w : waiters) {
    HttpResponse copy = response;
    copy.set("Idempotent-Replayed", "true");
    w(std::move(copy));
  }
}

Responder IdempotencyCache::Recording(const std::string& key, Responder respond) {
  auto inner = std::make_shared<Responder>(std::move(respond));
  return Responder([this, key, inner](HttpResponse&& response) {
    const bool nothing_written = response.count(kNothingWrittenHeader) > 0;
    response.erase(kNothingWrittenHeader);
    Complete(key, response, !nothing_written);
    (*inner)(std::move(response));
  });
}

size_t IdempotencyCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace saltproxy
