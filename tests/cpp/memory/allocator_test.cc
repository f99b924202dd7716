#include "lmcache/allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <thread>
#include <vector>

namespace lmcache {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// Frees everything in `live` and checks the allocator is back to one block.
void ExpectPristine(const Allocator& alloc) {
  const AllocatorStats s = alloc.Stats();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.num_allocations, 0u);
  EXPECT_EQ(s.free_bytes, s.region_bytes);
  EXPECT_EQ(s.num_free_blocks, s.region_bytes > 0 ? 1u : 0u);
  EXPECT_EQ(s.largest_free_block, s.region_bytes);
}

TEST(AllocatorTest, AlignmentAndRounding) {
  Allocator alloc(64 * kMiB, 4096);
  EXPECT_EQ(alloc.align(), 4096u);
  EXPECT_EQ(alloc.RoundUp(1), 4096u);
  EXPECT_EQ(alloc.RoundUp(4096), 4096u);
  EXPECT_EQ(alloc.RoundUp(4097), 8192u);
  EXPECT_EQ(alloc.RoundUp(0), 0u);
  std::vector<Allocation> live;
  for (uint64_t bytes : std::vector<uint64_t>{1, 100, 4095, 4096, 4097, 12345, 2 * kMiB + 1}) {
    Allocation a = alloc.Allocate(bytes);
    ASSERT_TRUE(a.valid()) << bytes;
    EXPECT_EQ(a.offset % 4096, 0u);
    EXPECT_EQ(a.size, alloc.RoundUp(bytes));
    live.push_back(a);
  }
  const AllocatorStats s = alloc.Stats();
  uint64_t sum = 0;
  for (const Allocation& a : live) sum += a.size;
  EXPECT_EQ(s.used_bytes, sum);
  EXPECT_EQ(s.num_allocations, live.size());
  for (const Allocation& a : live) alloc.Free(a);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, ZeroAndTooLargeAreInvalid) {
  Allocator alloc(1 * kMiB, 64);
  EXPECT_FALSE(alloc.Allocate(0).valid());
  EXPECT_FALSE(alloc.Allocate(kMiB + 1).valid());
  EXPECT_FALSE(alloc.Allocate(UINT64_MAX).valid());
  EXPECT_FALSE(alloc.Allocate(UINT64_MAX - 10).valid());
  Allocation all = alloc.Allocate(kMiB);
  ASSERT_TRUE(all.valid());
  EXPECT_EQ(all.offset, 0u);
  alloc.Free(all);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, EmptyRegionThenExtend) {
  Allocator alloc(0, 4096);
  EXPECT_FALSE(alloc.Allocate(1).valid());
  ExpectPristine(alloc);
  alloc.Extend(8192);
  Allocation a = alloc.Allocate(8192);
  ASSERT_TRUE(a.valid());
  EXPECT_EQ(a.offset, 0u);
  alloc.Free(a);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, Exhaustion) {
  constexpr uint64_t kSize = 256 * kKiB;
  Allocator alloc(100 * kSize, 4096);
  std::vector<Allocation> live;
  for (int i = 0; i < 100; ++i) {
    Allocation a = alloc.Allocate(kSize);
    ASSERT_TRUE(a.valid());
    EXPECT_EQ(a.offset, static_cast<uint64_t>(i) * kSize);  // wilderness is cut front to back
    live.push_back(a);
  }
  EXPECT_FALSE(alloc.Allocate(1).valid());
  AllocatorStats s = alloc.Stats();
  EXPECT_EQ(s.used_bytes, s.region_bytes);
  EXPECT_EQ(s.free_bytes, 0u);
  EXPECT_EQ(s.largest_free_block, 0u);
  EXPECT_EQ(s.num_free_blocks, 0u);
  EXPECT_EQ(s.high_water_mark, s.region_bytes);
  for (const Allocation& a : live) alloc.Free(a);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, FreeMergesNeighbours) {
  Allocator alloc(3 * kMiB, 4096);
  Allocation a = alloc.Allocate(kMiB);
  Allocation b = alloc.Allocate(kMiB);
  Allocation c = alloc.Allocate(kMiB);
  ASSERT_TRUE(a.valid() && b.valid() && c.valid());
  alloc.Free(a);
  alloc.Free(c);
  AllocatorStats s = alloc.Stats();
  EXPECT_EQ(s.num_free_blocks, 2u);
  EXPECT_EQ(s.largest_free_block, kMiB);
  EXPECT_FALSE(alloc.Allocate(kMiB + 4096).valid());
  alloc.Free(b);  // merges with both sides
  ExpectPristine(alloc);
  Allocation all = alloc.Allocate(3 * kMiB);
  ASSERT_TRUE(all.valid());
  alloc.Free(all);

  // Merge with the predecessor only, then with the successor only.
  a = alloc.Allocate(kMiB);
  b = alloc.Allocate(kMiB);
  c = alloc.Allocate(kMiB);
  alloc.Free(a);
  alloc.Free(b);
  s = alloc.Stats();
  EXPECT_EQ(s.num_free_blocks, 1u);
  EXPECT_EQ(s.largest_free_block, 2 * kMiB);
  alloc.Free(c);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, BatchIsAllOrNothing) {
  Allocator alloc(10 * kMiB, 4096);
  Allocation first = alloc.Allocate(kMiB);
  ASSERT_TRUE(first.valid());
  const AllocatorStats before = alloc.Stats();

  const uint64_t too_much[] = {4 * kMiB, 4 * kMiB, 2 * kMiB};
  Allocation out[3];
  EXPECT_FALSE(alloc.AllocateBatch(too_much, 3, out));
  for (const Allocation& a : out) EXPECT_FALSE(a.valid());
  AllocatorStats after = alloc.Stats();
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.num_allocations, before.num_allocations);
  EXPECT_EQ(after.num_free_blocks, before.num_free_blocks);
  EXPECT_EQ(after.largest_free_block, before.largest_free_block);
  EXPECT_EQ(after.high_water_mark, before.high_water_mark);

  const uint64_t with_zero[] = {kMiB, 0};
  EXPECT_FALSE(alloc.AllocateBatch(with_zero, 2, out));
  EXPECT_EQ(alloc.Stats().used_bytes, before.used_bytes);

  const uint64_t fits[] = {4 * kMiB, 4 * kMiB, kMiB};
  ASSERT_TRUE(alloc.AllocateBatch(fits, 3, out));
  EXPECT_EQ(alloc.Stats().used_bytes, 10 * kMiB);
  for (const Allocation& a : out) {
    EXPECT_TRUE(a.valid());
    alloc.Free(a);
  }
  EXPECT_TRUE(alloc.AllocateBatch(fits, 0, out));  // empty batch succeeds
  alloc.Free(first);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, ExtendMergesWithFreeTail) {
  Allocator alloc(4 * kMiB, 4096);
  Allocation a = alloc.Allocate(kMiB);
  alloc.Extend(8 * kMiB);  // wilderness [1, 8) MiB
  AllocatorStats s = alloc.Stats();
  EXPECT_EQ(s.region_bytes, 8 * kMiB);
  EXPECT_EQ(s.num_free_blocks, 1u);
  EXPECT_EQ(s.largest_free_block, 7 * kMiB);
  Allocation b = alloc.Allocate(7 * kMiB);  // tail fully used now
  ASSERT_TRUE(b.valid());
  EXPECT_EQ(b.offset, kMiB);
  alloc.Extend(8 * kMiB);  // no-op
  alloc.Extend(10 * kMiB);  // new tail block after a used one
  s = alloc.Stats();
  EXPECT_EQ(s.num_free_blocks, 1u);
  EXPECT_EQ(s.largest_free_block, 2 * kMiB);
  alloc.Free(b);  // merges with the new tail
  s = alloc.Stats();
  EXPECT_EQ(s.num_free_blocks, 1u);
  EXPECT_EQ(s.largest_free_block, 9 * kMiB);
  alloc.Free(a);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, WildernessIsUsedLast) {
  Allocator alloc(1 * kGiB, 4096);
  std::vector<Allocation> live;
  for (int i = 0; i < 8; ++i) live.push_back(alloc.Allocate(kMiB));
  const uint64_t hwm = alloc.Stats().high_water_mark;
  EXPECT_EQ(hwm, 8 * kMiB);
  // Free a hole in the middle: a smaller request must go into it, not the tail.
  alloc.Free(live[3]);
  Allocation small = alloc.Allocate(100 * kKiB);
  ASSERT_TRUE(small.valid());
  EXPECT_EQ(small.offset, 3 * kMiB);
  Allocation rest = alloc.Allocate(kMiB - 100 * kKiB - 4096 + 1);  // 924 KiB, fits the rest
  ASSERT_TRUE(rest.valid());
  EXPECT_EQ(rest.offset, 3 * kMiB + alloc.RoundUp(100 * kKiB));
  EXPECT_EQ(alloc.Stats().high_water_mark, hwm);
  // Too large for any hole: the tail is used.
  Allocation big = alloc.Allocate(2 * kMiB);
  EXPECT_EQ(big.offset, 8 * kMiB);
  alloc.Free(small);
  alloc.Free(rest);
  alloc.Free(big);
  for (size_t i = 0; i < live.size(); ++i) {
    if (i != 3) alloc.Free(live[i]);
  }
  ExpectPristine(alloc);
}

