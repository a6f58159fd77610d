#include "proxy/kafka/wire.h"

#include "absl/strings/str_cat.h"

namespace saltproxy::kafka {

void WireReader::Fail(std::string_view what) {
  if (status_.ok()) {
    status_ = absl::InvalidArgumentError(
        absl::StrCat(absl::string_view(what.data(), what.size()), " at byte ", pos_));
  }
  pos_ = data_.size();
}

bool WireReader::Need(size_t n) {
  if (!status_.ok()) return false;
  if (data_.size() - pos_ < n) {
    Fail(absl::StrCat("truncated: ", n, " more bytes needed, ", data_.size() - pos_, " left"));
    return false;
  }
  return true;
}

int8_t WireReader::Int8() {
  if (!Need(1)) return 0;
  return static_cast<int8_t>(data_[pos_++]);
}

int16_t WireReader::Int16() {
  if (!Need(2)) return 0;
  uint16_t v = (static_cast<uint8_t>(data_[pos_]) << 8) | static_cast<uint8_t>(data_[pos_ + 1]);
  pos_ += 2;
  return static_cast<int16_t>(v);
}

uint32_t WireReader::Uint32() {
  if (!Need(4)) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
  pos_ += 4;
  return v;
}

int32_t WireReader::Int32() { return static_cast<int32_t>(Uint32()); }

int64_t WireReader::Int64() {
  if (!Need(8)) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
  pos_ += 8;
  return static_cast<int64_t>(v);
}

uint32_t WireReader::UnsignedVarInt() {
  uint32_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (!Need(1)) return 0;
    uint8_t b = static_cast<uint8_t>(data_[pos_++]);
    v |= static_cast<uint32_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  Fail("varint longer than 5 bytes");
  return 0;
}

int32_t WireReader::VarInt() {
  uint32_t u = UnsignedVarInt();
  return static_cast<int32_t>((u >> 1) ^ -static_cast<int32_t>(u & 1));
}

int64_t WireReader::VarLong() {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (!Need(1)) return 0;
    uint8_t b = static_cast<uint8_t>(data_[pos_++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return static_cast<int64_t>((v >> 1) ^ -static_cast<int64_t>(v & 1));
  }
  Fail("varlong longer than 10 bytes");
  return 0;
}

Uuid WireReader::ReadUuid() {
  Uuid u{};
  if (!Need(16)) return u;
  for (int i = 0; i < 16; ++i) u[i] = static_cast<uint8_t>(data_[pos_ + i]);
  pos_ += 16;
  return u;
}

std::string_view WireReader::Raw(size_t n) {
  if (!Need(n)) return {};
  std::string_view v = data_.substr(pos_, n);
  pos_ += n;
  return v;
}

std::optional<std::string> WireReader::NullableString(bool compact) {
  int64_t len = compact ? static_cast<int64_t>(UnsignedVarInt()) - 1 : Int16();
  if (!ok() || len < 0) return std::nullopt;
  return std::string(Raw(static_cast<size_t>(len)));
}

std::string WireReader::String(bool compact) {
  int64_t len = compact ? static_cast<int64_t>(UnsignedVarInt()) - 1 : Int16();
  if (!ok()) return {};
  if (len < 0) {
    Fail("null where a string is required");
    return {};
  }
  return std::string(Raw(static_cast<size_t>(len)));
}

std::optional<std::string_view> WireReader::NullableBytes(bool compact) {
  int64_t len = compact ? static_cast<int64_t>(UnsignedVarInt()) - 1 : Int32();
  if (!ok() || len < 0) return std::nullopt;
  return Raw(static_cast<size_t>(len));
}

int32_t WireReader::ArrayLength(bool compact) {
  int64_t n = compact ? static_cast<int64_t>(UnsignedVarInt()) - 1 : Int32();
  if (!ok()) return -1;
  if (n < -1 || n > static_cast<int64_t>(remaining())) {
    // Every element takes at least one byte: a longer array cannot be in what is left.
    Fail(absl::StrCat("array of ", n, " elements in ", remaining(), " bytes"));
    return -1;
  }
  return static_cast<int32_t>(n);
}

void WireReader::SkipTaggedFields() {
  uint32_t n = UnsignedVarInt();
  for (uint32_t i = 0; i < n && ok(); ++i) {
    UnsignedVarInt();  // tag
    uint32_t size = UnsignedVarInt();
    Raw(size);
  }
}

void WireWriter::Int16(int16_t v) {
  out_.push_back(static_cast<char>((v >> 8) & 0xff));
  out_.push_back(static_cast<char>(v & 0xff));
}

void WireWriter::Uint32(uint32_t v) {
  for (int i = 3; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void WireWriter::Int32(int32_t v) { Uint32(static_cast<uint32_t>(v)); }

void WireWriter::Int64(int64_t v) {
  for (int i = 7; i >= 0; --i) {
    out_.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
}

void WireWriter::UnsignedVarInt(uint32_t v) {
  while (v >= 0x80) {
    out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out_.push_back(static_cast<char>(v));
}

void WireWriter::VarInt(int32_t v) {
  UnsignedVarInt((static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31));
}

void WireWriter::VarLong(int64_t v) {
  uint64_t u = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (u >= 0x80) {
    out_.push_back(static_cast<char>((u & 0x7f) | 0x80));
    u >>= 7;
  }
  out_.push_back(static_cast<char>(u));
}

void WireWriter::String(std::string_view s, bool compact) {
  if (compact) {
    UnsignedVarInt(static_cast<uint32_t>(s.size() + 1));
  } else {
    Int16(static_cast<int16_t>(s.size()));
  }
  out_.append(s);
}

void WireWriter::NullableString(const std::optional<std::string>& s, bool compact) {
  if (!s) {
    if (compact) {
      UnsignedVarInt(0);
    } else {
      Int16(-1);
    }
    return;
  }
  String(*s, compact);
}

void WireWriter::NullableBytes(std::optional<std::string_view> b, bool compact) {
  if (!b) {
    if (compact) {
      UnsignedVarInt(0);
    } else {
      Int32(-1);
    }
    return;
  }
  if (compact) {
    UnsignedVarInt(static_cast<uint32_t>(b->size() + 1));
  } else {
    Int32(static_cast<int32_t>(b->size()));
  }
  out_.append(*b);
}

void WireWriter::ArrayLength(int32_t n, bool compact) {
  if (compact) {
    UnsignedVarInt(static_cast<uint32_t>(n + 1));
  } else {
    Int32(n);
  }
}

void WireWriter::PatchUint32(size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out_[at + i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
}

void WireWriter::PatchInt32(size_t at, int32_t v) { PatchUint32(at, static_cast<uint32_t>(v)); }

}  // namespace saltproxy::kafka
