#include "proxy/http/produce_request.h"

#include <boost/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "proxy/common/status_macros.h"
#include "proxy/common/strings.h"
#include "proxy/http/json_text.h"

namespace saltproxy {
namespace {

namespace json = boost::json;

absl::Status Invalid(absl::string_view what) { return absl::FailedPreconditionError(what); }

// What Confluent's v3 says of a key or value that needs a schema registry (before saltproxy's own
// words): its v3 error_code is 422, the 42206 is in the message.
constexpr char kNeedsSchemaRegistry[] =
    "Error: 42206 : Payload error. Schema Registry must be configured when using schemas. ";

// Base64 as Confluent's v3 reads header values (Jackson's default variant): padded to a
// multiple of four, nothing but the alphabet and trailing '='. absl::Base64Unescape alone takes
// "abc".
bool StrictBase64(absl::string_view s, std::string* out) {
  if (s.size() % 4 != 0) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool padding = c == '=' && i + 2 >= s.size() && (i + 1 == s.size() || s[i + 1] == '=');
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/' && !padding) {
      return false;
    }
  }
  return absl::Base64Unescape(s, out);
}

// Base64 as Confluent's v3 reads BINARY data (Guava's BaseEncoding.base64()): trailing '='
// optional, so a length of 2 or 3 past a multiple of four is whole, 1 is not; nothing but the
// alphabet.
bool DataBase64(absl::string_view s, std::string* out) {
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  if (s.size() % 4 == 1) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  return absl::Base64Unescape(s, out);
}

// The JSON text of member `field` of `object_text`, as the client wrote it but for whitespace
// (see json_text.h for why not json::serialize).
absl::Status StoreJsonText(absl::string_view object_text, absl::string_view field,
                           std::optional<std::string>* out) {
  absl::StatusOr<absl::string_view> text = MemberText(object_text, field);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  *out = CompactJson(*text);
  return absl::OkStatus();
}

// Reads a key or a value: null stays null; otherwise JSON text (json format) or base64 bytes.
// `record_text`: the source text of the record that holds it.
absl::Status ReadPayload(const json::value& v, absl::string_view record_text,
                         EmbeddedFormat format, absl::string_view field,
                         std::optional<std::string>* out) {
  if (v.is_null()) {
    out->reset();
    return absl::OkStatus();
  }
  if (format == EmbeddedFormat::kJson) return StoreJsonText(record_text, field, out);
  if (!v.is_string()) {
    return Invalid(absl::StrCat(field, ": expected a base64 string or null"));
  }
  const json::string& s = v.get_string();
  std::string decoded;
  if (!absl::Base64Unescape(Sv(s), &decoded)) {
    return Invalid(absl::StrCat(field, ": not valid base64"));
  }
  *out = std::move(decoded);
  return absl::OkStatus();
}

// v2 (Strimzi) names a header's name "key", v3 "name"; values are base64 or null. v3's are
// strict (StrictBase64, and not empty: the doc's own example of a 400 is a header value "").
absl::Status ReadHeaders(const json::value& v, absl::string_view name_field,
                         std::vector<RecordHeader>* out) {
  const bool strict = name_field == "name";
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_array()) {
    return Invalid(absl::StrCat("headers: expected a list of {\"", name_field,
                                "\":…,\"value\":base64}"));
  }
  for (const json::value& h : v.get_array()) {
    const json::object* o = h.if_object();
    const json::value* key = o ? o->if_contains(json::string_view(name_field.data(),
                                                                  name_field.size()))
                               : nullptr;
    if (!key || !key->is_string()) {
      return Invalid(absl::StrCat("headers: each needs a string \"", name_field, "\""));
    }
    RecordHeader header;
    header.key = std::string(key->get_string());
    if (const json::value* value = o->if_contains("value"); value && !value->is_null()) {
      if (!value->is_string()) return Invalid("headers: \"value\" must be base64 or null");
      std::string decoded;
      const absl::string_view text = Sv(value->get_string());
      if (strict ? (text.empty() || !StrictBase64(text, &decoded))
                 : !absl::Base64Unescape(text, &decoded)) {
        return Invalid(absl::StrCat("headers: \"value\" is not valid base64: \"",
                                    text.substr(0, 64), "\""));
      }
      header.value = std::move(decoded);
    }
    out->push_back(std::move(header));
  }
  return absl::OkStatus();
}

}  // namespace

