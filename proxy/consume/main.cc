// saltproxy-consume: a consumer for topics saltproxy salts, for users outside C++. It reads a
// topic and its hot topic through the consumer library (include/saltproxy/consumer.h) and writes
// one JSON line per record on stdout, with the original key, in restored per-key order
// (--ordered, the default) or as the group hands them out (--group G).
//
//   saltproxy-consume --bootstrap-servers kafka:9092 --topic clicks
//   saltproxy-consume --bootstrap-servers kafka:9092 --topic clicks --group billing
//   saltproxy-consume ... --key-range 2/4        this reader's quarter of the keys
//   saltproxy-consume ... --idle-exit 5000       stop after 5 s without a record (scripts)
//
// A line: {"topic":"clicks","key":"concert-2026","value":"…","partition":3,"offset":42,
// "from":"clicks.hot","salted":true}; a key or value that is not UTF-8 comes as key_base64 or
// value_base64; "forced":true marks a record released by the lag policy (out of proven order).
// On exit (SIGINT, SIGTERM, --idle-exit, --count), a stats line goes to stderr.
#include <signal.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <iostream>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/common/strings.h"
#include "saltproxy/consumer.h"

namespace {

constexpr std::string_view kUsage =
    "usage: saltproxy-consume --bootstrap-servers HOSTS --topic TOPIC [options]\n"
    "  --hot-topic T        the topic's dedicated hot topic (default TOPIC.hot)\n"
    "  --control-topic T    the salt map's control topic (default _saltproxy_saltmap)\n"
    "  --group G            unordered mode: a member of consumer group G, keys mapped back\n"
    "  --key-range I/N      ordered mode: this reader takes keys with murmur2(key) % N == I\n"
    "  --max-wait MS        ordered mode: release a record held this long anyway (default 10000)\n"
    "  --max-buffered N     ordered mode: records held at most (default 200000)\n"
    "  --align-window MS    ordered mode: read a partition at most MS ahead (record time) of\n"
    "                       the furthest-back one with more to read (default 1000; 0: off)\n"
    "  --from-end           start at the end of the partitions, not their beginning\n"
    "  --count N            exit after N records\n"
    "  --idle-exit MS       exit after MS without a record\n"
    "  -X prop=value        a librdkafka property for the data consumer (connection ones,\n"
    "                       security.*, sasl.*, ssl.*, socket.*, client.*, for the control\n"
    "                       reader too)\n";

std::atomic<bool> stop{false};

void OnSignal(int) { stop.store(true); }

bool ParseInt(std::string_view text, int64_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// `s` (valid UTF-8) as a JSON string literal.
std::string Json(std::string_view s) {
  return boost::json::serialize(boost::json::value(boost::json::string_view(s.data(), s.size())));
}

void AppendString(std::string_view name, const std::optional<std::string>& value,
                  std::string* line) {
  if (!value) {
    absl::StrAppend(line, ",\"", saltproxy::Sv(name), "\":null");
  } else if (saltproxy::ValidUtf8(*value)) {
    absl::StrAppend(line, ",\"", saltproxy::Sv(name), "\":", Json(*value));
  } else {
    absl::StrAppend(line, ",\"", saltproxy::Sv(name), "_base64\":\"", absl::Base64Escape(*value), "\"");
  }
}

}  // namespace

int main(int argc, char** argv) {
  saltproxy::SaltConsumerOptions options;
  int64_t count = -1;
  int64_t idle_exit_ms = -1;
  auto fail = [](std::string_view message) {
    std::cerr << "saltproxy-consume: " << message << "\n" << kUsage;
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    int64_t n = 0;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--bootstrap-servers" || arg == "-b") {
      auto v = value();
      if (!v) return fail("--bootstrap-servers needs a value");
      options.bootstrap_servers = *v;
    } else if (arg == "--topic" || arg == "-t") {
      auto v = value();
      if (!v) return fail("--topic needs a value");
      options.topic = *v;
    } else if (arg == "--hot-topic") {
      auto v = value();
      if (!v) return fail("--hot-topic needs a value");
      options.hot_topic = *v;
    } else if (arg == "--control-topic") {
      auto v = value();
      if (!v) return fail("--control-topic needs a value");
      options.control_topic = *v;
    } else if (arg == "--group" || arg == "-G") {
      auto v = value();
      if (!v) return fail("--group needs a value");
      options.group_id = *v;
      options.mode = saltproxy::SaltConsumer::Mode::kUnordered;
    } else if (arg == "--key-range") {
      auto v = value();
      size_t slash = v ? v->find('/') : std::string::npos;
      int64_t index = 0, ranges = 0;
      if (slash == std::string::npos || !ParseInt(std::string_view(*v).substr(0, slash), &index) ||
          !ParseInt(std::string_view(*v).substr(slash + 1), &ranges)) {
        return fail("--key-range wants I/N, e.g. 0/4");
      }
      options.reassembly.key_range = static_cast<int>(index);
      options.reassembly.key_ranges = static_cast<int>(ranges);
    } else if (arg == "--max-wait") {
      auto v = value();
      if (!v || !ParseInt(*v, &n) || n < 0) return fail("--max-wait wants milliseconds");
      options.reassembly.max_wait = std::chrono::milliseconds(n);
    } else if (arg == "--max-buffered") {
      auto v = value();
      if (!v || !ParseInt(*v, &n) || n < 1) return fail("--max-buffered wants a count");
      options.reassembly.max_buffered = static_cast<size_t>(n);
    } else if (arg == "--align-window") {
      auto v = value();
      if (!v || !ParseInt(*v, &n) || n < 0) return fail("--align-window wants milliseconds");
      options.align_window = std::chrono::milliseconds(n);
    } else if (arg == "--from-end") {
      options.from_beginning = false;
    } else if (arg == "--count") {
      auto v = value();
      if (!v || !ParseInt(*v, &count) || count < 0) return fail("--count wants a number");
    } else if (arg == "--idle-exit") {
      auto v = value();
      if (!v || !ParseInt(*v, &idle_exit_ms) || idle_exit_ms < 0) {
        return fail("--idle-exit wants milliseconds");
      }
    } else if (arg == "-X") {
      auto v = value();
      size_t eq = v ? v->find('=') : std::string::npos;
      if (eq == std::string::npos) return fail("-X wants prop=value");
      options.librdkafka[v->substr(0, eq)] = v->substr(eq + 1);
    } else {
      return fail(absl::StrCat("unknown argument: ", saltproxy::Sv(arg)));
    }
  }
  if (options.bootstrap_servers.empty() || options.topic.empty()) {
    return fail("--bootstrap-servers and --topic are required");
  }

