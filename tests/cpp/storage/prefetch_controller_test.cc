// PrefetchController and L2Tier: L2 -> L1 loads against real adapters (mock,
// fs_native, fault_inject) and a real L1Store; every test ends with no lock,
// staging object or temporary object left behind.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "lmcache/l2_controllers.h"
#include "lmcache/notifier.h"
#include "storage/controller_test_util.h"

namespace lmcache {
namespace {

using namespace lmcache::testing;  // NOLINT

std::unique_ptr<PrefetchController> MakePrefetch(L1Store* l1, std::vector<L2Adapter*> adapters,
                                                 PrefetchControllerOptions o = {}) {
  auto r = PrefetchController::Create(l1, std::move(adapters), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

PrefetchRequest OneRow(const std::vector<ObjectKey>& keys, uint32_t readers = 1, uint64_t size = kObj) {
  PrefetchRequest req;
  req.rows.push_back(PrefetchRow{keys, size});
  req.readers = readers;
  return req;
}

PrefetchResult RunPrefetch(PrefetchController* c, PrefetchRequest req, int64_t timeout_ns = 20 * kSecond) {
  auto id = c->Submit(std::move(req));
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  auto r = c->Wait(id.value(), timeout_ns);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r.value().has_value()) << "prefetch did not finish";
  return r.value().value_or(PrefetchResult{});
}

// Release what a result handed over: `readers` locks on [0, prefix) of keys.
void Release(L1Store* l1, const std::vector<ObjectKey>& keys, size_t prefix, uint32_t readers = 1) {
  std::vector<ObjectKey> k(keys.begin(), keys.begin() + static_cast<ptrdiff_t>(prefix));
  for (uint32_t i = 0; i < readers; ++i) l1->FinishRead(k);
}

TEST(PrefetchControllerTest, LoadsFromL2IntoL1WithTheRightBytes) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock","latency_ms":1})");
  auto keys = KeyRange(0, 8);
  PutL2(mock.get(), keys);
  PeriodicNotifier notifier(2'000'000);
  ASSERT_TRUE(notifier.Start().ok());
  PrefetchControllerOptions o;
  o.notifier = &notifier;
  auto ctl = MakePrefetch(l1.get(), {mock.get()}, o);
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys, /*readers=*/2));
  EXPECT_EQ(r.prefix_chunks, 8u);
  EXPECT_EQ(r.l2_hit_chunks, 8u);
  EXPECT_EQ(r.l1_hit_chunks, 0u);
  EXPECT_EQ(r.loaded_bytes, 8 * kObj);
  EXPECT_FALSE(r.degraded);
  // Admitted temporary, read-locked twice; the bytes are the stored ones.
  EXPECT_EQ(l1->Stats().temporary_objects, 8u);
  std::vector<ObjectView> views;
  ASSERT_EQ(l1->ReserveReadPrefix(keys, 1, &views), 8u);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(HasPattern(views[i], keys[i])) << i;
  l1->FinishRead(keys);
  EXPECT_EQ(L2Locked(*mock), 0);  // unlocked in L2
  Release(l1.get(), keys, 8, 2);
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);  // freed with their last reader
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
  ExpectL1Quiet(l1.get());
  PrefetchControllerStats s = ctl->Stats();
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.l2_hit_chunks, 8u);
  EXPECT_EQ(s.loaded_keys, 8u);
  EXPECT_EQ(s.loaded_bytes, 8 * kObj);
  ctl->Close();
  EXPECT_EQ(notifier.Stats().registered_fds, 0u);
}

