// The source text of JSON values inside a request body, so that a JSON-embedded key or value is
// stored as the client wrote it. Boost.JSON's DOM keeps numbers as int64/uint64/double only:
// re-serialising it turns 53.5 into 5.35E1, 1e999999 into Infinity (not JSON at all) and a
// 30-digit integer into a rounded double, and a key then hashes to another partition than the
// client's own murmur2 of its bytes. These functions walk text that Boost.JSON has already
// accepted (they skip values; they do not build them) and hand back spans of it.
//
//   absl::StatusOr<absl::string_view> value = MemberText(record_text, "value");
//   std::string stored = CompactJson(*value);  // {"n": 53.5} → {"n":53.5}
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace saltproxy {

// The text of member `name` of the object `object_text` (one JSON object, surrounding
// whitespace allowed). The last one when the name repeats, as Boost.JSON's DOM keeps.
// NotFound when absent; InvalidArgument when `object_text` is not one JSON object.
absl::StatusOr<absl::string_view> MemberText(absl::string_view object_text,
                                             absl::string_view name);

// The text of each element of the array `array_text`, in order.
absl::StatusOr<std::vector<absl::string_view>> ElementTexts(absl::string_view array_text);

// `text` (one valid JSON value) without the whitespace between its tokens; everything else,
// number spellings and string escapes included, byte for byte.
std::string CompactJson(absl::string_view text);

}  // namespace saltproxy
