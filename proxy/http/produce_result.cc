#include "proxy/http/produce_result.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proxy/common/strings.h"

namespace saltproxy {
namespace {

constexpr absl::string_view kActions[] = {"passed", "client_partition", "salted", "rerouted"};

void AppendPayload(absl::string_view name, const V3Payload& p, std::string* out) {
  if (!p.type) return;
  absl::StrAppend(out, ",\"", name, "\":{\"type\":\"", p.type, "\",\"size\":", p.size, "}");
}

}  // namespace

bool Retriable(const absl::Status& status) {
  return absl::IsResourceExhausted(status) || absl::IsUnavailable(status) ||
         absl::IsDeadlineExceeded(status);
}

int V3DeliveryErrorCode(const absl::Status& status) {
  if (absl::IsNotFound(status)) return 404;
  if (absl::IsInvalidArgument(status)) return 413;
  return Retriable(status) ? 503 : 500;
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendRouting(const DeliveryReport& r, std::string* out) {
  absl::StrAppend(out, ",\"routing\":{\"action\":\"", kActions[static_cast<int>(r.action)],
                  "\",\"topic\":");
  AppendJsonString(r.topic, out);
  absl::StrAppend(out, ",\"partition\":", r.partition);
  if (r.salt >= 0) absl::StrAppend(out, ",\"salt\":", r.salt);
  if (r.epoch > 0) absl::StrAppend(out, ",\"epoch\":", r.epoch);
  out->push_back('}');
}

void AppendV2Offset(const DeliveryReport& r, bool routing, std::string* out) {
  if (r.status.ok()) {
    absl::StrAppend(out, "{\"partition\":", r.partition, ",\"offset\":", r.offset,
                    ",\"error_code\":null,\"error\":null");
    if (routing) AppendRouting(r, out);
  } else {
    const int code = absl::IsNotFound(r.status) ? 40402 : Retriable(r.status) ? 50003 : 50002;
    absl::StrAppend(out, "{\"partition\":null,\"offset\":null,\"error_code\":", code,
                    ",\"error\":");
    AppendJsonString(r.status.message(), out);
  }
  out->push_back('}');
}

void AppendV3Result(const DeliveryReport& r, const V3Echo& echo, bool routing,
                    absl::string_view id, std::string* out) {
  out->push_back('{');
  if (!id.empty()) {
    out->append("\"id\":");
    AppendJsonString(id, out);
    out->push_back(',');
  }
  if (!r.status.ok()) {
    const int code = V3DeliveryErrorCode(r.status);
    absl::StrAppend(out, "\"error_code\":", code, ",\"message\":");
    AppendJsonString(r.status.message(), out);
    out->push_back('}');
    return;
  }
  if (id.empty()) out->append("\"error_code\":200,");
  out->append("\"cluster_id\":");
  AppendJsonString(echo.cluster_id, out);
  out->append(",\"topic_name\":");
  AppendJsonString(echo.topic, out);
  absl::StrAppend(out, ",\"partition_id\":", r.partition, ",\"offset\":", r.offset);
  if (r.timestamp_ms >= 0) {
    absl::StrAppend(out, ",\"timestamp\":\"", Rfc3339(absl::FromUnixMillis(r.timestamp_ms)),
                    "\"");
  }
  AppendPayload("key", echo.key, out);
  AppendPayload("value", echo.value, out);
  if (routing) AppendRouting(r, out);
  out->push_back('}');
}

void AppendBulkResult(const DeliveryReport& r, bool routing, std::string* out) {
  if (r.status.ok()) {
    absl::StrAppend(out, "{\"partition\":", r.partition, ",\"offset\":", r.offset);
    if (routing) AppendRouting(r, out);
  } else {
    const int code = absl::IsNotFound(r.status) ? 40402 : Retriable(r.status) ? 50003 : 50002;
    absl::StrAppend(out, "{\"error_code\":", code, ",\"message\":");
    AppendJsonString(r.status.message(), out);
  }
  out->append("}\n");
}

}  // namespace saltproxy
