// The L2 adapter conformance suite: one typed test pattern that every
// adapter runs against the contract of lmcache/l2_adapter.h.
//
// Each adapter's test file defines a traits struct and instantiates the
// pattern (gtest's documented way to share a typed suite across files):
//
//   struct RespTraits {
//     static constexpr const char* kType = "resp";  // common_config().type
//     static constexpr bool kPersistent = true;     // a new adapter on the same spec finds the data
//     static std::string Spec(const std::string& dir);  // dir: a fresh temp dir per test
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(resp, L2ConformanceTest, ::testing::Types<RespTraits>);
//
// Optional traits members: `static void SetUpTestSuite()` style setup belongs
// in the adapter's own file (e.g. a gtest Environment that starts a server).

#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_test_util.h"

namespace lmcache {
namespace conformance {

using testing::Bits;
using testing::Key;
using testing::LoadSync;
using testing::LookupSync;
using testing::Pattern;
using testing::StoreSync;
using testing::StoreWaiter;
using testing::TempDir;
using testing::ViewOf;

template <class Traits>
class L2ConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override { adapter_ = Open(); }
  void TearDown() override { adapter_.reset(); }

  std::unique_ptr<L2Adapter> Open() { return testing::MustCreate(Traits::Spec(dir_.path())); }

  TempDir dir_;
  std::unique_ptr<L2Adapter> adapter_;
};

TYPED_TEST_SUITE_P(L2ConformanceTest);


TYPED_TEST_P(L2ConformanceTest, TypeAndHealth) {
  L2Adapter* a = this->adapter_.get();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->common_config().type, TypeParam::kType);
  const L2Status s = a->ReportStatus();
  EXPECT_TRUE(s.healthy) << s.message;
  EXPECT_EQ(s.type, TypeParam::kType);
}

TYPED_TEST_P(L2ConformanceTest, ThreeDistinctNonBlockingEventFds) {
  L2Adapter* a = this->adapter_.get();
  const std::set<int> fds = {a->store_event_fd(), a->lookup_event_fd(), a->load_event_fd()};
  EXPECT_EQ(fds.size(), 3u);
  for (int fd : fds) {
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  }
  // Another adapter gets other fds.
  TempDir other;
  auto b = testing::MustCreate(TypeParam::Spec(other.path()));
  for (int fd : {b->store_event_fd(), b->lookup_event_fd(), b->load_event_fd()}) EXPECT_EQ(fds.count(fd), 0u);
}

TYPED_TEST_P(L2ConformanceTest, StoreLookupLoadRoundTrip) {
  L2Adapter* a = this->adapter_.get();
  const std::vector<size_t> sizes = {1, 1000, 4096, 65536 + 3, (1u << 20) + 17, (5u << 20) + 4096};
  std::vector<ObjectKey> keys;
  std::vector<std::vector<uint8_t>> data;
  std::vector<ObjectView> views;
  for (size_t i = 0; i < sizes.size(); ++i) {
    keys.push_back(Key(i));
    data.push_back(Pattern(i, sizes[i]));
  }
  for (auto& d : data) views.push_back(ViewOf(d));
  const L2StoreResult st = StoreSync(a, keys, views);
  EXPECT_TRUE(st.ok);
  EXPECT_EQ(Bits(st.stored), "111111");
  uint64_t total = 0;
  for (size_t s : sizes) total += s;
  EXPECT_EQ(st.bytes_written, total);

  EXPECT_EQ(Bits(LookupSync(a, keys)), "111111");
  a->SubmitUnlock(keys);

  std::vector<std::vector<uint8_t>> out;
  std::vector<ObjectView> out_views;
  for (size_t s : sizes) out.emplace_back(s, 0xEE);
  for (auto& o : out) out_views.push_back(ViewOf(o));
  EXPECT_EQ(Bits(LoadSync(a, keys, out_views)), "111111");
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_TRUE(out[i] == data[i]) << "object " << i;

  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.stored_objects, sizes.size());
  EXPECT_EQ(c.loaded_objects, sizes.size());
  EXPECT_EQ(c.loaded_bytes, total);
  EXPECT_EQ(c.corrupt_objects, 0u);
}

