// Many threads hammering one small L1 (constant eviction pressure). Every
// reader verifies the bytes of what it holds a lock on, so memory reused
// while locked (an eviction or free bug) shows up as corruption; the final
// accounting must balance. Run under TSAN in CI.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
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

}  // namespace
}  // namespace lmcache
