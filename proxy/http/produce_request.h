// Parsing of REST produce bodies (Confluent REST Proxy v2) into Records, kept apart from the
// server so that every shape and every error can be tested without a socket.
//
//   absl::StatusOr<EmbeddedFormat> format = FormatFromContentType(content_type);
//   absl::StatusOr<std::vector<Record>> records = ParseProduceBody(body, *format, topic, limits);
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/common/record.h"

namespace saltproxy {

enum class EmbeddedFormat {
  kJson,    // application/vnd.kafka.json.v2+json (and plain application/json): keys and values
            // are JSON, stored as their JSON text.
  kBinary,  // application/vnd.kafka.binary.v2+json: keys and values are base64 strings.
};

// A status whose code tells the HTTP answer: InvalidArgument → 400 (malformed JSON),
// FailedPrecondition → 422 (valid JSON, invalid records), Unimplemented → 415,
// OutOfRange → 413 (too many records).
struct ProduceError {
  int http_status;
  int error_code;
};
ProduceError ToProduceError(const absl::Status& status);

absl::StatusOr<EmbeddedFormat> FormatFromContentType(absl::string_view content_type);

absl::StatusOr<std::vector<Record>> ParseProduceBody(absl::string_view body, EmbeddedFormat format,
                                                     const std::string& topic, int max_records);

}  // namespace saltproxy