TYPED_TEST_P(L2ConformanceTest, LookupBitmapIsPerKeyInOrder) {
  L2Adapter* a = this->adapter_.get();
  std::vector<std::vector<uint8_t>> data;
  std::vector<ObjectKey> stored;
  for (int i : {0, 2, 3, 6}) {
    stored.push_back(Key(i));
    data.push_back(Pattern(i, 3000));
  }
  std::vector<ObjectView> views;
  for (auto& d : data) views.push_back(ViewOf(d));
  ASSERT_TRUE(StoreSync(a, stored, views).ok);
  std::vector<ObjectKey> probe;
  for (int i = 0; i < 8; ++i) probe.push_back(Key(i));
  EXPECT_EQ(Bits(LookupSync(a, probe)), "10110010");
  // Same hash, other salt / model / rank / group: other objects.
  ObjectKey other_salt = Key(0, "salt");
  ObjectKey other_model = Key(0, "", "other/model");
  ObjectKey other_rank = Key(0);
  other_rank.kv_rank = PackKvRank(2, 1, 2, 1);
  ObjectKey other_group = Key(0);
  other_group.object_group_id = 3;
  EXPECT_EQ(Bits(LookupSync(a, {other_salt, other_model, other_rank, other_group})), "0000");
  a->SubmitUnlock(probe);
}

TYPED_TEST_P(L2ConformanceTest, ResultsAreHandedOutOnce) {
  L2Adapter* a = this->adapter_.get();
  auto d = Pattern(1, 100);
  auto sid = a->SubmitStore(std::vector<ObjectKey>{Key(1)}, std::vector<ObjectView>{ViewOf(d)});
  ASSERT_TRUE(sid.ok());
  StoreWaiter w(a);
  ASSERT_TRUE(w.Wait(sid.value()).has_value());
  EXPECT_TRUE(a->PopCompletedStores().empty());

  auto lid = a->SubmitLookupAndLock(std::vector<ObjectKey>{Key(1)});
  ASSERT_TRUE(lid.ok());
  ASSERT_TRUE(testing::WaitLookup(a, lid.value()).has_value());
  EXPECT_FALSE(a->QueryLookupResult(lid.value()).has_value());
  a->SubmitUnlock(std::vector<ObjectKey>{Key(1)});

  std::vector<uint8_t> out(100);
  auto did = a->SubmitLoad(std::vector<ObjectKey>{Key(1)}, std::vector<ObjectView>{ViewOf(out)});
  ASSERT_TRUE(did.ok());
  ASSERT_TRUE(testing::WaitLoad(a, did.value()).has_value());
  EXPECT_FALSE(a->QueryLoadResult(did.value()).has_value());
  EXPECT_FALSE(a->QueryLoadResult(999999).has_value());
  // Ids are unique across kinds.
  EXPECT_EQ(std::set<L2TaskId>({sid.value(), lid.value(), did.value()}).size(), 3u);
}

