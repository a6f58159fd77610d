// The rule that tells a gone upstream cluster from a slow one (proxy/forward/reachability.h),
// on a clock the test moves by hand.
#include "proxy/forward/reachability.h"

#include <gtest/gtest.h>

namespace saltproxy {
namespace {

using Change = Reachability::Change;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);
absl::Time At(double seconds) { return kStart + absl::Seconds(seconds); }

TEST(ReachabilityTest, ReachableAtStart) {
  Reachability r(kStart);
  EXPECT_TRUE(r.reachable());
}

TEST(ReachabilityTest, UnansweredRequestWithNothingElseSinceIsLost) {
  Reachability r(kStart);
  EXPECT_EQ(r.Answered(At(1)), Change::kNone);
  // A metadata request sent at 2 s timed out at 7 s; nothing came back since 1 s.
  EXPECT_EQ(r.Unanswered(At(2)), Change::kLost);
  EXPECT_FALSE(r.reachable());
  // Said once: the next failed request changes nothing.
  EXPECT_EQ(r.Unanswered(At(7)), Change::kNone);
  EXPECT_FALSE(r.reachable());
}

TEST(ReachabilityTest, FirstAnswerRegainsOnce) {
  Reachability r(kStart);
  ASSERT_EQ(r.Unanswered(At(1)), Change::kLost);
  EXPECT_EQ(r.Answered(At(8)), Change::kRegained);
  EXPECT_TRUE(r.reachable());
  EXPECT_EQ(r.Answered(At(9)), Change::kNone);
  EXPECT_EQ(r.last_answer(), At(9));
}

// The overload the issue saw: a broker throttled far below the load answers metadata after
// more than its timeout, but acknowledgements keep arriving every couple of seconds.
TEST(ReachabilityTest, SlowButAnsweringClusterStaysReachable) {
  Reachability r(kStart);
  for (int second = 0; second < 120; ++second) {
    if (second % 2 == 0) {
      EXPECT_EQ(r.Answered(At(second + 0.5)), Change::kNone);
    }
    // Every 5 s a metadata request (sent 5 s before) timed out.
    if (second % 5 == 0 && second >= 5) {
      EXPECT_EQ(r.Unanswered(At(second - 5)), Change::kNone) << "at " << second << " s";
    }
    ASSERT_TRUE(r.reachable()) << "at " << second << " s";
  }
}

TEST(ReachabilityTest, AnswerDuringTheRequestKeepsItReachable) {
  Reachability r(kStart);
  r.Answered(At(4.9));  // an acknowledgement while the metadata request (sent at 0) waited
  EXPECT_EQ(r.Unanswered(At(0)), Change::kNone);
  EXPECT_TRUE(r.reachable());
}

TEST(ReachabilityTest, AnswersOutOfOrderKeepTheLatest) {
  Reachability r(kStart);
  r.Answered(At(5));
  r.Answered(At(3));  // reported later by a slower thread
  EXPECT_EQ(r.last_answer(), At(5));
  EXPECT_EQ(r.Unanswered(At(4)), Change::kNone);
}

}  // namespace
}  // namespace saltproxy
