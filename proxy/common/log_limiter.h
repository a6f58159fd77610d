// At most one log line an interval (a second by default) for each key (a reason, an API name),
// with how many were not written since the last one: a hostile peer, or a client retrying in a
// loop, cannot flood the log with the same line. Keys come from small fixed sets; thread-safe.
//
//   LogLimiter limiter;
//   uint64_t not_logged = 0;
//   if (limiter.Allow("fetch", &not_logged)) LogEvent(..., {{"not_logged_since", ...}});
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace saltproxy {

class LogLimiter {
 public:
  explicit LogLimiter(absl::Duration every = absl::Seconds(1),
                      std::function<absl::Time()> clock = [] { return absl::Now(); })
      : every_(every), clock_(std::move(clock)) {}

  // True when a line for `key` may be written now; then *not_logged is how many were held back
  // since the last line (0 otherwise).
  bool Allow(std::string_view key, uint64_t* not_logged) {
    const absl::Time now = clock_();
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[std::string(key)];
    if (e.last != absl::InfinitePast() && now - e.last < every_) {
      ++e.not_logged;
      *not_logged = 0;
      return false;
    }
    e.last = now;
    *not_logged = e.not_logged;
    e.not_logged = 0;
    return true;
  }

 private:
  struct Entry {
    absl::Time last = absl::InfinitePast();
    uint64_t not_logged = 0;
  };
  const absl::Duration every_;
  const std::function<absl::Time()> clock_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace saltproxy
