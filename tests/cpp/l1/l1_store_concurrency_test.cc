// Many threads hammering one small L1 (constant eviction pressure). Every
// reader verifies the bytes of what it holds a lock on, so memory reused
// while locked (an eviction or free bug) shows up as corruption; the final
// accounting must balance. Run under TSAN in CI.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "lmcache/eviction_controller.h"
#include "lmcache/l1_store.h"
#include "test_util.h"

namespace lmcache {
namespace {

using testing::Key;
using testing::PatternByte;

constexpr uint64_t kObj = 16 * 1024;

uint64_t SeedOf(uint64_t key_id) { return key_id * 2654435761u; }

TEST(L1StoreConcurrencyTest, ReadersNeverSeeReusedMemory) {
  L1Options o;
  o.arena.capacity_bytes = 64 * kObj;  // far fewer slots than keys
  o.arena.lazy = false;
  o.arena.huge_pages = false;
  o.num_shards = 4;
  auto r = L1Store::Create(o);
  ASSERT_TRUE(r.ok());
  auto store = std::move(r).value();
  auto ctl = EvictionController::Create(store.get(), {0.7, 0.3, 2'000'000});
  ASSERT_TRUE(ctl.ok());
  ASSERT_TRUE(ctl.value()->Start().ok());

  std::atomic<uint64_t> corrupt{0}, reads{0}, writes{0}, nospace{0};
  const int kThreads = 4;
  const int kOps = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1234 + t);
      for (int op = 0; op < kOps; ++op) {
        const uint64_t base = rng() % 200;
        const uint64_t n = 1 + rng() % 4;
        std::vector<ObjectKey> keys;
        for (uint64_t i = 0; i < n; ++i) keys.push_back(Key(base + i));
        const int what = static_cast<int>(rng() % 10);
        if (what < 4) {  // write
          std::vector<uint64_t> sizes(n, kObj);
          std::vector<ReserveOutcome> out;
          std::vector<ObjectView> views;
          Status st = store->ReserveWrite(keys, sizes, static_cast<WriterTag>(t + 1), &out, &views);
          if (!st.ok()) {
            nospace.fetch_add(1);
            continue;
          }
          for (uint64_t i = 0; i < n; ++i) {
            if (out[i] != ReserveOutcome::kReserved) continue;
            for (uint64_t b = 0; b < kObj; b += 64) views[i].data[b] = PatternByte(SeedOf(base + i), b);
          }
          if (rng() % 8 == 0) {
            store->AbortWrite(keys, static_cast<WriterTag>(t + 1));
          } else {
            (void)store->FinishWrite(keys, static_cast<WriterTag>(t + 1));
            writes.fetch_add(1);
          }
        } else if (what < 8) {  // read
          std::vector<ObjectView> views;
          size_t hits = store->ReserveReadPrefix(keys, 1, &views);
          for (size_t i = 0; i < hits; ++i) {
            for (uint64_t b = 0; b < kObj; b += 64) {
              if (views[i].data[b] != PatternByte(SeedOf(base + i), b)) {
                corrupt.fetch_add(1);
                break;
              }
            }
          }
          store->FinishRead(std::span<const ObjectKey>(keys.data(), hits));
          reads.fetch_add(1);
        } else if (what == 8) {
          store->Delete(keys, rng() % 2 == 0);
        } else {
          store->Touch(keys);
          store->EvictBytes(kObj);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ctl.value()->Stop();

  EXPECT_EQ(corrupt.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GT(writes.load(), 0u);
  L1Stats st = store->Stats();
  EXPECT_EQ(st.read_locked_objects, 0u);
  EXPECT_EQ(st.staging_objects, 0u);
  EXPECT_EQ(st.doomed_objects, 0u);
  // Every byte in use belongs to a visible object.
  EXPECT_EQ(st.used_bytes, st.resident_objects * kObj);
  store->Clear(false);
  EXPECT_EQ(store->Stats().used_bytes, 0u);
  EXPECT_EQ(store->Stats().resident_objects, 0u);
}

// Listing passes while other threads insert, evict, delete and clear: no
// crash, every pass ends, no key twice in a pass, and the objects that stay
// resident throughout (read-locked, so never evicted) are in every pass.
TEST(L1StoreConcurrencyTest, ListingDuringChurn) {
  L1Options o;
  o.arena.capacity_bytes = 256 * 4096;
  o.arena.lazy = false;
  o.arena.huge_pages = false;
  o.num_shards = 8;
  auto r = L1Store::Create(o);
  ASSERT_TRUE(r.ok());
  auto store = std::move(r).value();

  // 16 objects locked for the whole test.
  std::vector<ObjectKey> pinned;
  for (uint64_t i = 0; i < 16; ++i) pinned.push_back(Key(1'000'000 + i));
  {
    std::vector<uint64_t> sizes(pinned.size(), 4096);
    std::vector<ReserveOutcome> out;
    std::vector<ObjectView> views;
    ASSERT_TRUE(store->ReserveWrite(pinned, sizes, 99, &out, &views).ok());
    ASSERT_TRUE(store->FinishWriteAndReserveRead(pinned, 99, 1, false, &views).ok());
  }

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> churn_ops{0};
  std::vector<std::thread> churn;
  for (int t = 0; t < 3; ++t) {
    churn.emplace_back([&, t] {
      std::mt19937_64 rng(77 + t);
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t base = rng() % 2000;
        std::vector<ObjectKey> keys;
        for (uint64_t i = 0; i < 8; ++i) keys.push_back(Key(base + i));
        const int what = static_cast<int>(rng() % 20);
        if (what < 14) {  // write (evicts synchronously when full)
          std::vector<uint64_t> sizes(keys.size(), 1 + rng() % 8192);
          std::vector<ReserveOutcome> out;
          std::vector<ObjectView> views;
          if (store->ReserveWrite(keys, sizes, static_cast<WriterTag>(t + 1), &out, &views).ok()) {
            (void)store->FinishWrite(keys, static_cast<WriterTag>(t + 1));
          }
        } else if (what < 18) {
          store->Delete(keys, false);
        } else if (what < 19) {
          store->EvictBytes(64 * 4096);
        } else {
          store->Clear(false);
        }
        churn_ops.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  uint64_t passes = 0, pages = 0, listed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  std::mt19937_64 rng(5);
  while (std::chrono::steady_clock::now() < deadline || passes < 20) {
    L1ListRequest req;
    req.page_size = 1 + rng() % 40;
    std::unordered_set<ObjectKey, ObjectKeyHash> seen;
    size_t pass_pages = 0;
    while (true) {
      Result<L1ObjectPage> page = store->ListObjects(req);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      for (const L1ObjectInfo& info : page.value().objects) {
        ASSERT_TRUE(seen.insert(info.key).second) << "listed twice in one pass: " << info.key.ToString();
        ASSERT_GT(info.size, 0u);
        ASSERT_GE(info.allocated_bytes, info.size);
      }
      ++pass_pages;
      // At most ~256 objects fit, so a pass is short whatever the churn.
      ASSERT_LT(pass_pages, 1000u) << "a listing pass does not end";
      if (page.value().next_cursor.empty()) break;
      req.cursor = page.value().next_cursor;
    }
    for (const ObjectKey& k : pinned) ASSERT_TRUE(seen.count(k)) << "resident all along but not listed";
    ++passes;
    pages += pass_pages;
    listed += seen.size();
  }
  stop = true;
  for (auto& th : churn) th.join();
  EXPECT_GT(churn_ops.load(), 100u);
  EXPECT_EQ(store->FinishRead(pinned), pinned.size());
  std::printf("listing under churn: %llu passes, %llu pages, %llu objects listed, %llu churn ops\n",
              static_cast<unsigned long long>(passes), static_cast<unsigned long long>(pages),
              static_cast<unsigned long long>(listed), static_cast<unsigned long long>(churn_ops.load()));
}

}  // namespace
}  // namespace lmcache
