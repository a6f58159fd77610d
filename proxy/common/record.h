// The one record type that flows from an ingress (Kafka protocol or HTTP) through the router to
// the forwarder. Each stage owns one concern and knows nothing of the stage before it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saltproxy {

struct RecordHeader {
  std::string key;
  std::optional<std::string> value;  // Kafka allows a null header value.
};

struct Record {
  std::string topic;
  std::optional<std::string> key;    // nullopt: a null key (the partitioner spreads those).
  std::optional<std::string> value;  // nullopt: a null value (a tombstone).
  std::vector<RecordHeader> headers;
  int64_t timestamp_ms = 0;  // 0: the upstream producer stamps the record.
  int32_t partition = -1;    // -1: the router chooses; otherwise the client asked for it.
};

}  // namespace saltproxy
