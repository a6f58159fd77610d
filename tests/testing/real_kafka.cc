#include "testing/real_kafka.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace saltproxy::testing {
namespace {

absl::StatusOr<std::string> Run(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return absl::InternalError(absl::StrCat("cannot run: ", command));
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  int rc = pclose(pipe);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(command, " failed (", rc, "):\n", output));
  }
  return output;
}

struct Stopper : public ::testing::Environment {
  void TearDown() override { RealKafka::Get().Stop(); }
};

std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> NewClient(rd_kafka_type_t type,
                                                              const std::string& bootstrap,
                                                              std::string* error) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  if (type == RD_KAFKA_CONSUMER) {
    rd_kafka_conf_set(conf, "group.id", "saltproxy-tests", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    *error = err;
    rd_kafka_conf_destroy(conf);
  }
  return {rk, [](rd_kafka_t* k) {
            if (k) rd_kafka_destroy(k);
          }};
}

}  // namespace

RealKafka& RealKafka::Get() {
  static RealKafka* kafka = nullptr;
  static std::once_flag once;
  static absl::Status started;
  std::call_once(once, [] {
    kafka = new RealKafka();
    started = kafka->Start();
    ::testing::AddGlobalTestEnvironment(new Stopper);
  });
  if (!started.ok()) {
    ADD_FAILURE() << "the real Kafka broker did not start: " << started;
  }
  return *kafka;
}

absl::Status RealKafka::Start() {
  script_ = std::string(SALTPROXY_SOURCE_DIR) + "/tests/kafka/broker.sh";
  if (!std::filesystem::exists(script_)) {
    return absl::NotFoundError(absl::StrCat(script_, " is missing"));
  }
  char tmpl[] = "/tmp/saltproxy-kafka-XXXXXX";
  if (!mkdtemp(tmpl)) return absl::InternalError("mkdtemp failed");
  dir_ = tmpl;
  absl::StatusOr<std::string> out = Run(absl::StrCat("bash ", script_, " start ", dir_));
  if (!out.ok()) return out.status();
  // The script also writes the address to DIR/bootstrap; read it from there rather than from the
  // output, where a first run's Maven download can leave terminal escapes on the same line.
  std::ifstream file(dir_ + "/bootstrap");
  std::string line;
  if (!std::getline(file, line) || line.empty()) {
    return absl::InternalError(absl::StrCat("broker.sh wrote no bootstrap address:\n", *out));
  }
  bootstrap_ = std::string(absl::StripTrailingAsciiWhitespace(line));
  return absl::OkStatus();
}

void RealKafka::Stop() {
  if (dir_.empty()) return;
  (void)Run(absl::StrCat("bash ", script_, " stop ", dir_));
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  dir_.clear();
}

RealKafka::~RealKafka() { Stop(); }

absl::Status RealKafka::Kill() {
  return Run(absl::StrCat("bash ", script_, " kill ", dir_)).status();
}

absl::Status RealKafka::Resume() {
  return Run(absl::StrCat("bash ", script_, " resume ", dir_)).status();
}

int RealKafka::pid() const {
  std::ifstream file(dir_ + "/pid");
  int pid = -1;
  if (!(file >> pid)) return -1;
  return pid;
}

