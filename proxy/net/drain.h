// The waits a listener's shutdown is made of, the same for the HTTP and Kafka listeners: until
// its requests in flight are answered, then until its connections have closed, both bounded by
// a deadline.
//
//   int left = WaitInFlight(shared->mu, shared->idle, shared->in_flight, deadline);
//   WaitClosed([&] { return OpenSessions(); }, deadline);
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace saltproxy {

// Waits under `mu` until `in_flight` (guarded by it, `idle` notified when it reaches 0) is 0 or
// `deadline` passed; returns what is left in flight.
inline int WaitInFlight(std::mutex& mu, std::condition_variable& idle, const int& in_flight,
                        absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu);
  idle.wait_for(lock,
                std::chrono::milliseconds(
                    std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()))),
                [&] { return in_flight == 0; });
  return in_flight;
}

// Polls `open` (the connections still open) every 5 ms until it is 0 or `deadline` passed.
inline void WaitClosed(const std::function<size_t()>& open, absl::Time deadline) {
  while (open() > 0 && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace saltproxy