TEST(PrefetchControllerTest, L1HitsAreLockedAndOnlyTheRestIsAskedOfL2) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 8);
  PutL1(l1.get(), {keys.begin(), keys.begin() + 4});
  PutL2(mock.get(), keys);
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 8u);
  EXPECT_EQ(r.l1_hit_chunks, 4u);
  EXPECT_EQ(r.l2_hit_chunks, 4u);
  L2Counters c = mock->ReportStatus().counters;
  EXPECT_EQ(c.lookup_hits + c.lookup_misses, 4u);
  EXPECT_EQ(c.loaded_objects, 4u);
  EXPECT_EQ(l1->Stats().read_locked_objects, 8u);
  Release(l1.get(), keys, 8);
  EXPECT_EQ(l1->PrefixHits(keys), 4u);  // the temporaries went, the resident ones stay
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, EverythingInL1NeverTouchesL2) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 5);
  PutL1(l1.get(), keys);
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys, 3));
  EXPECT_EQ(r.prefix_chunks, 5u);
  EXPECT_EQ(r.l1_hit_chunks, 5u);
  EXPECT_EQ(mock->ReportStatus().counters.lookup_tasks, 0u);
  Release(l1.get(), keys, 5, 3);
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, CascadeAsksEachAdapterOnlyForWhatIsStillMissing) {
  auto l1 = MakeL1();
  auto first = MustCreate(R"({"type":"mock"})");
  auto second = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 8);
  PutL2(first.get(), {keys.begin(), keys.begin() + 3});
  PutL2(second.get(), keys);  // has everything, also what the first has
  auto ctl = MakePrefetch(l1.get(), {first.get(), second.get()});
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 8u);
  L2Counters a = first->ReportStatus().counters;
  L2Counters b = second->ReportStatus().counters;
  EXPECT_EQ(a.lookup_hits + a.lookup_misses, 8u);
  EXPECT_EQ(b.lookup_hits + b.lookup_misses, 5u);  // keys the first adapter had are not asked
  EXPECT_EQ(a.loaded_objects, 3u);                 // the first adapter that has a key loads it
  EXPECT_EQ(b.loaded_objects, 5u);
  EXPECT_EQ(L2Locked(*first), 0);
  EXPECT_EQ(L2Locked(*second), 0);
  std::vector<ObjectView> views;
  ASSERT_EQ(l1->ReserveReadPrefix(keys, 1, &views), 8u);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(HasPattern(views[i], keys[i])) << i;
  l1->FinishRead(keys);
  Release(l1.get(), keys, 8);
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, AMissingChunkBreaksThePrefix) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 6);
  PutL2(mock.get(), {keys[0], keys[1], keys[3], keys[4], keys[5]});  // chunk 2 is missing
  PutL1(l1.get(), {keys[4]});
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 2u);
  EXPECT_EQ(mock->ReportStatus().counters.loaded_objects, 2u);  // nothing past the gap is loaded
  EXPECT_EQ(l1->Stats().read_locked_objects, 2u);               // the L1 hit past the gap was released
  EXPECT_EQ(L2Locked(*mock), 0);
  Release(l1.get(), keys, 2);
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, ThePrefixFoldsAcrossRows) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto rank0 = KeyRange(0, 6, 0);
  auto rank1 = KeyRange(0, 6, 1);
  PutL2(mock.get(), rank0);
  PutL2(mock.get(), {rank1.begin(), rank1.begin() + 3});
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  PrefetchRequest req;
  req.rows = {PrefetchRow{rank0, kObj}, PrefetchRow{rank1, kObj}};
  req.readers = 2;
  PrefetchResult r = RunPrefetch(ctl.get(), req);
  EXPECT_EQ(r.prefix_chunks, 3u);
  EXPECT_EQ(r.l2_hit_chunks, 3u);
  EXPECT_EQ(l1->Stats().read_locked_objects, 6u);
  Release(l1.get(), rank0, 3, 2);
  Release(l1.get(), rank1, 3, 2);
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
}

TEST(PrefetchControllerTest, RetainKeepsLoadedObjectsResident) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 4);
  PutL2(mock.get(), keys);
  PrefetchControllerOptions o;
  o.policy = L2PrefetchPolicy::kRetain;
  auto ctl = MakePrefetch(l1.get(), {mock.get()}, o);
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 4u);
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);
  Release(l1.get(), keys, 4);
  EXPECT_EQ(l1->PrefixHits(keys), 4u);
  ExpectL1Quiet(l1.get());
}

