#include "saltproxy/consumer.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <limits>
#include <random>
#include <set>
#include <utility>

#include "consumer_properties.h"

namespace saltproxy {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxErrorsKept = 1000;
constexpr int kMaxRecordsPerPoll = 20000;
// Where a partition that has shown no record yet stands in time: before every other.
constexpr int64_t kNever = std::numeric_limits<int64_t>::min();

std::string RandomSuffix() {
  std::random_device rd;
  return std::to_string(rd()) + std::to_string(rd());
}

// A topic name as a librdkafka subscription regex (names are [a-zA-Z0-9._-]).
std::string ExactTopicRegex(const std::string& topic) {
  std::string regex = "^";
  for (char c : topic) {
    if (c == '.') regex += '\\';
    regex += c;
  }
  return regex + "$";
}

ConsumerRecord FromMessage(const rd_kafka_message_t* m) {
  ConsumerRecord r;
  r.topic = rd_kafka_topic_name(m->rkt);
  r.partition = m->partition;
  r.offset = m->offset;
  if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) r.value = std::string(static_cast<const char*>(m->payload), m->len);
  rd_kafka_timestamp_type_t type;
  r.timestamp_ms = rd_kafka_message_timestamp(m, &type);
  rd_kafka_headers_t* headers = nullptr;
  // rd_kafka_message_headers wants a non-const message; it only reads (and caches) them.
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(m), &headers) ==
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      r.headers.emplace_back(name, value ? std::string(static_cast<const char*>(value), size)
                                         : std::string());
    }
  }
  return r;
}

// Where a partition reads from to start at `since_ms`: its first record written since, or,
// with none yet, its end as it was before that was asked, so that nothing written meanwhile is
// skipped. An error when the cluster cannot answer for the partition yet.
rd_kafka_resp_err_t OffsetSince(rd_kafka_t* rk, const std::string& topic, int32_t partition,
                                int64_t since_ms, int64_t* offset) {
  int64_t low = 0, end = 0;
  rd_kafka_resp_err_t e =
      rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &end, 5000);
  if (e) return e;
  rd_kafka_topic_partition_list_t* one = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(one, topic.c_str(), partition)->offset = since_ms;
  e = rd_kafka_offsets_for_times(rk, one, 5000);
  if (!e) e = one->elems[0].err;
  if (!e) *offset = one->elems[0].offset >= 0 ? one->elems[0].offset : end;  // -1: none since
  rd_kafka_topic_partition_list_destroy(one);
  return e;
}

}  // namespace

struct SaltConsumer::Clients {
  rd_kafka_t* data = nullptr;
  rd_kafka_t* control = nullptr;
  bool control_assigned = false;
  std::set<std::pair<std::string, int32_t>> assigned;  // kOrdered
  // kOrdered: each assigned partition is read from a queue of its own, so that the reader
  // chooses which to read next; and where its reading stands in time.
  struct Reading {
    rd_kafka_queue_t* queue = nullptr;
    rd_kafka_message_t* head = nullptr;  // its next record, taken from the queue, not read yet
    int64_t last_timestamp_ms = -1;      // of the last record read; -1: none yet
    bool at_end = false;                 // read up to its end (nothing more to read now)
    // Where it stands: its next record's time, else its last one's (kNever: none yet).
    int64_t At() const {
      if (head) {
        rd_kafka_timestamp_type_t type;
        return rd_kafka_message_timestamp(head, &type);
      }
      return last_timestamp_ms < 0 ? kNever : last_timestamp_ms;
    }
  };
  std::map<std::pair<std::string, int32_t>, Reading> reading;

  void CloseQueues() {
    for (auto& [p, r] : reading) {
      if (r.head) rd_kafka_message_destroy(r.head);
      if (r.queue) rd_kafka_queue_destroy(r.queue);
      r.head = nullptr;
      r.queue = nullptr;
    }
  }
  // kOrdered from the end: when the reader started, and whether its first look at the
  // partitions is done (those found later are read from that time on).
  int64_t started_ms = 0;
  bool first_assignment_done = false;

  ~Clients() {
    CloseQueues();
    if (data) rd_kafka_destroy(data);
    if (control) rd_kafka_destroy(control);
  }
};

SaltConsumer::SaltConsumer(SaltConsumerOptions options)
    : options_(std::move(options)), reassembler_(&map_, options_.reassembly) {}

SaltConsumer::~SaltConsumer() { Close(); }

