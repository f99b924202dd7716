#include "lmcache/l1_store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "test_util.h"

namespace lmcache {
namespace {

using testing::Key;
using testing::PatternByte;

constexpr uint64_t kMiB = 1ull << 20;

class RecordingListener : public L1Listener {
 public:
  void OnResident(const std::vector<ObjectKey>& keys) override {
    std::lock_guard<std::mutex> l(mu);
    resident.insert(resident.end(), keys.begin(), keys.end());
  }
  void OnRemoved(const std::vector<ObjectKey>& keys) override {
    std::lock_guard<std::mutex> l(mu);
    removed.insert(removed.end(), keys.begin(), keys.end());
  }
  std::mutex mu;
  std::vector<ObjectKey> resident;
  std::vector<ObjectKey> removed;
};

class L1StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<L1Store> Make(uint64_t capacity = 8 * kMiB, std::string policy = "LRU", bool lazy = false) {
    L1Options o;
    o.arena.capacity_bytes = capacity;
    o.arena.lazy = lazy;
    o.arena.huge_pages = false;
    o.write_ttl_seconds = 10;
    o.read_ttl_seconds = 5;
    o.eviction_policy = std::move(policy);
    o.clock = &clock_;
    o.num_shards = 8;
    auto r = L1Store::Create(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }

  // Store keys[i] with pattern seed i (or seeds[i]); returns the status.
  Status Put(L1Store* s, const std::vector<ObjectKey>& keys, uint64_t size, WriterTag tag = 1,
             uint64_t seed_base = 0) {
    std::vector<uint64_t> sizes(keys.size(), size);
    std::vector<ReserveOutcome> out;
    std::vector<ObjectView> views;
    LMCACHE_RETURN_IF_ERROR(s->ReserveWrite(keys, sizes, tag, &out, &views));
    for (size_t i = 0; i < keys.size(); ++i) {
      if (out[i] != ReserveOutcome::kReserved) continue;
      EXPECT_EQ(views[i].size, size);
      for (uint64_t b = 0; b < size; ++b) views[i].data[b] = PatternByte(seed_base + i, b);
    }
    return s->FinishWrite(keys, tag);
  }

  bool Verify(const ObjectView& v, uint64_t seed) {
    for (uint64_t b = 0; b < v.size; ++b) {
      if (v.data[b] != PatternByte(seed, b)) return false;
    }
    return true;
  }

  std::vector<ObjectKey> Keys(uint64_t from, uint64_t n, std::string_view salt = "") {
    std::vector<ObjectKey> k;
    for (uint64_t i = from; i < from + n; ++i) k.push_back(Key(i, salt));
    return k;
  }

