#include "proxy/forward/queue_delay.h"

#include <algorithm>

namespace saltproxy {
namespace {

// Samples are kept this far apart at least: the age's resolution, and a bound on the history's
// length (history / kSampleEvery entries) whatever the poll rate.
constexpr absl::Duration kSampleEvery = absl::Milliseconds(25);

}  // namespace

QueueDelay::QueueDelay(absl::Duration rate_window)
    : rate_window_(std::max(rate_window, kMinBacklog)),
      history_(std::max(2 * rate_window_, absl::Seconds(10))) {}

absl::Duration QueueDelay::Update(absl::Time now, const Counts& counts) {
  // Records admitted so far. The two counts move apart (a report lowers `queued` a moment before
  // it raises `reported`), so the sum can dip by a batch; it never really goes down.
  int64_t admitted = counts.reported_records + std::max<int64_t>(0, counts.queued_records);
  if (!samples_.empty()) admitted = std::max(admitted, samples_.back().admitted);
  // A sample only when something moved: through a stall the last one stays, and with it the
  // oldest record's whole age, however long the stall.
  if (samples_.empty() ||
      (now - samples_.back().at >= kSampleEvery &&
       (admitted != samples_.back().admitted ||
        counts.reported_records != samples_.back().reported_records))) {
    samples_.push_back(Sample{now, admitted, counts.reported_records, counts.reported_bytes});
  }
  // Keep one sample at or beyond the history's edge, so that an age that long is still seen.
  while (samples_.size() > 1 && samples_[1].at <= now - history_) samples_.pop_front();

  const absl::Duration age = Age(now, counts);
  const bool backlog = age >= kMinBacklog;
  const bool throttled =
      now - absl::FromUnixMicros(throttled_at_us_.load(std::memory_order_relaxed)) <
      rate_window_;
  std::optional<Rate> rate;
  if (throttled) {
    // A broker over its quota lets a burst through, then mutes the connection until the
    // burst is paid for: its rate is what it drained over the whole window, mutes included.
    rate = RateOverWindow(now, counts);
  } else {
    // The higher of two (the header says why).
    rate = RateBetweenReports(now, rate_window_);
    if (backlog) {
      std::optional<Rate> recent = RateBetweenReports(now, std::min(age, rate_window_));
      if (recent && (!rate || recent->records > rate->records)) rate = recent;
    }
  }
  // The capacity: the rate over a backlog (or, throttled, the window's rate), raised by any
  // higher rate since, forgotten a rate window after it was last measured.
  if (rate && (backlog || throttled || (capacity_ && rate->records > capacity_->records))) {
    capacity_ = rate;
    capacity_at_ = now;
  } else if (capacity_ && now - capacity_at_ > rate_window_) {
    capacity_.reset();
  }
  capacity_records_per_s_.store(capacity_ ? capacity_->records : 0, std::memory_order_relaxed);

  absl::Duration estimate = age;
  if (counts.queued_records <= 0) {
    estimate = absl::ZeroDuration();
  } else if (backlog && rate) {
    absl::Duration ahead =
        absl::Seconds(static_cast<double>(counts.queued_records) / rate->records);
    if (rate->bytes > 0) {
      ahead =
          std::max(ahead, absl::Seconds(static_cast<double>(counts.queued_bytes) / rate->bytes));
    }
    estimate = std::max(age, ahead);
  }
  const absl::Time muted_until =
      absl::FromUnixMicros(muted_until_us_.load(std::memory_order_relaxed));
  estimate = std::max(estimate, muted_until - now);
  estimate_us_.store(absl::ToInt64Microseconds(estimate), std::memory_order_relaxed);
  return estimate;
}

void QueueDelay::Throttled(absl::Time now, absl::Duration throttle) {
  if (throttle <= absl::ZeroDuration()) return;
  throttled_at_us_.store(absl::ToUnixMicros(now), std::memory_order_relaxed);
  const int64_t until = absl::ToUnixMicros(now + throttle);
  int64_t seen = muted_until_us_.load(std::memory_order_relaxed);
  while (seen < until && !muted_until_us_.compare_exchange_weak(seen, until)) {
  }
}

absl::Duration QueueDelay::Projected(int64_t records) const {
  const double capacity = capacity_records_per_s_.load(std::memory_order_relaxed);
  if (capacity <= 0 || records <= 0) return absl::ZeroDuration();
  return absl::Seconds(static_cast<double>(records) / capacity);
}

absl::Duration QueueDelay::Age(absl::Time now, const Counts& counts) const {
  if (counts.queued_records <= 0) return absl::ZeroDuration();
  // The oldest queued record is number reported + 1 in admission order: admitted after the
  // last sample that had not yet reached it, by the first that had. Its age is at least the
  // time since that first one (a lower bound, kSampleEvery fine).
  const auto first_holding = std::partition_point(
      samples_.begin(), samples_.end(),
      [&](const Sample& s) { return s.admitted <= counts.reported_records; });
  if (first_holding == samples_.end()) return absl::ZeroDuration();  // admitted since the last
  return now - first_holding->at;
}

std::optional<QueueDelay::Rate> QueueDelay::RateOverWindow(absl::Time now,
                                                           const Counts& counts) const {
  const auto after =
      std::partition_point(samples_.begin(), samples_.end(),
                           [&](const Sample& s) { return s.at <= now - rate_window_; });
  const Sample& start = after == samples_.begin() ? samples_.front() : *(after - 1);
  const double seconds = absl::ToDoubleSeconds(std::min(now - start.at, rate_window_));
  const int64_t records = counts.reported_records - start.reported_records;
  if (records <= 0 || seconds <= 0) return std::nullopt;
  return Rate{static_cast<double>(records) / seconds,
              static_cast<double>(counts.reported_bytes - start.reported_bytes) / seconds};
}

std::optional<QueueDelay::Rate> QueueDelay::RateBetweenReports(absl::Time now,
                                                               absl::Duration window) const {
  // Measured between the window's first and last reports: what the first report counted was
  // drained before it, and after the last nothing is known (the age covers a stall). Counted
  // from the window's edges instead, a window opening just before a burst of reports holds one
  // burst more than its time drained (the estimate was low by a fifth for a broker answering
  // every 3 s, over 5 s). Fewer than kMinReports reports tell no rate.
  const auto after = std::partition_point(samples_.begin(), samples_.end(),
                                          [&](const Sample& s) { return s.at <= now - window; });
  // A sample is taken whenever the counts move: the last one at or before the window's start
  // holds the counts of the start itself.
  const Sample* previous = after == samples_.begin() ? &samples_.front() : &*(after - 1);
  const Sample* first_report = nullptr;
  const Sample* last_report = nullptr;
  int reports = 0;
  for (auto it = after; it != samples_.end(); previous = &*it, ++it) {
    if (it->reported_records == previous->reported_records) continue;
    if (++reports == 1) first_report = &*it;
    last_report = &*it;
  }
  if (reports < kMinReports) return std::nullopt;
  const double seconds = absl::ToDoubleSeconds(last_report->at - first_report->at);
  const int64_t records = last_report->reported_records - first_report->reported_records;
  if (records <= 0 || seconds <= 0) return std::nullopt;
  return Rate{static_cast<double>(records) / seconds,
              static_cast<double>(last_report->reported_bytes - first_report->reported_bytes) /
                  seconds};
}

}  // namespace saltproxy
