// Structured logging: one line per event, logfmt-style, to stderr.
//
//   LogEvent(LogLevel::kInfo, "key_hot", {{"topic", topic}, {"key", key}, {"rate", "812.5"}});
//   // ts=2026-11-24T21:30:00.123Z level=info event=key_hot topic=orders key=nike rate=812.5
//
// Values with spaces, quotes or '=' are quoted. Thread-safe: each line is written with one call.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"

namespace saltproxy {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below this level are dropped. Set once at start-up and on reload.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warn", "error"; returns false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);

// A field's value: any string-like thing, including absl::string_view (a type of its own in
// Debian's Abseil, which does not alias std::string_view).
class LogValue {
 public:
  LogValue(std::string_view v) : view_(v) {}  // NOLINT: implicit on purpose
  LogValue(absl::string_view v) : view_(v.data(), v.size()) {}  // NOLINT
  LogValue(const std::string& v) : view_(v) {}  // NOLINT
  LogValue(const char* v) : view_(v) {}  // NOLINT
  std::string_view view() const { return view_; }

 private:
  std::string_view view_;
};

using LogField = std::pair<std::string_view, LogValue>;
void LogEvent(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace saltproxy