TEST(AllocatorTest, WildernessLosesEvenToALargerHole) {
  // Plain TLSF would take the 2 MiB tail (a smaller class) for a 1 MiB
  // request; wilderness-last takes the 4 MiB hole and leaves the tail alone.
  Allocator alloc(14 * kMiB, 4096);
  Allocation a = alloc.Allocate(4 * kMiB);
  Allocation b = alloc.Allocate(8 * kMiB);
  alloc.Free(a);
  Allocation c = alloc.Allocate(kMiB);
  ASSERT_TRUE(c.valid());
  EXPECT_EQ(c.offset, 0u);
  EXPECT_EQ(alloc.Stats().high_water_mark, 12 * kMiB);
  Allocation d = alloc.Allocate(3 * kMiB);  // the rest of the hole, exactly
  EXPECT_EQ(d.offset, kMiB);
  Allocation e = alloc.Allocate(kMiB);  // only the tail is left
  EXPECT_EQ(e.offset, 12 * kMiB);
  EXPECT_EQ(alloc.Stats().high_water_mark, 13 * kMiB);
  for (const Allocation& x : {b, c, d, e}) alloc.Free(x);
  ExpectPristine(alloc);
}

TEST(AllocatorTest, HighWaterMarkStaysLowUnderChurn) {
  // Fixed sizes: the high-water mark must never exceed the peak live bytes.
  {
    constexpr uint64_t kSize = 300 * kKiB;  // not a class boundary
    Allocator alloc(64 * kGiB, 4096);
    std::mt19937 rng(7);
    std::vector<Allocation> live;
    size_t peak = 0;
    for (int op = 0; op < 100000; ++op) {
      const bool do_alloc = live.size() < 16 || (live.size() < 64 && rng() % 2 == 0);
      if (do_alloc) {
        live.push_back(alloc.Allocate(kSize));
        ASSERT_TRUE(live.back().valid());
        peak = std::max(peak, live.size());
      } else {
        const size_t k = rng() % live.size();
        alloc.Free(live[k]);
        live[k] = live.back();
        live.pop_back();
      }
    }
    EXPECT_EQ(alloc.Stats().high_water_mark, peak * alloc.RoundUp(kSize));
    for (const Allocation& a : live) alloc.Free(a);
    ExpectPristine(alloc);
  }
  // Mixed sizes: bounded by a small multiple of the peak live bytes.
  {
    Allocator alloc(64 * kGiB, 4096);
    std::mt19937 rng(11);
    std::uniform_int_distribution<uint64_t> partial(1, 2 * kMiB);
    std::vector<Allocation> live;
    uint64_t live_bytes = 0;
    uint64_t peak_bytes = 0;
    for (int op = 0; op < 100000; ++op) {
      if (live.size() < 64 || (live.size() < 128 && rng() % 2 == 0)) {
        const uint64_t bytes = rng() % 4 == 0 ? partial(rng) : 2 * kMiB;
        live.push_back(alloc.Allocate(bytes));
        ASSERT_TRUE(live.back().valid());
        live_bytes += live.back().size;
        peak_bytes = std::max(peak_bytes, live_bytes);
      } else {
        const size_t k = rng() % live.size();
        live_bytes -= live[k].size;
        alloc.Free(live[k]);
        live[k] = live.back();
        live.pop_back();
      }
    }
    const uint64_t hwm = alloc.Stats().high_water_mark;
    EXPECT_LE(hwm, peak_bytes * 3 / 2) << "hwm " << hwm << " peak " << peak_bytes;
    for (const Allocation& a : live) alloc.Free(a);
    ExpectPristine(alloc);
  }
}

