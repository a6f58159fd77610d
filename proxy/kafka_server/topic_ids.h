// The upstream cluster's topic ids, for saltproxy's Metadata answers (v10 and later carry them).
// librdkafka 2.0 does not expose them, so a thread asks a bootstrap broker directly
// (proxy/kafka/metadata_client.h) at start and every `refresh`, and at once (at most once a
// second) when asked for a topic it does not know yet. Until an id is known, or when the
// cluster cannot tell (TLS/SASL listeners, brokers older than Kafka 2.8), the id is all zero,
// which clients read as "unknown".
//
//   TopicIdCache ids(bootstrap_servers, absl::Seconds(5));
//   kafka::Uuid id = ids.Get("clicks");
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "proxy/kafka/metadata_client.h"

namespace saltproxy {

class TopicIdCache {
 public:
  TopicIdCache(std::string bootstrap_servers, absl::Duration refresh);
  ~TopicIdCache();
  // Shutdown begins: no further refresh. One under way ends within its own timeout (5 s), so
  // that the destructor's join, later, need not wait for a cluster that does not answer.
  void StopRefreshing();
  TopicIdCache(const TopicIdCache&) = delete;
  TopicIdCache& operator=(const TopicIdCache&) = delete;

  // The topic's id, or all zero when it is not known (yet).
  kafka::Uuid Get(const std::string& topic);

 private:
  void Run();

  const std::string bootstrap_servers_;
  const absl::Duration refresh_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool wanted_ = false;  // a lookup missed: refresh early
  bool warned_ = false;
  std::shared_ptr<const kafka::TopicIds> ids_ = std::make_shared<kafka::TopicIds>();
  std::thread thread_;
};

}  // namespace saltproxy
