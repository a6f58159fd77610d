// libFuzzer target for the Kafka request decoder: any bytes as a request frame (header, then
// the body of whatever API and version it names), decoded as saltproxy decodes it; record
// batches that decode are re-encoded and decoded again, and must come back the same.
//
//   CC=clang CXX=clang++ cmake -B build-asan -DSALTPROXY_SANITIZE=ON -DSALTPROXY_FUZZ=ON
//   build-asan/tests/kafka/fuzz_request_decoder -max_total_time=20 tests/kafka/corpus
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/kafka/protocol.h"
#include "proxy/kafka/record_batch.h"

using namespace saltproxy::kafka;  // NOLINT

namespace {

void CheckBatches(std::string_view bytes) {
  int16_t code = 0;
  auto batches = DecodeRecordBatches(bytes, 1 << 20, &code);
  if (!batches.ok()) return;
  for (const RecordBatch& b : *batches) {
    std::string again = EncodeRecordBatch(b, Compression::kNone);
    auto round = DecodeRecordBatches(again, 1 << 20, &code);
    if (!round.ok() || round->size() != 1 || (*round)[0].records.size() != b.records.size()) {
      __builtin_trap();  // a batch we decoded must survive our own encoding
    }
    for (size_t i = 0; i < b.records.size(); ++i) {
      if ((*round)[0].records[i].key != b.records[i].key ||
          (*round)[0].records[i].value != b.records[i].value ||
          (*round)[0].records[i].headers != b.records[i].headers) {
        __builtin_trap();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  WireReader in(frame);
  auto header = DecodeRequestHeader(in);
  if (!header.ok()) return 0;
  const int16_t v = header->api_version;
  switch (header->api_key) {
    case kMetadata:
      if (v <= 12) (void)DecodeMetadataRequest(in, v);
      break;
    case kProduce:
      if (v >= 3 && v <= 12) {
        auto req = DecodeProduceRequest(in, v);
        if (req.ok()) {
          for (const auto& t : req->topics) {
            for (const auto& p : t.partitions) {
              if (p.records) CheckBatches(*p.records);
            }
          }
        }
      }
      break;
    case kInitProducerId:
      if (v <= 4) (void)DecodeInitProducerIdRequest(in, v);
      break;
    case kFetch:
      if (v >= 4 && v <= 11) (void)EncodeFetchError(in, v, kTopicAuthorizationFailed);
      break;
    case kFindCoordinator:
      if (v <= 2) (void)DecodeFindCoordinatorRequest(in, v);
      break;
    case kListOffsets:
      if (v <= 10) (void)EncodeListOffsetsError(in, v, kTopicAuthorizationFailed);
      break;
    case kCreateTopics:
      if (v <= 7) {
        auto req = DecodeCreateTopicsRequest(in, v);
        if (req.ok()) (void)EncodeCreateTopicsError(*req, v, kClusterAuthorizationFailed, "");
      }
      break;
    default:
      // Everything else: the bytes as record batches, the decoder with the most to get wrong.
      CheckBatches(frame);
      break;
  }
  return 0;
}