// A request with retain (warming, POST /cache/prefetches) keeps its objects
// resident under the default policy; the next request without it does not.
TEST(PrefetchControllerTest, ARetainRequestKeepsItsObjectsUnderTheDefaultPolicy) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto warm = KeyRange(0, 3);
  auto cold = KeyRange(10, 2);
  PutL2(mock.get(), warm);
  PutL2(mock.get(), cold);
  auto ctl = MakePrefetch(l1.get(), {mock.get()}, PrefetchControllerOptions{});
  PrefetchRequest req = OneRow(warm);
  req.retain = true;
  PrefetchResult r = RunPrefetch(ctl.get(), req);
  EXPECT_EQ(r.prefix_chunks, 3u);
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);
  Release(l1.get(), warm, 3);
  EXPECT_EQ(l1->PrefixHits(warm), 3u);  // still there after the reader left
  r = RunPrefetch(ctl.get(), OneRow(cold));
  EXPECT_EQ(r.prefix_chunks, 2u);
  EXPECT_EQ(l1->Stats().temporary_objects, 2u);
  Release(l1.get(), cold, 2);
  EXPECT_EQ(l1->PrefixHits(cold), 0u);  // temporary: gone with its reader
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, NoSpaceInL1StopsThePrefixWhereItRanOut) {
  auto l1 = MakeL1(4 * kObj);  // room for 4 objects; locked ones cannot be evicted
  auto mock = MustCreate(R"({"type":"mock"})");
  auto keys = KeyRange(0, 8);
  PutL2(mock.get(), keys);
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 4u);
  EXPECT_TRUE(r.degraded);
  EXPECT_EQ(ctl->Stats().no_space, 1u);
  EXPECT_EQ(L2Locked(*mock), 0);
  Release(l1.get(), keys, 4);
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
}

TEST(PrefetchControllerTest, AFailingAdapterDegradesToMisses) {
  auto l1 = MakeL1();
  auto keys = KeyRange(0, 6);
  for (const char* ops : {R"(["lookup"])", R"(["load"])"}) {
    SCOPED_TRACE(ops);
    auto bad = MustCreate(std::string(R"({"type":"fault_inject","inner":{"type":"mock"},"fail_rate":1,"fail_ops":)") +
                          ops + "}");
    {
      auto keep = bad->SubmitStore(keys, {});  // wrong arity: refused, nothing stored
      EXPECT_FALSE(keep.ok());
    }
    PutL2(bad.get(), keys);
    PutL1(l1.get(), {keys[0], keys[1]});
    auto ctl = MakePrefetch(l1.get(), {bad.get()});
    PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
    EXPECT_EQ(r.prefix_chunks, 2u);  // the L1-only result
    EXPECT_EQ(r.l2_hit_chunks, 0u);
    PrefetchControllerStats s = ctl->Stats();
    if (std::string(ops).find("load") != std::string::npos) {
      EXPECT_TRUE(r.degraded);  // found, then the load failed
      EXPECT_EQ(s.load_failures, 4u);
    } else {
      EXPECT_EQ(s.l2_hit_keys, 0u);  // a failed lookup reads as misses
    }
    Release(l1.get(), keys, 2);
    ExpectL1Quiet(l1.get());
    EXPECT_EQ(l1->Stats().temporary_objects, 0u);
    ctl->Close();
    l1->Clear(false);
  }
}

TEST(PrefetchControllerTest, ASlowAdapterTimesOutInsteadOfHanging) {
  auto l1 = MakeL1();
  auto slow = MustCreate(R"({"type":"fault_inject","inner":{"type":"mock"},"delay_ms":800,"delay_rate":1})");
  auto keys = KeyRange(0, 4);
  PutL2(slow.get(), keys);
  PrefetchControllerOptions o;
  o.task_timeout_ns = 100'000'000;
  auto ctl = MakePrefetch(l1.get(), {slow.get()}, o);
  const auto t0 = std::chrono::steady_clock::now();
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(700));
  EXPECT_EQ(r.prefix_chunks, 0u);
  EXPECT_TRUE(r.degraded);
  EXPECT_GE(ctl->Stats().timeouts, 1u);
  // The timed-out lookup's locks are released once it completes.
  EXPECT_TRUE(Eventually([&] { return ctl->Stats().orphaned_tasks == 0; }));
  ctl->Close();
  ExpectL1Quiet(l1.get());
}

