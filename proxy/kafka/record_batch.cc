#include "proxy/kafka/record_batch.h"

#include <lz4frame.h>
#include <snappy.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "proxy/kafka/crc32c.h"
#include "proxy/kafka/wire.h"

namespace saltproxy::kafka {
namespace {

constexpr int16_t kCorruptMessage = 2;
constexpr int16_t kMessageTooLarge = 10;
constexpr int16_t kUnsupportedForMessageFormat = 43;

// Java's snappy framing (xerial): a magic header, then blocks each prefixed by its length.
constexpr unsigned char kXerialMagic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

absl::Status TooLarge(size_t max) {
  return absl::ResourceExhaustedError(
      absl::StrCat("records decompress to more than ", max, " bytes"));
}

absl::StatusOr<std::string> Gunzip(std::string_view data, size_t max) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) return absl::InternalError("inflateInit2 failed");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() >= max) {
      inflateEnd(&z);
      return TooLarge(max);
    }
    size_t chunk = std::min<size_t>(64 << 10, max - out.size());
    size_t at = out.size();
    out.resize(at + chunk);
    z.next_out = reinterpret_cast<Bytef*>(&out[at]);
    z.avail_out = static_cast<uInt>(chunk);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(at + chunk - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // input ended early
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      return absl::InvalidArgumentError(absl::StrCat("gzip: ", z.msg ? z.msg : "bad data"));
    }
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InvalidArgumentError("gzip: truncated");
  return out;
}

absl::StatusOr<std::string> Unsnappy(std::string_view data, size_t max) {
  std::string out;
  auto raw = [&](std::string_view block) -> absl::Status {
    size_t n = 0;
    if (!snappy::GetUncompressedLength(block.data(), block.size(), &n)) {
      return absl::InvalidArgumentError("snappy: bad block");
    }
    if (out.size() + n > max) return TooLarge(max);
    size_t at = out.size();
    out.resize(at + n);
    if (!snappy::RawUncompress(block.data(), block.size(), &out[at])) {
      return absl::InvalidArgumentError("snappy: bad block");
    }
    return absl::OkStatus();
  };
  if (data.size() >= 16 && std::memcmp(data.data(), kXerialMagic, 8) == 0) {
    WireReader in(data.substr(16));
    while (in.remaining() > 0) {
      int32_t n = in.Int32();
      std::string_view block = in.Raw(n < 0 ? 0 : static_cast<size_t>(n));
      if (!in.ok() || n <= 0) return absl::InvalidArgumentError("snappy: bad xerial block");
      if (absl::Status s = raw(block); !s.ok()) return s;
    }
    return out;
  }
  if (absl::Status s = raw(data); !s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> Unlz4(std::string_view data, size_t max) {
  LZ4F_dctx* ctx = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION))) {
    return absl::InternalError("lz4: no context");
  }
  std::string out;
  const char* src = data.data();
  size_t left = data.size();
  size_t hint = 1;
  while (left > 0 && hint != 0) {
    if (out.size() >= max) {
      LZ4F_freeDecompressionContext(ctx);
      return TooLarge(max);
    }
    size_t at = out.size();
    size_t room = std::min<size_t>(64 << 10, max - at);
    out.resize(at + room);
    size_t dst_size = room;
    size_t src_size = left;
    hint = LZ4F_decompress(ctx, &out[at], &dst_size, src, &src_size, nullptr);
    out.resize(at + dst_size);
    if (LZ4F_isError(hint)) {
      LZ4F_freeDecompressionContext(ctx);
      return absl::InvalidArgumentError(absl::StrCat("lz4: ", LZ4F_getErrorName(hint)));
    }
    src += src_size;
    left -= src_size;
    if (src_size == 0 && dst_size == 0) break;
  }
  LZ4F_freeDecompressionContext(ctx);
  if (hint != 0) return absl::InvalidArgumentError("lz4: truncated frame");
  return out;
}

absl::StatusOr<std::string> Unzstd(std::string_view data, size_t max) {
  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_initDStream(ds);
  std::string out;
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  size_t rc = 1;
  while (in.pos < in.size || rc != 0) {
    if (out.size() >= max) {
      ZSTD_freeDStream(ds);
      return TooLarge(max);
    }
    size_t at = out.size();
    size_t room = std::min<size_t>(64 << 10, max - at);
    out.resize(at + room);
    ZSTD_outBuffer o{&out[at], room, 0};
    rc = ZSTD_decompressStream(ds, &o, &in);
    out.resize(at + o.pos);
    if (ZSTD_isError(rc)) {
      ZSTD_freeDStream(ds);
      return absl::InvalidArgumentError(absl::StrCat("zstd: ", ZSTD_getErrorName(rc)));
    }
    if (in.pos == in.size && o.pos == 0 && rc != 0) break;
  }
  ZSTD_freeDStream(ds);
  if (rc != 0) return absl::InvalidArgumentError("zstd: truncated frame");
  return out;
}

