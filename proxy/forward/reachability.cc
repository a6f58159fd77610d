#include "proxy/forward/reachability.h"

namespace saltproxy {

Reachability::Reachability(absl::Time start) : last_answer_us_(absl::ToUnixMicros(start)) {}

Reachability::Change Reachability::Answered(absl::Time now) {
  const int64_t us = absl::ToUnixMicros(now);
  // Answers come from several threads; the latest time wins.
  int64_t seen = last_answer_us_.load();
  while (seen < us && !last_answer_us_.compare_exchange_weak(seen, us)) {
  }
  if (reachable_.load()) return Change::kNone;
  std::lock_guard<std::mutex> lock(transitions_mu_);
  if (reachable_.load()) return Change::kNone;
  reachable_.store(true);
  return Change::kRegained;
}

Reachability::Change Reachability::Unanswered(absl::Time asked) {
  const int64_t asked_us = absl::ToUnixMicros(asked);
  std::lock_guard<std::mutex> lock(transitions_mu_);
  if (!reachable_.load() || last_answer_us_.load() >= asked_us) return Change::kNone;
  reachable_.store(false);
  // An answer that came in between: Answered saw the flag still set and returned, so it is
  // this call's to undo.
  if (last_answer_us_.load() >= asked_us) {
    reachable_.store(true);
    return Change::kNone;
  }
  return Change::kLost;
}

}  // namespace saltproxy