// Forwards to an inner adapter, but hides load results until the gate opens.
class GatedLoads : public L2Adapter {
 public:
  explicit GatedLoads(std::unique_ptr<L2Adapter> inner) : inner_(std::move(inner)) {}
  void Open() { open_.store(true); }
  const L2CommonConfig& common_config() const override { return inner_->common_config(); }
  int store_event_fd() const override { return inner_->store_event_fd(); }
  int lookup_event_fd() const override { return inner_->lookup_event_fd(); }
  int load_event_fd() const override { return inner_->load_event_fd(); }
  Result<L2TaskId> SubmitStore(std::span<const ObjectKey> k, std::span<const ObjectView> v) override {
    return inner_->SubmitStore(k, v);
  }
  std::vector<std::pair<L2TaskId, L2StoreResult>> PopCompletedStores() override { return inner_->PopCompletedStores(); }
  Result<L2TaskId> SubmitLookupAndLock(std::span<const ObjectKey> k) override { return inner_->SubmitLookupAndLock(k); }
  std::optional<L2Bitmap> QueryLookupResult(L2TaskId t) override { return inner_->QueryLookupResult(t); }
  void SubmitUnlock(std::span<const ObjectKey> k) override { inner_->SubmitUnlock(k); }
  Result<L2TaskId> SubmitLoad(std::span<const ObjectKey> k, std::span<const ObjectView> b) override {
    return inner_->SubmitLoad(k, b);
  }
  std::optional<L2Bitmap> QueryLoadResult(L2TaskId t) override {
    if (!open_.load()) return std::nullopt;
    return inner_->QueryLoadResult(t);
  }
  Result<size_t> Delete(std::span<const ObjectKey> k) override { return inner_->Delete(k); }
  Result<L2KeyPage> List(const L2ListRequest& r) const override { return inner_->List(r); }
  L2Usage Usage() const override { return inner_->Usage(); }
  L2Status ReportStatus() const override { return inner_->ReportStatus(); }
  void Close() override { inner_->Close(); }

 private:
  std::unique_ptr<L2Adapter> inner_;
  std::atomic<bool> open_{false};
};

TEST(PrefetchControllerTest, ATimedOutLoadKeepsItsBuffersUntilTheAdapterIsDone) {
  auto l1 = MakeL1();
  GatedLoads gated(MustCreate(R"({"type":"mock"})"));
  auto keys = KeyRange(0, 3);
  PutL2(&gated, keys);
  PrefetchControllerOptions o;
  o.task_timeout_ns = 200'000'000;
  auto ctl = MakePrefetch(l1.get(), {&gated}, o);
  PrefetchResult r = RunPrefetch(ctl.get(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 0u);
  EXPECT_TRUE(r.degraded);
  EXPECT_EQ(ctl->Stats().timeouts, 1u);
  // The adapter may still write into the staging objects: they stay reserved.
  EXPECT_EQ(ctl->Stats().orphaned_tasks, 1u);
  EXPECT_EQ(l1->Stats().staging_objects, 3u);
  EXPECT_EQ(l1->PrefixHits(keys), 0u);
  gated.Open();
  EXPECT_TRUE(Eventually([&] { return ctl->Stats().orphaned_tasks == 0; }));
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(L2Locked(gated), 0);
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
  ctl->Close();
}

TEST(PrefetchControllerTest, MaxInFlightBoundsConcurrentRequests) {
  auto l1 = MakeL1(64ull << 20);
  auto slow = MustCreate(R"({"type":"mock","latency_ms":40})");
  std::vector<std::vector<ObjectKey>> sets;
  for (uint64_t i = 0; i < 6; ++i) {
    sets.push_back(KeyRange(i * 100, 2));
    PutL2(slow.get(), sets.back());
  }
  PrefetchControllerOptions o;
  o.max_in_flight = 2;
  auto ctl = MakePrefetch(l1.get(), {slow.get()}, o);
  std::vector<PrefetchId> ids;
  for (auto& s : sets) ids.push_back(ctl->Submit(OneRow(s)).value());
  EXPECT_GE(ctl->Stats().queued, 3u);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto r = ctl->Wait(ids[i], 20 * kSecond);
    ASSERT_TRUE(r.ok() && r.value().has_value());
    EXPECT_EQ(r.value()->prefix_chunks, 2u);
    Release(l1.get(), sets[i], 2);
  }
  PrefetchControllerStats s = ctl->Stats();
  EXPECT_EQ(s.max_in_flight_seen, 2u);
  EXPECT_EQ(s.completed, 6u);
  ExpectL1Quiet(l1.get());
}

