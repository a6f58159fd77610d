#include "proxy/forward/control_topic_reader.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "consumer_properties.h"
#include "proxy/common/log.h"

namespace saltproxy {
namespace {

absl::Status ErrorFrom(rd_kafka_resp_err_t e, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", rd_kafka_err2str(e));
  if (e == RD_KAFKA_RESP_ERR__TIMED_OUT) return absl::DeadlineExceededError(message);
  if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
      e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
    return absl::NotFoundError(message);
  }
  return absl::UnavailableError(message);
}

}  // namespace

void ControlTopicReader::Destroy::operator()(rd_kafka_s* rk) const { rd_kafka_destroy(rk); }

absl::StatusOr<std::unique_ptr<ControlTopicReader>> ControlTopicReader::Create(
    const UpstreamConfig& config, absl::Time deadline) {
  std::map<std::string, std::string> settings = {
      {"bootstrap.servers", config.bootstrap_servers},
      {"client.id", "saltproxy-resume"},
      // Partitions are read by offset, never through a group: nothing is joined or committed.
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      // A range whose start was deleted meanwhile starts at the partition's first record.
      {"auto.offset.reset", "earliest"},
      {"allow.auto.create.topics", "false"},
      {"log_level", "4"},
  };
  for (const auto& [name, value] : config.librdkafka) {
    if (consumer_internal::IsConnectionProperty(name)) settings[name] = value;
  }
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          absl::StrCat("control topic reader: ", name, "=", value, ": ", err));
    }
  }
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int level, const char* fac,
                                    const char* buf) {
    LogEvent(level <= 3 ? LogLevel::kError : LogLevel::kWarn, "librdkafka",
             {{"client", "saltproxy-resume"}, {"facility", fac}, {"message", buf}});
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("control topic reader: ", err));
  }
  return std::unique_ptr<ControlTopicReader>(new ControlTopicReader(rk, deadline));
}

int ControlTopicReader::TimeoutMs() const {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline_ - absl::Now()), 1, 1 << 30));
}

absl::StatusOr<int64_t> ControlTopicReader::HighWatermark(const std::string& topic,
                                                          int32_t partition) {
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk_.get(), topic.c_str(), partition,
                                                           &low, &high, TimeoutMs());
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrorFrom(e, absl::StrCat("the end of ", topic, " partition ", partition));
  }
  return high;
}

absl::StatusOr<std::optional<std::string>> ControlTopicReader::LastValue(const std::string& topic,
                                                                       int32_t partition,
                                                                       std::string_view key,
                                                                       int64_t window) {
  // Whether the topic is there at all: a metadata answer says so at once, where the offsets of
  // a topic that does not exist would be waited for until the deadline.
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), topic.c_str(), nullptr);
  if (!rkt) return absl::InvalidArgumentError(absl::StrCat("invalid topic name: ", topic));
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk_.get(), 0, rkt, &md, TimeoutMs());
  rd_kafka_topic_destroy(rkt);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return ErrorFrom(e, absl::StrCat("metadata of ", topic));
  const bool exists = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                      partition < md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  if (!exists) return std::nullopt;

  int64_t low = 0, high = 0;
  e = rd_kafka_query_watermark_offsets(rk_.get(), topic.c_str(), partition, &low, &high,
                                       TimeoutMs());
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrorFrom(e, absl::StrCat("the offsets of ", topic, " partition ", partition));
  }
  window = std::max<int64_t>(window, 1);
  for (int64_t end = high; end > low; window *= 4) {
    const int64_t start = std::max(low, end - window);
    absl::StatusOr<Found> found = Scan(topic, partition, key, start, end);
    if (!found.ok()) return found.status();
    if (found->seen) return found->value;
    end = start;
  }
  return std::nullopt;
}

absl::StatusOr<ControlTopicReader::Found> ControlTopicReader::Scan(const std::string& topic,
                                                                   int32_t partition,
                                                                   std::string_view key,
                                                                   int64_t start, int64_t end) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), topic.c_str(), nullptr);
  if (!rkt) return absl::InvalidArgumentError(absl::StrCat("invalid topic name: ", topic));
  if (rd_kafka_consume_start(rkt, partition, start) == -1) {
    absl::Status failed = ErrorFrom(rd_kafka_last_error(), absl::StrCat("reading ", topic));
    rd_kafka_topic_destroy(rkt);
    return failed;
  }
  Found found;
  absl::Status status = absl::OkStatus();
  while (true) {
    if (absl::Now() >= deadline_) {
      status = absl::DeadlineExceededError(
          absl::StrCat("reading ", topic, " partition ", partition, " took too long"));
      break;
    }
    rd_kafka_message_t* m = rd_kafka_consume(rkt, partition, std::min(TimeoutMs(), 100));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      break;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      status = absl::UnavailableError(
          absl::StrCat("reading ", topic, " partition ", partition, ": ",
                       rd_kafka_message_errstr(m)));
      rd_kafka_message_destroy(m);
      break;
    }
    const int64_t offset = m->offset;
    if (offset < end) {
      ++records_read_;
      if (m->key && std::string_view(static_cast<const char*>(m->key), m->key_len) == key) {
        found.seen = true;
        // A tombstone (no value) removed the key's map: as if there were none.
        found.value = m->payload ? std::optional<std::string>(std::string(
                                       static_cast<const char*>(m->payload), m->len))
                                 : std::nullopt;
      }
    }
    rd_kafka_message_destroy(m);
    if (offset >= end - 1) break;
  }
  rd_kafka_consume_stop(rkt, partition);
  rd_kafka_topic_destroy(rkt);
  if (!status.ok()) return status;
  return found;
}

}  // namespace saltproxy
