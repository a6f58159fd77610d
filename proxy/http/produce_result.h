// The answer for one delivered record, in the shape of each produce API. Written by hand (not
// through a JSON DOM) because it runs once per record on the delivery path.
//
//   std::string entry;
//   AppendV2Offset(report, /*routing=*/true, &entry);
//   // {"partition":3,"offset":42,"error_code":null,"error":null,"routing":{"action":"passed",…}}
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proxy/common/record.h"
#include "proxy/http/produce_request.h"

namespace saltproxy {

// True when a retry of the record may succeed (the queue was full, the cluster did not answer).
bool Retriable(const absl::Status& status);

// A v3 record's error_code (and a one-record request's HTTP status) for a delivery that
// failed: 404 no such partition, 413 larger than the cluster takes (InvalidArgument, the
// forwarder's word for Kafka's MESSAGE_TOO_LARGE, as Confluent's doc answers it), 503
// retriable, else 500.
int V3DeliveryErrorCode(const absl::Status& status);

// `s` as a JSON string literal, quotes included.
void AppendJsonString(absl::string_view s, std::string* out);

// ,"routing":{"action":"salted","topic":"clicks","partition":9,"salt":3,"epoch":12}
void AppendRouting(const DeliveryReport& report, std::string* out);

// Confluent v2: one entry of "offsets"; a failed record has error_code 50003 (retriable) or
// 50002, as Confluent REST Proxy answers, or 40402 (its record's partition is not there).
void AppendV2Offset(const DeliveryReport& report, bool routing, std::string* out);

// What a v3 answer repeats of the request: where it was sent, and the key and value sent.
struct V3Echo {
  absl::string_view cluster_id;
  absl::string_view topic;
  V3Payload key;
  V3Payload value;
};

// Confluent v3: {"error_code":200,"cluster_id":…,"topic_name":…,"partition_id":…,"offset":…,
// "timestamp":…,"key":{"type":…,"size":…},"value":{…}}, or {"error_code":…,"message":…} with
// V3DeliveryErrorCode.
// `id`: a records:batch entry's id, written first when not empty.
void AppendV3Result(const DeliveryReport& report, const V3Echo& echo, bool routing,
                    absl::string_view id, std::string* out);

// NDJSON bulk: {"partition":3,"offset":42} or {"error_code":…,"error":"…"} (40402 no such
// partition, 50003 retriable, 50002 not), and a newline.
void AppendBulkResult(const DeliveryReport& report, bool routing, std::string* out);

}  // namespace saltproxy
