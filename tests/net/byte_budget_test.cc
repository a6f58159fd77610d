// The byte budget the Kafka listener's connections share: takes that fit go at once, others
// wait and are granted in order as bytes come back, a smaller waiter may pass a larger one,
// and a cancelled wait is never granted.
#include "proxy/net/byte_budget.h"

#include <gtest/gtest.h>

#include <vector>

namespace saltproxy {
namespace {

TEST(ByteBudgetTest, TakesThatFitGoAtOnceAndOthersWaitForBytesBack) {
  uint64_t gauge = 0;
  int full = 0;
  ByteBudget budget(100, [&](uint64_t held) { gauge = held; }, [&] { ++full; });
  ByteBudget::Ticket ticket = 0;
  EXPECT_TRUE(budget.Take(60, &ticket, nullptr));
  EXPECT_EQ(ticket, 0u);
  EXPECT_EQ(gauge, 60u);
  std::vector<int> granted;
  EXPECT_FALSE(budget.Take(50, &ticket, [&] { granted.push_back(1); }));
  EXPECT_NE(ticket, 0u);
  EXPECT_EQ(full, 1);
  EXPECT_EQ(budget.held(), 60u);
  budget.Give(5);  // 55 held: 50 more does not fit yet
  EXPECT_TRUE(granted.empty());
  budget.Give(5);  // 50 held: it fits, and is taken for the waiter
  EXPECT_EQ(granted, std::vector<int>{1});
  EXPECT_EQ(budget.held(), 100u);
  EXPECT_EQ(gauge, 100u);
}

TEST(ByteBudgetTest, ASmallerWaiterMayPassALargerOneInOrderOtherwise) {
  ByteBudget budget(100);
  ByteBudget::Ticket t = 0;
  ASSERT_TRUE(budget.Take(100, &t, nullptr));
  std::vector<int> granted;
  EXPECT_FALSE(budget.Take(80, &t, [&] { granted.push_back(80); }));
  EXPECT_FALSE(budget.Take(10, &t, [&] { granted.push_back(10); }));
  EXPECT_FALSE(budget.Take(15, &t, [&] { granted.push_back(15); }));
  budget.Give(30);  // 70 held: 80 does not fit, 10 and then 15 do
  EXPECT_EQ(granted, (std::vector<int>{10, 15}));
  budget.Give(90);  // 5 held: the 80 goes
  EXPECT_EQ(granted, (std::vector<int>{10, 15, 80}));
  EXPECT_EQ(budget.held(), 85u);
}

TEST(ByteBudgetTest, ACancelledWaitIsNeverGranted) {
  ByteBudget budget(10);
  ByteBudget::Ticket t = 0;
  ASSERT_TRUE(budget.Take(10, &t, nullptr));
  bool called = false;
  ASSERT_FALSE(budget.Take(5, &t, [&] { called = true; }));
  EXPECT_TRUE(budget.Cancel(t));
  EXPECT_FALSE(budget.Cancel(t));  // once only
  budget.Give(10);
  EXPECT_FALSE(called);
  EXPECT_EQ(budget.held(), 0u);
}

}  // namespace
}  // namespace saltproxy