TEST(PrefetchControllerTest, ResultsAreHandedOutOnceAndCancelReleasesEverything) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock","latency_ms":50})");
  auto keys = KeyRange(0, 4);
  PutL2(mock.get(), keys);
  PutL1(l1.get(), {keys[0]});
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  // Poll until done, then once more: NotFound.
  auto id = ctl->Submit(OneRow(keys)).value();
  std::optional<PrefetchResult> got;
  ASSERT_TRUE(Eventually([&] {
    auto q = ctl->Query(id);
    EXPECT_TRUE(q.ok());
    got = q.ok() ? q.value() : std::nullopt;
    return got.has_value();
  }));
  EXPECT_EQ(got->prefix_chunks, 4u);
  EXPECT_EQ(ctl->Query(id).status().code(), StatusCode::kNotFound);
  Release(l1.get(), keys, 4);
  // Finished but never collected, then cancelled: its locks go.
  id = ctl->Submit(OneRow(keys)).value();
  ASSERT_TRUE(Eventually([&] { return ctl->Stats().results_pending == 1; }));
  EXPECT_GT(l1->Stats().read_locked_objects, 0u);
  EXPECT_TRUE(ctl->Cancel(id).ok());
  EXPECT_EQ(ctl->Cancel(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(ctl->Wait(id, kSecond).status().code(), StatusCode::kNotFound);
  ExpectL1Quiet(l1.get());
  // Cancelled while running: the worker releases what it took.
  id = ctl->Submit(OneRow(keys)).value();
  ASSERT_TRUE(Eventually([&] { return ctl->Stats().in_flight == 1; }));
  EXPECT_TRUE(ctl->Cancel(id).ok());
  ASSERT_TRUE(Eventually([&] { return ctl->Stats().in_flight == 0; }));
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(L2Locked(*mock), 0);
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);
}

