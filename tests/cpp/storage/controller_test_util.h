// Helpers for the store / prefetch controller suites (l2_controllers_test):
// a real L1Store, objects with known bytes, and leak checks.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "l2_test_util.h"
#include "lmcache/l1_store.h"
#include "lmcache/l2_adapter.h"
#include "lmcache/l2_controllers.h"

namespace lmcache::testing {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kObj = 64 * kKiB;  // default object size in these suites

inline std::unique_ptr<L1Store> MakeL1(uint64_t capacity = 32ull << 20) {
  L1Options o;
  o.arena.capacity_bytes = capacity;
  o.arena.lazy = false;
  o.arena.huge_pages = false;
  o.num_shards = 8;
  auto r = L1Store::Create(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

inline std::vector<ObjectKey> KeyRange(uint64_t from, uint64_t n, int rank = 0, std::string_view model = "test/model") {
  std::vector<ObjectKey> keys;
  for (uint64_t i = from; i < from + n; ++i) {
    ObjectKey k;
    MakeKey(FakeHash(i), model, PackKvRank(2, rank, 2, rank), 0, "", &k);
    keys.push_back(k);
  }
  return keys;
}

// Bytes of key i of KeyRange(...) (seed = n).
inline uint64_t SeedOf(const ObjectKey& k) {
  uint64_t s = 0;
  std::memcpy(&s, k.chunk_hash.data(), sizeof(s));
  return s ^ static_cast<uint32_t>(k.kv_rank);
}

// Write keys into L1 (writer tag `tag`), each object filled with its pattern.
inline void PutL1(L1Store* l1, const std::vector<ObjectKey>& keys, uint64_t size = kObj, WriterTag tag = 1) {
  std::vector<uint64_t> sizes(keys.size(), size);
  std::vector<ReserveOutcome> out;
  std::vector<ObjectView> views;
  ASSERT_TRUE(l1->ReserveWrite(keys, sizes, tag, &out, &views).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (out[i] != ReserveOutcome::kReserved) continue;
    for (uint64_t b = 0; b < size; ++b) views[i].data[b] = PatternByte(SeedOf(keys[i]), b);
  }
  ASSERT_TRUE(l1->FinishWrite(keys, tag).ok());
}

// Store keys straight into an adapter with their patterns.
inline void PutL2(L2Adapter* a, const std::vector<ObjectKey>& keys, uint64_t size = kObj) {
  if (keys.empty()) return;
  std::vector<std::vector<uint8_t>> data;
  std::vector<ObjectView> views;
  data.reserve(keys.size());
  for (const ObjectKey& k : keys) {
    data.emplace_back(size);
    for (uint64_t b = 0; b < size; ++b) data.back()[b] = PatternByte(SeedOf(k), b);
    views.push_back(ViewOf(data.back()));
  }
  L2StoreResult r = StoreSync(a, keys, views);
  ASSERT_TRUE(r.ok);
}

inline bool HasPattern(const ObjectView& v, const ObjectKey& k) {
  for (uint64_t b = 0; b < v.size; ++b) {
    if (v.data[b] != PatternByte(SeedOf(k), b)) return false;
  }
  return true;
}

// The adapter's lock count (mock reports it in its status details).
inline int64_t L2Locked(const L2Adapter& a) {
  for (const auto& [k, v] : a.ReportStatus().details) {
    if (k == "locked_objects") return std::stoll(v);
  }
  return -1;
}

// Poll `cond` for up to timeout_ms.
template <class F>
bool Eventually(F cond, int timeout_ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

// Nothing locked, staged or doomed in L1.
inline void ExpectL1Quiet(L1Store* l1) {
  L1Stats s = l1->Stats();
  EXPECT_EQ(s.read_locked_objects, 0u);
  EXPECT_EQ(s.staging_objects, 0u);
  EXPECT_EQ(s.doomed_objects, 0u);
}

inline constexpr int64_t kSecond = 1'000'000'000;

}  // namespace lmcache::testing