  ManualClock clock_;
};

TEST_F(L1StoreTest, RejectsBadOptions) {
  L1Options o;
  o.arena.capacity_bytes = kMiB;
  o.eviction_policy = "FIFO";
  EXPECT_EQ(L1Store::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.eviction_policy = "LRU";
  o.read_ttl_seconds = 0;
  EXPECT_EQ(L1Store::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.read_ttl_seconds = 1;
  o.arena.capacity_bytes = 0;
  EXPECT_FALSE(L1Store::Create(o).ok());
}

TEST_F(L1StoreTest, WriteThenReadRoundTrip) {
  auto s = Make();
  auto keys = Keys(0, 4);
  ASSERT_TRUE(Put(s.get(), keys, 100'000).ok());
  std::vector<ObjectView> views;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &views), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(Verify(views[i], i)) << i;
  EXPECT_EQ(s->FinishRead(keys), 4u);
  L1Stats st = s->Stats();
  EXPECT_EQ(st.resident_objects, 4u);
  EXPECT_EQ(st.read_locked_objects, 0u);
  EXPECT_EQ(st.used_bytes, 4 * 102'400u);  // rounded to 4 KiB
}

TEST_F(L1StoreTest, StagingIsInvisibleUntilFinished) {
  auto s = Make();
  auto keys = Keys(0, 2);
  std::vector<uint64_t> sizes(2, 4096);
  std::vector<ReserveOutcome> out;
  std::vector<ObjectView> views;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 7, &out, &views).ok());
  EXPECT_FALSE(s->Contains(keys[0]));
  std::vector<ObjectView> rv;
  EXPECT_EQ(s->ReserveReadPrefix(keys, 1, &rv), 0u);
  EXPECT_EQ(s->Stats().staging_objects, 2u);
  // Another writer's finish does not publish tag 7's objects.
  EXPECT_EQ(s->FinishWrite(keys, 8).code(), StatusCode::kNotFound);
  EXPECT_FALSE(s->Contains(keys[0]));
  ASSERT_TRUE(s->FinishWrite(keys, 7).ok());
  EXPECT_TRUE(s->Contains(keys[0]));
  EXPECT_EQ(s->PrefixHits(keys), 2u);
  EXPECT_EQ(s->Stats().staging_objects, 0u);
}

TEST_F(L1StoreTest, FirstWriterWins) {
  auto s = Make();
  auto keys = Keys(0, 1);
  std::vector<uint64_t> sizes{4096};
  std::vector<ReserveOutcome> o1, o2;
  std::vector<ObjectView> v1, v2;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 1, &o1, &v1).ok());
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 2, &o2, &v2).ok());
  ASSERT_EQ(o1[0], ReserveOutcome::kReserved);
  ASSERT_EQ(o2[0], ReserveOutcome::kReserved);
  EXPECT_NE(v1[0].data, v2[0].data);
  std::memset(v1[0].data, 0xAA, 4096);
  std::memset(v2[0].data, 0xBB, 4096);
  ASSERT_TRUE(s->FinishWrite(keys, 2).ok());  // writer 2 finishes first
  ASSERT_TRUE(s->FinishWrite(keys, 1).ok());  // discarded
  std::vector<ObjectView> rv;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &rv), 1u);
  EXPECT_EQ(rv[0].data[0], 0xBB);
  s->FinishRead(keys);
  EXPECT_EQ(s->Stats().used_bytes, 4096u);  // the losing copy was freed
  // A third writer sees the key as resident and reserves nothing.
  std::vector<ReserveOutcome> o3;
  std::vector<ObjectView> v3;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 3, &o3, &v3).ok());
  EXPECT_EQ(o3[0], ReserveOutcome::kAlreadyResident);
  EXPECT_EQ(v3[0].data, nullptr);
}

TEST_F(L1StoreTest, RejectsBadWrites) {
  auto s = Make();
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> v;
  std::vector<ObjectKey> dup{Key(1), Key(1)};
  std::vector<uint64_t> sizes{10, 10};
  EXPECT_EQ(s->ReserveWrite(dup, sizes, 1, &o, &v).code(), StatusCode::kInvalidArgument);
  std::vector<ObjectKey> one{Key(1)};
  std::vector<uint64_t> zero{0};
  EXPECT_EQ(s->ReserveWrite(one, zero, 1, &o, &v).code(), StatusCode::kInvalidArgument);
  std::vector<uint64_t> two{1, 2};
  EXPECT_EQ(s->ReserveWrite(one, two, 1, &o, &v).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Stats().used_bytes, 0u);
}

TEST_F(L1StoreTest, ObjectLargerThanL1IsNoSpace) {
  auto s = Make(4 * kMiB);
  std::vector<ObjectKey> one{Key(1)};
  std::vector<uint64_t> big{5 * kMiB};
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> v;
  EXPECT_EQ(s->ReserveWrite(one, big, 1, &o, &v).code(), StatusCode::kNoSpace);
  EXPECT_EQ(s->Stats().allocation_failures, 1u);
}

TEST_F(L1StoreTest, FullStoreEvictsSynchronouslyInLruOrder) {
  auto s = Make(8 * kMiB);
  RecordingListener listener;
  s->AddListener(&listener);
  ASSERT_TRUE(Put(s.get(), Keys(0, 8), kMiB).ok());  // exactly full
  // Access object 0 so object 1 becomes the least recently used.
  std::vector<ObjectKey> k0{Key(0)};
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(k0, 1, &v), 1u);
  s->FinishRead(k0);
  ASSERT_TRUE(Put(s.get(), Keys(100, 1), kMiB).ok());
  EXPECT_TRUE(s->Contains(Key(0)));
  EXPECT_FALSE(s->Contains(Key(1)));
  EXPECT_TRUE(s->Contains(Key(100)));
  L1Stats st = s->Stats();
  EXPECT_EQ(st.evicted_objects, 1u);
  EXPECT_EQ(st.allocation_failures, 0u);
  ASSERT_EQ(listener.removed.size(), 1u);
  EXPECT_EQ(listener.removed[0], Key(1));
  EXPECT_EQ(listener.resident.size(), 9u);
  s->RemoveListener(&listener);
}

