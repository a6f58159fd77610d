// One hostile-input test per decode primitive, and round trips.
#include "proxy/kafka/wire.h"

#include <gtest/gtest.h>

namespace saltproxy::kafka {
namespace {

TEST(WireTest, IntegersRoundTripBigEndian) {
  WireWriter w;
  w.Int8(-2);
  w.Int16(-12345);
  w.Int32(0x01020304);
  w.Int64(-5);
  EXPECT_EQ(w.data().substr(3, 4), std::string("\x01\x02\x03\x04", 4));
  WireReader r(w.data());
  EXPECT_EQ(r.Int8(), -2);
  EXPECT_EQ(r.Int16(), -12345);
  EXPECT_EQ(r.Int32(), 0x01020304);
  EXPECT_EQ(r.Int64(), -5);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(WireTest, TruncatedIntegerFailsWithoutReadingPastTheEnd) {
  WireReader r(std::string_view("\x01\x02\x03", 3));
  EXPECT_EQ(r.Int32(), 0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Int8(), 0);  // stays failed
}

TEST(WireTest, VarintsRoundTripZigZag) {
  WireWriter w;
  for (int32_t v : {0, -1, 1, 63, -64, 300, INT32_MAX, INT32_MIN}) w.VarInt(v);
  for (int64_t v : {int64_t{0}, int64_t{-1}, INT64_MAX, INT64_MIN}) w.VarLong(v);
  WireReader r(w.data());
  for (int32_t v : {0, -1, 1, 63, -64, 300, INT32_MAX, INT32_MIN}) EXPECT_EQ(r.VarInt(), v);
  for (int64_t v : {int64_t{0}, int64_t{-1}, INT64_MAX, INT64_MIN}) EXPECT_EQ(r.VarLong(), v);
  EXPECT_TRUE(r.ok());
}

TEST(WireTest, OverlongVarintIsRefused) {
  const std::string eleven(11, '\xff'), six(6, '\xff');
  WireReader r(eleven);
  r.VarLong();
  EXPECT_FALSE(r.ok());
  WireReader r2(six);
  r2.UnsignedVarInt();
  EXPECT_FALSE(r2.ok());
}

TEST(WireTest, StringsClassicAndCompact) {
  WireWriter w;
  w.String("abc", false);
  w.String("de", true);
  w.NullableString(std::nullopt, false);
  w.NullableString(std::nullopt, true);
  WireReader r(w.data());
  EXPECT_EQ(r.String(false), "abc");
  EXPECT_EQ(r.String(true), "de");
  EXPECT_FALSE(r.NullableString(false).has_value());
  EXPECT_FALSE(r.NullableString(true).has_value());
  EXPECT_TRUE(r.ok());
}

TEST(WireTest, StringLengthBeyondTheDataIsRefused) {
  WireReader r(std::string_view("\x7f\xff" "ab", 4));
  r.String(false);
  EXPECT_FALSE(r.ok());
}

TEST(WireTest, NullWhereAStringIsRequiredIsRefused) {
  WireReader r(std::string_view("\xff\xff", 2));
  r.String(false);
  EXPECT_FALSE(r.ok());
}

TEST(WireTest, BytesLengthBeyondTheDataIsRefused) {
  WireReader r(std::string_view("\x00\x00\x10\x00" "x", 5));
  r.NullableBytes(false);
  EXPECT_FALSE(r.ok());
}

TEST(WireTest, AbsurdArrayLengthIsRefusedBeforeAnyAllocation) {
  WireReader r(std::string_view("\x7f\xff\xff\xff", 4));
  EXPECT_EQ(r.ArrayLength(false), -1);
  EXPECT_FALSE(r.ok());
  WireReader compact(std::string_view("\x00", 1));
  EXPECT_EQ(compact.ArrayLength(true), -1);  // 0 is a null compact array
  EXPECT_TRUE(compact.ok());
}

TEST(WireTest, TaggedFieldsAreSkipped) {
  WireWriter w;
  w.UnsignedVarInt(2);   // two tags
  w.UnsignedVarInt(0);   // tag 0
  w.UnsignedVarInt(3);   // 3 bytes
  w.Raw("xyz");
  w.UnsignedVarInt(7);
  w.UnsignedVarInt(0);
  w.Int8(42);
  WireReader r(w.data());
  r.SkipTaggedFields();
  EXPECT_EQ(r.Int8(), 42);
  EXPECT_TRUE(r.ok());
}

TEST(WireTest, TruncatedTaggedFieldIsRefused) {
  WireReader r(std::string_view("\x01\x00\x09" "ab", 5));
  r.SkipTaggedFields();
  EXPECT_FALSE(r.ok());
}

TEST(WireTest, UuidRoundTrips) {
  Uuid u{};
  for (int i = 0; i < 16; ++i) u[i] = static_cast<uint8_t>(i * 7);
  WireWriter w;
  w.WriteUuid(u);
  WireReader r(w.data());
  EXPECT_EQ(r.ReadUuid(), u);
  WireReader short_read(std::string_view("abc", 3));
  short_read.ReadUuid();
  EXPECT_FALSE(short_read.ok());
}

}  // namespace
}  // namespace saltproxy::kafka