TEST(AllocatorTest, ExactReuseAtFullOccupancy) {
  // 300 KiB = 75 units of 4 KiB: plain TLSF rounds it up to the next class
  // (76 units) and would find nothing once the region is full.
  for (uint64_t size : std::vector<uint64_t>{300 * kKiB, 4096, 2 * kMiB, 2 * kMiB + 4096, 1234567}) {
    constexpr int kObjects = 1000;
    Allocator alloc(kObjects * ((size + 4095) & ~uint64_t{4095}), 4096);
    std::vector<Allocation> live;
    for (int i = 0; i < kObjects; ++i) {
      live.push_back(alloc.Allocate(size));
      ASSERT_TRUE(live.back().valid());
    }
    ASSERT_EQ(alloc.Stats().free_bytes, 0u);
    std::mt19937 rng(static_cast<uint32_t>(size));
    for (int op = 0; op < 20000; ++op) {
      // Free one or a few at random, then refill to 100%.
      const int n = 1 + static_cast<int>(rng() % 3);
      std::vector<size_t> idx;
      for (int k = 0; k < n; ++k) {
        size_t i = rng() % live.size();
        if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
      }
      for (size_t i : idx) alloc.Free(live[i]);
      for (size_t i : idx) {
        live[i] = alloc.Allocate(size);
        ASSERT_TRUE(live[i].valid()) << "size " << size << " op " << op;
      }
      ASSERT_EQ(alloc.Stats().free_bytes, 0u);
    }
    for (const Allocation& a : live) alloc.Free(a);
    ExpectPristine(alloc);
  }
}

