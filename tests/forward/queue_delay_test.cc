// The queue delay estimate (proxy/forward/queue_delay.h) against a model of the upstream queue:
// a FIFO that the test fills and drains on a clock it moves by hand, with admission refusing
// new records while the estimate is over the bound, as Forwarder::Admit does.
#include "proxy/forward/queue_delay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

namespace saltproxy {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);
constexpr absl::Duration kTick = absl::Milliseconds(10);  // the poll thread's update interval

class QueueModel {
 public:
  explicit QueueModel(absl::Duration rate_window) : delay_(rate_window) {}

  // Offers `n` records of `bytes` each; admitted unless the estimate, or the queue with them at
  // the last capacity measured, is over `bound` (as Forwarder::Admit).
  int Offer(int n, absl::Duration bound, int64_t bytes = 100) {
    if (std::max(delay_.estimate(), delay_.Projected(static_cast<int64_t>(queue_.size()) + n)) >
        bound) {
      refused_ += n;
      return 0;
    }
    for (int i = 0; i < n; ++i) queue_.push_back(Queued{now_, bytes});
    counts_.queued_records += n;
    counts_.queued_bytes += n * bytes;
    return n;
  }
  // The cluster writes up to `n` records, oldest first.
  void Drain(int64_t n) {
    for (; n > 0 && !queue_.empty(); --n) {
      max_wait_ = std::max(max_wait_, now_ - queue_.front().at);
      if (queue_.front().at >= steady_from_) {
        max_steady_wait_ = std::max(max_steady_wait_, now_ - queue_.front().at);
      }
      counts_.queued_records -= 1;
      counts_.queued_bytes -= queue_.front().bytes;
      counts_.reported_records += 1;
      counts_.reported_bytes += queue_.front().bytes;
      queue_.pop_front();
    }
  }
  // The cluster announces it reads nothing more for `mute`.
  void Throttled(absl::Duration mute) { delay_.Throttled(now_, mute); }
  // Time passes; the poll thread updates the estimate.
  void Tick(absl::Duration d = kTick) {
    now_ += d;
    max_estimate_ = std::max(max_estimate_, delay_.Update(now_, counts_));
  }
  // What a record admitted now would wait if the cluster drains `per_second` from now on.
  absl::Duration TrueWait(double per_second) const {
    return absl::Seconds(static_cast<double>(queue_.size()) / per_second);
  }

  absl::Duration estimate() const { return delay_.estimate(); }
  absl::Duration max_wait() const { return max_wait_; }
  // The longest wait of the records admitted from `from` on.
  void SteadyFrom(absl::Time from) { steady_from_ = from; }
  absl::Duration max_steady_wait() const { return max_steady_wait_; }
  absl::Duration max_estimate() const { return max_estimate_; }
  int64_t refused() const { return refused_; }
  int64_t written() const { return counts_.reported_records; }
  size_t queued() const { return queue_.size(); }
  absl::Time now() const { return now_; }

 private:
  struct Queued {
    absl::Time at;
    int64_t bytes;
  };
  QueueDelay delay_;
  absl::Time now_ = kStart;
  QueueDelay::Counts counts_;
  std::deque<Queued> queue_;
  absl::Duration max_wait_;
  absl::Time steady_from_ = absl::InfinitePast();
  absl::Duration max_steady_wait_;
  absl::Duration max_estimate_;
  int64_t refused_ = 0;
};

TEST(QueueDelayTest, EmptyQueueWaitsNothing) {
  QueueModel q(absl::Seconds(10));
  for (int i = 0; i < 100; ++i) {
    q.Offer(10, absl::Seconds(5));
    q.Drain(10);
    q.Tick();
  }
  EXPECT_EQ(q.estimate(), absl::ZeroDuration());
}

// A healthy cluster (100,000 records/s) after 10 s of a light load (100 records/s) gets a burst
// of 50,000 records at once. The rate of the last seconds (100/s) would say the burst waits
// 500 s; it drains in half a second, and nothing is refused.
TEST(QueueDelayTest, BurstOnAHealthyClusterIsNotRefused) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  for (int i = 0; i < 1000; ++i) {
    q.Offer(1, bound);
    q.Drain(1000);
    q.Tick();
  }
  ASSERT_EQ(q.Offer(50'000, bound), 50'000);
  for (int i = 0; i < 200; ++i) {
    q.Drain(1000);  // 100,000 records/s
    q.Tick();
    q.Offer(1, bound);
  }
  EXPECT_EQ(q.refused(), 0);
  EXPECT_LT(q.max_estimate(), absl::Seconds(1));
  EXPECT_LT(q.max_wait(), absl::Seconds(1));
}