std::unique_ptr<SaltConsumer> SaltConsumer::Create(SaltConsumerOptions options,
                                                   std::string* error) {
  if (options.bootstrap_servers.empty()) {
    *error = "bootstrap_servers is empty";
    return nullptr;
  }
  if (options.topic.empty()) {
    *error = "topic is empty";
    return nullptr;
  }
  if (options.mode == Mode::kUnordered && options.group_id.empty()) {
    *error = "the unordered mode needs a group_id (its members share the partitions)";
    return nullptr;
  }
  if (options.reassembly.key_ranges < 1 || options.reassembly.key_range < 0 ||
      options.reassembly.key_range >= options.reassembly.key_ranges) {
    *error = "key_range must be in [0, key_ranges)";
    return nullptr;
  }
  if (options.hot_topic.empty()) options.hot_topic = options.topic + ".hot";
  std::unique_ptr<SaltConsumer> consumer(new SaltConsumer(std::move(options)));
  if (!consumer->Start(error)) return nullptr;
  return consumer;
}

bool SaltConsumer::Start(std::string* error) {
  clients_ = std::make_unique<Clients>();
  clients_->started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  char err[512];
  auto make = [&](const std::string& group, bool data) -> rd_kafka_t* {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::map<std::string, std::string> props = {
        {"bootstrap.servers", options_.bootstrap_servers},
        {"group.id", group},
        {"auto.offset.reset", options_.from_beginning ? "earliest" : "latest"},
        // The ordered reader learns that a partition has nothing more to read (it is no longer
        // the one the others wait for, and its position is its end).
        {"enable.partition.eof", data && options_.mode == Mode::kOrdered ? "true" : "false"},
        {"allow.auto.create.topics", "false"},
        {"topic.metadata.refresh.interval.ms",
         std::to_string(std::max<int64_t>(100, options_.metadata_refresh.count()))},
        {"log_level", "4"},
    };
    if (!data || options_.mode == Mode::kOrdered) props["enable.auto.commit"] = "false";
    if (data && options_.mode == Mode::kOrdered) {
      // Each partition has a queue of its own, and these bound what is fetched ahead per
      // partition (the defaults, 64 MB and 100,000 records, are meant for one shared queue).
      props["queued.max.messages.kbytes"] = "2048";
      props["queued.min.messages"] = "10000";
    }
    for (const auto& [k, v] : options_.librdkafka) {
      if (data || consumer_internal::IsConnectionProperty(k)) props[k] = v;
    }
    for (const auto& [k, v] : props) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        *error = k + ": " + err;
        rd_kafka_conf_destroy(conf);
        return nullptr;
      }
    }
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
      *error = err;
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
  };
  const std::string suffix = RandomSuffix();
  clients_->control = make("saltproxy-consume-control-" + suffix, false);
  if (!clients_->control) return false;
  clients_->data = make(options_.mode == Mode::kUnordered ? options_.group_id
                                                          : "saltproxy-consume-ordered-" + suffix,
                        true);
  if (!clients_->data) return false;
  if (options_.mode == Mode::kUnordered) {
    // Regexes, so that the hot topic is picked up when saltproxy creates it.
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, ExactTopicRegex(options_.topic).c_str(),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, ExactTopicRegex(options_.hot_topic).c_str(),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(clients_->data, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
      *error = std::string("subscribe: ") + rd_kafka_err2str(e);
      return false;
    }
  }
  RefreshAssignment();
  return true;
}

bool SaltConsumer::MissingTopic() const {
  // Records wait while the control topic is not read yet, or while the map names a hot topic
  // this reader does not read yet (the proxy creates it when it first reroutes a key).
  if (options_.mode != Mode::kOrdered) return false;
  if (!clients_->control_assigned) return reassembler_.stats().held > 0;
  bool hot_assigned = false;
  for (const auto& [topic, p] : clients_->assigned) hot_assigned |= topic == options_.hot_topic;
  return !hot_assigned && map_.NamesDestination(options_.hot_topic);
}

