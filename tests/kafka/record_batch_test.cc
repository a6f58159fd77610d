#include "proxy/kafka/record_batch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/kafka/crc32c.h"

namespace saltproxy::kafka {
namespace {

RecordBatch Sample() {
  RecordBatch b;
  b.base_timestamp = 1700000000000;
  b.max_timestamp = b.base_timestamp + 2;
  b.producer_id = 77;
  b.producer_epoch = 1;
  b.base_sequence = 10;
  for (int i = 0; i < 3; ++i) {
    BatchRecord r;
    r.offset_delta = i;
    r.timestamp = b.base_timestamp + i;
    r.key = "key-" + std::to_string(i % 2);
    r.value = std::string(100, static_cast<char>('a' + i));
    r.headers.push_back({"h", std::to_string(i)});
    r.headers.push_back({"null", std::nullopt});
    b.records.push_back(r);
  }
  b.records[2].key.reset();  // a null key
  return b;
}

TEST(Crc32cTest, KnownVector) {
  // The CRC-32C check value of "123456789".
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);
  EXPECT_EQ(Crc32cPortable("123456789", 9), 0xe3069283u);
}

TEST(Crc32cTest, AcceleratedAndPortableAgreeOnEveryLengthAndAlignment) {
  // Lengths around the three-way blocks (3 x 256 and 3 x 8192 bytes) and their remainders, at
  // every offset from an 8-byte boundary.
  std::string data(3 * 8192 * 2 + 3 * 256 * 2 + 64, '\0');
  uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 16);
  }
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 80; ++n) lengths.push_back(n);
  for (size_t base : {767u, 768u, 769u, 1536u, 24575u, 24576u, 24577u, 25344u, 49152u}) {
    for (size_t d = 0; d < 9; ++d) lengths.push_back(base + d);
  }
  lengths.push_back(data.size() - 8);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n : lengths) {
      if (offset + n > data.size()) continue;
      ASSERT_EQ(Crc32c(data.data() + offset, n), Crc32cPortable(data.data() + offset, n))
          << "length " << n << " at offset " << offset << " (accelerated: "
          << Crc32cAccelerated() << ")";
    }
  }
  // And the portable version against the bitwise definition.
  auto bitwise = [](const std::string& s) {
    uint32_t c = 0xffffffff;
    for (unsigned char b : s) {
      c ^= b;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78 : c >> 1;
    }
    return ~c;
  };
  std::string some = data.substr(3, 1000);
  EXPECT_EQ(Crc32cPortable(some.data(), some.size()), bitwise(some));
}

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, BatchRoundTripsThroughEveryCodec) {
  RecordBatch in = Sample();
  std::string bytes = EncodeRecordBatch(in, GetParam());
  int16_t code = -1;
  auto out = DecodeRecordBatches(bytes, 1 << 20, &code);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(code, 0);
  ASSERT_EQ(out->size(), 1u);
  const RecordBatch& b = (*out)[0];
  EXPECT_EQ(b.compression(), GetParam());
  EXPECT_EQ(b.producer_id, 77);
  EXPECT_EQ(b.base_sequence, 10);
  ASSERT_EQ(b.records.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b.records[i].key, in.records[i].key);
    EXPECT_EQ(b.records[i].value, in.records[i].value);
    EXPECT_EQ(b.records[i].timestamp, in.records[i].timestamp);
    EXPECT_EQ(b.records[i].headers, in.records[i].headers);
  }
}

TEST_P(CodecTest, DecompressionIsBoundedAgainstZipBombs) {
  RecordBatch bomb;
  BatchRecord r;
  r.value = std::string(4 << 20, 'z');  // compresses to almost nothing
  bomb.records.push_back(r);
  std::string bytes = EncodeRecordBatch(bomb, GetParam());
  int16_t code = 0;
  auto out = DecodeRecordBatches(bytes, 1 << 20, &code);
  if (GetParam() == Compression::kNone) {
    EXPECT_TRUE(out.ok());  // not compressed: the frame limit bounds it instead
  } else {
    EXPECT_FALSE(out.ok());
    EXPECT_EQ(code, 10);  // MESSAGE_TOO_LARGE
  }
}