// ---- Randomized churn against a model -------------------------------------

class Model {
 public:
  explicit Model(uint64_t region, uint64_t align) : region_(region), align_(align) {}

  // Checks `a` against the model and records it.
  void Add(const Allocation& a, uint64_t requested) {
    ASSERT_TRUE(a.valid());
    ASSERT_EQ(a.offset % align_, 0u);
    ASSERT_EQ(a.size % align_, 0u);
    ASSERT_GE(a.size, requested);
    ASSERT_LT(a.size - requested, align_);
    ASSERT_LE(a.offset + a.size, region_);
    auto next = live_.lower_bound(a.offset);
    if (next != live_.end()) {
      ASSERT_LE(a.offset + a.size, next->first) << "overlaps the next allocation";
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second.size, a.offset) << "overlaps the previous allocation";
    }
    live_[a.offset] = a;
    used_ += a.size;
    max_end_ = std::max(max_end_, a.offset + a.size);
  }

  Allocation RemoveRandom(std::mt19937& rng) {
    auto it = live_.begin();
    std::advance(it, rng() % live_.size());
    Allocation a = it->second;
    live_.erase(it);
    used_ -= a.size;
    return a;
  }

  void CheckStats(const AllocatorStats& s) const {
    ASSERT_EQ(s.region_bytes, region_);
    ASSERT_EQ(s.used_bytes, used_);
    ASSERT_EQ(s.free_bytes, region_ - used_);
    ASSERT_EQ(s.num_allocations, live_.size());
    ASSERT_GE(s.high_water_mark, max_end_);
    ASSERT_LE(s.high_water_mark, region_);
    ASSERT_LE(s.largest_free_block, s.free_bytes);
    ASSERT_EQ(s.largest_free_block % align_, 0u);
    // Free blocks are maximal runs between live allocations: count them.
    uint64_t gaps = 0;
    uint64_t pos = 0;
    uint64_t widest = 0;
    for (const auto& [off, a] : live_) {
      if (off > pos) {
        ++gaps;
        widest = std::max(widest, off - pos);
      }
      pos = off + a.size;
    }
    if (region_ > pos) {
      ++gaps;
      widest = std::max(widest, region_ - pos);
    }
    ASSERT_EQ(s.num_free_blocks, gaps) << "free blocks are not fully merged";
    ASSERT_LE(s.largest_free_block, widest);
  }

  void set_region(uint64_t r) { region_ = r; }
  uint64_t region() const { return region_; }
  uint64_t used() const { return used_; }
  size_t size() const { return live_.size(); }
  bool empty() const { return live_.empty(); }

 private:
  uint64_t region_;
  uint64_t align_;
  uint64_t used_ = 0;
  uint64_t max_end_ = 0;
  std::map<uint64_t, Allocation> live_;
};

