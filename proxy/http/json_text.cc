#include "proxy/http/json_text.h"

#include <boost/json.hpp>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace saltproxy {
namespace {

constexpr size_t kBad = absl::string_view::npos;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t SkipSpace(absl::string_view t, size_t pos) {
  while (pos < t.size() && IsSpace(t[pos])) ++pos;
  return pos;
}

// `pos` at the opening quote; returns the position after the closing one.
size_t SkipString(absl::string_view t, size_t pos) {
  if (pos >= t.size() || t[pos] != '"') return kBad;
  for (++pos; pos < t.size(); ++pos) {
    if (t[pos] == '\\') {
      ++pos;  // the escaped character cannot close the string
    } else if (t[pos] == '"') {
      return pos + 1;
    }
  }
  return kBad;
}

// Deeper than Boost.JSON's default max_depth (32), so whatever it accepted is walked; hostile
// text that was never parsed cannot take the recursion further.
constexpr int kMaxDepth = 64;

// One value from `pos` (no leading whitespace); returns the position after it.
size_t SkipValue(absl::string_view t, size_t pos, int depth = 0) {
  if (pos >= t.size() || depth > kMaxDepth) return kBad;
  const char c = t[pos];
  if (c == '"') return SkipString(t, pos);
  if (c == '{' || c == '[') {
    const char close = c == '{' ? '}' : ']';
    pos = SkipSpace(t, pos + 1);
    if (pos < t.size() && t[pos] == close) return pos + 1;
    while (pos < t.size()) {
      if (c == '{') {
        pos = SkipString(t, pos);
        if (pos == kBad) return kBad;
        pos = SkipSpace(t, pos);
        if (pos >= t.size() || t[pos] != ':') return kBad;
        pos = SkipSpace(t, pos + 1);
      }
      pos = SkipValue(t, pos, depth + 1);
      if (pos == kBad) return kBad;
      pos = SkipSpace(t, pos);
      if (pos >= t.size()) return kBad;
      if (t[pos] == close) return pos + 1;
      if (t[pos] != ',') return kBad;
      pos = SkipSpace(t, pos + 1);
    }
    return kBad;
  }
  const size_t start = pos;
  while (pos < t.size() && (absl::ascii_isalnum(static_cast<unsigned char>(t[pos])) ||
                            t[pos] == '-' || t[pos] == '+' || t[pos] == '.')) {
    ++pos;
  }
  return pos == start ? kBad : pos;
}

absl::Status NotJson(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("expected a JSON ", what));
}

// A member name as its text says it, escapes decoded when it has any.
bool NameIs(absl::string_view token, absl::string_view name) {
  absl::string_view inner = token.substr(1, token.size() - 2);
  if (inner.find('\\') == absl::string_view::npos) return inner == name;
  boost::system::error_code ec;
  boost::json::value v =
      boost::json::parse(boost::json::string_view(token.data(), token.size()), ec);
  return !ec && v.is_string() &&
         absl::string_view(v.get_string().data(), v.get_string().size()) == name;
}

}  // namespace

absl::StatusOr<absl::string_view> MemberText(absl::string_view t, absl::string_view name) {
  size_t pos = SkipSpace(t, 0);
  if (pos >= t.size() || t[pos] != '{') return NotJson("object");
  pos = SkipSpace(t, pos + 1);
  std::optional<absl::string_view> found;
  if (pos < t.size() && t[pos] == '}') return absl::NotFoundError(name);
  while (pos < t.size()) {
    const size_t name_end = SkipString(t, pos);
    if (name_end == kBad) return NotJson("object");
    const bool match = NameIs(t.substr(pos, name_end - pos), name);
    pos = SkipSpace(t, name_end);
    if (pos >= t.size() || t[pos] != ':') return NotJson("object");
    pos = SkipSpace(t, pos + 1);
    const size_t value_end = SkipValue(t, pos);
    if (value_end == kBad) return NotJson("object");
    if (match) found = t.substr(pos, value_end - pos);
    pos = SkipSpace(t, value_end);
    if (pos < t.size() && t[pos] == '}') {
      if (found) return *found;
      return absl::NotFoundError(name);
    }
    if (pos >= t.size() || t[pos] != ',') return NotJson("object");
    pos = SkipSpace(t, pos + 1);
  }
  return NotJson("object");
}

absl::StatusOr<std::vector<absl::string_view>> ElementTexts(absl::string_view t) {
  std::vector<absl::string_view> elements;
  size_t pos = SkipSpace(t, 0);
  if (pos >= t.size() || t[pos] != '[') return NotJson("array");
  pos = SkipSpace(t, pos + 1);
  if (pos < t.size() && t[pos] == ']') return elements;
  while (pos < t.size()) {
    const size_t end = SkipValue(t, pos);
    if (end == kBad) return NotJson("array");
    elements.push_back(t.substr(pos, end - pos));
    pos = SkipSpace(t, end);
    if (pos < t.size() && t[pos] == ']') return elements;
    if (pos >= t.size() || t[pos] != ',') return NotJson("array");
    pos = SkipSpace(t, pos + 1);
  }
  return NotJson("array");
}

std::string CompactJson(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < text.size()) {
        out.push_back(text[++i]);
      } else if (c == '"') {
        in_string = false;
      }
    } else if (!IsSpace(c)) {
      out.push_back(c);
      in_string = c == '"';
    }
  }
  return out;
}

}  // namespace saltproxy
