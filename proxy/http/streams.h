// The two streaming produce endpoints' readers (see server.h's StreamHandler):
//
//  - NDJSON bulk (POST /bulk/topics/{topic}): one v2-shaped record a line in
//    ({"key":…,"value":…,"partition":…,"timestamp":…,"headers":[…]}), one result a line out
//    ({"partition":3,"offset":42} or {"error_code":…,"error":…}). A bad line gets its own error
//    line and the stream goes on: lines keep the framing.
//  - Confluent v3 streaming (POST /v3/clusters/{id}/topics/{topic}/records, chunked): v3 records
//    concatenated, one v3 result per record. Malformed JSON ends the stream (the framing is
//    lost) after an error result; an invalid record gets its error and the stream goes on.
//
// Each record goes to the RecordSink (the router) as it is read; a full upstream queue, or an
// upstream cluster slower than the load (RecordSink::Congested), makes the session retry the
// same record shortly (Consumed::retry) rather than fail it, reading no more meanwhile.
#pragma once

#include <memory>
#include <string>

#include "proxy/common/record.h"
#include "proxy/http/produce_request.h"
#include "proxy/http/server.h"

namespace saltproxy {

struct StreamTarget {
  RecordSink* sink = nullptr;
  std::string topic;
  int32_t partitions = 0;  // of `topic`, for the partition check
  bool routing = false;    // the client asked what the router did
};

std::unique_ptr<StreamHandler> MakeBulkStream(StreamTarget target, EmbeddedFormat format);
std::unique_ptr<StreamHandler> MakeV3Stream(StreamTarget target, std::string cluster_id);

}  // namespace saltproxy
