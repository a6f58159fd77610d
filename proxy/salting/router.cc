#include "proxy/salting/router.h"

namespace saltproxy {

absl::Status Router::Submit(Record&& record, DeliveryCallback done) {
  int32_t partition = record.partition;
  // -1 leaves the choice to the forwarder's murmur2 partitioner: the Java default for keys.
  return forwarder_.Produce(std::move(record), partition, std::move(done));
}

void Router::LookupTopic(const std::string& topic,
                         absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) {
  forwarder_.LookupTopic(topic, std::move(done));
}

}  // namespace saltproxy