TEST_F(L1StoreTest, LockedObjectsAreNeverEvicted) {
  auto s = Make(4 * kMiB);
  auto keys = Keys(0, 4);
  ASSERT_TRUE(Put(s.get(), keys, kMiB).ok());
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &v), 4u);
  Status st = Put(s.get(), Keys(10, 1), kMiB);
  EXPECT_EQ(st.code(), StatusCode::kNoSpace) << st.ToString();
  EXPECT_EQ(s->Stats().allocation_failures, 1u);
  EXPECT_EQ(s->Stats().staging_objects, 0u);  // nothing half-reserved
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(Verify(v[i], i));
  // Release one lock: now exactly that object can go.
  std::vector<ObjectKey> k2{keys[2]};
  s->FinishRead(k2);
  ASSERT_TRUE(Put(s.get(), Keys(10, 1), kMiB).ok());
  EXPECT_FALSE(s->Contains(keys[2]));
  EXPECT_TRUE(s->Contains(keys[0]));
  s->FinishRead(keys);
}

TEST_F(L1StoreTest, NoopPolicyReportsNoSpaceInsteadOfEvicting) {
  auto s = Make(2 * kMiB, "noop");
  ASSERT_TRUE(Put(s.get(), Keys(0, 2), kMiB).ok());
  EXPECT_EQ(Put(s.get(), Keys(5, 1), kMiB).code(), StatusCode::kNoSpace);
  EXPECT_TRUE(s->Contains(Key(0)));
  EXPECT_TRUE(s->Contains(Key(1)));
  EXPECT_EQ(s->EvictBytes(kMiB), 0u);
}

TEST_F(L1StoreTest, MultipleReadersNeedMultipleReleases) {
  auto s = Make();
  auto keys = Keys(0, 1);
  ASSERT_TRUE(Put(s.get(), keys, 4096).ok());
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 3, &v), 1u);
  EXPECT_EQ(s->FinishRead(keys), 1u);
  EXPECT_EQ(s->FinishRead(keys), 1u);
  EXPECT_EQ(s->EvictBytes(4096), 0u);  // still one reader
  EXPECT_EQ(s->FinishRead(keys), 1u);
  EXPECT_EQ(s->FinishRead(keys), 0u);  // nothing left to release
  EXPECT_EQ(s->EvictBytes(4096), 4096u);
}

TEST_F(L1StoreTest, ReadLockExpiresAfterTtl) {
  auto s = Make(2 * kMiB);
  auto keys = Keys(0, 2);
  ASSERT_TRUE(Put(s.get(), keys, kMiB).ok());
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &v), 2u);
  EXPECT_EQ(Put(s.get(), Keys(9, 1), kMiB).code(), StatusCode::kNoSpace);
  clock_.AdvanceSeconds(6);  // read TTL is 5 s: the locks count as released
  // ReserveWrite sweeps expired locks itself before giving up.
  ASSERT_TRUE(Put(s.get(), Keys(9, 1), kMiB).ok());
  EXPECT_EQ(s->Stats().evicted_objects, 1u);
  EXPECT_EQ(s->FinishRead(keys), 0u);  // late releases are harmless
  EXPECT_EQ(s->Stats().read_locked_objects, 0u);
}

TEST_F(L1StoreTest, WriteLockExpiresAndStagingIsReclaimed) {
  auto s = Make();
  auto keys = Keys(0, 1);
  std::vector<uint64_t> sizes{kMiB};
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> v;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 1, &o, &v).ok());
  EXPECT_EQ(s->SweepExpired(), 0u);
  clock_.AdvanceSeconds(11);  // write TTL is 10 s
  EXPECT_EQ(s->SweepExpired(), 1u);
  EXPECT_EQ(s->Stats().staging_objects, 0u);
  EXPECT_EQ(s->Stats().used_bytes, 0u);
  EXPECT_EQ(s->FinishWrite(keys, 1).code(), StatusCode::kNotFound);
  EXPECT_FALSE(s->Contains(keys[0]));
}

TEST_F(L1StoreTest, AbortWriteFreesStaging) {
  auto s = Make();
  auto keys = Keys(0, 3);
  std::vector<uint64_t> sizes(3, kMiB);
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> v;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 4, &o, &v).ok());
  s->AbortWrite(keys, 4);
  EXPECT_EQ(s->Stats().used_bytes, 0u);
  EXPECT_EQ(s->Stats().staging_objects, 0u);
}

