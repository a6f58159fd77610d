// Whether the upstream cluster is reachable ("gone") as opposed to merely slow, decided from what
// the proxy asked of it and what came back. No librdkafka here: the forwarder feeds it events,
// and the rule can be tested alone.
//
// The rule: the cluster is unreachable once a request the proxy made to find out (a metadata
// request, which waits at most its timeout) went unanswered, and nothing else came back from
// any broker since that request was sent: no produce acknowledgement, no broker error, no other
// metadata answer. A slow cluster still answers something within that window (under load,
// acknowledgements arrive all the time), so it stays reachable however late its metadata
// answers are. The first answer of any kind makes it reachable again.
//
//   Reachability reachability(absl::Now());
//   // a metadata request sent at `asked` timed out:
//   if (reachability.Unanswered(asked) == Reachability::Change::kLost) { /* log */ }
//   // a delivery report, a broker error or a metadata answer:
//   if (reachability.Answered(now) == Reachability::Change::kRegained) { /* log */ }
//   if (!reachability.reachable()) { /* refuse new requests at once */ }
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "absl/time/time.h"

namespace saltproxy {

class Reachability {
 public:
  enum class Change { kNone, kLost, kRegained };

  // Reachable until a request goes unanswered; `start` counts as the last answer.
  explicit Reachability(absl::Time start);

  // The cluster answered something at `now`. Any thread; lock-free unless it regains.
  Change Answered(absl::Time now);
  // A request sent at `asked` got no answer within its timeout. Lost when nothing else
  // answered since `asked` either.
  Change Unanswered(absl::Time asked);

  // One atomic load: what request admission reads.
  bool reachable() const { return reachable_.load(); }
  // When the cluster last answered anything.
  absl::Time last_answer() const { return absl::FromUnixMicros(last_answer_us_.load()); }

 private:
  // Both are sequentially consistent: Answered writes the time then reads the flag; Unanswered
  // clears the flag then reads the time again, so one of the two always sees the other.
  std::atomic<int64_t> last_answer_us_;
  std::atomic<bool> reachable_{true};
  std::mutex transitions_mu_;  // serializes the flag's changes, so each is reported once
};

}  // namespace saltproxy
