// libFuzzer target for the Kafka handler: any bytes as a request frame, handled as a connection's
// request is (decoding, idempotence checks, routing, answering), against a sink that records
// what it is given and settles it after the request, alternately delivered and failed. The
// handler, its producer registry and sink live across inputs, as they do across requests.
//
//   CC=clang CXX=clang++ cmake -B build-asan -DSALTPROXY_SANITIZE=ON -DSALTPROXY_FUZZ=ON
//   build-asan/tests/kafka_server/fuzz_kafka_handler -max_total_time=20 tests/kafka/corpus
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "proxy/kafka_server/kafka_handler.h"
#include "testing/held_sink.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::FixedUpstream;
using ::saltproxy::testing::HeldSink;

struct World {
  Metrics metrics;
  HeldSink sink{4, 100000};
  FixedUpstream upstream{4};
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
  // Every third record fails, the rest are written.
  for (size_t i = 0; i < world->sink.records.size(); ++i) {
    if (i % 3 == 2) {
      world->sink.Fail(i);
    } else {
      world->sink.Deliver(i, static_cast<int64_t>(i));
    }
  }
  world->sink.Clear();
  return 0;
}