TEST_F(L1StoreTest, TemporaryObjectsAreFreedAtLastRead) {
  auto s = Make();
  RecordingListener listener;
  s->AddListener(&listener);
  auto keys = Keys(0, 2);
  std::vector<uint64_t> sizes(2, 8192);
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> v;
  ASSERT_TRUE(s->ReserveWrite(keys, sizes, 1, &o, &v).ok());
  std::vector<ObjectView> rv;
  ASSERT_TRUE(s->FinishWriteAndReserveRead(keys, 1, 2, /*temporary=*/true, &rv).ok());
  ASSERT_EQ(rv.size(), 2u);
  EXPECT_NE(rv[0].data, nullptr);
  EXPECT_EQ(s->Stats().temporary_objects, 2u);
  EXPECT_TRUE(s->Contains(keys[0]));
  s->FinishRead(keys);
  EXPECT_TRUE(s->Contains(keys[0]));
  s->FinishRead(keys);
  EXPECT_FALSE(s->Contains(keys[0]));
  EXPECT_EQ(s->Stats().used_bytes, 0u);
  EXPECT_EQ(s->Stats().temporary_objects, 0u);
  EXPECT_EQ(listener.removed.size(), 2u);
  EXPECT_EQ(s->FinishWriteAndReserveRead(keys, 1, 0, true, &rv).code(), StatusCode::kInvalidArgument);
  s->RemoveListener(&listener);
}

TEST_F(L1StoreTest, ForcedDeleteOfLockedObjectDefersTheFree) {
  auto s = Make(2 * kMiB);
  auto keys = Keys(0, 1);
  ASSERT_TRUE(Put(s.get(), keys, kMiB).ok());
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &v), 1u);
  EXPECT_EQ(s->Delete(keys, /*force=*/false), 0u);
  EXPECT_TRUE(s->Contains(keys[0]));
  EXPECT_EQ(s->Delete(keys, /*force=*/true), 1u);
  EXPECT_FALSE(s->Contains(keys[0]));
  EXPECT_EQ(s->Stats().doomed_objects, 1u);
  // The reader's memory is not handed out again while it reads: the next
  // objects use the other half, then evict each other.
  ASSERT_TRUE(Put(s.get(), Keys(1, 1), kMiB, 1, 77).ok());
  ASSERT_TRUE(Put(s.get(), Keys(2, 1), kMiB, 1, 78).ok());
  EXPECT_FALSE(s->Contains(Key(1)));
  EXPECT_TRUE(Verify(v[0], 0));
  EXPECT_EQ(s->FinishRead(keys), 1u);
  EXPECT_EQ(s->Stats().doomed_objects, 0u);
  EXPECT_EQ(s->Stats().used_bytes, kMiB);
}

TEST_F(L1StoreTest, ClearRespectsLocksUnlessForced) {
  auto s = Make();
  auto keys = Keys(0, 4);
  ASSERT_TRUE(Put(s.get(), keys, 4096).ok());
  std::vector<ObjectKey> k0{keys[0]};
  std::vector<ObjectView> v;
  ASSERT_EQ(s->ReserveReadPrefix(k0, 1, &v), 1u);
  // A pending write of another key.
  std::vector<ObjectKey> pending{Key(50)};
  std::vector<uint64_t> sizes{4096};
  std::vector<ReserveOutcome> o;
  std::vector<ObjectView> pv;
  ASSERT_TRUE(s->ReserveWrite(pending, sizes, 9, &o, &pv).ok());
  EXPECT_EQ(s->Clear(false), 3u);
  EXPECT_TRUE(s->Contains(keys[0]));
  EXPECT_EQ(s->Clear(true), 1u);
  EXPECT_FALSE(s->Contains(keys[0]));
  EXPECT_EQ(s->FinishWrite(pending, 9).code(), StatusCode::kNotFound);  // cancelled
  EXPECT_FALSE(s->Contains(pending[0]));
  s->FinishRead(k0);
  EXPECT_EQ(s->Stats().used_bytes, 0u);
}

