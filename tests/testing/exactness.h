// The fault suite's verifier (issue 16): numbered records go in, and what reached Kafka and what
// readers release is compared with what was acknowledged.
//
// Each record's value is "producer:key:n", n counting that producer's records of that key from
// 0, so that the broker's copy and a reader's release say which record they are.
//
//   Ledger ledger;
//   ledger.Ack("p0", "concert", 0);                        // for every acknowledged record
//   BrokerReport broker = ReadBroker(kafka, {"t", "t.hot"}, ledger);    // EXPECT_EQ(lost, 0)...
//   ReaderReport ordered = ReadOrdered(options, ledger);   // EXPECT_EQ(forced, 0)...
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "saltproxy/consumer.h"
#include "testing/http_client.h"
#include "testing/real_kafka.h"

namespace saltproxy::testing {

// One record's identity, from its value.
struct Numbered {
  std::string producer, key;
  int64_t n = -1;  // -1: not a numbered value

  static Numbered Parse(const std::string& value) {
    std::vector<std::string> parts = absl::StrSplit(value, ':');
    Numbered r;
    if (parts.size() == 3 && absl::SimpleAtoi(parts[2], &r.n)) {
      r.producer = parts[0];
      r.key = parts[1];
    } else {
      r.n = -1;
    }
    return r;
  }
  static std::string Value(const std::string& producer, const std::string& key, int64_t n) {
    return absl::StrCat(producer, ":", key, ":", n);
  }
};

// What producers were told was written. Thread-safe for Ack.
class Ledger {
 public:
  void Ack(const std::string& producer, const std::string& key, int64_t n) {
    std::lock_guard lock(mu_);
    acked_[{producer, key}].insert(n);
    ++total_;
  }
  int64_t total() const { return total_; }
  const std::map<std::pair<std::string, std::string>, std::set<int64_t>>& acked() const {
    return acked_;
  }
  bool Acked(const Numbered& r) const {
    auto it = acked_.find({r.producer, r.key});
    return it != acked_.end() && it->second.contains(r.n);
  }

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::set<int64_t>> acked_;
  int64_t total_ = 0;
};

// A producer of numbered records through saltproxy's REST API (binary v2 embedded format).
class NumberedHttpProducer {
 public:
  NumberedHttpProducer(std::string name, std::string topic, Ledger* ledger)
      : name_(std::move(name)), topic_(std::move(topic)), ledger_(ledger) {}

  // Sends one request with a record for each of `keys` (numbered on) through `client`. The
  // records are acknowledged (in the ledger) when the answer is 200 and names no error for
  // them. Returns "" or what went wrong.
  std::string Send(HttpClient& client, const std::vector<std::string>& keys) {
    std::vector<int64_t> numbers;
    std::string body = R"({"records":[)";
    for (size_t i = 0; i < keys.size(); ++i) {
      numbers.push_back(next_[keys[i]]++);
      absl::StrAppend(&body, i ? "," : "", R"({"key":")", absl::Base64Escape(keys[i]),
                      R"(","value":")",
                      absl::Base64Escape(Numbered::Value(name_, keys[i], numbers.back())),
                      R"("})");
    }
    body += "]}";
    HttpResult r = client.Post("/topics/" + topic_, body, "application/vnd.kafka.binary.v2+json");
    if (r.status != 200) return absl::StrCat("HTTP ", r.status, ": ", r.body.substr(0, 300));
    const boost::json::array& offsets = r.Json().at("offsets").as_array();
    std::string failed;
    for (size_t i = 0; i < offsets.size() && i < keys.size(); ++i) {
      if (offsets[i].at("error_code").is_null()) {
        ledger_->Ack(name_, keys[i], numbers[i]);
      } else if (failed.empty()) {
        failed = boost::json::serialize(offsets[i]);
      }
    }
    return failed;
  }

 private:
  std::string name_, topic_;
  Ledger* ledger_;
  std::map<std::string, int64_t> next_;
};