int V3RecordErrorCode(const absl::Status& status) {
  // v3's error_code is an HTTP status; Confluent's message carries the 42206.
  if (absl::IsUnimplemented(status)) return 422;
  if (absl::IsNotFound(status)) return 404;
  return 400;
}

namespace {

// The Confluent error_code a status carries, when it is not the HTTP status.
constexpr char kErrorCodeUrl[] = "saltproxy/error_code";

absl::Status WithErrorCode(absl::Status status, int error_code) {
  status.SetPayload(kErrorCodeUrl, absl::Cord(absl::StrCat(error_code)));
  return status;
}

// Whether `schema` could be a schema of `format` (without a registry to ask): Avro's is JSON, a
// type name, an object with "type" or a union (array); JSON Schema's an object or a boolean;
// a Protobuf schema is .proto text, which is only checked to be there.
bool PlausibleSchema(const json::value& schema, EmbeddedFormat format) {
  if (!schema.is_string()) return false;
  const json::string& text = schema.get_string();
  if (format == EmbeddedFormat::kProtobuf) {
    return !absl::StripAsciiWhitespace(Sv(text)).empty();
  }
  boost::system::error_code ec;
  json::value parsed = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return false;
  if (format == EmbeddedFormat::kJsonSchema) return parsed.is_object() || parsed.is_bool();
  if (parsed.is_string()) return !parsed.get_string().empty();
  if (parsed.is_object()) return parsed.get_object().contains("type");
  return parsed.is_array();
}

// A v2 request of a schema format, in the order Confluent's v2 checks it: 42205 a key or value
// schema that is not one, 42201 keys without key_schema(_id), 42202 values without
// value_schema(_id); a request that passes all three needs the registry itself (42206, as
// Confluent REST Proxy answers without one).
absl::Status SchemaFormatError(const json::object& body, const json::array& records,
                               EmbeddedFormat format) {
  const char* name = format == EmbeddedFormat::kAvro         ? "avro"
                     : format == EmbeddedFormat::kJsonSchema ? "jsonschema"
                                                             : "protobuf";
  for (const char* field : {"key_schema", "value_schema"}) {
    const json::value* schema = body.if_contains(field);
    if (schema && !schema->is_null() && !PlausibleSchema(*schema, format)) {
      return WithErrorCode(
          absl::FailedPreconditionError(absl::StrCat(
              "Invalid schema: ", field, " is not a ", name, " schema (a string holding one)")),
          42205);
    }
  }
  auto has = [&](const char* field) {
    const json::value* v = body.if_contains(field);
    return v && !v->is_null();
  };
  auto any_record_has = [&](const char* field) {
    for (const json::value& r : records) {
      const json::object* o = r.if_object();
      const json::value* v = o ? o->if_contains(field) : nullptr;
      if (v && !v->is_null()) return true;
    }
    return false;
  };
  if (any_record_has("key") && !has("key_schema") && !has("key_schema_id")) {
    return WithErrorCode(absl::FailedPreconditionError(absl::StrCat(
                             "Request includes keys and uses the ", name,
                             " format, which requires schemas, but has no key_schema or "
                             "key_schema_id")),
                         42201);
  }
  if (any_record_has("value") && !has("value_schema") && !has("value_schema_id")) {
    return WithErrorCode(absl::FailedPreconditionError(absl::StrCat(
                             "Request includes values and uses the ", name,
                             " format, which requires schemas, but has no value_schema or "
                             "value_schema_id")),
                         42202);
  }
  return WithErrorCode(
      absl::FailedPreconditionError(absl::StrCat(
          "Payload error. The ", name, " format needs a schema registry, which saltproxy does "
          "not use; send application/vnd.kafka.json.v2+json or "
          "application/vnd.kafka.binary.v2+json")),
      42206);
}

}  // namespace

