// How long a record admitted upstream now would wait before the cluster writes it, estimated
// from the forwarder's running counts alone (no librdkafka here, so the rule is tested on a
// clock the test moves). Admission refuses new requests while the estimate is over
// upstream.max_queue_delay, so that a slow cluster makes clients back off instead of waiting
// past their own timeouts.
//
// Two measures, both treating the queue as one FIFO (a partition's records are; across
// partitions it is an approximation that one slow partition does not move much):
//
//   age    how long the oldest queued record has waited: the time since as many records had
//          been admitted as have been reported (delivered or failed) by now;
//   ahead  how long what is queued takes at the drain rate: queued records (and bytes) ÷
//          records (bytes) reported per second.
//
// While the oldest record is younger than kMinBacklog the estimate is its age: at the onset of
// a burst on a healthy cluster the reports of the last seconds say how much was offered, not
// how fast the cluster drains, and dividing by them would refuse a burst that drains in
// milliseconds. Past it, the estimate is the larger of age and ahead, the rate being the higher
// of two: over the backlog (the last `age`: the cluster's capacity as it is now) and over the
// whole rate window (which smooths a cluster that answers in bursts), each counted between
// reports and only from kMinReports of them. When neither has a rate (a stall), it is the age,
// which grows with the stall.
//
// Two more things admission needs:
//   - requests that arrive together find the queue empty and the estimate low, and would all be
//     admitted at once: Projected(queued + what is being admitted) divides by the capacity, the
//     rate last measured over a backlog (kept for a rate window, raised by any higher rate);
//   - a broker over a client quota lets a burst through at full speed and then mutes the
//     connection until the burst is paid for, and says so (throttle_time_ms, KIP-219): the
//     estimate is never less than what is left of an announced mute (Throttled), and for a rate
//     window after one, the rate (and capacity) is what the window drained, mutes included.
//
// What counts cannot tell:
//   - before the cluster's first reports, or a quota's first mute, nothing says it is slow: the
//     first seconds of load are admitted as the age allows (a quota lets megabytes through at
//     once before its first mute, and those records wait the longest);
//   - the first answers after a lull carry what was queued when their requests left (a record
//     or two; librdkafka keeps two requests in flight per connection and sends a partition's
//     queue in its next one), so a cluster whose every answer comes late looks slower than it
//     is for a few round trips: with answers 1.5 s late, records that waited 3 s were estimated
//     at up to 12 s during the first two seconds of load. Round trips of milliseconds pass
//     within kMinBacklog.
//
//   QueueDelay delay(/*rate_window=*/absl::Seconds(10));
//   delay.Update(absl::Now(), counts);                 // one thread, every ≤ 100 ms
//   delay.Throttled(absl::Now(), throttle);            // any thread, as the cluster says
//   if (std::max(delay.estimate(), delay.Projected(queued + n)) > bound) { /* refuse */ }
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>

#include "absl/time/time.h"

namespace saltproxy {

class QueueDelay {
 public:
  // Below this age the queue is not backlogged enough for its drain rate to mean capacity.
  static constexpr absl::Duration kMinBacklog = absl::Milliseconds(250);
  // Reports (sampled rises of the reported count) a window needs for its rate to count.
  static constexpr int kMinReports = 3;

  struct Counts {
    int64_t reported_records = 0;  // since start: delivered or failed, each once
    int64_t reported_bytes = 0;
    int64_t queued_records = 0;    // now: handed to the producers, not yet reported
    int64_t queued_bytes = 0;
  };

  // `rate_window`: the longest span the drain rate is measured over. It should cover a few of
  // the cluster's answers even when they come in bursts (a broker's quota mutes a connection for
  // up to seconds between them); the forwarder takes twice upstream.max_queue_delay.
  explicit QueueDelay(absl::Duration rate_window);

  // The counts at `now`; returns the new estimate. One thread at a time.
  absl::Duration Update(absl::Time now, const Counts& counts);
  // The last estimate. Any thread; one atomic load.
  absl::Duration estimate() const {
    return absl::Microseconds(estimate_us_.load(std::memory_order_relaxed));
  }
  // The cluster said it will read nothing more of ours for `throttle` (a broker over a client
  // quota, after its answer). Any thread.
  void Throttled(absl::Time now, absl::Duration throttle);
  // How long `records` queued now would take at the cluster's capacity (zero when none was
  // measured within the rate window). Any thread.
  absl::Duration Projected(int64_t records) const;

 private:
  struct Rate {
    double records = 0;  // per second
    double bytes = 0;
  };
  absl::Duration Age(absl::Time now, const Counts& counts) const;
  // Between the first and last of at least kMinReports reports in the last `window`.
  std::optional<Rate> RateBetweenReports(absl::Time now, absl::Duration window) const;
  // Over the whole rate window, silences included.
  std::optional<Rate> RateOverWindow(absl::Time now, const Counts& counts) const;

  struct Sample {
    absl::Time at;
    int64_t admitted;  // reported + queued: records ever handed over, up to `at`
    int64_t reported_records;
    int64_t reported_bytes;
  };
  const absl::Duration rate_window_;
  const absl::Duration history_;  // samples kept: long enough for an age past any sane bound
  std::deque<Sample> samples_;    // oldest first, kSampleEvery apart at least
  std::optional<Rate> capacity_;  // the drain rate over the last backlog (or quota window)
  absl::Time capacity_at_;
  std::atomic<int64_t> estimate_us_{0};
  std::atomic<int64_t> muted_until_us_{0};  // Throttled
  std::atomic<int64_t> throttled_at_us_{0};
  std::atomic<double> capacity_records_per_s_{0};  // capacity_, for Projected
};

}  // namespace saltproxy
