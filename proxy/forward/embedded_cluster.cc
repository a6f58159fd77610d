#include "proxy/forward/embedded_cluster.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"

namespace saltproxy {

struct EmbeddedCluster::State {
  // The mock cluster needs an rd_kafka_t for its bookkeeping; this one does nothing else.
  rd_kafka_t* host = nullptr;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  ~State() {
    if (cluster) rd_kafka_mock_cluster_destroy(cluster);
    if (host) rd_kafka_destroy(host);
  }
};

absl::StatusOr<std::unique_ptr<EmbeddedCluster>> EmbeddedCluster::Start(
    int brokers, const std::vector<TopicSpec>& topics) {
  auto result = std::unique_ptr<EmbeddedCluster>(new EmbeddedCluster());
  result->state_ = std::make_unique<State>();
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  result->state_->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!result->state_->host) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(absl::StrCat("embedded cluster: ", err));
  }
  result->state_->cluster = rd_kafka_mock_cluster_new(result->state_->host, brokers);
  if (!result->state_->cluster) {
    return absl::InternalError("embedded cluster: librdkafka could not start its mock cluster");
  }
  result->bootstrap_servers_ = rd_kafka_mock_cluster_bootstraps(result->state_->cluster);
  for (const TopicSpec& topic : topics) {
    if (absl::Status s = result->CreateTopic(topic.name, topic.partitions); !s.ok()) return s;
  }
  LogEvent(LogLevel::kInfo, "embedded_cluster_started",
           {{"bootstrap", result->bootstrap_servers_}, {"brokers", absl::StrCat(brokers)}});
  return result;
}

EmbeddedCluster::~EmbeddedCluster() = default;

absl::Status EmbeddedCluster::CreateTopic(const std::string& name, int partitions) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(state_->cluster, name.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(
        absl::StrCat("embedded cluster: cannot create topic ", name, ": ", rd_kafka_err2str(err)));
  }
  return absl::OkStatus();
}

}  // namespace saltproxy
