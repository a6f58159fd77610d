// A Kafka consumer for topics that saltproxy salts, on librdkafka. It follows the control topic
// (the salt map's epochs), reads the topic and its hot topic, and hands back records with their
// original key, in one of two modes:
//
//  - kUnordered: a member of a consumer group (group_id) reading its share of the partitions;
//    each record is mapped back to its key and returned at once. Full parallelism, for
//    consumers that aggregate (counting clicks for billing) and need the key, not the order.
//  - kOrdered: one reader per key range reads every partition of the topic and of its hot topic
//    (new ones as they appear) and restores each key's producer order through a Reassembler.
//    Run N readers with key_ranges = N and key_range = 0..N-1 to share the keys.
//
//   saltproxy::SaltConsumerOptions options;
//   options.bootstrap_servers = "kafka:9092";
//   options.topic = "clicks";
//   options.mode = saltproxy::SaltConsumer::Mode::kOrdered;
//   std::string error;
//   auto consumer = saltproxy::SaltConsumer::Create(options, &error);
//   while (running)
//     for (saltproxy::ReleasedRecord& r : consumer->Poll(std::chrono::milliseconds(100))) ...
//
// Not thread-safe: one thread polls.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saltproxy/reassembler.h"
#include "saltproxy/salt_map.h"

struct rd_kafka_message_s;  // librdkafka's rd_kafka_message_t

namespace saltproxy {

struct SaltConsumerOptions {
  enum class Mode { kOrdered, kUnordered };
  std::string bootstrap_servers;
  std::string topic;                     // the topic producers write to
  std::string hot_topic;                 // its dedicated hot topic; "" means topic + ".hot"
  std::string control_topic = "_saltproxy_saltmap";
  Mode mode = Mode::kOrdered;
  std::string group_id;                  // kUnordered: required (the consumer group)
  // kOrdered: where a partition is read from: true the beginning, false its end.
  bool from_beginning = true;
  ReassemblerOptions reassembly;         // kOrdered: lag policy, buffer bound, key range
  // kOrdered: partitions are read side by side in time. A partition's next record is read only
  // while it is at most this much later (by record timestamp) than where the furthest-back
  // partition with more to read stands: a key's next record is then never far away on another
  // partition, so what the reassembler holds stays near the records of this window, instead of
  // whole fetches of one partition read before the others. 0: in the order fetched.
  std::chrono::milliseconds align_window{1000};
  // How often new partitions (or a newly created hot topic) are looked for.
  std::chrono::milliseconds metadata_refresh{1000};
  // Extra librdkafka properties for the data consumer; those that say how to reach and log in
  // to the cluster (security.*, sasl.*, ssl.*, socket.*, client.*) go to the control-topic
  // reader too.
  std::map<std::string, std::string> librdkafka;
};

class SaltConsumer {
 public:
  using Mode = SaltConsumerOptions::Mode;

  // Null, with `error` set, when the options are wrong or librdkafka refuses them.
  static std::unique_ptr<SaltConsumer> Create(SaltConsumerOptions options, std::string* error);
  ~SaltConsumer();
  SaltConsumer(const SaltConsumer&) = delete;
  SaltConsumer& operator=(const SaltConsumer&) = delete;

  // Reads for up to `timeout` (less when records are ready) and returns what is released.
  std::vector<ReleasedRecord> Poll(std::chrono::milliseconds timeout);

  // What the reassembler did (kOrdered), and records returned (both modes).
  ReassemblerStats stats() const;
  const SaltMapHistory& salt_map() const { return map_; }
  // kOrdered: partitions whose next record waits now because they were read too far ahead of
  // another (align_window).
  int paused_partitions() const { return paused_now_; }
  // Errors seen (librdkafka's, a control record that was not a map), for logging.
  std::vector<std::string> TakeErrors();
  // Leaves the group (kUnordered) and closes the clients.
  void Close();

 private:
  struct Clients;
  explicit SaltConsumer(SaltConsumerOptions options);
  bool Start(std::string* error);
  void FollowControlTopic();
  void RefreshAssignment();
  // True when records may be waiting on a topic not read yet: worth a refresh before the next
  // metadata_refresh (at most every 100 ms).
  bool MissingTopic() const;
  // kOrdered: reads records from the partitions' own queues into the reassembler, the one
  // furthest back in time first, until one was read and none is ready, or the deadline.
  void PollOrdered(std::chrono::steady_clock::time_point deadline);
  // Hands one message of the data consumer to the reassembler; true if it was a record.
  bool ReadOrdered(::rd_kafka_message_s* m);

  SaltConsumerOptions options_;
  SaltMapHistory map_;
  Reassembler reassembler_;
  std::unique_ptr<Clients> clients_;
  std::chrono::steady_clock::time_point next_refresh_{};
  std::chrono::steady_clock::time_point next_urgent_refresh_{};
  ReassemblerStats unordered_stats_;
  int paused_now_ = 0;
  std::vector<std::string> errors_;
};

}  // namespace saltproxy
