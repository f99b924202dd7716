#include "lmcache/eviction_controller.h"

#include <gtest/gtest.h>

#include <thread>

#include "test_util.h"

namespace lmcache {
namespace {

using testing::Key;
constexpr uint64_t kMiB = 1ull << 20;

class EvictionControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    L1Options o;
    o.arena.capacity_bytes = 10 * kMiB;
    o.arena.lazy = false;
    o.arena.huge_pages = false;
    o.clock = &clock_;
    o.read_ttl_seconds = 5;
    o.eviction_policy = policy_;
    auto r = L1Store::Create(o);
    ASSERT_TRUE(r.ok());
    store_ = std::move(r).value();
  }
  void Fill(uint64_t from, uint64_t n, std::string_view salt = "") {
    std::vector<ObjectKey> keys;
    for (uint64_t i = from; i < from + n; ++i) keys.push_back(Key(i, salt));
    std::vector<uint64_t> sizes(n, kMiB);
    std::vector<ReserveOutcome> out;
    std::vector<ObjectView> views;
    ASSERT_TRUE(store_->ReserveWrite(keys, sizes, 1, &out, &views).ok());
    ASSERT_TRUE(store_->FinishWrite(keys, 1).ok());
  }
  ManualClock clock_;
  std::string policy_ = "LRU";
  std::unique_ptr<L1Store> store_;
};

TEST_F(EvictionControllerTest, RejectsBadOptions) {
  EXPECT_FALSE(EvictionController::Create(nullptr, {}).ok());
  EXPECT_FALSE(EvictionController::Create(store_.get(), {0.0, 0.2, 1}).ok());
  EXPECT_FALSE(EvictionController::Create(store_.get(), {1.1, 0.2, 1}).ok());
  EXPECT_FALSE(EvictionController::Create(store_.get(), {0.8, 0.0, 1}).ok());
  EXPECT_FALSE(EvictionController::Create(store_.get(), {0.8, 0.2, 0}).ok());
}

TEST_F(EvictionControllerTest, BelowWatermarkNothingHappens) {
  auto c = EvictionController::Create(store_.get(), {0.8, 0.2, 1'000'000'000}).value();
  Fill(0, 7);
  c->RunOnce();
  EXPECT_EQ(store_->Stats().resident_objects, 7u);
  EXPECT_EQ(c->Stats().evictions_triggered, 0u);
  EXPECT_EQ(c->Stats().ticks, 1u);
}

TEST_F(EvictionControllerTest, AtWatermarkEvictsRatioOfUsedBytes) {
  auto c = EvictionController::Create(store_.get(), {0.8, 0.2, 1'000'000'000}).value();
  Fill(0, 10);  // 100%
  c->RunOnce();
  // 20% of 10 MiB used = 2 MiB = the two oldest objects.
  EXPECT_EQ(store_->Stats().resident_objects, 8u);
  EXPECT_FALSE(store_->Contains(Key(0)));
  EXPECT_FALSE(store_->Contains(Key(1)));
  EXPECT_TRUE(store_->Contains(Key(2)));
  EXPECT_EQ(c->Stats().evicted_bytes, 2 * kMiB);
}

TEST_F(EvictionControllerTest, LockedObjectsSurviveAndExpiredLocksAreSwept) {
  auto c = EvictionController::Create(store_.get(), {0.2, 1.0, 1'000'000'000}).value();
  Fill(0, 10);
  std::vector<ObjectKey> locked{Key(0), Key(1), Key(2)};
  std::vector<ObjectView> v;
  ASSERT_EQ(store_->ReserveReadPrefix(locked, 1, &v), 3u);
  c->RunOnce();
  EXPECT_EQ(store_->Stats().resident_objects, 3u);
  EXPECT_TRUE(store_->Contains(Key(0)));
  clock_.AdvanceSeconds(6);  // locks expire
  c->RunOnce();              // sweeps, then evicts them
  EXPECT_EQ(store_->Stats().resident_objects, 0u);
  EXPECT_GE(c->Stats().swept, 3u);
}

TEST_F(EvictionControllerTest, ThreadTicksAndStops) {
  auto c = EvictionController::Create(store_.get(), {0.8, 0.2, 5'000'000}).value();
  EXPECT_FALSE(c->healthy());
  ASSERT_TRUE(c->Start().ok());
  EXPECT_EQ(c->Start().code(), StatusCode::kUnavailable);
  Fill(0, 10);
  for (int i = 0; i < 400 && store_->Stats().resident_objects == 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_LT(store_->Stats().resident_objects, 10u);
  EXPECT_TRUE(c->healthy());
  EXPECT_GT(c->Stats().ticks, 0u);
  c->Stop();
  c->Stop();  // idempotent
  EXPECT_FALSE(c->healthy());
  EXPECT_FALSE(c->Stats().thread_alive);
  ASSERT_TRUE(c->Start().ok());  // restartable
  c->Stop();
}

TEST_F(EvictionControllerTest, StaleTickMakesItUnhealthy) {
  auto c = EvictionController::Create(store_.get(), {0.8, 0.2, 1'000'000'000}).value();
  ASSERT_TRUE(c->Start().ok());
  EXPECT_TRUE(c->healthy());
  clock_.AdvanceSeconds(60);  // no tick for a minute of (store) time
  EXPECT_FALSE(c->healthy());
  c->Stop();
}

class IsolatedControllerTest : public EvictionControllerTest {
 protected:
  IsolatedControllerTest() { policy_ = "IsolatedLRU"; }
};

TEST_F(IsolatedControllerTest, QuotasAreEnforcedEachTick) {
  ASSERT_TRUE(store_->policy()->SetQuota(Symbol::Intern("a"), 3 * kMiB).ok());
  Fill(0, 4, "a");
  Fill(10, 2, "b");  // no quota: allow-list semantics, limit 0
  auto c = EvictionController::Create(store_.get(), {0.8, 0.2, 1'000'000'000}).value();
  c->RunOnce();  // 60% used: below the global watermark; quotas still apply
  SaltUsage u = store_->UsageBySalt();
  EXPECT_EQ(u.count(Symbol::Intern("b")), 0u);
  EXPECT_LE(u[Symbol::Intern("a")], 3 * kMiB);
  EXPECT_GT(c->Stats().quota_evicted_bytes, 0u);
}

}  // namespace
}  // namespace lmcache