// A cluster that writes 1,000 records/s offered ten times that: admission keeps what it takes
// in waiting about the bound, never far past it, and keeps the cluster busy all along.
TEST(QueueDelayTest, OverloadKeepsAdmittedRecordsNearTheBoundAndTheClusterBusy) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  const int seconds = 60;
  for (int i = 0; i < seconds * 100; ++i) {
    q.Offer(100, bound);  // 10,000 records/s
    q.Drain(10);          // 1,000 records/s
    q.Tick();
  }
  EXPECT_GT(q.refused(), 0);
  EXPECT_LT(q.max_wait(), bound * 1.1) << q.max_wait();
  EXPECT_GT(q.written(), (seconds - 1) * 1000) << "the cluster went idle";
  // And the estimate says what a record admitted now would wait.
  EXPECT_LT(absl::AbsDuration(q.estimate() - q.TrueWait(1000)), absl::Seconds(1))
      << q.estimate() << " vs " << q.TrueWait(1000);
}

// A broker over its quota answers, then mutes the connection: here 3,000 records every 3 s.
// Before the first answer nothing tells how fast the cluster drains, so the first 3 s admit
// what the oldest record's age allows (30,000 records, 30 s of work), and admission is refused
// until they are written. From then on the rate is measured between answers over the rate window
// (10 s, three mutes at least), and what is admitted waits little more than the bound.
TEST(QueueDelayTest, DrainInBurstsOfAQuotaMuteStaysNearTheBound) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  q.SteadyFrom(kStart + absl::Seconds(30));
  for (int i = 0; i < 90 * 100; ++i) {
    q.Offer(100, bound);
    if (i % 300 == 299) q.Drain(3000);
    q.Tick();
  }
  EXPECT_GT(q.refused(), 0);
  EXPECT_LT(q.max_steady_wait(), bound + absl::Seconds(1)) << q.max_steady_wait();
  EXPECT_GT(q.written(), 87 * 1000) << "the cluster went idle";
}

// Sixteen clients that each keep one request of 150 records in flight, against a cluster that
// writes 300 records/s: they all send again as soon as their answers come, into an empty queue,
// and would be admitted together (2,400 records, 8 s of work) by the estimate alone, which is
// zero then. The queue with their records, at the capacity measured over the last backlog,
// refuses what would wait past the bound.
TEST(QueueDelayTest, RequestsArrivingTogetherIntoAnEmptyQueueAreAdmittedUpToTheBound) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  q.SteadyFrom(kStart + absl::Seconds(20));  // the first round: nothing measured yet
  int admitted_in_round = 0;
  int rounds = 0;
  for (int i = 0; i < 120 * 100; ++i) {
    if (q.queued() == 0) {
      ++rounds;
      admitted_in_round = 0;
      for (int client = 0; client < 16; ++client) admitted_in_round += q.Offer(150, bound);
    }
    q.Drain(3);  // 300 records/s
    q.Tick();
  }
  EXPECT_GT(rounds, 10);
  EXPECT_GT(q.refused(), 0);
  EXPECT_LE(admitted_in_round, 1500 + 150);
  EXPECT_LT(q.max_steady_wait(), bound * 1.1) << q.max_steady_wait();
}

