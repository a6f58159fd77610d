#include "proxy/config/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "proxy/config/yaml_reader.h"

namespace saltproxy {
namespace {

using config_internal::YamlSection;

constexpr uint64_t kGiB = 1ull << 30;

void ReadEndpoint(YamlSection& section, absl::string_view key, Endpoint* out) {
  std::string text;
  section.ReadString(key, &text);  // read even when absent: it names the key as a known one
  if (!section.Has(key)) return;
  absl::StatusOr<Endpoint> endpoint = ParseEndpoint(text);
  if (!endpoint.ok()) {
    section.Error(key, absl::StrCat("expected host:port, got \"", text, "\""));
    return;
  }
  *out = *endpoint;
}

void ReadHttp(YamlSection& s, HttpConfig& http) {
  ReadEndpoint(s, "listen", &http.listen);
  s.ReadInt("threads", &http.threads, 1, 64);
  s.ReadUint64("max_body_bytes", &http.max_body_bytes, 1, kGiB);
  s.ReadUint32("max_header_bytes", &http.max_header_bytes, 1024, 1 << 20);
  s.ReadInt("max_in_flight_requests", &http.max_in_flight_requests, 1, 1 << 20);
  s.ReadInt("max_records_per_request", &http.max_records_per_request, 1, 1 << 20);
  s.ReadDuration("idle_timeout", &http.idle_timeout, absl::Milliseconds(100), absl::Hours(24));
  s.ReadDuration("request_timeout", &http.request_timeout, absl::Milliseconds(100),
                 absl::Hours(1));
  s.ReadDuration("idempotency_window", &http.idempotency_window, absl::Seconds(1),
                 absl::Hours(24));
  s.ReadInt("idempotency_keys", &http.idempotency_keys, 1, 10'000'000);
  s.ReadUint64("max_in_flight_bytes", &http.max_in_flight_bytes, 1 << 16, 64 * kGiB);
  s.ReadInt("stream_credit", &http.stream_credit, 1, 1 << 20);
  s.ReadInt("max_connections", &http.max_connections, 0, 1 << 24);
  s.ReadInt("max_connections_per_address", &http.max_connections_per_address, 0, 1 << 24);
  s.Finish();
}

void ReadKafka(YamlSection& s, KafkaListenerConfig& k) {
  if (s.Has("listen")) {
    Endpoint endpoint;
    ReadEndpoint(s, "listen", &endpoint);
    if (!endpoint.host.empty()) k.listen = endpoint;
  }
  s.ReadString("advertised_host", &k.advertised_host);
  s.ReadInt("threads", &k.threads, 1, 64);
  s.ReadUint32("max_frame_bytes", &k.max_frame_bytes, 1024, 1ull << 30);
  s.ReadInt("max_in_flight_per_connection", &k.max_in_flight_per_connection, 1, 1000);
  s.ReadDuration("idle_timeout", &k.idle_timeout, absl::Seconds(1), absl::Hours(24));
  s.ReadUint64("max_decompressed_bytes", &k.max_decompressed_bytes, 1024, 1ull << 32);
  s.ReadInt("max_producers", &k.max_producers, 1, 10'000'000);
  s.ReadUint64("max_in_flight_bytes", &k.max_in_flight_bytes, 1 << 16, 64 * kGiB);
  s.ReadDuration("frame_timeout", &k.frame_timeout, absl::Milliseconds(100), absl::Hours(1));
  s.ReadInt("max_connections", &k.max_connections, 0, 1 << 24);
  s.ReadInt("max_connections_per_address", &k.max_connections_per_address, 0, 1 << 24);
  if (k.max_in_flight_bytes < k.max_frame_bytes) {
    s.Error("max_in_flight_bytes",
            absl::StrCat("must be at least max_frame_bytes (", k.max_frame_bytes,
                         "), or a frame of that size could never be read"));
  }
  s.Finish();
}

// True if `server` (host:port) is the Kafka listener's own address: the same port on the same
// host, or on loopback or wildcard hosts both (another host may be this one too; not checked).
bool IsOwnListener(absl::string_view server, const Endpoint& listen) {
  absl::StatusOr<Endpoint> e = ParseEndpoint(server);
  if (!e.ok() || e->port == 0 || e->port != listen.port) return false;
  auto local = [](absl::string_view host) {
    return host == "127.0.0.1" || host == "localhost" || host == "0.0.0.0" || host == "::1" ||
           host == "::";
  };
  return e->host == listen.host || (local(e->host) && local(listen.host));
}

void ReadUpstream(YamlSection& s, UpstreamConfig& up, const std::optional<Endpoint>& listen) {
  s.ReadString("bootstrap_servers", &up.bootstrap_servers);
  s.ReadBool("embedded", &up.embedded);
  s.ReadInt("embedded_brokers", &up.embedded_brokers, 1, 16);
  s.ReadList("embedded_topics", [&](YamlSection& t) {
    TopicSpec spec;
    t.ReadString("name", &spec.name);
    t.ReadInt("partitions", &spec.partitions, 1, 10000);
    if (spec.name.empty()) t.Error("name", "required: the topic's name");
    up.embedded_topics.push_back(std::move(spec));
  });
  s.ReadDuration("delivery_timeout", &up.delivery_timeout, absl::Milliseconds(100),
                 absl::Hours(1));
  s.ReadDuration("metadata_refresh", &up.metadata_refresh, absl::Milliseconds(100),
                 absl::Hours(1));
  s.ReadInt("max_queued_records", &up.max_queued_records, 1, 10'000'000);
  s.ReadUint64("max_queued_bytes", &up.max_queued_bytes, 1 << 20, 64 * kGiB);
  if (s.Has("max_queue_delay")) {
    s.ReadDuration("max_queue_delay", &up.max_queue_delay, absl::ZeroDuration(), absl::Hours(1));
    if (up.max_queue_delay > absl::ZeroDuration() &&
        up.max_queue_delay < absl::Milliseconds(500)) {
      s.Error("max_queue_delay",
              absl::StrCat("expected 0s (no bound) or at least 500ms, got ",
                           absl::FormatDuration(up.max_queue_delay),
                           ": below that a healthy cluster's own latency would be refused"));
    } else if (up.max_queue_delay >= up.delivery_timeout) {
      s.Error("max_queue_delay",
              absl::StrCat("must be below delivery_timeout (",
                           absl::FormatDuration(up.delivery_timeout), "), got ",
                           absl::FormatDuration(up.max_queue_delay),
                           ": a record admitted to wait that long would time out first"));
    }
  } else {
    // Unset: the default, or half a shorter delivery_timeout.
    up.max_queue_delay = std::min(up.max_queue_delay, up.delivery_timeout / 2);
  }
  s.ReadInt("producers", &up.producers, 1, 16);
  s.ReadDuration("statistics_interval", &up.statistics_interval, absl::ZeroDuration(),
                 absl::Hours(24));
  s.ReadStringMap("librdkafka", &up.librdkafka);
  if (!up.embedded && up.bootstrap_servers.empty()) {
    s.Error("bootstrap_servers",
            "required: the upstream cluster's host:port list (or set upstream.embedded: true)");
  }
  if (!up.embedded && listen) {
    for (absl::string_view server : absl::StrSplit(up.bootstrap_servers, ',')) {
      server = absl::StripAsciiWhitespace(server);
      if (IsOwnListener(server, *listen)) {
        s.Error("bootstrap_servers",
                absl::StrCat(server, " is saltproxy's own Kafka listener (kafka.listen): name the "
                                     "real cluster's brokers"));
        break;
      }
    }
  }
  s.Finish();
}

// The thresholds' keys and bounds, read under detection (every key, into Thresholds) and under
// salting.topics.<topic> (the keys present, into TopicThresholds).
struct ThresholdKey {
  const char* key;
  double min, max;
  double Thresholds::*global;
  std::optional<double> TopicThresholds::*topic;
};
constexpr ThresholdKey kThresholdKeys[] = {
    {"hot_rps", 0, 1e12, &Thresholds::hot_rps, &TopicThresholds::hot_rps},
    {"hot_share", 0, 1, &Thresholds::hot_share, &TopicThresholds::hot_share},
    {"hot_partition_share", 0, 1000, &Thresholds::hot_partition_share,
     &TopicThresholds::hot_partition_share},
    {"hot_min_rps", 0, 1e12, &Thresholds::hot_min_rps, &TopicThresholds::hot_min_rps},
    {"partition_capacity_rps", 0, 1e12, &Thresholds::partition_capacity_rps,
     &TopicThresholds::partition_capacity_rps},
    {"cold_ratio", 0.01, 1, &Thresholds::cold_ratio, &TopicThresholds::cold_ratio},
};
constexpr absl::Duration kMaxHoldDown = absl::Hours(24);

void ReadDetection(YamlSection& s, DetectionConfig& d) {
  s.ReadDouble("epsilon", &d.epsilon, 1e-9, 0.5);
  s.ReadDouble("delta", &d.delta, 1e-9, 0.5);
  s.ReadUint64("max_sketch_bytes", &d.max_sketch_bytes, 4096, 1ull << 30);
  s.ReadBool("conservative_update", &d.conservative_update);
  s.ReadDuration("half_life", &d.half_life, absl::Milliseconds(100), absl::Hours(1));
  s.ReadInt("top_k", &d.top_k, 1, 100000);
  Thresholds& t = d.thresholds;
  for (const ThresholdKey& k : kThresholdKeys) s.ReadDouble(k.key, &(t.*k.global), k.min, k.max);
  s.ReadDuration("hold_down", &t.hold_down, absl::ZeroDuration(), kMaxHoldDown);
  s.ReadInt("max_topics", &d.max_topics, 1, 100000);
  if (t.hot_rps == 0 && t.hot_share == 0 && t.hot_partition_share == 0) {
    s.Error("hot_partition_share",
            "set one hot threshold: hot_rps, hot_share or hot_partition_share");
  }
  s.Finish();
}

// A topic's own detection thresholds (salting.topics.<topic>), each read only when present.
void ReadTopicThresholds(YamlSection& s, TopicThresholds& t) {
  for (const ThresholdKey& k : kThresholdKeys) {
    if (!s.Has(k.key)) continue;
    double v = 0;
    s.ReadDouble(k.key, &v, k.min, k.max);
    t.*k.topic = v;
  }
  if (s.Has("hold_down")) {
    absl::Duration d;
    s.ReadDuration("hold_down", &d, absl::ZeroDuration(), kMaxHoldDown);
    t.hold_down = d;
  }
  if ((t.hot_rps || t.hot_share || t.hot_partition_share) && t.hot_rps.value_or(0) == 0 &&
      t.hot_share.value_or(0) == 0 && t.hot_partition_share.value_or(0) == 0) {
    s.Error("hot_share", "set one hot threshold above 0: hot_rps, hot_share or hot_partition_share");
  }
}

void ReadPolicy(YamlSection& s, SaltPolicyConfig& p) {
  s.ReadEnum("strategy", &p.strategy, {"salt", "reroute", "salt_then_reroute", "off"});
  s.ReadDouble("partition_target_rps", &p.partition_target_rps, 0, 1e9);
  s.ReadInt("min_salts", &p.min_salts, 1, 10000);
  s.ReadInt("max_salts", &p.max_salts, 0, 10000);
  s.ReadDouble("headroom", &p.headroom, 1.0, 100.0);
  s.ReadDouble("max_salts_per_share", &p.max_salts_per_share, 0, 1000.0);
  s.ReadString("hot_topic_pattern", &p.hot_topic_pattern);
  s.ReadInt("hot_topic_partitions", &p.hot_topic_partitions, 1, 10000);
  if (p.max_salts != 0 && p.max_salts < p.min_salts) {
    s.Error("max_salts", absl::StrCat("expected 0 (the topic's partitions) or at least min_salts (",
                                      p.min_salts, ")"));
  }
  if (p.hot_topic_pattern.find("{topic}") == std::string::npos) {
    s.Error("hot_topic_pattern", "expected a name containing {topic}, such as {topic}.hot");
  }
  s.Finish();
}

void ReadSalting(YamlSection& s, SaltingConfig& salting) {
  s.ReadDuration("tick", &salting.tick, absl::Milliseconds(10), absl::Seconds(10));
  s.ReadString("control_topic", &salting.control_topic);
  s.ReadDuration("cooled_retention", &salting.cooled_retention, absl::ZeroDuration(),
                 absl::Hours(24));
  s.ReadInt("max_held_records_per_key", &salting.max_held_records_per_key, 1, 10'000'000);
  s.ReadDuration("load_half_life", &salting.load_half_life, absl::Milliseconds(10),
                 absl::Minutes(10));
  const bool resume_set = s.Has("resume_layouts");
  s.ReadBool("resume_layouts", &salting.resume_layouts);
  s.ReadDuration("resume_timeout", &salting.resume_timeout, absl::Milliseconds(100),
                 absl::Minutes(5));
  if (resume_set && salting.resume_layouts && salting.control_topic.empty()) {
    s.Error("resume_layouts",
            "expected false when control_topic is empty: no map is published to resume from");
  }
  YamlSection defaults = s.Sub("defaults");
  ReadPolicy(defaults, salting.defaults);
  YamlSection topics = s.Sub("topics");
  // Each topic's overrides start from the defaults.
  topics.ForEachKey([&](const std::string& name, YamlSection& section) {
    SaltPolicyConfig policy = salting.defaults;
    ReadTopicThresholds(section, policy.thresholds);
    ReadPolicy(section, policy);
    salting.topics[name] = policy;
  });
  s.Finish();
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "saltproxy";
  return buf;
}

}  // namespace

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected host:port, got \"", text, "\""));
  }
  Endpoint e;
  e.host = std::string(text.substr(0, colon));
  if (e.host.size() >= 2 && e.host.front() == '[' && e.host.back() == ']') {
    e.host = e.host.substr(1, e.host.size() - 2);
  }
  if (e.host.empty()) e.host = "0.0.0.0";
  uint32_t port;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("expected a port from 0 to 65535 in \"", text,
                                                   "\""));
  }
  e.port = static_cast<uint16_t>(port);
  return e;
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  std::vector<std::string> errors;
  if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", root.Mark().line + 1, ": expected a mapping of sections"));
  }

  Config config;
  config.instance_id = HostName();
  YamlSection top(root, "", source, &errors);
  top.ReadString("instance_id", &config.instance_id);
  std::string level = "info";
  top.ReadEnum("log_level", &level, {"debug", "info", "warn", "error"});
  ParseLogLevel(level, &config.log_level);
  top.ReadDuration("shutdown_timeout", &config.shutdown_timeout, absl::ZeroDuration(),
                   absl::Minutes(10));
  YamlSection http = top.Sub("http");
  ReadHttp(http, config.http);
  YamlSection kafka = top.Sub("kafka");
  ReadKafka(kafka, config.kafka);
  YamlSection upstream = top.Sub("upstream");
  ReadUpstream(upstream, config.upstream, config.kafka.listen);
  YamlSection detection = top.Sub("detection");
  ReadDetection(detection, config.detection);
  YamlSection salting = top.Sub("salting");
  ReadSalting(salting, config.salting);
  top.Finish();

  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read the config file: it is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot read the config file: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": cannot read the config file"));
  }
  absl::StatusOr<Config> config = ParseConfig(text.str(), path);
  if (config.ok()) config->source_path = path;
  return config;
}

}  // namespace saltproxy