TEST_F(L1StoreTest, UsageIsAccountedPerSalt) {
  auto s = Make();
  ASSERT_TRUE(Put(s.get(), Keys(0, 2, "a"), 4096).ok());
  ASSERT_TRUE(Put(s.get(), Keys(10, 3, "b"), 8192).ok());
  SaltUsage u = s->UsageBySalt();
  EXPECT_EQ(u[Symbol::Intern("a")], 2 * 4096u);
  EXPECT_EQ(u[Symbol::Intern("b")], 3 * 8192u);
  s->Delete(Keys(10, 3, "b"), false);
  u = s->UsageBySalt();
  EXPECT_EQ(u.count(Symbol::Intern("b")), 0u);
}

TEST_F(L1StoreTest, IsolatedLruEnforcesQuotasPerSalt) {
  auto s = Make(16 * kMiB, "IsolatedLRU");
  ASSERT_TRUE(s->policy()->SetQuota(Symbol::Intern("paid"), 4 * kMiB).ok());
  ASSERT_TRUE(Put(s.get(), Keys(0, 6, "paid"), kMiB).ok());
  ASSERT_TRUE(Put(s.get(), Keys(100, 3, "free"), kMiB).ok());  // no quota: limit 0
  uint64_t freed = s->EnforceQuotas(0.8, 0.2);
  EXPECT_GE(freed, 5 * kMiB);
  SaltUsage u = s->UsageBySalt();
  EXPECT_EQ(u.count(Symbol::Intern("free")), 0u);
  EXPECT_LE(u[Symbol::Intern("paid")], 4 * kMiB);
  EXPECT_GT(u[Symbol::Intern("paid")], 0u);
  // The oldest objects of the salt went first.
  EXPECT_FALSE(s->Contains(Key(0, "paid")));
  EXPECT_TRUE(s->Contains(Key(5, "paid")));
}

TEST_F(L1StoreTest, TouchRefreshesRecency) {
  auto s = Make(3 * kMiB);
  ASSERT_TRUE(Put(s.get(), Keys(0, 3), kMiB).ok());
  std::vector<ObjectKey> k0{Key(0)};
  s->Touch(k0);
  ASSERT_TRUE(Put(s.get(), Keys(10, 1), kMiB).ok());
  EXPECT_TRUE(s->Contains(Key(0)));
  EXPECT_FALSE(s->Contains(Key(1)));
}

TEST_F(L1StoreTest, ReadPrefixStopsAtFirstMiss) {
  auto s = Make();
  ASSERT_TRUE(Put(s.get(), Keys(0, 2), 4096).ok());
  ASSERT_TRUE(Put(s.get(), Keys(3, 2), 4096).ok());
  auto keys = Keys(0, 5);
  std::vector<ObjectView> v;
  EXPECT_EQ(s->ReserveReadPrefix(keys, 1, &v), 2u);
  EXPECT_EQ(s->Stats().read_locked_objects, 2u);
  EXPECT_EQ(s->FinishRead(keys), 2u);
  std::vector<bool> hits;
  s->ReserveRead(keys, 1, &hits, &v);
  EXPECT_EQ(hits, (std::vector<bool>{true, true, false, true, true}));
  EXPECT_EQ(s->FinishRead(keys), 4u);
}