ProduceError ToProduceError(const absl::Status& status) {
  if (absl::optional<absl::Cord> code = status.GetPayload(kErrorCodeUrl)) {
    int error_code = 0;
    if (absl::SimpleAtoi(std::string(*code), &error_code)) {
      return {ToProduceError(absl::Status(status.code(), "")).http_status, error_code};
    }
  }
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
  // Confluent's API reference (Content Types): application/vnd.kafka[.format][.version]+json;
  // "less specific content types are permitted", application/json and application/octet-stream
  // among them, and "if the embedded format is omitted, binary is assumed". No content type
  // at all is read the same way.
  if (type.empty() || type == "application/json" || type == "application/octet-stream") {
    return EmbeddedFormat::kBinary;
  }
  constexpr absl::string_view kPrefix = "application/vnd.kafka";
  constexpr absl::string_view kSuffix = "+json";
  absl::string_view format = type;
  if (absl::ConsumePrefix(&format, kPrefix) && absl::ConsumeSuffix(&format, kSuffix)) {
    absl::ConsumeSuffix(&format, ".v2");
    if (format.empty() || format == ".binary") return EmbeddedFormat::kBinary;
    if (format == ".json") return EmbeddedFormat::kJson;
    if (format == ".avro") return EmbeddedFormat::kAvro;
    if (format == ".jsonschema") return EmbeddedFormat::kJsonSchema;
    if (format == ".protobuf") return EmbeddedFormat::kProtobuf;
  }
  return absl::UnimplementedError(absl::StrCat(
      "unsupported content type \"", type,
      "\": expected application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json"));
}

absl::Status ReadV2Record(const json::value& value, absl::string_view text, EmbeddedFormat format,
                          Record* out) {
  const json::object* r = value.if_object();
  if (!r) return absl::FailedPreconditionError("expected an object with \"key\" and \"value\"");
  Record& record = *out;
  for (const auto& field : *r) {
    absl::string_view name = Sv(field.key());
    const json::value& v = field.value();
    if (name == "key") {
      RETURN_IF_ERROR(ReadPayload(v, text, format, "key", &record.key));
    } else if (name == "value") {
      RETURN_IF_ERROR(ReadPayload(v, text, format, "value", &record.value));
    } else if (name == "partition") {
      if (v.is_null()) continue;
      if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > INT32_MAX) {
        return absl::FailedPreconditionError("partition: expected a non-negative integer");
      }
      record.partition = static_cast<int32_t>(v.get_int64());
    } else if (name == "timestamp") {
      if (v.is_null()) continue;
      if (!v.is_int64() || v.get_int64() < 0) {
        return absl::FailedPreconditionError("timestamp: expected milliseconds since the epoch");
      }
      record.timestamp_ms = v.get_int64();
    } else if (name == "headers") {
      RETURN_IF_ERROR(ReadHeaders(v, "key", &record.headers));
    } else {
      return absl::FailedPreconditionError(absl::StrCat("unrecognized field \"", name, "\""));
    }
  }
  return absl::OkStatus();
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
  if (format != EmbeddedFormat::kJson && format != EmbeddedFormat::kBinary) {
    return SchemaFormatError(*object, array, format);
  }
  absl::StatusOr<absl::string_view> records_text = MemberText(body, "records");
  if (!records_text.ok()) return absl::InvalidArgumentError(records_text.status().message());
  absl::StatusOr<std::vector<absl::string_view>> texts = ElementTexts(*records_text);
  if (!texts.ok() || texts->size() != array.size()) {
    return absl::InvalidArgumentError("malformed JSON: \"records\" could not be read");
  }
  std::vector<Record> records;
  records.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    Record record;
    record.topic = topic;
    if (absl::Status s = ReadV2Record(array[i], (*texts)[i], format, &record); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("records[", i, "]: ", s.message()));
    }
    records.push_back(std::move(record));
  }
  return records;
}