void SaltConsumer::RefreshAssignment() {
  next_refresh_ = Clock::now() + options_.metadata_refresh;
  next_urgent_refresh_ = Clock::now() + std::chrono::milliseconds(100);
  auto partitions_of = [&](rd_kafka_t* rk, const std::string& topic) -> int {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
    rd_kafka_topic_destroy(rkt);
    int count = 0;
    if (!e && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      count = md->topics[0].partition_cnt;
    }
    if (md) rd_kafka_metadata_destroy(md);
    return count;
  };
  if (!clients_->control_assigned && partitions_of(clients_->control, options_.control_topic) > 0) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options_.control_topic.c_str(), 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(clients_->control, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      clients_->control_assigned = true;
    }
    rd_kafka_topic_partition_list_destroy(list);
  }
  if (options_.mode != Mode::kOrdered) return;
  rd_kafka_topic_partition_list_t* added = rd_kafka_topic_partition_list_new(16);
  for (const std::string& topic : {options_.topic, options_.hot_topic}) {
    int count = partitions_of(clients_->data, topic);
    for (int32_t p = 0; p < count; ++p) {
      if (clients_->assigned.contains({topic, p})) continue;
      int64_t offset = options_.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
      if (!options_.from_beginning && clients_->first_assignment_done) {
        // Reading from the end, a partition found after the start (the hot topic, which the
        // proxy creates when a key first turns too hot, or partitions added) is read from the
        // reader's start: from its end, what was written before the reader noticed it would
        // never be read, and its keys would wait for it.
        if (rd_kafka_resp_err_t e =
                OffsetSince(clients_->data, topic, p, clients_->started_ms, &offset)) {
          // A topic just made may have no leader yet: asked again at the next refresh.
          if (errors_.size() < kMaxErrorsKept) {
            errors_.push_back(topic + "-" + std::to_string(p) +
                              ": not read yet, its offsets could not be asked: " +
                              rd_kafka_err2str(e));
          }
          continue;
        }
      }
      clients_->assigned.insert({topic, p});
      rd_kafka_topic_partition_list_add(added, topic.c_str(), p)->offset = offset;
    }
  }
  clients_->first_assignment_done = true;
  if (added->cnt > 0) {
    rd_kafka_error_t* e = rd_kafka_incremental_assign(clients_->data, added);
    if (e) {
      if (errors_.size() < kMaxErrorsKept) {
        errors_.push_back(std::string("assign: ") + rd_kafka_error_string(e));
      }
      rd_kafka_error_destroy(e);
      for (int i = 0; i < added->cnt; ++i) {
        clients_->assigned.erase({added->elems[i].topic, added->elems[i].partition});
      }
    } else {
      for (int i = 0; i < added->cnt; ++i) {
        // Its own queue, no longer forwarded to the consumer's (a record fetched before this
        // went there, and is read from there: it comes before any in the partition's queue).
        Clients::Reading& r = clients_->reading[{added->elems[i].topic, added->elems[i].partition}];
        r.queue = rd_kafka_queue_get_partition(clients_->data, added->elems[i].topic,
                                               added->elems[i].partition);
        if (r.queue) rd_kafka_queue_forward(r.queue, nullptr);
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(added);
}

void SaltConsumer::FollowControlTopic() {
  if (!clients_->control_assigned) return;
  bool updated = false;
  for (;;) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(clients_->control, 0);
    if (!m) break;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->payload) {
      std::string error;
      if (map_.Apply(std::string_view(static_cast<const char*>(m->payload), m->len), &error)) {
        updated = true;
      } else if (errors_.size() < kMaxErrorsKept) {
        errors_.push_back(options_.control_topic + " offset " + std::to_string(m->offset) + ": " +
                          error);
      }
    } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
               errors_.size() < kMaxErrorsKept) {
      errors_.push_back(rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  if (updated) reassembler_.OnMapUpdate(Clock::now());
}

std::vector<ReleasedRecord> SaltConsumer::Poll(std::chrono::milliseconds timeout) {
  std::vector<ReleasedRecord> out;
  if (!clients_ || !clients_->data) return out;
  if (Clock::now() >= next_refresh_ || (Clock::now() >= next_urgent_refresh_ && MissingTopic())) {
    RefreshAssignment();
  }
  FollowControlTopic();
  const Clock::time_point deadline = Clock::now() + timeout;
  if (options_.mode == Mode::kOrdered) {
    PollOrdered(deadline);
    // A record may name an epoch the map has not shown yet: look once more before holding it.
    FollowControlTopic();
    reassembler_.Poll(Clock::now());
    return reassembler_.TakeReleased();
  }
  int records = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    // The first record may be waited for; once records flow, take what is there and return.
    int wait = records > 0 ? 0 : static_cast<int>(std::max<int64_t>(0, left.count()));
    rd_kafka_message_t* m = rd_kafka_consumer_poll(clients_->data, std::min(wait, 100));
    if (!m) {
      if (records > 0 || Clock::now() >= deadline) break;
      FollowControlTopic();
      continue;
    }
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors_.size() < kMaxErrorsKept) {
        errors_.push_back(rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    ConsumerRecord record = FromMessage(m);
    rd_kafka_message_destroy(m);
    ++records;
    std::optional<std::string> key = OriginalKey(record);
    const bool salted = ReadStamp(record).has_value();
    out.push_back(ReleasedRecord{std::move(record), options_.topic, std::move(key), salted,
                                 false});
    ++unordered_stats_.released;
    ++unordered_stats_.released_in_order;
    if (records >= kMaxRecordsPerPoll) break;
  }
  return out;
}

bool SaltConsumer::ReadOrdered(rd_kafka_message_s* m) {
  const std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
  auto it = clients_->reading.find({topic, m->partition});
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    // Read to its end: its position is the offset before the end, and it waits for nothing.
    if (it != clients_->reading.end() && !it->second.head) it->second.at_end = true;
    if (m->offset > 0) reassembler_.Advance(topic, m->partition, m->offset - 1, Clock::now());
    rd_kafka_message_destroy(m);
    return false;
  }
  if (m->err) {
    if (errors_.size() < kMaxErrorsKept) errors_.push_back(rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return false;
  }
  ConsumerRecord record = FromMessage(m);
  rd_kafka_message_destroy(m);
  if (it != clients_->reading.end()) {
    it->second.last_timestamp_ms = std::max(it->second.last_timestamp_ms, record.timestamp_ms);
  }
  reassembler_.Add(std::move(record), options_.topic, Clock::now());
  return true;
}

void SaltConsumer::PollOrdered(Clock::time_point deadline) {
  int records = 0;
  const int64_t window = options_.align_window.count();
  for (;;) {
    // What reached the consumer's own queue (errors, records fetched before a partition got its
    // queue) first.
    while (rd_kafka_message_t* m = rd_kafka_consumer_poll(clients_->data, 0)) {
      records += ReadOrdered(m) ? 1 : 0;
    }
    // Each partition's next record, if one is there.
    for (auto& [p, r] : clients_->reading) {
      while (!r.head && r.queue) {
        rd_kafka_message_t* m = rd_kafka_consume_queue(r.queue, 0);
        if (!m) break;
        if (m->err) {
          ReadOrdered(m);
          continue;
        }
        r.head = m;
        r.at_end = false;
      }
    }
    // Read the earliest next record, unless a partition with more to read stands further back
    // than the window before it: that one's records come first (the records a key waits for are
    // then near in time, and what the reassembler holds stays small).
    int64_t behind = std::numeric_limits<int64_t>::max();
    Clients::Reading* earliest = nullptr;
    Clients::Reading* waited = nullptr;  // the furthest-back partition, nothing fetched yet
    for (auto& [p, r] : clients_->reading) {
      if (r.at_end) continue;
      const int64_t at = r.At();
      if (at < behind) behind = at;
      if (r.head && (!earliest || at < earliest->At())) earliest = &r;
      if (!r.head && (!waited || at < waited->At())) waited = &r;
    }
    auto too_far = [&](const Clients::Reading& r) {
      return window > 0 && (behind == kNever || r.At() > behind + window);
    };
    paused_now_ = 0;
    for (const auto& [p, r] : clients_->reading) paused_now_ += r.head && too_far(r) ? 1 : 0;
    const bool may_read = earliest && (!waited || !too_far(*earliest));
    if (may_read) {
      rd_kafka_message_t* m = earliest->head;
      earliest->head = nullptr;
      records += ReadOrdered(m) ? 1 : 0;
      if (records >= kMaxRecordsPerPoll) return;
      continue;
    }
    // Nothing to read now: wait for the partition furthest back (or any, through the consumer's
    // queue when none is) until the deadline.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (records > 0 || left.count() <= 0) return;
    const int wait = static_cast<int>(std::min<int64_t>(left.count(), 100));
    if (waited && waited->queue) {
      if (rd_kafka_message_t* m = rd_kafka_consume_queue(waited->queue, wait)) {
        if (m->err) {
          ReadOrdered(m);
        } else {
          waited->head = m;
          waited->at_end = false;
        }
      }
    } else if (rd_kafka_message_t* m = rd_kafka_consumer_poll(clients_->data, wait)) {
      records += ReadOrdered(m) ? 1 : 0;
    }
    FollowControlTopic();  // while the data is quiet, the map may move
    reassembler_.Poll(Clock::now());
  }
}

ReassemblerStats SaltConsumer::stats() const {
  return options_.mode == Mode::kOrdered ? reassembler_.stats() : unordered_stats_;
}

std::vector<std::string> SaltConsumer::TakeErrors() {
  std::vector<std::string> out;
  out.swap(errors_);
  return out;
}

void SaltConsumer::Close() {
  if (!clients_) return;
  clients_->CloseQueues();  // before the consumer closes, as librdkafka asks
  if (clients_->data) rd_kafka_consumer_close(clients_->data);
  if (clients_->control) rd_kafka_consumer_close(clients_->control);
  clients_.reset();
}

}  // namespace saltproxy