TEST_F(L1StoreTest, LazyArenaIsPrefaultedAheadInTheBackground) {
  L1Options o;
  o.arena.capacity_bytes = 256 * kMiB;
  o.arena.lazy = true;
  o.arena.initial_bytes = 64 * kMiB;
  o.arena.huge_pages = false;
  o.prefault_window_bytes = 8 * kMiB;
  auto r = L1Store::Create(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto s = std::move(r).value();
  EXPECT_EQ(s->Stats().capacity_bytes, 256 * kMiB);
  EXPECT_EQ(s->Stats().usable_bytes, 64 * kMiB);
  // Fill past the initial usable size: the arena grows, nothing moves.
  ASSERT_TRUE(Put(s.get(), Keys(0, 80), kMiB).ok());
  EXPECT_GE(s->Stats().usable_bytes, 80 * kMiB);
  EXPECT_EQ(s->Stats().evicted_objects, 0u);
  std::vector<ObjectView> v;
  auto keys = Keys(0, 80);
  ASSERT_EQ(s->ReserveReadPrefix(keys, 1, &v), 80u);
  for (size_t i = 0; i < 80; i += 13) EXPECT_TRUE(Verify(v[i], i));
  s->FinishRead(keys);
  // The prefault thread catches up with the high-water mark.
  for (int i = 0; i < 200 && s->Stats().prefaulted_bytes < s->Stats().high_water_mark; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(s->Stats().prefaulted_bytes, s->Stats().high_water_mark);
  EXPECT_LE(s->Stats().prefaulted_bytes, s->Stats().usable_bytes);
}

// OnAdmitted names the writer tag and whether the objects are temporary; a
// listener that only overrides OnResident still sees every admission.
class TagListener : public L1Listener {
 public:
  void OnAdmitted(const std::vector<ObjectKey>& keys, WriterTag tag, bool temporary) override {
    std::lock_guard<std::mutex> l(mu);
    for (const ObjectKey& k : keys) events.push_back({k, tag, temporary});
  }
  struct Event {
    ObjectKey key;
    WriterTag tag;
    bool temporary;
  };
  std::mutex mu;
  std::vector<Event> events;
};

TEST_F(L1StoreTest, OnAdmittedReportsWriterTagAndTemporary) {
  auto s = Make();
  TagListener tags;
  RecordingListener plain;
  s->AddListener(&tags);
  s->AddListener(&plain);
  ASSERT_TRUE(Put(s.get(), Keys(0, 2), 4096, /*tag=*/7).ok());
  // A temporary admission with readers, by another writer.
  std::vector<ObjectKey> k{Key(9)};
  std::vector<uint64_t> sizes{4096};
  std::vector<ReserveOutcome> out;
  std::vector<ObjectView> views;
  ASSERT_TRUE(s->ReserveWrite(k, sizes, 42, &out, &views).ok());
  ASSERT_TRUE(s->FinishWriteAndReserveRead(k, 42, 1, /*temporary=*/true, &views).ok());
  // Already resident: nothing is reserved or admitted, nobody is told.
  std::vector<ObjectKey> again = Keys(0, 1);
  ASSERT_TRUE(s->ReserveWrite(again, sizes, 8, &out, &views).ok());
  EXPECT_EQ(out[0], ReserveOutcome::kAlreadyResident);
  ASSERT_EQ(tags.events.size(), 3u);
  EXPECT_EQ(tags.events[0].tag, 7u);
  EXPECT_FALSE(tags.events[0].temporary);
  EXPECT_EQ(tags.events[2].key, Key(9));
  EXPECT_EQ(tags.events[2].tag, 42u);
  EXPECT_TRUE(tags.events[2].temporary);
  EXPECT_EQ(plain.resident.size(), 3u);  // the default OnAdmitted forwards
  s->FinishRead(k);
  s->RemoveListener(&tags);
  s->RemoveListener(&plain);
}

// ---- listing ----

// Every page of one pass from `cursor` on; fails the test on an error or a
// pass that does not end within `max_pages`.
std::vector<L1ObjectInfo> ListAll(const L1Store& s, size_t page_size, std::optional<std::string> model = {},
                                  size_t* pages = nullptr, size_t max_pages = 100000) {
  std::vector<L1ObjectInfo> all;
  L1ListRequest req;
  req.page_size = page_size;
  req.model_name = std::move(model);
  size_t n = 0;
  while (true) {
    Result<L1ObjectPage> page = s.ListObjects(req);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    EXPECT_LE(page.value().objects.size(), page_size);
    all.insert(all.end(), page.value().objects.begin(), page.value().objects.end());
    ++n;
    if (page.value().next_cursor.empty()) break;
    EXPECT_NE(page.value().next_cursor, req.cursor) << "a page made no progress";
    req.cursor = page.value().next_cursor;
    if (n >= max_pages) {
      ADD_FAILURE() << "listing did not end after " << n << " pages";
      break;
    }
  }
  if (pages) *pages = n;
  return all;
}

std::unordered_map<ObjectKey, L1ObjectInfo, ObjectKeyHash> ByKey(const std::vector<L1ObjectInfo>& v) {
  std::unordered_map<ObjectKey, L1ObjectInfo, ObjectKeyHash> m;
  for (const L1ObjectInfo& o : v) EXPECT_TRUE(m.emplace(o.key, o).second) << "listed twice: " << o.key.ToString();
  return m;
}

TEST_F(L1StoreTest, ListingPagesCoverEveryObjectExactlyOnce) {
  auto s = Make(16 * kMiB);
  const uint64_t kN = 300;
  for (uint64_t i = 0; i < kN; i += 10) ASSERT_TRUE(Put(s.get(), Keys(i, 10), 1000 + i % 7).ok());
  for (size_t page_size : {size_t{1}, size_t{7}, size_t{64}, size_t{300}, size_t{10000}}) {
    size_t pages = 0;
    auto all = ListAll(*s, page_size, {}, &pages);
    auto by_key = ByKey(all);
    ASSERT_EQ(by_key.size(), kN) << "page_size " << page_size;
    for (uint64_t i = 0; i < kN; ++i) {
      auto it = by_key.find(Key(i));
      ASSERT_NE(it, by_key.end()) << i;
      EXPECT_EQ(it->second.size, 1000 + (i - i % 10) % 7);
      EXPECT_GE(it->second.allocated_bytes, it->second.size);
      EXPECT_EQ(it->second.read_locks, 0u);
      EXPECT_FALSE(it->second.temporary);
      EXPECT_EQ(it->second.key.model_name.str(), "test/model");
    }
    // Full pages until the last one, and no empty page at the end.
    EXPECT_EQ(pages, (kN + page_size - 1) / page_size) << "page_size " << page_size;
  }
  // An empty store: one empty, final page.
  auto empty = Make();
  L1ListRequest req;
  Result<L1ObjectPage> page = empty->ListObjects(req);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page.value().objects.empty());
  EXPECT_TRUE(page.value().next_cursor.empty());
}

TEST_F(L1StoreTest, ListingReportsLocksAndTemporaryObjects) {
  auto s = Make();
  ASSERT_TRUE(Put(s.get(), Keys(0, 2), 4096).ok());
  std::vector<ObjectKey> k0{Key(0)};
  std::vector<bool> hits;
  std::vector<ObjectView> views;
  s->ReserveRead(k0, 3, &hits, &views);
  std::vector<ObjectKey> tmp{Key(5)};
  std::vector<uint64_t> sizes{2048};
  std::vector<ReserveOutcome> out;
  ASSERT_TRUE(s->ReserveWrite(tmp, sizes, 9, &out, &views).ok());
  std::vector<ObjectKey> staging{Key(6)};
  ASSERT_TRUE(s->ReserveWrite(staging, sizes, 9, &out, &views).ok());  // never finished: not listed
  ASSERT_TRUE(s->FinishWriteAndReserveRead(tmp, 9, 1, /*temporary=*/true, &views).ok());
  auto by_key = ByKey(ListAll(*s, 10));
  ASSERT_EQ(by_key.size(), 3u);
  EXPECT_EQ(by_key.at(Key(0)).read_locks, 3u);
  EXPECT_EQ(by_key.at(Key(1)).read_locks, 0u);
  EXPECT_TRUE(by_key.at(Key(5)).temporary);
  EXPECT_EQ(by_key.at(Key(5)).size, 2048u);
  EXPECT_EQ(by_key.at(Key(5)).read_locks, 1u);
  // An expired read lock counts as released.
  clock_.Advance(6'000'000'000);
  by_key = ByKey(ListAll(*s, 10));
  EXPECT_EQ(by_key.at(Key(0)).read_locks, 0u);
}

TEST_F(L1StoreTest, ListingFiltersByModel) {
  auto s = Make();
  std::vector<ObjectKey> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(testing::Key(i, "", i % 4 == 0 ? "other/model" : "test/model"));
  ASSERT_TRUE(Put(s.get(), keys, 512).ok());
  auto other = ListAll(*s, 3, std::string("other/model"));
  EXPECT_EQ(ByKey(other).size(), 10u);
  for (const auto& o : other) EXPECT_EQ(o.key.model_name.str(), "other/model");
  EXPECT_EQ(ByKey(ListAll(*s, 4, std::string("test/model"))).size(), 30u);
  EXPECT_TRUE(ListAll(*s, 4, std::string("no/such-model")).empty());
  EXPECT_TRUE(ListAll(*s, 4, std::string("")).empty());
}

TEST_F(L1StoreTest, ListingIsPagedInBoundedWork) {
  // A selective filter over many objects: pages may be short, but every
  // call returns after a bounded scan and the pass still finds everything.
  auto s = Make(64 * kMiB);
  std::vector<ObjectKey> keys;
  for (uint64_t i = 0; i < 6000; ++i) keys.push_back(testing::Key(i, "", i == 4321 ? "rare" : "common"));
  for (size_t i = 0; i < keys.size(); i += 500) {
    std::vector<ObjectKey> batch(keys.begin() + i, keys.begin() + std::min(keys.size(), i + 500));
    ASSERT_TRUE(Put(s.get(), batch, 64).ok());
  }
  size_t pages = 0;
  auto rare = ListAll(*s, 1, std::string("rare"), &pages);
  ASSERT_EQ(rare.size(), 1u);
  EXPECT_EQ(rare[0].key, keys[4321]);
  EXPECT_GT(pages, 1u);  // 6000 slots cannot be examined by one call of page_size 1
}

TEST_F(L1StoreTest, ListingAcrossRemovalsAndInsertions) {
  auto s = Make(16 * kMiB);
  ASSERT_TRUE(Put(s.get(), Keys(0, 1200), 1024).ok());
  L1ListRequest req;
  req.page_size = 100;
  std::vector<L1ObjectInfo> seen;
  Result<L1ObjectPage> page = s->ListObjects(req);
  ASSERT_TRUE(page.ok());
  seen = page.value().objects;
  // Between pages: delete two thirds of what is not listed yet (tombstones,
  // enough to compact the order vectors) and admit new keys, which this pass
  // must not list.
  std::unordered_set<ObjectKey, ObjectKeyHash> listed;
  for (const auto& o : seen) listed.insert(o.key);
  std::vector<ObjectKey> gone;
  for (uint64_t i = 0; i < 1200; ++i) {
    if (i % 3 != 1 && !listed.count(Key(i))) gone.push_back(Key(i));
  }
  EXPECT_EQ(s->Delete(gone, false), gone.size());
  ASSERT_TRUE(Put(s.get(), Keys(5000, 50), 1024).ok());
  req.cursor = page.value().next_cursor;
  while (!req.cursor.empty()) {
    page = s->ListObjects(req);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    seen.insert(seen.end(), page.value().objects.begin(), page.value().objects.end());
    req.cursor = page.value().next_cursor;
  }
  auto by_key = ByKey(seen);
  for (uint64_t i = 1; i < 1200; i += 3) EXPECT_TRUE(by_key.count(Key(i))) << "resident all along: " << i;
  for (const ObjectKey& k : gone) EXPECT_FALSE(by_key.count(k)) << "deleted before its page";
  for (uint64_t i = 5000; i < 5050; ++i) EXPECT_FALSE(by_key.count(Key(i))) << "admitted after the pass began";
  // A new pass sees the new keys.
  EXPECT_EQ(ByKey(ListAll(*s, 33)).size(), 1200u - gone.size() + 50u);
  EXPECT_EQ(seen.size(), 1200u - gone.size());
}

TEST_F(L1StoreTest, ListingRejectsBadCursors) {
  auto s = Make();
  ASSERT_TRUE(Put(s.get(), Keys(0, 20), 512).ok());
  L1ListRequest req;
  req.page_size = 0;
  EXPECT_EQ(s->ListObjects(req).status().code(), StatusCode::kInvalidArgument);
  req.page_size = 5;
  Result<L1ObjectPage> first = s->ListObjects(req);
  ASSERT_TRUE(first.ok());
  const std::string good = first.value().next_cursor;
  ASSERT_FALSE(good.empty());
  for (std::string bad : {std::string("garbage"), std::string("l1-"), std::string("l1-1-2-3"),
                          std::string("l1-zz-0-0-0"), std::string("l1-1-0-5-4"), std::string("l1-1-99-0-1"),
                          std::string("l1-1-0-0-1-2"), std::string("l1-1-+0-0-1"), good + "0", "x" + good,
                          std::string(5000, 'a'), std::string("l1-1-0-0-1\n")}) {
    req.cursor = bad;
    Result<L1ObjectPage> r = s->ListObjects(req);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    const std::string msg = r.status().ToString();
    EXPECT_NE(msg.find("cursor"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 200u) << msg;
  }
  // A well-formed cursor of another store (or an earlier server).
  auto other = Make();
  req.cursor = good;
  Result<L1ObjectPage> r = other->ListObjects(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("another L1 store"), std::string::npos) << r.status().ToString();
  // The good cursor still works.
  EXPECT_TRUE(s->ListObjects(req).ok());
}

}  // namespace
}  // namespace lmcache