absl::Status RealKafka::CreateTopic(const std::string& topic, int partitions,
                                    const std::map<std::string, std::string>& configs) {
  std::string error;
  auto rk = NewClient(RD_KAFKA_PRODUCER, bootstrap_, &error);
  if (!rk) return absl::InternalError(error);
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  if (!nt) return absl::InvalidArgumentError(err);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  absl::Status result;
  if (!ev) {
    result = absl::DeadlineExceededError("CreateTopics: no answer");
  } else {
    size_t count = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &count);
    if (rd_kafka_event_error(ev)) {
      result = absl::UnavailableError(rd_kafka_event_error_string(ev));
    } else if (count == 1 && rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      result = absl::UnavailableError(rd_kafka_topic_result_error_string(results[0]));
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  if (!result.ok()) return result;
  // Wait until the metadata shows every partition with a leader.
  for (int i = 0; i < 100; ++i) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    bool ready = false;
    if (rd_kafka_metadata(rk.get(), 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ready = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
              md->topics[0].partition_cnt == partitions;
      for (int p = 0; ready && p < md->topics[0].partition_cnt; ++p) {
        ready = md->topics[0].partitions[p].leader >= 0;
      }
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (ready) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("topic ", topic, " has no leaders"));
}

absl::StatusOr<std::vector<int64_t>> RealKafka::EndOffsets(const std::string& topic) {
  std::string error;
  auto rk = NewClient(RD_KAFKA_CONSUMER, bootstrap_, &error);
  if (!rk) return absl::InternalError(error);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk.get(), 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (err) return absl::UnavailableError(rd_kafka_err2str(err));
  int partitions = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
  rd_kafka_metadata_destroy(md);
  std::vector<int64_t> ends;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 10000);
    if (err) return absl::UnavailableError(rd_kafka_err2str(err));
    ends.push_back(high);
  }
  return ends;
}

absl::StatusOr<std::vector<ConsumedRecord>> RealKafka::ConsumeAll(const std::string& topic,
                                                                  int expected,
                                                                  absl::Duration deadline) {
  absl::StatusOr<std::vector<int64_t>> ends = EndOffsets(topic);
  if (!ends.ok()) return ends.status();
  std::string error;
  auto rk = NewClient(RD_KAFKA_CONSUMER, bootstrap_, &error);
  if (!rk) return absl::InternalError(error);
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(ends->size());
  for (size_t p = 0; p < ends->size(); ++p) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), static_cast<int32_t>(p))->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk.get(), parts);
  rd_kafka_topic_partition_list_destroy(parts);
  std::vector<ConsumedRecord> records;
  std::vector<bool> at_end(ends->size(), false);
  absl::Time stop = absl::Now() + deadline;
  while (absl::Now() < stop) {
    if (expected >= 0 && static_cast<int>(records.size()) >= expected) break;
    if (expected < 0 && std::all_of(at_end.begin(), at_end.end(), [](bool b) { return b; })) break;
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->partition >= 0 && static_cast<size_t>(m->partition) < at_end.size()) {
        at_end[m->partition] = m->offset >= (*ends)[m->partition];
      }
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ConsumedRecord r;
      r.topic = rd_kafka_topic_name(m->rkt);
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value = std::string(static_cast<const char*>(m->payload), m->len);
      rd_kafka_timestamp_type_t tstype;
      r.timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          r.headers.emplace_back(name, value ? std::optional<std::string>(std::string(
                                                   static_cast<const char*>(value), size))
                                             : std::nullopt);
        }
      }
      records.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  if (expected >= 0 && static_cast<int>(records.size()) < expected) {
    // Whether the records are missing from the topic or were only not read: what each
    // partition holds now, against what was read from it.
    std::vector<int64_t> read(ends->size(), 0);
    for (const ConsumedRecord& r : records) {
      if (r.partition >= 0 && static_cast<size_t>(r.partition) < read.size()) ++read[r.partition];
    }
    std::string partitions;
    absl::StatusOr<std::vector<int64_t>> now = EndOffsets(topic);
    for (size_t p = 0; p < read.size(); ++p) {
      absl::StrAppend(&partitions, p ? ", " : "", p, ": read ", read[p], " of ",
                      now.ok() && p < now->size() ? absl::StrCat((*now)[p]) : "?");
    }
    return absl::DeadlineExceededError(absl::StrCat("read ", records.size(), " of ", expected,
                                                    " records of ", topic,
                                                    " before the deadline (partition ",
                                                    partitions, ")"));
  }
  return records;
}

}  // namespace saltproxy::testing
