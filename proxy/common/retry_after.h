// When a client should try again, carried by the absl::Status of a refusal (a payload), so that
// the forwarder that decides it and the ingress that answers the client (HTTP Retry-After, a
// Kafka answer's throttle_time_ms) need no other channel between them.
//
//   return WithRetryAfter(absl::ResourceExhaustedError("slow"), absl::Seconds(3));
//   absl::Duration after = RetryAfter(status).value_or(absl::Seconds(1));
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace saltproxy {

inline constexpr char kRetryAfterPayload[] = "saltproxy/retry_after_ms";

inline absl::Status WithRetryAfter(absl::Status status, absl::Duration after) {
  status.SetPayload(kRetryAfterPayload,
                    absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(after))));
  return status;
}

inline std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayload);
  int64_t ms = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &ms) || ms < 0) return std::nullopt;
  return absl::Milliseconds(ms);
}

// HTTP's Retry-After: whole seconds, at least 1.
inline std::string RetryAfterSeconds(const absl::Status& status) {
  const absl::Duration after = RetryAfter(status).value_or(absl::Seconds(1));
  const int64_t seconds = absl::ToInt64Seconds(absl::Ceil(after, absl::Seconds(1)));
  return absl::StrCat(std::max<int64_t>(1, seconds));
}

}  // namespace saltproxy
