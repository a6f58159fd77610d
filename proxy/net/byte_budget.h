// A bound on the bytes many connections hold together (a broker's queued.max.request.bytes):
// each connection takes from the budget before it makes its buffers bigger and gives the bytes
// back when they are freed. A connection that cannot take what it needs queues and stops
// reading; it is called back, with the bytes taken for it, once enough are given back. So a full
// budget turns into backpressure on the sockets rather than into memory.
//
//   ByteBudget budget(256 << 20);
//   if (!budget.Take(n, &ticket, [self] { post(self->strand, [self] { self->Grow(); }); })) {
//     return;  // the callback runs once n bytes are taken for this connection
//   }
//   ...
//   budget.Give(n);
//
// Waiters are served first come, first served, skipping one that does not fit yet (a large
// frame may wait while smaller ones go ahead). Thread-safe; callbacks run outside the lock on
// the thread that gave bytes back, so they should only post.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <mutex>

namespace saltproxy {

class ByteBudget {
 public:
  using Granted = std::function<void()>;
  using Ticket = uint64_t;  // 0: none
  // `on_change(held)` is called after every change of the held bytes (for a gauge), and
  // `on_full()` each time a Take has to wait; both under the lock, so keep them cheap.
  explicit ByteBudget(uint64_t limit, std::function<void(uint64_t)> on_change = nullptr,
                      std::function<void()> on_full = nullptr);

  // Takes `bytes` now and returns true, or queues `granted` (called once the bytes are taken
  // for the caller, who then owns them) under a ticket written to *ticket and returns false.
  bool Take(uint64_t bytes, Ticket* ticket, Granted granted);
  // Gives bytes back; grants queued takes that now fit.
  void Give(uint64_t bytes);
  // Drops a queued take. True if it was still queued: its callback will not run. False if it
  // was granted already: the callback has run or is running, and the bytes are the caller's.
  bool Cancel(Ticket ticket);
  // Drops every queued take without calling it (at shutdown, once nothing runs the callbacks).
  void DropWaiters();

  uint64_t limit() const { return limit_; }
  uint64_t held() const;

 private:
  struct Waiter {
    Ticket ticket;
    uint64_t bytes;
    Granted granted;
  };

  const uint64_t limit_;
  const std::function<void(uint64_t)> on_change_;
  const std::function<void()> on_full_;
  mutable std::mutex mu_;
  uint64_t held_ = 0;          // guarded by mu_
  Ticket next_ticket_ = 1;     // guarded by mu_
  std::list<Waiter> waiters_;  // guarded by mu_
};

}  // namespace saltproxy