  std::string error;
  std::unique_ptr<saltproxy::SaltConsumer> consumer =
      saltproxy::SaltConsumer::Create(options, &error);
  if (!consumer) return fail(error);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  int64_t written = 0;
  auto last_record = std::chrono::steady_clock::now();
  std::string line;
  while (!stop.load() && (count < 0 || written < count)) {
    std::vector<saltproxy::ReleasedRecord> records =
        consumer->Poll(std::chrono::milliseconds(100));
    for (const std::string& e : consumer->TakeErrors()) {
      saltproxy::LogEvent(saltproxy::LogLevel::kWarn, "consumer_error", {{"reason", e}});
    }
    const auto now = std::chrono::steady_clock::now();
    if (!records.empty()) last_record = now;
    for (const saltproxy::ReleasedRecord& r : records) {
      line = "{\"topic\":";
      line += Json(r.source_topic);
      AppendString("key", r.key, &line);
      AppendString("value", r.record.value, &line);
      absl::StrAppend(&line, ",\"partition\":", r.record.partition,
                      ",\"offset\":", r.record.offset);
      if (r.record.topic != r.source_topic) {
        absl::StrAppend(&line, ",\"from\":", Json(r.record.topic));
      }
      absl::StrAppend(&line, ",\"salted\":", r.salted ? "true" : "false");
      if (r.forced) line += ",\"forced\":true";
      line += "}\n";
      std::cout << line;
      if (count >= 0 && ++written >= count) break;
      if (count < 0) ++written;
    }
    std::cout.flush();
    if (idle_exit_ms >= 0 &&
        now - last_record > std::chrono::milliseconds(idle_exit_ms)) {
      break;
    }
  }
  saltproxy::ReassemblerStats s = consumer->stats();
  consumer->Close();
  saltproxy::LogEvent(saltproxy::LogLevel::kInfo, "consume_stats",
                      {{"written", absl::StrCat(written)},
                       {"released_in_order", absl::StrCat(s.released_in_order)},
                       {"forced_by_timeout", absl::StrCat(s.forced_by_timeout)},
                       {"forced_by_buffer", absl::StrCat(s.forced_by_buffer)},
                       {"missing", absl::StrCat(s.missing)},
                       {"duplicates", absl::StrCat(s.duplicates)},
                       {"held", absl::StrCat(s.held)}});
  return 0;
}
