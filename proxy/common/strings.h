// Debian's Abseil does not alias absl::string_view to std::string_view, and Boost's views are
// types of their own too. Sv() views any contiguous string as the absl::string_view that
// absl::StrCat and absl::Status take.
//
//   absl::StrCat("no such endpoint: ", Sv(request.target()));
//
// Also: ValidUtf8() (keys are bytes; JSON wants text, so a key that is not UTF-8 is shown in
// base64) and Rfc3339() (the one timestamp format of logs and JSON answers).
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace saltproxy {

bool ValidUtf8(std::string_view s);

// 2026-11-24T21:30:00.123Z
std::string Rfc3339(absl::Time t);

template <typename S>
absl::string_view Sv(const S& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace saltproxy