TEST(PrefetchControllerTest, CloseWithWorkInFlightLeavesNothingLocked) {
  auto l1 = MakeL1(64ull << 20);
  auto slow = MustCreate(R"({"type":"mock","latency_ms":30})");
  std::vector<std::vector<ObjectKey>> sets;
  for (uint64_t i = 0; i < 10; ++i) {
    sets.push_back(KeyRange(i * 100, 3));
    PutL2(slow.get(), sets.back());
  }
  PrefetchControllerOptions o;
  o.max_in_flight = 3;
  auto ctl = MakePrefetch(l1.get(), {slow.get()}, o);
  for (auto& s : sets) ASSERT_TRUE(ctl->Submit(OneRow(s, 2)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  ctl->Close();
  ctl->Close();
  EXPECT_EQ(ctl->Submit(OneRow(sets[0])).status().code(), StatusCode::kUnavailable);
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);
  EXPECT_EQ(L2Locked(*slow), 0);
}

TEST(PrefetchControllerTest, RejectsBadRequests) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  auto keys = KeyRange(0, 2);
  EXPECT_EQ(ctl->Submit(OneRow(keys, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ctl->Submit(OneRow(keys, 129)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ctl->Submit(OneRow(keys, 1, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ctl->Submit(OneRow({keys[0], keys[0]})).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ctl->Query(12345).status().code(), StatusCode::kNotFound);
  // An empty request is a 0-chunk result.
  PrefetchRequest empty;
  EXPECT_EQ(RunPrefetch(ctl.get(), empty).prefix_chunks, 0u);
  PrefetchControllerOptions o;
  o.max_in_flight = 0;
  EXPECT_FALSE(PrefetchController::Create(l1.get(), {mock.get()}, o).ok());
  EXPECT_FALSE(PrefetchController::Create(l1.get(), {}, {}).ok());
}

TEST(PrefetchControllerTest, ConcurrentRequestsForTheSameKeysShareTheObjects) {
  auto l1 = MakeL1(64ull << 20);
  auto mock = MustCreate(R"({"type":"mock","latency_ms":5})");
  auto keys = KeyRange(0, 6);
  PutL2(mock.get(), keys);
  auto ctl = MakePrefetch(l1.get(), {mock.get()});
  std::vector<PrefetchId> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(ctl->Submit(OneRow(keys)).value());
  for (PrefetchId id : ids) {
    auto r = ctl->Wait(id, 20 * kSecond);
    ASSERT_TRUE(r.ok() && r.value().has_value());
    EXPECT_EQ(r.value()->prefix_chunks, 6u);
  }
  std::vector<ObjectView> views;
  ASSERT_EQ(l1->ReserveReadPrefix(keys, 1, &views), 6u);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(HasPattern(views[i], keys[i]));
  l1->FinishRead(keys);
  for (size_t i = 0; i < ids.size(); ++i) Release(l1.get(), keys, 6);
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(l1->Stats().temporary_objects, 0u);
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
}

// ---- L2Tier: both controllers over adapters built from JSON ----

TEST(L2TierTest, WriteBehindThenClearL1ThenPrefetchFromFsNative) {
  TempDir dir;
  auto l1 = MakeL1();
  PeriodicNotifier notifier(5'000'000);
  ASSERT_TRUE(notifier.Start().ok());
  L2TierOptions o;
  o.store.notifier = &notifier;
  o.prefetch.notifier = &notifier;
  auto tier = L2Tier::Create(l1.get(), {R"({"type":"fs_native","base_path":")" + dir.path() + R"("})"}, o);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  auto keys = KeyRange(0, 10);
  PutL1(l1.get(), keys);
  ASSERT_TRUE(tier.value()->store().Flush(10 * kSecond));
  EXPECT_EQ(l1->Clear(false), 10u);
  PrefetchResult r = RunPrefetch(&tier.value()->prefetch(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 10u);
  EXPECT_EQ(r.l2_hit_chunks, 10u);
  std::vector<ObjectView> views;
  ASSERT_EQ(l1->ReserveReadPrefix(keys, 1, &views), 10u);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(HasPattern(views[i], keys[i])) << i;
  l1->FinishRead(keys);
  Release(l1.get(), keys, 10);
  // Loaded objects are not written back.
  EXPECT_TRUE(tier.value()->store().Flush(10 * kSecond));
  EXPECT_EQ(tier.value()->store().Stats().queued_keys, 10u);
  auto cleared = tier.value()->ClearAdapters();
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ(cleared.value(), 10u);
  EXPECT_EQ(tier.value()->adapter(0).Usage().objects, 0u);
  tier.value()->Close();
  ExpectL1Quiet(l1.get());
  EXPECT_EQ(notifier.Stats().registered_fds, 0u);
}

TEST(L2TierTest, ARestartedTierFindsWhatIsOnDisk) {
  TempDir dir;
  const std::string spec = R"({"type":"fs_native","base_path":")" + dir.path() + R"("})";
  auto keys = KeyRange(0, 5);
  {
    auto l1 = MakeL1();
    auto tier = L2Tier::Create(l1.get(), {spec}, {});
    ASSERT_TRUE(tier.ok());
    PutL1(l1.get(), keys);
    ASSERT_TRUE(tier.value()->store().Flush(10 * kSecond));
  }
  auto l1 = MakeL1();
  auto tier = L2Tier::Create(l1.get(), {spec}, {});
  ASSERT_TRUE(tier.ok());
  PrefetchResult r = RunPrefetch(&tier.value()->prefetch(), OneRow(keys));
  EXPECT_EQ(r.prefix_chunks, 5u);
  Release(l1.get(), keys, 5);
}

TEST(L2TierTest, BadSpecNamesTheAdapter) {
  auto l1 = MakeL1();
  auto tier = L2Tier::Create(l1.get(), {R"({"type":"mock"})", R"({"type":"nope"})"}, {});
  ASSERT_FALSE(tier.ok());
  EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tier.status().message().find("L2 adapter #2: unknown L2 adapter type 'nope'"), std::string::npos)
      << tier.status().message();
  EXPECT_FALSE(L2Tier::Create(l1.get(), {}, {}).ok());
}

}  // namespace
}  // namespace lmcache