// A broker over a client quota of 300 records/s, as Kafka's: it takes what a request carries
// (up to 1,000 records) at once and answers, then mutes the connection until that is paid for,
// and says so. Its first answers come fast, so the rate of the first seconds is no measure of
// what it keeps; the rate over the window, mutes included, is. The same sixteen clients: what
// is admitted waits about the bound.
TEST(QueueDelayTest, ABrokerOverItsQuotaIsMeasuredByWhatItKeeps) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  q.SteadyFrom(kStart + absl::Seconds(20));
  absl::Time muted_until = kStart;
  for (int i = 0; i < 120 * 100; ++i) {
    if (q.queued() == 0) {
      for (int client = 0; client < 16; ++client) q.Offer(150, bound);
    }
    if (q.now() >= muted_until && q.queued() > 0) {
      const int taken = static_cast<int>(std::min<size_t>(q.queued(), 1000));
      q.Drain(taken);
      const absl::Duration mute = absl::Seconds(taken / 300.0);
      muted_until = q.now() + mute;
      q.Throttled(mute);
    }
    q.Tick();
  }
  EXPECT_GT(q.refused(), 0);
  EXPECT_GT(q.written(), 110 * 300) << "the broker went idle";
  EXPECT_LT(q.max_steady_wait(), bound * 1.2) << q.max_steady_wait();
}

// The capacity measured while the cluster was slow does not outlive it: once the cluster is
// fast again, what it drains raises the capacity (or it is forgotten a rate window later), and
// the same clients are no longer refused.
TEST(QueueDelayTest, ACapacityMeasuredWhileSlowIsRaisedOnceTheClusterIsFast) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  auto round = [&](int per_tick) {
    if (q.queued() == 0) {
      for (int client = 0; client < 16; ++client) q.Offer(150, bound);
    }
    q.Drain(per_tick);
    q.Tick();
  };
  for (int i = 0; i < 30 * 100; ++i) round(3);  // 300 records/s
  ASSERT_GT(q.refused(), 0);
  for (int i = 0; i < 10 * 100; ++i) round(1000);  // 100,000 records/s
  const int64_t refused = q.refused();
  for (int i = 0; i < 20 * 100; ++i) round(1000);
  EXPECT_EQ(q.refused(), refused);
}

// Nothing is written at all: the estimate is the oldest record's age, which passes the bound
// once the stall does.
TEST(QueueDelayTest, StallIsTheOldestRecordsAge) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  q.Offer(100, bound);
  const absl::Time start = q.now();
  while (q.now() - start < absl::Seconds(4)) q.Tick();
  EXPECT_LE(q.estimate(), bound);
  EXPECT_GE(q.estimate(), absl::Seconds(3.9));
  while (q.now() - start < absl::Seconds(6)) q.Tick();
  EXPECT_GT(q.estimate(), bound);
  // Long past the rate window too.
  while (q.now() - start < absl::Seconds(30)) q.Tick();
  EXPECT_GT(q.estimate(), absl::Seconds(20));
  // The cluster is back and fast: the queue drains, and so does the estimate.
  q.Drain(100);
  q.Tick();
  EXPECT_EQ(q.estimate(), absl::ZeroDuration());
}

// A broker over its quota answers and then mutes the connection for the throttle time it
// announced: whatever is admitted meanwhile waits at least what is left of it, queue or not.
TEST(QueueDelayTest, AnAnnouncedMuteIsWaitedOut) {
  QueueDelay delay(absl::Seconds(10));
  QueueDelay::Counts empty;
  delay.Update(kStart, empty);
  delay.Throttled(kStart, absl::Seconds(8));
  delay.Throttled(kStart, absl::Seconds(2));  // a shorter one, from another connection
  EXPECT_EQ(delay.Update(kStart + absl::Seconds(1), empty), absl::Seconds(7));
  EXPECT_EQ(delay.Update(kStart + absl::Seconds(6), empty), absl::Seconds(2));
  EXPECT_EQ(delay.Update(kStart + absl::Seconds(9), empty), absl::ZeroDuration());
}

// Records of 100 bytes drained at 100 records/s, then records a hundred times larger queue up:
// their count would say one second, their bytes say a hundred.
TEST(QueueDelayTest, LargeRecordsCountByTheirBytes) {
  const absl::Duration bound = absl::Seconds(5);
  QueueModel q(2 * bound);
  q.Offer(1000, bound, /*bytes=*/100);
  for (int i = 0; i < 300; ++i) {
    q.Drain(1);
    q.Tick();
  }
  q.Offer(100, absl::InfiniteDuration(), /*bytes=*/10'000);
  q.Drain(1);
  q.Tick();
  EXPECT_GT(q.estimate(), absl::Seconds(50));
}

}  // namespace
}  // namespace saltproxy
