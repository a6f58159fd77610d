// saltproxy's configuration: parsed and validated once from a YAML file into an immutable
// Config that the data path only reads. A bad file is reported with the field's path, its line
// and what was expected, e.g.
//
//   config/bad.yaml:7: http.max_body_bytes: expected an integer from 1 to 1073741824, got "lots"
//
//   absl::StatusOr<Config> config = LoadConfigFile("config/saltproxy.yaml");
//   if (!config.ok()) { std::cerr << config.status().message(); return 2; }
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proxy/common/log.h"
#include "proxy/detect/thresholds.h"

namespace saltproxy {

struct Endpoint {
  std::string host;
  uint16_t port = 0;  // 0: let the kernel choose (tests); the bound port is logged.
  bool operator==(const Endpoint&) const = default;
};

struct HttpConfig {
  Endpoint listen{"127.0.0.1", 8080};
  int threads = 2;
  uint64_t max_body_bytes = 1 << 20;
  uint32_t max_header_bytes = 16 << 10;
  int max_in_flight_requests = 1024;
  int max_records_per_request = 10000;
  absl::Duration idle_timeout = absl::Seconds(30);
  absl::Duration request_timeout = absl::Seconds(30);
  // Idempotency-Key: how long a key's first answer is replayed, and how many keys are kept.
  absl::Duration idempotency_window = absl::Minutes(5);
  int idempotency_keys = 100000;
  // Bytes of request bodies read and not yet answered, over all connections; beyond it a
  // request gets 429 (a stream pauses reading until its earlier records are answered).
  uint64_t max_in_flight_bytes = 256ull << 20;
  // Records a streaming connection (v3 chunked, NDJSON bulk) may have read and not yet
  // answered; at the limit it stops reading until results are written.
  int stream_credit = 1000;
  // Open connections, in total and from one client address (0: no bound); more are closed on
  // accept.
  int max_connections = 8192;
  int max_connections_per_address = 1024;
};

// The Kafka-protocol listener; off unless `listen` is set.
struct KafkaListenerConfig {
  std::optional<Endpoint> listen;
  // The host clients are told to connect to (Metadata); defaults to the listen host.
  std::string advertised_host;
  int threads = 2;
  uint32_t max_frame_bytes = 100 << 20;
  int max_in_flight_per_connection = 16;
  absl::Duration idle_timeout = absl::Minutes(10);
  uint64_t max_decompressed_bytes = 64 << 20;
  int max_producers = 100000;
  // Bytes of request frames being read or handled, over all connections (a broker's
  // queued.max.request.bytes); at the bound, connections stop reading until requests are
  // answered. At least max_frame_bytes. Only bytes that have arrived count: a frame's buffer
  // grows as its bytes come in.
  uint64_t max_in_flight_bytes = 256ull << 20;
  // A frame begun must be whole within this, or its connection is closed (slow or stalled
  // peers); separate from idle_timeout, which is the wait for the next frame to begin.
  absl::Duration frame_timeout = absl::Seconds(30);
  // Open connections, in total and from one client address (0: no bound); more are closed on
  // accept.
  int max_connections = 8192;
  int max_connections_per_address = 1024;
};

struct TopicSpec {
  std::string name;
  int partitions = 1;
  bool operator==(const TopicSpec&) const = default;
};

struct UpstreamConfig {
  // Comma-separated host:port list of the real cluster; empty when embedded.
  std::string bootstrap_servers;
  // Run librdkafka's mock cluster inside the proxy (demo and fast tests): no cluster needed.
  bool embedded = false;
  int embedded_brokers = 1;
  std::vector<TopicSpec> embedded_topics;
  absl::Duration delivery_timeout = absl::Seconds(30);
  absl::Duration metadata_refresh = absl::Seconds(5);
  // Records and bytes the upstream producer may hold before the proxy pushes back.
  int max_queued_records = 100000;
  uint64_t max_queued_bytes = 256ull << 20;
  // New requests are refused (HTTP 429, Kafka a retriable error with a throttle time) while a
  // record admitted now would wait longer than this to be written (proxy/forward/queue_delay.h):
  // a cluster slower than the load pushes clients back within their own timeouts instead of
  // making them wait past them. Zero: no bound (the queue bounds above still hold).
  absl::Duration max_queue_delay = absl::Seconds(5);
  // librdkafka producers (each with its own connection to a broker); a partition always goes
  // through the same one, so per-partition order holds.
  int producers = 2;
  // How often librdkafka's statistics feed the upstream request metrics (UpstreamStats);
  // zero turns them off. Each document lists every partition the proxy writes to, so with many
  // thousands of them a longer interval costs less.
  absl::Duration statistics_interval = absl::Seconds(10);
  // Passed through to librdkafka as they are (after saltproxy's own settings, so they win).
  std::map<std::string, std::string> librdkafka;
};

// Hot-key detection (proxy/detect/hot_key_detector.h has the semantics).
struct DetectionConfig {
  double epsilon = 1e-4;
  double delta = 0.01;
  uint64_t max_sketch_bytes = 256 << 10;  // per topic and ingress thread
  bool conservative_update = true;
  absl::Duration half_life = absl::Seconds(2);
  int top_k = 256;
  // hot_rps, hot_share, … hold_down: when a key turns hot and cold (thresholds.h).
  Thresholds thresholds;
  int max_topics = 1000;
  bool operator==(const DetectionConfig&) const = default;
};

// How hot keys of a topic are handled (proxy/salting/policy.h has the semantics).
struct SaltPolicyConfig {
  std::string strategy = "salt_then_reroute";  // salt | reroute | salt_then_reroute | off
  double partition_target_rps = 0;             // 0: the topic's mean partition load
  int min_salts = 2;
  int max_salts = 0;  // 0: the topic's partition count
  double headroom = 2;
  double max_salts_per_share = 2.5;  // 0: no cap
  std::string hot_topic_pattern = "{topic}.hot";
  int hot_topic_partitions = 16;
  // A topic's own hot and cold thresholds (under salting.topics only); unset: detection's.
  TopicThresholds thresholds;
};

struct SaltingConfig {
  // How often the control step runs: detection, policy, layout changes, publication.
  absl::Duration tick = absl::Milliseconds(100);
  std::string control_topic = "_saltproxy_saltmap";
  absl::Duration cooled_retention = absl::Minutes(1);
  int max_held_records_per_key = 10000;
  absl::Duration load_half_life = absl::Seconds(1);
  // At start, read the last map this instance published to control_topic and take its layouts
  // over (proxy/salting/resume.h), within resume_timeout; read at start only.
  bool resume_layouts = true;
  absl::Duration resume_timeout = absl::Seconds(10);
  SaltPolicyConfig defaults;
  std::map<std::string, SaltPolicyConfig> topics;  // per-topic overrides of `defaults`
};

struct Config {
  std::string source_path;  // The file it was loaded from; empty when parsed from text.
  std::string instance_id;  // Defaults to the host name.
  LogLevel log_level = LogLevel::kInfo;
  absl::Duration shutdown_timeout = absl::Seconds(10);
  HttpConfig http;
  KafkaListenerConfig kafka;
  UpstreamConfig upstream;
  DetectionConfig detection;
  SaltingConfig salting;
};

// Parses YAML text. `source` names the text in error messages (usually the file's path).
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source = "config");

// Reads and parses a file. An unreadable file is an error that names the path and the reason.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// "host:port" or ":port" → Endpoint.
absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view text);

}  // namespace saltproxy
