// The public salting contract (include/saltproxy/): Kafka's murmur2, the Java default
// partition and salted keys. Where salts go is the proxy's choice, published in the salt map
// (tests/salting/router_test.cc).
#include <gtest/gtest.h>

#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"

namespace saltproxy {
namespace {

int32_t JavaMurmur2(std::string_view s) { return static_cast<int32_t>(murmur2(s.data(), s.size())); }

TEST(SaltingContractTest, Murmur2MatchesKafkaUtilsTestVectors) {
  // The vectors of Kafka's own UtilsTest.testMurmur2.
  EXPECT_EQ(JavaMurmur2("21"), -973932308);
  EXPECT_EQ(JavaMurmur2("foobar"), -790332482);
  EXPECT_EQ(JavaMurmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(JavaMurmur2("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(JavaMurmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
  EXPECT_EQ(JavaMurmur2("abc"), 479470107);
}

TEST(SaltingContractTest, DefaultPartitionIsPositiveMurmur2ModPartitions) {
  EXPECT_EQ(DefaultPartition("foobar", 16), (-790332482 & 0x7fffffff) % 16);
  for (int32_t n : {1, 3, 16, 1000}) {
    int32_t p = DefaultPartition("any key", n);
    EXPECT_GE(p, 0);
    EXPECT_LT(p, n);
  }
}

TEST(SaltingContractTest, SaltZeroIsTheKeyItself) {
  EXPECT_EQ(SaltedKey("nike", 0), "nike");
}

TEST(SaltingContractTest, SaltedKeyAppendsUnitSeparatorAndDecimalIndex) {
  EXPECT_EQ(SaltedKey("nike", 7), std::string("nike\x1f" "7"));
  EXPECT_EQ(UnsaltedKey(SaltedKey("nike", 12)), "nike");
  EXPECT_EQ(UnsaltedKey("plain"), "plain");
  EXPECT_EQ(UnsaltedKey(std::string("a\x1fz")), std::string("a\x1fz"));
}

TEST(SaltingContractTest, ASaltedKeyNamesItsPartition) {
  const int32_t home = DefaultPartition("nike", 16);
  EXPECT_EQ(SaltedKeyFor("nike", home, 16), "nike");
  const int32_t other = (home + 5) % 16;
  EXPECT_EQ(SaltedKeyFor("nike", other, 16), "nike\x1f" + std::to_string(other));
  EXPECT_EQ(UnsaltedKey(SaltedKeyFor("nike", other, 16)), "nike");
  // Partition 0 is named too when it is not the key's own.
  if (home != 0) {
    EXPECT_EQ(SaltedKeyFor("nike", 0, 16), std::string("nike\x1f" "0"));
  }
}

}  // namespace
}  // namespace saltproxy
