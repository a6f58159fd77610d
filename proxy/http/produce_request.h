// Parsing of REST produce bodies into Records, kept apart from the server so that every shape
// and every error can be tested without a socket:
//  - Confluent REST Proxy v2: {"records":[{"key":…,"value":…,"partition":…,"timestamp":…,
//    "headers":[{"key":…,"value":base64}]}]} (headers and timestamp as Strimzi's bridge sends);
//  - Confluent v3: one record {"partition_id":…,"headers":[{"name":…,"value":base64}],
//    "key":{"type":"BINARY"|"JSON"|"STRING","data":…},"value":{…},"timestamp":"RFC 3339"}.
//
//   absl::StatusOr<EmbeddedFormat> format = FormatFromContentType(content_type);
//   absl::StatusOr<std::vector<Record>> records = ParseProduceBody(body, *format, topic, limits);
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "absl/status/statusor.h"
#include "proxy/common/record.h"

namespace saltproxy {

enum class EmbeddedFormat {
  kJson,    // application/vnd.kafka.json.v2+json: keys and values are JSON, stored as the
            // client's JSON text (whitespace between tokens dropped).
  kBinary,  // application/vnd.kafka.binary.v2+json, and as Confluent's doc says, every type that
            // names no embedded format (application/json, application/vnd.kafka.v2+json,
            // application/vnd.kafka+json, application/octet-stream, none): base64 strings.
  // application/vnd.kafka.{avro,jsonschema,protobuf}.v2+json: keys and values are serialised
  // with a schema held by a schema registry, which saltproxy does not use. ParseProduceBody
  // refuses them with the 422 Confluent's doc gives for each case (see SchemaFormatError).
  kAvro,
  kJsonSchema,
  kProtobuf,
};

// A status whose code tells the HTTP answer: InvalidArgument → 400 (malformed JSON),
// FailedPrecondition → 422 (valid JSON, invalid records; with a Confluent error_code such as
// 42201 when the status carries one), Unimplemented → 415, OutOfRange → 413 (too many records).
struct ProduceError {
  int http_status;
  int error_code;
};
ProduceError ToProduceError(const absl::Status& status);

absl::StatusOr<EmbeddedFormat> FormatFromContentType(absl::string_view content_type);

absl::StatusOr<std::vector<Record>> ParseProduceBody(absl::string_view body, EmbeddedFormat format,
                                                     const std::string& topic, int max_records);

// One v2 record (an element of "records", or one line of an NDJSON bulk body) into `out`
// (whose topic is already set). `text` is the record's source text, which `v` was parsed from:
// JSON keys and values are stored as it spells them. The error (FailedPrecondition) names the
// field, not the record.
absl::Status ReadV2Record(const boost::json::value& v, absl::string_view text,
                          EmbeddedFormat format, Record* out);

// What a v3 answer says of a key or a value: its type and its size in bytes.
struct V3Payload {
  const char* type = nullptr;  // "BINARY", "JSON", "STRING"; nullptr: absent (null)
  size_t size = 0;
};

// One v3 record into `out` (whose topic is already set); `text` as for ReadV2Record.
// `allow_id`: a records:batch entry, whose "id" (a string or a number) goes to `id`. Errors
// name the field: FailedPrecondition, the record is not of the v3 shape (headers included);
// InvalidArgument, a key's or value's data does not fit its type (bad base64); Unimplemented,
// it needs a schema registry (no "type", a schema field, AVRO/JSONSCHEMA/PROTOBUF).
absl::Status ReadV3Record(const boost::json::value& v, absl::string_view text, Record* out,
                          V3Payload* key, V3Payload* value, bool allow_id = false,
                          std::string* id = nullptr);

// The error_code of a v3 record's own result for ReadV3Record's error (or a partition not
// found): 400, 404, or 422 for a schema without a registry (Confluent's v3 error_code; its
// message says "Error: 42206 : Payload error. …").
int V3RecordErrorCode(const absl::Status& status);

// A record ReadV3Record refused for its key's or value's data (InvalidArgument, Unimplemented)
// is answered as Confluent answers it, in the record's own result within a 200; a record not
// of the v3 shape (FailedPrecondition) is a whole-request 400.
inline bool AnsweredInRecord(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsUnimplemented(status);
}

}  // namespace saltproxy