// Takes `cost` from what is `*left` of a decode budget; false, taking nothing, if it is more.
bool Take(size_t* left, size_t cost) {
  if (cost > *left) return false;
  *left -= cost;
  return true;
}

// `*left`: what is left of the decode budget, which the record's headers take from
// (kDecodedHeaderCost each); ResourceExhausted beyond it.
absl::StatusOr<BatchRecord> DecodeRecord(std::string_view bytes, int64_t base_timestamp,
                                         size_t* left) {
  WireReader in(bytes);
  BatchRecord r;
  in.Int8();  // attributes: unused
  r.timestamp = base_timestamp + in.VarLong();
  r.offset_delta = in.VarInt();
  auto bytes_field = [&](const char* what) -> std::optional<std::string> {
    int32_t n = in.VarInt();
    if (n < -1) in.Fail(absl::StrCat("negative ", what, " length"));
    if (n < 0 || !in.ok()) return std::nullopt;
    return std::string(in.Raw(static_cast<size_t>(n)));
  };
  r.key = bytes_field("key");
  r.value = bytes_field("value");
  int32_t headers = in.VarInt();
  if (headers < 0 || headers > static_cast<int32_t>(in.remaining())) in.Fail("bad header count");
  if (!in.ok()) return in.status();
  if (!Take(left, static_cast<size_t>(headers) * kDecodedHeaderCost)) {
    return absl::ResourceExhaustedError(absl::StrCat(headers, " headers"));
  }
  r.headers.reserve(static_cast<size_t>(headers));
  for (int32_t i = 0; i < headers && in.ok(); ++i) {
    int32_t n = in.VarInt();
    if (n < 0) in.Fail("null header key");
    std::string name(in.Raw(n < 0 ? 0 : static_cast<size_t>(n)));
    std::optional<std::string> value = bytes_field("header value");
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  if (!in.ok()) return in.status();
  if (in.remaining() != 0) return absl::InvalidArgumentError("record longer than its fields");
  return r;
}

}  // namespace

absl::StatusOr<std::string> Decompress(Compression codec, std::string_view data, size_t max) {
  switch (codec) {
    case Compression::kNone: return std::string(data);
    case Compression::kGzip: return Gunzip(data, max);
    case Compression::kSnappy: return Unsnappy(data, max);
    case Compression::kLz4: return Unlz4(data, max);
    case Compression::kZstd: return Unzstd(data, max);
  }
  return absl::InvalidArgumentError("unknown compression codec");
}

std::string Compress(Compression codec, std::string_view data) {
  switch (codec) {
    case Compression::kNone: return std::string(data);
    case Compression::kGzip: {
      z_stream z{};
      deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
      std::string out(deflateBound(&z, data.size()) + 32, '\0');
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
      z.avail_in = static_cast<uInt>(data.size());
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      z.avail_out = static_cast<uInt>(out.size());
      deflate(&z, Z_FINISH);
      out.resize(z.total_out);
      deflateEnd(&z);
      return out;
    }
    case Compression::kSnappy: {
      // The xerial framing Java producers write, one block.
      std::string block;
      snappy::Compress(data.data(), data.size(), &block);
      WireWriter w;
      w.Raw(std::string_view(reinterpret_cast<const char*>(kXerialMagic), 8));
      w.Int32(1);
      w.Int32(1);
      w.Int32(static_cast<int32_t>(block.size()));
      w.Raw(block);
      return std::move(w.data());
    }
    case Compression::kLz4: {
      std::string out(LZ4F_compressFrameBound(data.size(), nullptr), '\0');
      size_t n = LZ4F_compressFrame(out.data(), out.size(), data.data(), data.size(), nullptr);
      out.resize(LZ4F_isError(n) ? 0 : n);
      return out;
    }
    case Compression::kZstd: {
      std::string out(ZSTD_compressBound(data.size()), '\0');
      size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
      out.resize(ZSTD_isError(n) ? 0 : n);
      return out;
    }
  }
  return std::string(data);
}

