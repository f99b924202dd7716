// fault_inject specifics: seeded, deterministic failures per op; LMCache's
// load-only drops (rate, gap_indices, gap_tail_ratios); delays; corruption
// through the inner adapter's integrity check.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_test_util.h"

namespace lmcache {
namespace {

using testing::Bits;
using testing::Key;
using testing::LoadSync;
using testing::LookupSync;
using testing::MustCreate;
using testing::Pattern;
using testing::StoreSync;
using testing::TempDir;
using testing::ViewOf;

constexpr int kKeys = 64;

struct Objects {
  std::vector<ObjectKey> keys;
  std::vector<std::vector<uint8_t>> data;
  std::vector<ObjectView> views;
  explicit Objects(int n, size_t size = 1000) {
    for (int i = 0; i < n; ++i) {
      keys.push_back(Key(i));
      data.push_back(Pattern(i, size));
    }
    for (auto& d : data) views.push_back(ViewOf(d));
  }
  std::vector<ObjectView> Buffers(std::vector<std::vector<uint8_t>>* out) const {
    out->clear();
    for (const auto& d : data) out->emplace_back(d.size());
    std::vector<ObjectView> v;
    for (auto& o : *out) v.push_back(ViewOf(o));
    return v;
  }
};

std::string FaultSpec(const std::string& faults, const std::string& inner = R"({"type":"mock"})") {
  return R"({"type":"fault_inject","inner":)" + inner + (faults.empty() ? "" : "," + faults) + "}";
}

std::string Detail(const L2Status& s, const std::string& name) {
  for (const auto& [k, v] : s.details) {
    if (k == name) return v;
  }
  return "<missing>";
}

TEST(FaultInject, StoreFailuresAreSeededAndDeterministic) {
  Objects o(kKeys);
  std::string first;
  for (int run = 0; run < 2; ++run) {
    auto a = MustCreate(FaultSpec(R"("seed":42,"fail_rate":0.5,"fail_ops":["store"])"));
    const L2StoreResult r = StoreSync(a.get(), o.keys, o.views);
    EXPECT_FALSE(r.ok);
    const std::string bits = Bits(r.stored);
    if (run == 0) first = bits;
    EXPECT_EQ(bits, first);  // same seed, same failures
    const auto ones = std::count(bits.begin(), bits.end(), '1');
    EXPECT_GT(ones, kKeys / 4);
    EXPECT_LT(ones, 3 * kKeys / 4);
    // What failed was not stored; what succeeded is there.
    EXPECT_EQ(Bits(LookupSync(a.get(), o.keys)), bits);
    EXPECT_EQ(Detail(a->ReportStatus(), "injected_store_failures"), std::to_string(kKeys - ones));
  }
  auto other = MustCreate(FaultSpec(R"("seed":43,"fail_rate":0.5,"fail_ops":["store"])"));
  EXPECT_NE(Bits(StoreSync(other.get(), o.keys, o.views).stored), first);
}

TEST(FaultInject, LookupFailuresReleaseTheInnerLocks) {
  Objects o(kKeys);
  auto a = MustCreate(FaultSpec(R"("seed":5,"fail_rate":0.3,"fail_ops":["lookup"])"));
  ASSERT_TRUE(StoreSync(a.get(), o.keys, o.views).ok);  // stores are not faulted here
  const std::string bits = Bits(LookupSync(a.get(), o.keys));
  EXPECT_EQ(Bits(LookupSync(a.get(), o.keys)), bits);  // stable per key
  const auto misses = std::count(bits.begin(), bits.end(), '0');
  EXPECT_GT(misses, 0);
  // Two lookups took locks only for the hits: after unlocking them twice, nothing is locked.
  std::vector<ObjectKey> hits;
  for (int i = 0; i < kKeys; ++i) {
    if (bits[i] == '1') hits.push_back(o.keys[i]);
  }
  a->SubmitUnlock(hits);
  a->SubmitUnlock(hits);
  EXPECT_EQ(Detail(a->ReportStatus(), "inner.locked_objects"), "0");
}

TEST(FaultInject, LoadFailuresAndLMCacheDrops) {
  Objects o(10);
  std::vector<std::vector<uint8_t>> out;
  // gap_indices and gap_tail_ratios (0 = last, 1 = first, 0.5 = middle).
  auto a = MustCreate(FaultSpec(R"("gap_indices":[1,99],"gap_tail_ratios":[0.0,1.0,0.5])"));
  ASSERT_TRUE(StoreSync(a.get(), o.keys, o.views).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), o.keys)), "1111111111");  // lookups see everything
  a->SubmitUnlock(o.keys);
  const L2Bitmap bits = LoadSync(a.get(), o.keys, o.Buffers(&out));
  EXPECT_EQ(Bits(bits), "0011011110");  // 0.5 -> round(4.5) = 4, ties to even as Python's round
  for (int i = 0; i < 10; ++i) {
    if (bits[i]) {
      EXPECT_TRUE(out[i] == o.data[i]);
    }
  }
  // LMCache's "rate" and our fail_rate on loads: deterministic per key.
  auto b = MustCreate(FaultSpec(R"("seed":9,"rate":0.5)"));
  Objects many(kKeys);
  ASSERT_TRUE(StoreSync(b.get(), many.keys, many.views).ok);
  const std::string r1 = Bits(LoadSync(b.get(), many.keys, many.Buffers(&out)));
  const std::string r2 = Bits(LoadSync(b.get(), many.keys, many.Buffers(&out)));
  EXPECT_EQ(r1, r2);
  EXPECT_NE(r1, std::string(kKeys, '1'));
  EXPECT_NE(r1, std::string(kKeys, '0'));
  // Only the load bits were dropped: the objects are intact.
  EXPECT_EQ(b->ReportStatus().counters.corrupt_objects, 0u);
  EXPECT_EQ(b->Usage().objects, static_cast<uint64_t>(kKeys));
}

