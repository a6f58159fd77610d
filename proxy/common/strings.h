// Debian's Abseil does not alias absl::string_view to std::string_view, and Boost's views are
// types of their own too. Sv() views any contiguous string as the absl::string_view that
// absl::StrCat and absl::Status take.
//
//   absl::StrCat("no such endpoint: ", Sv(request.target()));
#pragma once

#include "absl/strings/string_view.h"

namespace saltproxy {

template <typename S>
absl::string_view Sv(const S& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace saltproxy