absl::StatusOr<std::vector<RecordBatch>> DecodeRecordBatches(std::string_view bytes,
                                                             size_t budget,
                                                             int16_t* error_code,
                                                             size_t* spent) {
  *error_code = kCorruptMessage;
  size_t left = budget;  // what the batches decoded so far leave of it
  auto over_budget = [&] {
    *error_code = kMessageTooLarge;
    return absl::ResourceExhaustedError(
        absl::StrCat("the records would take more than the ", budget,
                     " bytes decoded left to them of the request's kafka.max_decompressed_bytes"));
  };
  std::vector<RecordBatch> batches;
  WireReader in(bytes);
  while (in.ok() && in.remaining() > 0) {
    RecordBatch b;
    b.base_offset = in.Int64();
    int32_t length = in.Int32();
    if (!in.ok() || length < 49 || static_cast<size_t>(length) > in.remaining()) {
      return absl::InvalidArgumentError(
          absl::StrCat("record batch length ", length, " with ", in.remaining(), " bytes left"));
    }
    std::string_view body = in.Raw(static_cast<size_t>(length));
    WireReader h(body);
    b.partition_leader_epoch = h.Int32();
    int8_t magic = h.Int8();
    if (magic != 2) {
      *error_code = kUnsupportedForMessageFormat;
      return absl::InvalidArgumentError(
          absl::StrCat("record batch magic ", magic, ": only v2 (Kafka 0.11+) is accepted"));
    }
    uint32_t crc = h.Uint32();
    std::string_view checked = body.substr(9);
    if (Crc32c(checked.data(), checked.size()) != crc) {
      return absl::InvalidArgumentError("record batch CRC-32C does not match");
    }
    b.attributes = h.Int16();
    b.last_offset_delta = h.Int32();
    b.base_timestamp = h.Int64();
    b.max_timestamp = h.Int64();
    b.producer_id = h.Int64();
    b.producer_epoch = h.Int16();
    b.base_sequence = h.Int32();
    int32_t count = h.Int32();
    if (!h.ok()) return h.status();
    std::string_view raw = h.Raw(h.remaining());
    std::string decompressed;
    if (b.compression() != Compression::kNone) {
      if (static_cast<int>(b.compression()) > 4) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown compression codec ", static_cast<int>(b.compression())));
      }
      absl::StatusOr<std::string> d = Decompress(b.compression(), raw, left);
      if (!d.ok()) {
        if (absl::IsResourceExhausted(d.status())) return over_budget();
        return d.status();
      }
      decompressed = std::move(*d);
      raw = decompressed;
      left -= decompressed.size();  // Decompress keeps within `left`
    }
    if (count < 0 || static_cast<size_t>(count) > raw.size()) {
      return absl::InvalidArgumentError(absl::StrCat("record count ", count, " in ", raw.size(),
                                                     " bytes"));
    }
    if (!Take(&left, static_cast<size_t>(count) * kDecodedRecordCost)) return over_budget();
    WireReader records(raw);
    b.records.reserve(static_cast<size_t>(count));
    for (int32_t i = 0; i < count; ++i) {
      int32_t n = records.VarInt();
      if (!records.ok() || n < 0 || static_cast<size_t>(n) > records.remaining()) {
        return absl::InvalidArgumentError(absl::StrCat("record ", i, ": bad length ", n));
      }
      absl::StatusOr<BatchRecord> r = DecodeRecord(records.Raw(static_cast<size_t>(n)),
                                                   b.base_timestamp, &left);
      if (absl::IsResourceExhausted(r.status())) return over_budget();
      if (!r.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("record ", i, ": ", r.status().message()));
      }
      b.records.push_back(std::move(*r));
    }
    if (records.remaining() != 0) {
      return absl::InvalidArgumentError("record batch has bytes after its last record");
    }
    batches.push_back(std::move(b));
  }
  if (!in.ok()) return in.status();
  *error_code = 0;
  if (spent) *spent = budget - left;
  return batches;
}

std::string EncodeRecordBatch(const RecordBatch& batch, Compression compression) {
  WireWriter records;
  for (const BatchRecord& r : batch.records) {
    WireWriter one;
    one.Int8(0);
    one.VarLong(r.timestamp - batch.base_timestamp);
    one.VarInt(static_cast<int32_t>(r.offset_delta));
    auto bytes = [&](const std::optional<std::string>& v) {
      if (!v) {
        one.VarInt(-1);
      } else {
        one.VarInt(static_cast<int32_t>(v->size()));
        one.Raw(*v);
      }
    };
    bytes(r.key);
    bytes(r.value);
    one.VarInt(static_cast<int32_t>(r.headers.size()));
    for (const auto& [k, v] : r.headers) {
      one.VarInt(static_cast<int32_t>(k.size()));
      one.Raw(k);
      bytes(v);
    }
    records.VarInt(static_cast<int32_t>(one.size()));
    records.Raw(one.data());
  }
  std::string payload = Compress(compression, records.data());
  WireWriter w;
  w.Int64(batch.base_offset);
  size_t length_at = w.size();
  w.Int32(0);
  w.Int32(batch.partition_leader_epoch);
  w.Int8(2);
  size_t crc_at = w.size();
  w.Uint32(0);
  int16_t attributes = static_cast<int16_t>((batch.attributes & ~0x7) |
                                            static_cast<int16_t>(compression));
  w.Int16(attributes);
  w.Int32(batch.records.empty() ? 0 : static_cast<int32_t>(batch.records.back().offset_delta));
  w.Int64(batch.base_timestamp);
  w.Int64(batch.max_timestamp);
  w.Int64(batch.producer_id);
  w.Int16(batch.producer_epoch);
  w.Int32(batch.base_sequence);
  w.Int32(static_cast<int32_t>(batch.records.size()));
  w.Raw(payload);
  w.PatchInt32(length_at, static_cast<int32_t>(w.size() - length_at - 4));
  std::string_view checked = std::string_view(w.data()).substr(crc_at + 4);
  w.PatchUint32(crc_at, Crc32c(checked.data(), checked.size()));
  return std::move(w.data());
}

}  // namespace saltproxy::kafka
