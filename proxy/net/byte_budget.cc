#include "proxy/net/byte_budget.h"

#include <utility>
#include <vector>

namespace saltproxy {

ByteBudget::ByteBudget(uint64_t limit, std::function<void(uint64_t)> on_change,
                       std::function<void()> on_full)
    : limit_(limit), on_change_(std::move(on_change)), on_full_(std::move(on_full)) {}

bool ByteBudget::Take(uint64_t bytes, Ticket* ticket, Granted granted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (held_ + bytes <= limit_) {
    held_ += bytes;
    if (on_change_) on_change_(held_);
    *ticket = 0;
    return true;
  }
  *ticket = next_ticket_++;
  waiters_.push_back({*ticket, bytes, std::move(granted)});
  if (on_full_) on_full_();
  return false;
}

void ByteBudget::Give(uint64_t bytes) {
  std::vector<Granted> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = bytes > held_ ? 0 : held_ - bytes;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (held_ + it->bytes > limit_) {
        ++it;
        continue;
      }
      held_ += it->bytes;
      ready.push_back(std::move(it->granted));
      it = waiters_.erase(it);
    }
    if (on_change_) on_change_(held_);
  }
  for (Granted& g : ready) g();
}

bool ByteBudget::Cancel(Ticket ticket) {
  Granted dropped;  // destroyed after the lock: it may hold the last reference to its owner
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->ticket == ticket) {
      dropped = std::move(it->granted);
      waiters_.erase(it);
      return true;
    }
  }
  return false;
}

void ByteBudget::DropWaiters() {
  std::list<Waiter> dropped;  // destroyed after the lock, like Cancel's
  std::lock_guard<std::mutex> lock(mu_);
  dropped.swap(waiters_);
}

uint64_t ByteBudget::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

}  // namespace saltproxy
