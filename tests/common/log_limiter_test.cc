// One log line an interval per key, with a count of the lines held back.
#include "proxy/common/log_limiter.h"

#include <gtest/gtest.h>

namespace saltproxy {
namespace {

TEST(LogLimiterTest, OneLineASecondPerKeyWithTheCountHeldBack) {
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  LogLimiter limiter(absl::Seconds(1), [&] { return now; });
  uint64_t not_logged = 99;
  EXPECT_TRUE(limiter.Allow("fetch", &not_logged));
  EXPECT_EQ(not_logged, 0u);
  EXPECT_FALSE(limiter.Allow("fetch", &not_logged));
  EXPECT_FALSE(limiter.Allow("fetch", &not_logged));
  EXPECT_TRUE(limiter.Allow("find_coordinator", &not_logged));  // another key: its own second
  now += absl::Milliseconds(999);
  EXPECT_FALSE(limiter.Allow("fetch", &not_logged));
  now += absl::Milliseconds(1);
  EXPECT_TRUE(limiter.Allow("fetch", &not_logged));
  EXPECT_EQ(not_logged, 3u);  // the three held back since the last line
  now += absl::Seconds(5);
  EXPECT_TRUE(limiter.Allow("fetch", &not_logged));
  EXPECT_EQ(not_logged, 0u);
}

}  // namespace
}  // namespace saltproxy