struct BrokerReport {
  int64_t records = 0;     // numbered records stored
  int64_t stamped = 0;     // of them, salted or rerouted (saltproxy-seq header)
  int64_t lost = 0;        // acknowledged, not stored
  int64_t duplicated = 0;  // stored more than once (each extra copy)
  int64_t unacked = 0;     // stored, never acknowledged (allowed: a failed answer)
  std::map<std::string, int64_t> duplicated_by_producer;
};

// Reads every partition of `topics` (a topic that does not exist is skipped) to its end.
inline BrokerReport ReadBroker(RealKafka& kafka, const std::vector<std::string>& topics,
                               const Ledger& ledger) {
  BrokerReport report;
  std::map<std::pair<std::string, std::string>, std::map<int64_t, int>> stored;
  for (const std::string& topic : topics) {
    if (!kafka.EndOffsets(topic).ok()) continue;
    absl::StatusOr<std::vector<ConsumedRecord>> read =
        kafka.ConsumeAll(topic, -1, absl::Seconds(120));
    if (!read.ok()) {
      report.lost = ledger.total();
      return report;
    }
    for (const ConsumedRecord& r : *read) {
      Numbered id = Numbered::Parse(r.value.value_or(""));
      if (id.n < 0) continue;
      ++report.records;
      report.stamped += r.Header("saltproxy-seq").has_value();
      if (++stored[{id.producer, id.key}][id.n] > 1) {
        ++report.duplicated;
        ++report.duplicated_by_producer[id.producer];
      }
      if (!ledger.Acked(id)) ++report.unacked;
    }
  }
  for (const auto& [pk, ns] : ledger.acked()) {
    const auto& got = stored[pk];
    for (int64_t n : ns) report.lost += got.contains(n) ? 0 : 1;
  }
  return report;
}

struct ReaderReport {
  int64_t released = 0;      // numbered records released
  int64_t lost = 0;          // acknowledged, never released
  int64_t twice = 0;         // released more than once
  int64_t out_of_order = 0;  // released before one of its producer's earlier records of its key
  int64_t wrong_key = 0;     // released under another key than its own
  int64_t forced = 0;        // released by the lag policy (ReleasedRecord::forced)
  size_t most_held = 0;      // the reassembler's held records, at most (ordered mode)
  std::map<std::string, int64_t> out_of_order_by_producer;
  ReassemblerStats stats;
};

// Reads with a SaltConsumer until every acknowledged record was released or `deadline` passed.
// A record a producer was not told about (its answer failed) may come too; it counts in
// `released` and is ordered like the others.
inline ReaderReport Read(SaltConsumerOptions options, const Ledger& ledger,
                         std::chrono::seconds deadline = std::chrono::seconds(180)) {
  ReaderReport report;
  std::string error;
  std::unique_ptr<SaltConsumer> consumer = SaltConsumer::Create(options, &error);
  if (!consumer) {
    report.lost = ledger.total();
    return report;
  }
  std::map<std::pair<std::string, std::string>, std::set<int64_t>> released;
  std::map<std::pair<std::string, std::string>, int64_t> highest;
  int64_t acked_released = 0;
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (acked_released < ledger.total() && std::chrono::steady_clock::now() < until) {
    for (ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) {
      Numbered id = Numbered::Parse(r.record.value.value_or(""));
      if (id.n < 0) continue;
      ++report.released;
      report.forced += r.forced;
      if (!r.key || *r.key != id.key) ++report.wrong_key;
      auto [it, fresh] = highest.try_emplace({id.producer, id.key}, id.n);
      if (!fresh) {
        if (id.n < it->second) {
          ++report.out_of_order;
          ++report.out_of_order_by_producer[id.producer];
        }
        it->second = std::max(it->second, id.n);
      }
      if (!released[{id.producer, id.key}].insert(id.n).second) {
        ++report.twice;
      } else if (ledger.Acked(id)) {
        ++acked_released;
      }
    }
    report.most_held = std::max(report.most_held, consumer->stats().held);
  }
  for (const auto& [pk, ns] : ledger.acked()) {
    const auto& got = released[pk];
    for (int64_t n : ns) report.lost += got.contains(n) ? 0 : 1;
  }
  report.stats = consumer->stats();
  consumer->Close();
  return report;
}

}  // namespace saltproxy::testing
