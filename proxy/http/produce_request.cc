#include "proxy/http/produce_request.h"

#include <boost/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/common/strings.h"

namespace saltproxy {
namespace {

namespace json = boost::json;

absl::Status Invalid(size_t index, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("records[", index, "]: ", what));
}

// Reads a key or a value: null stays null; otherwise JSON text (json format) or base64 bytes.
absl::Status ReadPayload(const json::value& v, EmbeddedFormat format, size_t index,
                         absl::string_view field, std::optional<std::string>* out) {
  if (v.is_null()) {
    out->reset();
    return absl::OkStatus();
  }
  if (format == EmbeddedFormat::kJson) {
    *out = json::serialize(v);
    return absl::OkStatus();
  }
  if (!v.is_string()) {
    return Invalid(index, absl::StrCat(field, ": expected a base64 string or null"));
  }
  const json::string& s = v.get_string();
  std::string decoded;
  if (!absl::Base64Unescape(Sv(s), &decoded)) {
    return Invalid(index, absl::StrCat(field, ": not valid base64"));
  }
  *out = std::move(decoded);
  return absl::OkStatus();
}

absl::Status ReadHeaders(const json::value& v, size_t index, std::vector<RecordHeader>* out) {
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_array()) {
    return Invalid(index, "headers: expected a list of {\"key\":…,\"value\":base64}");
  }
  for (const json::value& h : v.get_array()) {
    const json::object* o = h.if_object();
    const json::value* key = o ? o->if_contains("key") : nullptr;
    if (!key || !key->is_string()) return Invalid(index, "headers: each needs a string \"key\"");
    RecordHeader header;
    header.key = std::string(key->get_string());
    if (const json::value* value = o->if_contains("value"); value && !value->is_null()) {
      if (!value->is_string()) return Invalid(index, "headers: \"value\" must be base64 or null");
      std::string decoded;
      if (!absl::Base64Unescape(Sv(value->get_string()), &decoded)) {
        return Invalid(index, "headers: \"value\" is not valid base64");
      }
      header.value = std::move(decoded);
    }
    out->push_back(std::move(header));
  }
  return absl::OkStatus();
}

}  // namespace

ProduceError ToProduceError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: return {400, 400};
    case absl::StatusCode::kFailedPrecondition: return {422, 422};
    case absl::StatusCode::kUnimplemented: return {415, 415};
    case absl::StatusCode::kOutOfRange: return {413, 413};
    case absl::StatusCode::kNotFound: return {404, 40401};
    case absl::StatusCode::kResourceExhausted: return {429, 429};
    case absl::StatusCode::kUnavailable: return {503, 50301};
    default: return {500, 500};
  }
}

absl::StatusOr<EmbeddedFormat> FormatFromContentType(absl::string_view content_type) {
  std::string type = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(absl::string_view(content_type).substr(0, content_type.find(';'))));
  if (type == "application/vnd.kafka.json.v2+json" || type == "application/json") {
    return EmbeddedFormat::kJson;
  }
  if (type == "application/vnd.kafka.binary.v2+json") return EmbeddedFormat::kBinary;
  if (type == "application/vnd.kafka.avro.v2+json" ||
      type == "application/vnd.kafka.protobuf.v2+json" ||
      type == "application/vnd.kafka.jsonschema.v2+json") {
    return absl::UnimplementedError(absl::StrCat(
        "content type ", type,
        " needs a schema registry, which saltproxy does not use; send "
        "application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json"));
  }
  return absl::UnimplementedError(absl::StrCat(
      "unsupported content type \"", type,
      "\": expected application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json"));
}

absl::StatusOr<std::vector<Record>> ParseProduceBody(absl::string_view body, EmbeddedFormat format,
                                                     const std::string& topic, int max_records) {
  boost::system::error_code ec;
  json::value root = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", ec.message()));
  const json::object* object = root.if_object();
  if (!object) return absl::FailedPreconditionError("expected a JSON object with \"records\"");
  for (const auto& field : *object) {
    if (Sv(field.key()) != "records" && Sv(field.key()) != "key_schema" &&
        Sv(field.key()) != "value_schema" && Sv(field.key()) != "key_schema_id" &&
        Sv(field.key()) != "value_schema_id") {
      return absl::FailedPreconditionError(
          absl::StrCat("unrecognized field \"", Sv(field.key()), "\""));
    }
  }
  const json::value* records_value = object->if_contains("records");
  if (!records_value || !records_value->is_array()) {
    return absl::FailedPreconditionError("expected \"records\": a list of records");
  }
  const json::array& array = records_value->get_array();
  if (array.empty()) return absl::FailedPreconditionError("\"records\" is empty");
  if (array.size() > static_cast<size_t>(max_records)) {
    return absl::OutOfRangeError(absl::StrCat(array.size(), " records is more than the limit of ",
                                              max_records,
                                              " per request (http.max_records_per_request)"));
  }
  std::vector<Record> records;
  records.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const json::object* r = array[i].if_object();
    if (!r) return Invalid(i, "expected an object with \"key\" and \"value\"");
    Record record;
    record.topic = topic;
    for (const auto& field : *r) {
      absl::string_view name = Sv(field.key());
      const json::value& v = field.value();
      if (name == "key") {
        if (absl::Status s = ReadPayload(v, format, i, "key", &record.key); !s.ok()) return s;
      } else if (name == "value") {
        if (absl::Status s = ReadPayload(v, format, i, "value", &record.value); !s.ok()) return s;
      } else if (name == "partition") {
        if (v.is_null()) continue;
        if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > INT32_MAX) {
          return Invalid(i, "partition: expected a non-negative integer");
        }
        record.partition = static_cast<int32_t>(v.get_int64());
      } else if (name == "timestamp") {
        if (v.is_null()) continue;
        if (!v.is_int64() || v.get_int64() < 0) {
          return Invalid(i, "timestamp: expected milliseconds since the epoch");
        }
        record.timestamp_ms = v.get_int64();
      } else if (name == "headers") {
        if (absl::Status s = ReadHeaders(v, i, &record.headers); !s.ok()) return s;
      } else {
        return Invalid(i, absl::StrCat("unrecognized field \"", name, "\""));
      }
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace saltproxy
