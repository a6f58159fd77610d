// librdkafka's mock cluster, run inside the proxy's process so that the demo and fast tests need
// no Kafka at all. Not a real broker: it lacks CreateTopics and speaks only Metadata v0-v2, so
// compatibility is proven against a real broker (tests/kafka/broker.sh), never against this.
//
//   ASSIGN_OR_RETURN(auto cluster, EmbeddedCluster::Start(3, {{"orders", 16}}));
//   upstream.bootstrap_servers = cluster->bootstrap_servers();
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/config/config.h"

namespace saltproxy {

class EmbeddedCluster {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedCluster>> Start(
      int brokers, const std::vector<TopicSpec>& topics);
  ~EmbeddedCluster();

  const std::string& bootstrap_servers() const { return bootstrap_servers_; }
  absl::Status CreateTopic(const std::string& name, int partitions);

 private:
  struct State;
  EmbeddedCluster() = default;
  std::unique_ptr<State> state_;
  std::string bootstrap_servers_;
};

}  // namespace saltproxy