namespace {

// {"type":"BINARY"|"JSON"|"STRING","data":…}; a null or absent payload is a null key or value.
// `text`: the payload's source text.
absl::Status ReadV3Payload(const json::value& v, absl::string_view text, absl::string_view field,
                           std::optional<std::string>* out, V3Payload* info) {
  out->reset();
  *info = V3Payload{};
  if (v.is_null()) return absl::OkStatus();
  const json::object* o = v.if_object();
  if (!o) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ": expected {\"type\":\"BINARY\"|\"JSON\"|\"STRING\",\"data\":…}"));
  }
  absl::string_view type;  // none: the topic's schema, from a schema registry (Confluent's doc)
  const json::value* data = nullptr;
  for (const auto& f : *o) {
    absl::string_view name = Sv(f.key());
    if (name == "type") {
      if (!f.value().is_string()) {
        return absl::FailedPreconditionError(absl::StrCat(field, ".type: expected a string"));
      }
      type = Sv(f.value().get_string());
    } else if (name == "data") {
      data = &f.value();
    } else if (name == "schema_id" || name == "schema_version" || name == "subject" ||
               name == "subject_name_strategy" || name == "schema") {
      return absl::UnimplementedError(absl::StrCat(
          kNeedsSchemaRegistry, field, ".", name,
          ": schemas need a schema registry, which saltproxy does not use; "
          "send \"type\":\"BINARY\", \"JSON\" or \"STRING\""));
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": unrecognized field \"", name, "\""));
    }
  }
  if (type.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        kNeedsSchemaRegistry, field,
        ": no \"type\": Confluent REST Proxy then serialises with the topic's schema "
        "from a schema registry, which saltproxy does not use; send \"type\":\"BINARY\", "
        "\"JSON\" or \"STRING\""));
  }
  if (type == "BINARY") {
    info->type = "BINARY";
    if (!data || data->is_null()) return absl::OkStatus();
    std::string decoded;
    if (!data->is_string() || !DataBase64(Sv(data->get_string()), &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".data: expected base64"));
    }
    *out = std::move(decoded);
  } else if (type == "JSON") {
    info->type = "JSON";
    if (!data || data->is_null()) return absl::OkStatus();
    RETURN_IF_ERROR(StoreJsonText(text, "data", out));
  } else if (type == "STRING") {
    info->type = "STRING";
    if (!data || data->is_null()) return absl::OkStatus();
    if (!data->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".data: expected a string"));
    }
    *out = std::string(Sv(data->get_string()));
  } else if (type == "AVRO" || type == "PROTOBUF" || type == "JSONSCHEMA") {
    return absl::UnimplementedError(absl::StrCat(
        kNeedsSchemaRegistry, field, ".type ", type,
        " needs a schema registry, which saltproxy does not use; "
        "send \"type\":\"BINARY\", \"JSON\" or \"STRING\""));
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ".type: expected BINARY, JSON or STRING, got \"", type, "\""));
  }
  info->size = (*out)->size();
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadV3Record(const json::value& value, absl::string_view text, Record* out,
                          V3Payload* key, V3Payload* val, bool allow_id, std::string* id) {
  const json::object* r = value.if_object();
  if (!r) return absl::FailedPreconditionError("expected a JSON object (one record)");
  Record& record = *out;
  *key = V3Payload{};
  *val = V3Payload{};
  for (const auto& field : *r) {
    absl::string_view name = Sv(field.key());
    const json::value& v = field.value();
    if (name == "key" || name == "value") {
      absl::string_view payload_text;
      if (!v.is_null()) {
        absl::StatusOr<absl::string_view> t = MemberText(text, name);
        if (!t.ok()) return absl::InvalidArgumentError(t.status().message());
        payload_text = *t;
      }
      if (name == "key") {
        RETURN_IF_ERROR(ReadV3Payload(v, payload_text, "key", &record.key, key));
      } else {
        RETURN_IF_ERROR(ReadV3Payload(v, payload_text, "value", &record.value, val));
      }
    } else if (name == "partition_id") {
      if (v.is_null()) continue;
      if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > INT32_MAX) {
        return absl::FailedPreconditionError("partition_id: expected a non-negative integer");
      }
      record.partition = static_cast<int32_t>(v.get_int64());
    } else if (name == "timestamp") {
      if (v.is_null()) continue;
      absl::Time t;
      std::string error;
      if (!v.is_string() ||
          !absl::ParseTime(absl::RFC3339_full, Sv(v.get_string()), &t, &error) ||
          t < absl::UnixEpoch()) {
        return absl::FailedPreconditionError(
            "timestamp: expected an RFC 3339 time such as 2026-11-24T21:30:00.123Z");
      }
      record.timestamp_ms = absl::ToUnixMillis(t);
    } else if (name == "headers") {
      RETURN_IF_ERROR(ReadHeaders(v, "name", &record.headers));
    } else if (name == "id" && allow_id) {
      if (v.is_string() && !v.get_string().empty()) {
        *id = std::string(Sv(v.get_string()));
      } else if (v.is_int64()) {
        *id = absl::StrCat(v.get_int64());
      } else {
        return absl::FailedPreconditionError("id: expected a non-empty string");
      }
    } else {
      return absl::FailedPreconditionError(absl::StrCat("unrecognized field \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace saltproxy