TYPED_TEST_P(L2ConformanceTest, FirstWriterWins) {
  L2Adapter* a = this->adapter_.get();
  auto first = Pattern(10, 5000);
  auto second = Pattern(11, 5000);
  auto bigger = Pattern(12, 7000);
  ASSERT_TRUE(StoreSync(a, {Key(5)}, {ViewOf(first)}).ok);
  const L2StoreResult again = StoreSync(a, {Key(5)}, {ViewOf(second)});
  EXPECT_TRUE(again.ok);
  EXPECT_EQ(Bits(again.stored), "1");
  EXPECT_EQ(again.bytes_written, 0u);
  EXPECT_TRUE(StoreSync(a, {Key(5)}, {ViewOf(bigger)}).ok);
  std::vector<uint8_t> out(5000);
  EXPECT_EQ(Bits(LoadSync(a, {Key(5)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == first);
  EXPECT_EQ(a->Usage().total_bytes, 5000u);
  EXPECT_GE(a->ReportStatus().counters.store_skipped, 2u);
}

TYPED_TEST_P(L2ConformanceTest, DuplicateKeysInOneBatchStoreOnce) {
  L2Adapter* a = this->adapter_.get();
  auto d = Pattern(3, 4000);
  const L2StoreResult r = StoreSync(a, {Key(3), Key(3), Key(3)}, {ViewOf(d), ViewOf(d), ViewOf(d)});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(Bits(r.stored), "111");
  EXPECT_EQ(a->Usage().total_bytes, 4000u);
  EXPECT_EQ(a->Usage().objects, 1u);
}

TYPED_TEST_P(L2ConformanceTest, MissesAndWrongSizesAreZeroBits) {
  L2Adapter* a = this->adapter_.get();
  auto d = Pattern(20, 8192);
  ASSERT_TRUE(StoreSync(a, {Key(20)}, {ViewOf(d)}).ok);
  std::vector<uint8_t> small(8191), big(8193), right(8192), missing(8192);
  EXPECT_EQ(Bits(LoadSync(a, {Key(20), Key(20), Key(21), Key(20)},
                          {ViewOf(small), ViewOf(big), ViewOf(missing), ViewOf(right)})),
            "0001");
  EXPECT_TRUE(right == d);
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.size_mismatches, 2u);
  EXPECT_EQ(c.load_misses, 3u);
  EXPECT_EQ(c.corrupt_objects, 0u);
  // A size mismatch does not drop the object.
  EXPECT_EQ(Bits(LookupSync(a, {Key(20)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(20)});
}

TYPED_TEST_P(L2ConformanceTest, DeleteRemovesObjects) {
  L2Adapter* a = this->adapter_.get();
  auto d0 = Pattern(30, 1000), d1 = Pattern(31, 2000);
  ASSERT_TRUE(StoreSync(a, {Key(30), Key(31)}, {ViewOf(d0), ViewOf(d1)}).ok);
  // A locked object is deleted too.
  EXPECT_EQ(Bits(LookupSync(a, {Key(30)})), "1");
  auto n = a->Delete(std::vector<ObjectKey>{Key(30), Key(32)});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 1u);
  a->SubmitUnlock(std::vector<ObjectKey>{Key(30)});  // unlocking a deleted key is harmless
  EXPECT_EQ(Bits(LookupSync(a, {Key(30), Key(31)})), "01");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(31)});
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(Bits(LoadSync(a, {Key(30)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->Usage().total_bytes, 2000u);
  EXPECT_EQ(a->Delete(std::vector<ObjectKey>{Key(30)}).value(), 0u);
  // Stored again after delete.
  EXPECT_EQ(StoreSync(a, {Key(30)}, {ViewOf(d0)}).bytes_written, 1000u);
}

TYPED_TEST_P(L2ConformanceTest, UsageTotalAndPerSalt) {
  L2Adapter* a = this->adapter_.get();
  auto x = Pattern(1, 1000), y = Pattern(2, 3000), z = Pattern(3, 5000), w = Pattern(4, 7000);
  ASSERT_TRUE(StoreSync(a, {Key(1, "alice"), Key(2, "alice"), Key(3, "bob"), Key(4)},
                        {ViewOf(x), ViewOf(y), ViewOf(z), ViewOf(w)})
                  .ok);
  L2Usage u = a->Usage();
  EXPECT_EQ(u.total_bytes, 16000u);
  EXPECT_EQ(u.objects, 4u);
  EXPECT_EQ(u.bytes_by_salt, (std::map<std::string, uint64_t>{{"", 7000}, {"alice", 4000}, {"bob", 5000}}));
  ASSERT_TRUE(a->Delete(std::vector<ObjectKey>{Key(3, "bob")}).ok());
  u = a->Usage();
  EXPECT_EQ(u.total_bytes, 11000u);
  EXPECT_EQ(u.bytes_by_salt.count("bob"), 0u);  // empty buckets disappear
}

TYPED_TEST_P(L2ConformanceTest, ListPagesThroughEveryKey) {
  L2Adapter* a = this->adapter_.get();
  std::vector<ObjectKey> keys;
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 7; ++i) keys.push_back(Key(i, "", i % 2 ? "m/one" : "m/two"));
  for (int i = 0; i < 7; ++i) data.push_back(Pattern(i, 100 + i));
  std::vector<ObjectView> views;
  for (auto& d : data) views.push_back(ViewOf(d));
  ASSERT_TRUE(StoreSync(a, keys, views).ok);

  std::set<std::string> seen;
  L2ListRequest req;
  req.page_size = 3;
  int pages = 0;
  std::string last;
  for (;;) {
    auto page = a->List(req);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ++pages;
    for (const auto& k : page.value().keys) {
      EXPECT_GT(k.key.ToString(), last);  // ordered, no repeats
      last = k.key.ToString();
      EXPECT_TRUE(seen.insert(last).second);
      EXPECT_GE(k.size, 100u);
    }
    if (page.value().next_cursor.empty()) break;
    req.cursor = page.value().next_cursor;
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(pages, 3);

  L2ListRequest one;
  one.model_name = "m/one";
  auto page = a->List(one);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page.value().keys.size(), 3u);
  for (const auto& k : page.value().keys) EXPECT_EQ(k.key.model_name.str(), "m/one");

  L2ListRequest bad;
  bad.cursor = "not a key";
  EXPECT_EQ(a->List(bad).status().code(), StatusCode::kInvalidArgument);
  bad.cursor.clear();
  bad.page_size = 0;
  EXPECT_EQ(a->List(bad).status().code(), StatusCode::kInvalidArgument);
}

TYPED_TEST_P(L2ConformanceTest, EmptyBatchesComplete) {
  L2Adapter* a = this->adapter_.get();
  EXPECT_TRUE(StoreSync(a, {}, {}).ok);
  EXPECT_TRUE(LookupSync(a, {}).empty());
  auto id = a->SubmitLoad({}, {});
  ASSERT_TRUE(id.ok());
  auto r = testing::WaitLoad(a, id.value());
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
}

TYPED_TEST_P(L2ConformanceTest, BadArgumentsQueueNothing) {
  L2Adapter* a = this->adapter_.get();
  auto d = Pattern(1, 10);
  std::vector<ObjectKey> two = {Key(1), Key(2)};
  std::vector<ObjectView> one = {ViewOf(d)};
  EXPECT_EQ(a->SubmitStore(two, one).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a->SubmitLoad(two, one).status().code(), StatusCode::kInvalidArgument);
  std::vector<ObjectView> empty_view = {ObjectView{nullptr, 0}};
  EXPECT_EQ(a->SubmitStore(std::vector<ObjectKey>{Key(1)}, empty_view).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
}

TYPED_TEST_P(L2ConformanceTest, EventFdsSignalTheirKind) {
  L2Adapter* a = this->adapter_.get();
  auto d = Pattern(40, 4096);
  std::vector<uint8_t> out(4096);
  ASSERT_TRUE(a->SubmitStore(std::vector<ObjectKey>{Key(40)}, std::vector<ObjectView>{ViewOf(d)}).ok());
  EXPECT_TRUE(testing::WaitReadable(a->store_event_fd()));
  auto stores = a->PopCompletedStores();
  ASSERT_EQ(stores.size(), 1u);  // published before the fd was written
  EXPECT_TRUE(stores[0].second.ok);

  auto lid = a->SubmitLookupAndLock(std::vector<ObjectKey>{Key(40)});
  ASSERT_TRUE(lid.ok());
  EXPECT_TRUE(testing::WaitReadable(a->lookup_event_fd()));
  auto bits = a->QueryLookupResult(lid.value());
  ASSERT_TRUE(bits.has_value());
  EXPECT_EQ(Bits(*bits), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(40)});

  auto did = a->SubmitLoad(std::vector<ObjectKey>{Key(40)}, std::vector<ObjectView>{ViewOf(out)});
  ASSERT_TRUE(did.ok());
  EXPECT_TRUE(testing::WaitReadable(a->load_event_fd()));
  bits = a->QueryLoadResult(did.value());
  ASSERT_TRUE(bits.has_value());
  EXPECT_EQ(Bits(*bits), "1");
  EXPECT_TRUE(out == d);
}

TYPED_TEST_P(L2ConformanceTest, ConcurrentSubmitters) {
  L2Adapter* a = this->adapter_.get();
  constexpr int kThreads = 4, kPerThread = 24, kShared = 8;
  StoreWaiter waiter(a);
  std::atomic<int> failures{0};
  auto body = [&](int t) {
    // Each thread: its own keys plus keys every thread stores (same bytes).
    std::vector<ObjectKey> keys;
    std::vector<std::vector<uint8_t>> data;
    for (int i = 0; i < kPerThread; ++i) {
      keys.push_back(Key(1000 + t * 100 + i, t % 2 ? "odd" : ""));
      data.push_back(Pattern(1000 + t * 100 + i, 2048 + 97 * i));
    }
    for (int i = 0; i < kShared; ++i) {
      keys.push_back(Key(5000 + i));
      data.push_back(Pattern(5000 + i, 3000));
    }
    std::vector<ObjectView> views;
    for (auto& d : data) views.push_back(ViewOf(d));
    // Several smaller tasks in flight at once.
    std::vector<L2TaskId> ids;
    for (size_t off = 0; off < keys.size(); off += 8) {
      const size_t n = std::min<size_t>(8, keys.size() - off);
      auto id = a->SubmitStore(std::span(keys).subspan(off, n), std::span(views).subspan(off, n));
      if (!id.ok()) ++failures;
      else ids.push_back(id.value());
    }
    for (L2TaskId id : ids) {
      auto r = waiter.Wait(id);
      if (!r || !r->ok) ++failures;
    }
    const L2Bitmap hits = LookupSync(a, keys);
    if (std::count(hits.begin(), hits.end(), true) != static_cast<long>(keys.size())) ++failures;
    a->SubmitUnlock(keys);
    std::vector<std::vector<uint8_t>> out;
    std::vector<ObjectView> out_views;
    for (auto& d : data) out.emplace_back(d.size());
    for (auto& o : out) out_views.push_back(ViewOf(o));
    const L2Bitmap loaded = LoadSync(a, keys, out_views);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!loaded[i] || out[i] != data[i]) ++failures;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(body, t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const L2Usage u = a->Usage();
  EXPECT_EQ(u.objects, static_cast<uint64_t>(kThreads * kPerThread + kShared));
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 0u);
}

TYPED_TEST_P(L2ConformanceTest, CloseCompletesEverythingAndRejectsNewWork) {
  L2Adapter* a = this->adapter_.get();
  std::vector<std::vector<uint8_t>> data;
  std::vector<ObjectKey> keys;
  for (int i = 0; i < 64; ++i) {
    keys.push_back(Key(i));
    data.push_back(Pattern(i, 64 * 1024));
  }
  std::vector<L2TaskId> ids;
  for (int i = 0; i < 64; ++i) {
    auto id = a->SubmitStore(std::span(keys).subspan(i, 1), std::vector<ObjectView>{ViewOf(data[i])});
    ASSERT_TRUE(id.ok());
    ids.push_back(id.value());
  }
  a->Close();
  // Every task has a result (written or cancelled); none is left pending.
  std::set<L2TaskId> done;
  for (auto& [id, r] : a->PopCompletedStores()) done.insert(id);
  EXPECT_EQ(done.size(), ids.size());
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
  EXPECT_FALSE(a->ReportStatus().healthy);
  EXPECT_EQ(a->SubmitStore(std::span(keys).subspan(0, 1), std::vector<ObjectView>{ViewOf(data[0])}).status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(a->SubmitLookupAndLock(std::span(keys).subspan(0, 1)).status().code(), StatusCode::kUnavailable);
  a->Close();  // idempotent
}

TYPED_TEST_P(L2ConformanceTest, CorruptObjectIsAMissNeverWrongBytes) {
  L2Adapter* a = this->adapter_.get();
  if (!a->supports_corruption_injection()) GTEST_SKIP() << "adapter cannot inject corruption";
  auto d = Pattern(50, 100000);
  auto ok = Pattern(51, 100000);
  ASSERT_TRUE(StoreSync(a, {Key(50), Key(51)}, {ViewOf(d), ViewOf(ok)}).ok);
  ASSERT_TRUE(a->InjectCorruption(Key(50)).ok());
  EXPECT_EQ(a->InjectCorruption(Key(99)).code(), StatusCode::kNotFound);
  std::vector<uint8_t> out(100000), out2(100000);
  EXPECT_EQ(Bits(LookupSync(a, {Key(50)})), "1");  // still looks present
  EXPECT_EQ(Bits(LoadSync(a, {Key(50), Key(51)}, {ViewOf(out), ViewOf(out2)})), "01");
  EXPECT_TRUE(out2 == ok);
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
  // Dropped: no longer found, and storing it again works.
  EXPECT_EQ(Bits(LookupSync(a, {Key(50)})), "0");
  EXPECT_EQ(a->Usage().total_bytes, 100000u);
  EXPECT_EQ(StoreSync(a, {Key(50)}, {ViewOf(d)}).bytes_written, 100000u);
  EXPECT_EQ(Bits(LoadSync(a, {Key(50)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
}

TYPED_TEST_P(L2ConformanceTest, RestartFindsStoredObjects) {
  if (!TypeParam::kPersistent) GTEST_SKIP() << "in-memory adapter";
  std::vector<ObjectKey> keys = {Key(1), Key(2, "s"), Key(3, "", "org/m")};
  std::vector<std::vector<uint8_t>> data = {Pattern(1, 4096), Pattern(2, 12345), Pattern(3, 1 << 20)};
  std::vector<ObjectView> views;
  for (auto& d : data) views.push_back(ViewOf(d));
  ASSERT_TRUE(StoreSync(this->adapter_.get(), keys, views).ok);
  const L2Usage before = this->adapter_->Usage();
  this->adapter_.reset();

  auto b = this->Open();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->Usage().total_bytes, before.total_bytes);
  EXPECT_EQ(b->Usage().bytes_by_salt, before.bytes_by_salt);
  EXPECT_EQ(b->List(L2ListRequest{}).value().keys.size(), 3u);
  EXPECT_EQ(Bits(LookupSync(b.get(), keys)), "111");
  b->SubmitUnlock(keys);
  std::vector<std::vector<uint8_t>> out;
  std::vector<ObjectView> out_views;
  for (auto& d : data) out.emplace_back(d.size());
  for (auto& o : out) out_views.push_back(ViewOf(o));
  EXPECT_EQ(Bits(LoadSync(b.get(), keys, out_views)), "111");
  for (size_t i = 0; i < data.size(); ++i) EXPECT_TRUE(out[i] == data[i]);
  const L2Counters c = b->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 0u);  // checksums survived the restart
  EXPECT_EQ(c.corrupt_objects, 0u);
}

REGISTER_TYPED_TEST_SUITE_P(L2ConformanceTest,
                            TypeAndHealth,
                            ThreeDistinctNonBlockingEventFds,
                            StoreLookupLoadRoundTrip,
                            LookupBitmapIsPerKeyInOrder,
                            ResultsAreHandedOutOnce,
                            FirstWriterWins,
                            DuplicateKeysInOneBatchStoreOnce,
                            MissesAndWrongSizesAreZeroBits,
                            DeleteRemovesObjects,
                            UsageTotalAndPerSalt,
                            ListPagesThroughEveryKey,
                            EmptyBatchesComplete,
                            BadArgumentsQueueNothing,
                            EventFdsSignalTheirKind,
                            ConcurrentSubmitters,
                            CloseCompletesEverythingAndRejectsNewWork,
                            CorruptObjectIsAMissNeverWrongBytes,
                            RestartFindsStoredObjects);

}  // namespace conformance
}  // namespace lmcache