TEST(FaultInject, DelaysHoldBackCompletion) {
  Objects o(4);
  auto a = MustCreate(FaultSpec(R"("delay_ms":80)"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(StoreSync(a.get(), o.keys, o.views).ok);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_GE(t1 - t0, std::chrono::milliseconds(75));
  EXPECT_EQ(Bits(LookupSync(a.get(), o.keys)), "1111");
  EXPECT_GE(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(75));
  EXPECT_EQ(Detail(a->ReportStatus(), "delayed_tasks"), "2");
  // delay_rate 0: nothing delayed.
  auto b = MustCreate(FaultSpec(R"("delay_ms":5000,"delay_rate":0)"));
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(StoreSync(b.get(), o.keys, o.views).ok);
  EXPECT_LT(std::chrono::steady_clock::now() - t2, std::chrono::milliseconds(2000));
}

TEST(FaultInject, CloseReleasesDelayedResults) {
  Objects o(2);
  auto a = MustCreate(FaultSpec(R"("delay_ms":60000)"));
  auto id = a->SubmitStore(o.keys, o.views);
  ASSERT_TRUE(id.ok());
  const auto t0 = std::chrono::steady_clock::now();
  a->Close();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  auto done = a->PopCompletedStores();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, id.value());
}

class FaultCorruptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FaultCorruptTest, CorruptedObjectsAreMissesCountedByTheInnerAdapter) {
  TempDir dir;
  const std::string inner = GetParam() == "mock" ? R"({"type":"mock"})"
                                                 : R"({"type":"fs","base_path":")" + dir.path() + R"("})";
  Objects o(kKeys, 5000);
  std::vector<std::vector<uint8_t>> out;
  auto a = MustCreate(FaultSpec(R"("seed":3,"corrupt_rate":0.25)", inner));
  ASSERT_TRUE(StoreSync(a.get(), o.keys, o.views).ok);  // the store itself succeeds
  const L2Bitmap bits = LoadSync(a.get(), o.keys, o.Buffers(&out));
  const auto bad = std::count(bits.begin(), bits.end(), false);
  EXPECT_GT(bad, 0);
  EXPECT_LT(bad, kKeys);
  for (int i = 0; i < kKeys; ++i) {
    if (bits[i]) {
      EXPECT_TRUE(out[i] == o.data[i]) << "wrong bytes reported as loaded for key " << i;
    }
  }
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(s.counters.corrupt_objects, static_cast<uint64_t>(bad));
  EXPECT_EQ(Detail(s, "injected_corruptions"), std::to_string(bad));
  EXPECT_EQ(a->Usage().objects, static_cast<uint64_t>(kKeys - bad));
}

INSTANTIATE_TEST_SUITE_P(Inner, FaultCorruptTest, ::testing::Values("mock", "fs"));

}  // namespace
}  // namespace lmcache
