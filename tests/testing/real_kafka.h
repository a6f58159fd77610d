// A real Apache Kafka broker for end-to-end tests: started by tests/kafka/broker.sh (single node,
// KRaft, loopback, free ports) in a fresh temporary folder, stopped and removed at the end. One
// broker per test binary: the first call to RealKafka::Get() starts it, a GoogleTest environment
// stops it when the binary exits.
//
//   RealKafka& kafka = RealKafka::Get();     // fails the test if the broker cannot start
//   ASSERT_TRUE(kafka.CreateTopic("orders", 8).ok());
//   auto records = kafka.ConsumeAll("orders", 100, absl::Seconds(30));
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace saltproxy::testing {

struct ConsumedRecord {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  int64_t timestamp_ms = -1;

  std::optional<std::string> Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  }
};

class RealKafka {
 public:
  // The broker of this test binary, started on first use. Aborts the calling test with a clear
  // failure when it cannot start (no Java, no network for the first download, ...).
  static RealKafka& Get();

  const std::string& bootstrap() const { return bootstrap_; }
  const std::string& dir() const { return dir_; }

  // Creates a topic through librdkafka's Admin API and waits until its metadata is visible.
  absl::Status CreateTopic(const std::string& topic, int partitions,
                           const std::map<std::string, std::string>& configs = {});

  // Reads `topic` from the beginning until `expected` records arrived (or, with expected < 0,
  // until the end of every partition) or the deadline passed; every partition is assigned.
  absl::StatusOr<std::vector<ConsumedRecord>> ConsumeAll(const std::string& topic, int expected,
                                                         absl::Duration deadline);

  // The high watermark (record count for a never-compacted topic) of each partition.
  absl::StatusOr<std::vector<int64_t>> EndOffsets(const std::string& topic);

  // A crash: SIGKILL, the data kept. Resume starts it again on the same ports with its data.
  absl::Status Kill();
  absl::Status Resume();
  // The broker's process id (for SIGSTOP / SIGCONT), or -1.
  int pid() const;

  void Stop();
  ~RealKafka();

 private:
  RealKafka() = default;
  absl::Status Start();
  std::string dir_;
  std::string bootstrap_;
  std::string script_;
};

}  // namespace saltproxy::testing
