// Kafka's RecordBatch v2 ("magic 2", the only format since Kafka 0.11): decoding what producers
// send (CRC-32C checked; gzip, snappy, lz4 and zstd decompressed, with a bound on the
// decompressed size against zip bombs) and encoding batches (for tests and round trips).
//
//   ASSIGN_OR_RETURN(std::vector<RecordBatch> batches,
//                    DecodeRecordBatches(bytes, 64 << 20));
//   for (const RecordBatch& b : batches) for (const BatchRecord& r : b.records) ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace saltproxy::kafka {

enum class Compression : int8_t { kNone = 0, kGzip = 1, kSnappy = 2, kLz4 = 3, kZstd = 4 };

struct BatchRecord {
  int64_t offset_delta = 0;
  int64_t timestamp = 0;  // absolute: the batch's base timestamp plus the record's delta
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
};

struct RecordBatch {
  int64_t base_offset = 0;
  int32_t partition_leader_epoch = -1;
  int16_t attributes = 0;
  int32_t last_offset_delta = 0;
  int64_t base_timestamp = 0;
  int64_t max_timestamp = 0;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  std::vector<BatchRecord> records;

  Compression compression() const { return static_cast<Compression>(attributes & 0x7); }
  bool log_append_time() const { return attributes & 0x8; }
  bool transactional() const { return attributes & 0x10; }
  bool control() const { return attributes & 0x20; }
};

// Why a batch was refused: the Kafka error code to answer with, and a message for the log.
struct BatchError {
  int16_t code;
  std::string message;
};

// Decodes every batch in a Produce request's partition `records` bytes. Errors name the Kafka
// error code: CORRUPT_MESSAGE (2) for a bad CRC, truncation or bad compression;
// UNSUPPORTED_FOR_MESSAGE_FORMAT (43) for a magic other than 2; MESSAGE_TOO_LARGE (10) when the
// decoded batches would cost more than `budget` bytes: what compressed batches decompress to,
// plus kDecodedRecordCost for every record and kDecodedHeaderCost for every header (a few bytes
// of input make a record or a header of that size in memory). `spent`, when given, is told the
// cost of what was decoded.
inline constexpr size_t kDecodedRecordCost = sizeof(BatchRecord);
inline constexpr size_t kDecodedHeaderCost = sizeof(decltype(BatchRecord::headers)::value_type);
absl::StatusOr<std::vector<RecordBatch>> DecodeRecordBatches(std::string_view bytes,
                                                             size_t budget,
                                                             int16_t* error_code,
                                                             size_t* spent = nullptr);

// Encodes one batch (CRC computed) with the given compression.
std::string EncodeRecordBatch(const RecordBatch& batch, Compression compression);

// The codecs on their own (exposed for tests and the fuzz target).
absl::StatusOr<std::string> Decompress(Compression codec, std::string_view data, size_t max_size);
std::string Compress(Compression codec, std::string_view data);

}  // namespace saltproxy::kafka
