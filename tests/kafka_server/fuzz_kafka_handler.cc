// libFuzzer target for the Kafka handler: any bytes as a request frame, handled as a connection's
// request is (decoding, idempotence checks, routing, answering), against a sink that records
// what it is given and settles it after the request, alternately delivered and failed. The
// handler, its producer registry and sink live across inputs, as they do across requests.
//
//   CC=clang CXX=clang++ cmake -B build-asan -DSALTPROXY_SANITIZE=ON -DSALTPROXY_FUZZ=ON
//   build-asan/tests/kafka_server/fuzz_kafka_handler -max_total_time=20 tests/kafka/corpus
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proxy/kafka_server/kafka_handler.h"

namespace saltproxy {
namespace {

class Sink : public RecordSink {
 public:
  absl::Status Submit(Record&&, DeliveryCallback done) override {
    if (held_.size() >= 100000) return absl::ResourceExhaustedError("full");
    held_.push_back(std::move(done));
    return absl::OkStatus();
  }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    if (topic.empty()) return done(absl::NotFoundError("no such topic"));
    done(4);
  }
  void SettleAll() {
    std::vector<DeliveryCallback> held = std::move(held_);
    held_.clear();
    for (DeliveryCallback& done : held) {
      DeliveryReport r;
      if (++count_ % 3 == 0) {
        r.status = absl::DeadlineExceededError("message timed out");
      } else {
        r.partition = 0;
        r.offset = count_;
      }
      done(r);
    }
  }

 private:
  std::vector<DeliveryCallback> held_;
  int64_t count_ = 0;
};

// Every topic but the empty name has 4 partitions.
class FourPartitions : public Upstream {
 public:
  absl::Status Produce(Record&&, int32_t, DeliveryCallback) override {
    return absl::UnimplementedError("the handler produces through its sink");
  }
  std::optional<int32_t> CachedPartitions(const std::string& topic) const override {
    if (topic.empty()) return std::nullopt;
    return 4;
  }
  void LookupTopic(const std::string&,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    done(4);
  }
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string&, int32_t,
                           const std::map<std::string, std::string>&) override {
    return absl::OkStatus();
  }
};

struct World {
  Metrics metrics;
  Sink sink;
  FourPartitions upstream;
  ProducerRegistry registry{1000};
  KafkaHandler handler{[] {
                         KafkaHandlerOptions o;
                         o.max_decompressed_bytes = 8 << 20;
                         return o;
                       }(),
                       sink, upstream, registry, metrics};
};

}  // namespace
}  // namespace saltproxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static saltproxy::World* world = new saltproxy::World();  // lives as long as the process
  world->handler.Handle(std::string(reinterpret_cast<const char*>(data), size), 1,
                        saltproxy::FrameReply([](saltproxy::FrameReply::Kind, std::string) {}));
  world->sink.SettleAll();
  return 0;
}
