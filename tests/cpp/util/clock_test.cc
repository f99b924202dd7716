#include "lmcache/clock.h"

#include <gtest/gtest.h>

namespace lmcache {
namespace {

TEST(ClockTest, DefaultIsMonotonic) {
  Clock* c = Clock::Default();
  int64_t a = c->NowNs();
  int64_t b = c->NowNs();
  EXPECT_LE(a, b);
  EXPECT_EQ(c, Clock::Default());
}

TEST(ClockTest, ManualMovesOnlyWhenTold) {
  ManualClock c(100);
  EXPECT_EQ(c.NowNs(), 100);
  c.Advance(5);
  EXPECT_EQ(c.NowNs(), 105);
  c.AdvanceSeconds(1.5);
  EXPECT_EQ(c.NowNs(), 105 + 1'500'000'000);
  EXPECT_EQ(SecondsToNs(2), 2'000'000'000);
}

}  // namespace
}  // namespace lmcache