TEST_P(CodecTest, EveryRecordCountsAgainstTheBudgetAsWellAsWhatIsDecompressed) {
  RecordBatch many;  // 1,000 empty records: a few bytes each on the wire, far more decoded
  many.records.resize(1000);
  std::string bytes = EncodeRecordBatch(many, GetParam());
  int16_t code = 0;
  size_t spent = 0;
  auto out = DecodeRecordBatches(bytes, 1 << 20, &code, &spent);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GE(spent, 1000 * kDecodedRecordCost);
  EXPECT_LT(spent, 1000 * kDecodedRecordCost + 10000);  // plus the decompressed bytes
  EXPECT_FALSE(DecodeRecordBatches(bytes, 999 * kDecodedRecordCost, &code).ok());
  EXPECT_EQ(code, 10);  // MESSAGE_TOO_LARGE
}

TEST_P(CodecTest, EveryHeaderCountsAgainstTheBudget) {
  RecordBatch batch;  // one record of 10,000 empty headers: 2 bytes each on the wire
  batch.records.resize(1);
  batch.records[0].headers.resize(10000);
  std::string bytes = EncodeRecordBatch(batch, GetParam());
  int16_t code = 0;
  size_t spent = 0;
  ASSERT_TRUE(DecodeRecordBatches(bytes, 1 << 22, &code, &spent).ok());
  EXPECT_GE(spent, 10000 * kDecodedHeaderCost);
  EXPECT_FALSE(DecodeRecordBatches(bytes, 5000 * kDecodedHeaderCost, &code).ok());
  EXPECT_EQ(code, 10);  // MESSAGE_TOO_LARGE, before the headers are made
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kSnappy, Compression::kLz4,
                                           Compression::kZstd));

TEST(RecordBatchTest, BadCrcIsCorruptMessage) {
  std::string bytes = EncodeRecordBatch(Sample(), Compression::kNone);
  bytes[bytes.size() - 5] ^= 0x40;
  int16_t code = 0;
  auto out = DecodeRecordBatches(bytes, 1 << 20, &code);
  EXPECT_FALSE(out.ok());
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.status().message().find("CRC"), std::string::npos);
}

TEST(RecordBatchTest, OldMagicIsUnsupportedForMessageFormat) {
  std::string bytes = EncodeRecordBatch(Sample(), Compression::kNone);
  bytes[16] = 1;  // magic
  int16_t code = 0;
  EXPECT_FALSE(DecodeRecordBatches(bytes, 1 << 20, &code).ok());
  EXPECT_EQ(code, 43);
}

TEST(RecordBatchTest, TruncatedBatchIsCorrupt) {
  std::string bytes = EncodeRecordBatch(Sample(), Compression::kNone);
  for (size_t cut : {size_t{5}, size_t{20}, bytes.size() - 1}) {
    int16_t code = 0;
    EXPECT_FALSE(DecodeRecordBatches(bytes.substr(0, cut), 1 << 20, &code).ok()) << cut;
    EXPECT_EQ(code, 2);
  }
}

TEST(RecordBatchTest, TwoBatchesBackToBack) {
  std::string bytes = EncodeRecordBatch(Sample(), Compression::kLz4) +
                      EncodeRecordBatch(Sample(), Compression::kZstd);
  int16_t code = 0;
  auto out = DecodeRecordBatches(bytes, 1 << 20, &code);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(), 2u);
}

TEST(RecordBatchTest, GarbageCompressedPayloadIsCorrupt) {
  for (Compression c : {Compression::kGzip, Compression::kSnappy, Compression::kLz4,
                        Compression::kZstd}) {
    EXPECT_FALSE(Decompress(c, "definitely not compressed", 1 << 20).ok());
  }
}

TEST(RecordBatchTest, RawSnappyAsLibrdkafkaMaySendIsAccepted) {
  std::string framed = Compress(Compression::kSnappy, "hello hello hello");
  // Strip the xerial framing (16 bytes of header, 4 of block length): raw snappy remains.
  auto raw = Decompress(Compression::kSnappy, framed.substr(20), 1 << 20);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(*raw, "hello hello hello");
}

}  // namespace
}  // namespace saltproxy::kafka
