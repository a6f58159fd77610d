#include "proxy/http/streams.h"

#include <boost/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "proxy/http/produce_result.h"

namespace saltproxy {
namespace {

namespace json = boost::json;

// Parses one JSON value at a time into a reused arena: no allocation per record once warm.
class ValueParser {
 public:
  ValueParser() : resource_(arena_, sizeof(arena_)) {}

  // Parses a complete value at the front of `text`; `consumed` says how far it went.
  // json::error::incomplete when `text` ends inside the value.
  json::value Parse(absl::string_view text, size_t* consumed, boost::system::error_code& ec) {
    resource_.release();
    parser_.reset(json::storage_ptr(&resource_));
    *consumed = parser_.write_some(text.data(), text.size(), ec);
    if (ec) return nullptr;
    return parser_.release();
  }

 private:
  alignas(16) unsigned char arena_[16 << 10];
  json::monotonic_resource resource_;
  json::parser parser_;
};

// Validates the partition and hands the record to the sink. Returns false when the upstream
// queue is full, or the upstream cluster slower than the load (RecordSink::Congested): nothing
// was queued, and the caller retries later, reading no more of the stream meanwhile. Otherwise
// `on_done` runs once with the record's report, now for a record that cannot be produced.
template <typename OnDone>
bool Submit(const StreamTarget& target, Record&& record, OnDone on_done) {
  if (target.sink->Congested()) return false;
  if (record.partition >= target.partitions) {
    DeliveryReport failed;
    failed.status = absl::NotFoundError(absl::StrCat("partition not found: topic ", target.topic,
                                                     " has ", target.partitions, " partitions"));
    on_done(failed);
    return true;
  }
  // The sink drops its callback on an error; the copy we keep answers then.
  absl::Status queued = target.sink->Submit(std::move(record), on_done);
  if (absl::IsResourceExhausted(queued)) return false;
  if (!queued.ok()) {
    DeliveryReport failed;
    failed.status = queued;
    on_done(failed);
  }
  return true;
}

absl::string_view StripLine(absl::string_view line) {
  return absl::StripAsciiWhitespace(line);
}

class BulkStream : public StreamHandler {
 public:
  BulkStream(StreamTarget target, EmbeddedFormat format)
      : target_(std::move(target)), format_(format) {}

  absl::string_view content_type() const override { return "application/x-ndjson"; }

  Consumed Consume(absl::string_view data, bool last, int max_records, uint64_t first_slot,
                   const std::shared_ptr<StreamResults>& results) override {
    Consumed c;
    size_t pos = 0;
    while (c.records < max_records && pos < data.size()) {
      const size_t nl = data.find('\n', pos);
      if (nl == absl::string_view::npos && !last) break;
      const size_t next = nl == absl::string_view::npos ? data.size() : nl + 1;
      absl::string_view line = StripLine(data.substr(pos, next - pos));
      ++line_;
      if (line.empty()) {
        pos = next;
        c.bytes = pos;
        continue;
      }
      const uint64_t slot = first_slot + c.records;
      size_t used = 0;
      boost::system::error_code ec;
      json::value v = parser_.Parse(line, &used, ec);
      if (!ec && used != line.size()) ec = json::error::extra_data;
      Record record;
      absl::Status read;
      if (ec) {
        read = absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", ec.message()));
      } else {
        record.topic = target_.topic;
        read = ReadV2Record(v, line, format_, &record);
      }
      if (!read.ok()) {
        results->Complete(slot, JsonErrorLine(absl::IsInvalidArgument(read) ? 400 : 422,
                                              absl::StrCat("line ", line_, ": ", read.message())));
      } else if (!Submit(target_, std::move(record),
                         [results, slot, routing = target_.routing](const DeliveryReport& r) {
                           std::string text;
                           text.reserve(64);  // one allocation: a result line is ~35 bytes
                           AppendBulkResult(r, routing, &text);
                           results->Complete(slot, std::move(text));
                         })) {
        --line_;  // read again on the retry
        c.retry = true;
        break;
      }
      ++c.records;
      pos = next;
      c.bytes = pos;
    }
    return c;
  }

 private:
  const StreamTarget target_;
  const EmbeddedFormat format_;
  ValueParser parser_;
  uint64_t line_ = 0;
};

class V3Stream : public StreamHandler {
 public:
  V3Stream(StreamTarget target, std::string cluster_id)
      : target_(std::move(target)),
        names_(std::make_shared<const Names>(Names{std::move(cluster_id), target_.topic})) {}

  absl::string_view content_type() const override { return "application/json"; }

  Consumed Consume(absl::string_view data, bool last, int max_records, uint64_t first_slot,
                   const std::shared_ptr<StreamResults>& results) override {
    Consumed c;
    size_t pos = 0;
    while (c.records < max_records) {
      while (pos < data.size() && absl::ascii_isspace(static_cast<unsigned char>(data[pos]))) {
        ++pos;
      }
      c.bytes = pos;
      if (pos == data.size()) break;
      const uint64_t slot = first_slot + c.records;
      size_t used = 0;
      boost::system::error_code ec;
      json::value v = parser_.Parse(data.substr(pos), &used, ec);
      if (ec == json::error::incomplete && !last) break;
      if (ec) {
        // Without a value's end there is no next record to find: end the stream here.
        results->Complete(slot, JsonErrorLine(400, absl::StrCat("malformed JSON: ", ec.message(),
                                                                "; the stream ends here")));
        ++c.records;
        c.bytes = data.size();
        c.stop = true;
        break;
      }
      Record record;
      record.topic = target_.topic;
      V3Payload key, value;
      absl::Status read = ReadV3Record(v, data.substr(pos, used), &record, &key, &value);
      if (!read.ok()) {
        results->Complete(slot, JsonErrorLine(V3RecordErrorCode(read), read.message()));
      } else if (!Submit(target_, std::move(record),
                         [results, slot, names = names_, key, value,
                          routing = target_.routing](const DeliveryReport& r) {
                           std::string text;
                           text.reserve(256);  // one allocation, not one per doubling
                           AppendV3Result(r, V3Echo{names->cluster_id, names->topic, key, value},
                                          routing, "", &text);
                           text.push_back('\n');
                           results->Complete(slot, std::move(text));
                         })) {
        c.retry = true;
        break;
      }
      ++c.records;
      pos += used;
      c.bytes = pos;
    }
    return c;
  }

 private:
  // What every result repeats; shared with the delivery callbacks, which may outlive the stream
  // (a client that hangs up does not take back the records it sent).
  struct Names {
    std::string cluster_id;
    std::string topic;
  };
  const StreamTarget target_;
  const std::shared_ptr<const Names> names_;
  ValueParser parser_;
};

}  // namespace

std::unique_ptr<StreamHandler> MakeBulkStream(StreamTarget target, EmbeddedFormat format) {
  return std::make_unique<BulkStream>(std::move(target), format);
}

std::unique_ptr<StreamHandler> MakeV3Stream(StreamTarget target, std::string cluster_id) {
  return std::make_unique<V3Stream>(std::move(target), std::move(cluster_id));
}

}  // namespace saltproxy
