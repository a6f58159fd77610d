// The router: the one place that decides where a record goes. Both ingresses hand their records
// to it. A record whose client named a partition keeps it; any other record goes where the
// Java client's default partitioner (murmur2 of the key) would put it.
//
//   Router router(forwarder);
//   router.Submit(std::move(record), [](const DeliveryReport& r) { ... });
#pragma once

#include "proxy/common/record.h"
#include "proxy/forward/forwarder.h"

namespace saltproxy {

class Router : public RecordSink {
 public:
  explicit Router(Forwarder& forwarder) : forwarder_(forwarder) {}

  absl::Status Submit(Record&& record, DeliveryCallback done) override;
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override;

 private:
  Forwarder& forwarder_;
};

}  // namespace saltproxy
