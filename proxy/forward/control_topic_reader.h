// What a restarting proxy reads from the cluster before it serves: the last salt map it
// published to the control topic, and the high watermarks of the partitions its layouts used
// (proxy/salting/resume.h). A short-lived librdkafka consumer with no group, built from the
// upstream settings (bootstrap servers, and those of upstream.librdkafka that say how to reach
// and log in to the cluster); every call is bounded by the deadline given at creation.
//
//   ASSIGN_OR_RETURN(auto reader, ControlTopicReader::Create(config.upstream, deadline));
//   ASSIGN_OR_RETURN(std::optional<std::string> map,
//                    reader->LastValue("_saltproxy_saltmap", 0, "saltmap/proxy-1"));
//   ASSIGN_OR_RETURN(int64_t end, reader->HighWatermark("clicks", 3));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/config/config.h"

struct rd_kafka_s;

namespace saltproxy {

class ControlTopicReader {
 public:
  // InvalidArgument when librdkafka refuses the settings.
  static absl::StatusOr<std::unique_ptr<ControlTopicReader>> Create(const UpstreamConfig& config,
                                                                    absl::Time deadline);
  ControlTopicReader(const ControlTopicReader&) = delete;
  ControlTopicReader& operator=(const ControlTopicReader&) = delete;

  // The value of the last record whose key is `key` in `partition` of `topic`; nullopt when
  // there is none, or no such topic. The topic may hold many records (every map of every
  // instance, compaction or not): it is read from the end backwards, `window` records first,
  // then four times more before that, and so on, each range only up to where the one after it
  // began. Unavailable or DeadlineExceeded when the cluster does not answer in time.
  absl::StatusOr<std::optional<std::string>> LastValue(const std::string& topic, int32_t partition,
                                                       std::string_view key, int64_t window = 256);

  // The offset the next record of `partition` of `topic` will get.
  absl::StatusOr<int64_t> HighWatermark(const std::string& topic, int32_t partition);

  // Records read so far by LastValue (for tests: the backwards search reads little).
  int64_t records_read() const { return records_read_; }

 private:
  struct Destroy {
    void operator()(rd_kafka_s* rk) const;
  };
  ControlTopicReader(rd_kafka_s* rk, absl::Time deadline) : rk_(rk), deadline_(deadline) {}
  int TimeoutMs() const;
  struct Found {
    bool seen = false;                 // a record with the key is in the range
    std::optional<std::string> value;  // the last one's value (none: a tombstone)
  };
  // The last record of `key` among those of [start, end); stops at `end` or the partition's
  // end, whichever comes first.
  absl::StatusOr<Found> Scan(const std::string& topic, int32_t partition, std::string_view key,
                             int64_t start, int64_t end);

  std::unique_ptr<rd_kafka_s, Destroy> rk_;
  absl::Time deadline_;
  int64_t records_read_ = 0;
};

}  // namespace saltproxy