void RunChurn(uint32_t seed, uint64_t align, uint64_t region, int ops) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed << " align " << align);
  std::mt19937 rng(seed);
  Allocator alloc(region, align);
  Model model(region, align);
  const uint64_t fixed[] = {align, 16 * align, 75 * align, 512 * align};
  std::uniform_int_distribution<uint64_t> random_size(1, 600 * align);
  auto next_size = [&]() -> uint64_t {
    return rng() % 2 == 0 ? fixed[rng() % 4] : random_size(rng);
  };
  for (int op = 0; op < ops; ++op) {
    const double occupancy = static_cast<double>(model.used()) / model.region();
    const uint32_t dice = rng() % 1000;
    if (dice < 2 && model.region() < 4 * region) {
      const uint64_t grown = model.region() + align * (1 + rng() % 4096);
      alloc.Extend(grown);
      model.set_region(grown);
    } else if (dice < 40) {
      // Batch of 1..6 objects, all or nothing.
      const AllocatorStats before = alloc.Stats();
      uint64_t sizes[6];
      Allocation out[6];
      const size_t n = 1 + rng() % 6;
      for (size_t k = 0; k < n; ++k) sizes[k] = next_size();
      if (alloc.AllocateBatch(sizes, n, out)) {
        for (size_t k = 0; k < n; ++k) {
          model.Add(out[k], sizes[k]);
          if (testing::Test::HasFatalFailure()) return;
        }
      } else {
        const AllocatorStats after = alloc.Stats();
        ASSERT_EQ(after.used_bytes, before.used_bytes);
        ASSERT_EQ(after.num_free_blocks, before.num_free_blocks);
        ASSERT_EQ(after.largest_free_block, before.largest_free_block);
        ASSERT_EQ(after.high_water_mark, before.high_water_mark);
      }
    } else if (model.empty() || (occupancy < 0.9 && rng() % 100 < 55)) {
      const uint64_t bytes = next_size();
      const uint64_t largest = alloc.Stats().largest_free_block;
      Allocation a = alloc.Allocate(bytes);
      // largest_free_block is exactly the biggest request that succeeds.
      ASSERT_EQ(a.valid(), alloc.RoundUp(bytes) <= largest)
          << "bytes " << bytes << " largest " << largest;
      if (a.valid()) {
        model.Add(a, bytes);
        if (testing::Test::HasFatalFailure()) return;
      }
    } else {
      alloc.Free(model.RemoveRandom(rng));
    }
    if (op % 97 == 0) {
      // Probe: largest_free_block succeeds, one unit more does not.
      const uint64_t largest = alloc.Stats().largest_free_block;
      if (largest > 0) {
        Allocation a = alloc.Allocate(largest);
        ASSERT_TRUE(a.valid()) << "largest_free_block " << largest << " did not allocate";
        alloc.Free(a);
      }
      ASSERT_FALSE(alloc.Allocate(largest + align).valid());
    }
    model.CheckStats(alloc.Stats());
    if (testing::Test::HasFatalFailure()) return;
  }
  while (!model.empty()) alloc.Free(model.RemoveRandom(rng));
  model.CheckStats(alloc.Stats());
  ExpectPristine(alloc);
}

TEST(AllocatorTest, RandomizedChurnAgainstModel) {
  for (uint32_t seed : {1u, 2u, 3u, 42u}) {
    RunChurn(seed, 4096, 2048 * 4096, 40000);
    if (HasFatalFailure()) return;
  }
  RunChurn(5, 64, 3000 * 64, 40000);
  RunChurn(6, 1, 5000, 20000);
}

TEST(AllocatorTest, ConcurrentSmoke) {
  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  Allocator alloc(256 * kMiB, 4096);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&alloc, t] {
      std::mt19937 rng(100 + t);
      std::vector<Allocation> mine;
      for (int op = 0; op < kOps; ++op) {
        if (mine.size() < 8 || (mine.size() < 64 && rng() % 2 == 0)) {
          Allocation a = alloc.Allocate(4096 * (1 + rng() % 256));
          if (a.valid()) mine.push_back(a);
        } else if (rng() % 8 == 0) {
          const uint64_t sizes[3] = {4096, 64 * 1024, 256 * 1024};
          Allocation out[3];
          if (alloc.AllocateBatch(sizes, 3, out)) mine.insert(mine.end(), out, out + 3);
        } else {
          const size_t k = rng() % mine.size();
          alloc.Free(mine[k]);
          mine[k] = mine.back();
          mine.pop_back();
        }
        if (op % 1000 == 0) (void)alloc.Stats();
      }
      for (const Allocation& a : mine) alloc.Free(a);
    });
  }
  std::thread grower([&alloc] {
    for (int i = 1; i <= 16; ++i) {
      alloc.Extend((256 + 16 * static_cast<uint64_t>(i)) * kMiB);
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  grower.join();
  ExpectPristine(alloc);
  EXPECT_EQ(alloc.Stats().region_bytes, 512 * kMiB);
}

TEST(AllocatorDeathTest, DoubleFreeAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Allocator alloc(kMiB, 4096);
  Allocation a = alloc.Allocate(4096);
  Allocation b = alloc.Allocate(4096);
  alloc.Free(a);
  EXPECT_DEATH(alloc.Free(a), "not allocated");
  alloc.Free(b);
}

}  // namespace
}  // namespace lmcache
