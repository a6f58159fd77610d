// Kafka's wire primitives (KIP-482 flexible versions included): big-endian integers, zig-zag
// varints, unsigned varints, strings and byte arrays in their classic (int16/int32 length) and
// compact (unsigned varint length + 1) forms, arrays, UUIDs and tagged fields.
//
// WireReader never reads past its end and never trusts a length: a length that exceeds what is
// left is an error, so hostile input can neither crash it nor make it allocate.
//
//   WireReader in(frame);
//   int16_t api_key = in.Int16();
//   std::optional<std::string> client_id = in.NullableString();
//   if (!in.ok()) return in.status();
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace saltproxy::kafka {

using Uuid = std::array<uint8_t, 16>;

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  // A reader only views its bytes: reading a temporary would read freed memory.
  explicit WireReader(std::string&&) = delete;

  int8_t Int8();
  int16_t Int16();
  int32_t Int32();
  int64_t Int64();
  uint32_t Uint32();
  bool Bool() { return Int8() != 0; }
  int32_t VarInt();    // zig-zag
  int64_t VarLong();   // zig-zag
  uint32_t UnsignedVarInt();
  Uuid ReadUuid();

  // Classic (int16 length) or compact (unsigned varint length + 1) strings.
  std::string String(bool compact);
  std::optional<std::string> NullableString(bool compact);
  // Classic (int32 length) or compact bytes; a null is nullopt.
  std::optional<std::string_view> NullableBytes(bool compact);
  // An array's length: classic int32 (-1 is null) or compact (0 is null); -1 for null.
  int32_t ArrayLength(bool compact);
  // Skips a tagged-field section (flexible versions): every tag is unknown to us.
  void SkipTaggedFields();
  std::string_view Raw(size_t n);

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  size_t remaining() const { return data_.size() - pos_; }
  void Fail(std::string_view what);

 private:
  bool Need(size_t n);
  std::string_view data_;
  size_t pos_ = 0;
  absl::Status status_;
};

class WireWriter {
 public:
  void Int8(int8_t v) { out_.push_back(static_cast<char>(v)); }
  void Int16(int16_t v);
  void Int32(int32_t v);
  void Int64(int64_t v);
  void Uint32(uint32_t v);
  void Bool(bool v) { Int8(v ? 1 : 0); }
  void VarInt(int32_t v);
  void VarLong(int64_t v);
  void UnsignedVarInt(uint32_t v);
  void WriteUuid(const Uuid& v) { out_.append(reinterpret_cast<const char*>(v.data()), v.size()); }
  void String(std::string_view s, bool compact);
  void NullableString(const std::optional<std::string>& s, bool compact);
  void NullableBytes(std::optional<std::string_view> b, bool compact);
  void ArrayLength(int32_t n, bool compact);  // -1: null
  void EmptyTaggedFields() { UnsignedVarInt(0); }
  void Raw(std::string_view bytes) { out_.append(bytes); }

  std::string& data() { return out_; }
  size_t size() const { return out_.size(); }
  // Overwrites 4 bytes at `at` with a big-endian int32 (for lengths known only at the end).
  void PatchInt32(size_t at, int32_t v);
  void PatchUint32(size_t at, uint32_t v);

 private:
  std::string out_;
};

}  // namespace saltproxy::kafka
