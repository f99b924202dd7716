// StoreController: L1 -> L2 write-behind against real adapters (mock, fs_native,
// fault_inject) and a real L1Store.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "lmcache/l2_controllers.h"
#include "lmcache/notifier.h"
#include "storage/controller_test_util.h"

namespace lmcache {
namespace {

using namespace lmcache::testing;  // NOLINT

std::unique_ptr<StoreController> MakeStore(L1Store* l1, std::vector<L2Adapter*> adapters,
                                           StoreControllerOptions o = {}) {
  auto r = StoreController::Create(l1, std::move(adapters), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

TEST(StoreControllerTest, WritesBehindToEveryAdapterWithTheRightBytes) {
  auto l1 = MakeL1();
  TempDir dir;
  auto fs = MustCreate(R"({"type":"fs_native","base_path":")" + dir.path() + R"(","num_workers":2})");
  auto mock = MustCreate(R"({"type":"mock","latency_ms":1})");
  PeriodicNotifier notifier(2'000'000);
  ASSERT_TRUE(notifier.Start().ok());
  StoreControllerOptions o;
  o.notifier = &notifier;
  auto ctl = MakeStore(l1.get(), {fs.get(), mock.get()}, o);
  auto keys = KeyRange(0, 12);
  PutL1(l1.get(), keys);
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  for (L2Adapter* a : {fs.get(), mock.get()}) {
    EXPECT_EQ(Bits(LookupSync(a, keys)), std::string(12, '1'));
    a->SubmitUnlock(keys);
    std::vector<std::vector<uint8_t>> bufs(keys.size(), std::vector<uint8_t>(kObj));
    std::vector<ObjectView> views;
    for (auto& b : bufs) views.push_back(ViewOf(b));
    EXPECT_EQ(Bits(LoadSync(a, keys, views)), std::string(12, '1'));
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE(HasPattern(views[i], keys[i])) << i;
  }
  // One file per object, named as LMCache names them.
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/" + keys[0].ToString() + ".data"));
  StoreControllerStats s = ctl->Stats();
  EXPECT_EQ(s.queued_keys, 12u);
  EXPECT_EQ(s.submitted_keys, 24u);
  EXPECT_EQ(s.stored_keys, 24u);
  EXPECT_EQ(s.failed_keys, 0u);
  EXPECT_EQ(s.stored_bytes, 24 * kObj);
  EXPECT_EQ(s.dropped_keys, 0u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_EQ(s.in_flight_batches, 0u);
  EXPECT_TRUE(s.running);
  // default policy: L1 keeps the keys; every lock taken for the writes is released.
  EXPECT_EQ(l1->PrefixHits(keys), 12u);
  ExpectL1Quiet(l1.get());
  ctl->Close();
  EXPECT_FALSE(ctl->Stats().running);
  EXPECT_EQ(notifier.Stats().registered_fds, 0u);
}

TEST(StoreControllerTest, GroupsBatchesByModelAndRank) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto ctl = MakeStore(l1.get(), {mock.get()});
  std::vector<ObjectKey> keys = KeyRange(0, 3, 0, "m/a");
  for (const auto& k : KeyRange(10, 2, 1, "m/a")) keys.push_back(k);
  for (const auto& k : KeyRange(20, 4, 0, "m/b")) keys.push_back(k);
  PutL1(l1.get(), keys);  // one admission: the controller sees the keys together
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  EXPECT_EQ(ctl->Stats().batches, 3u);
  EXPECT_EQ(ctl->Stats().stored_keys, 9u);
  EXPECT_EQ(mock->ReportStatus().counters.store_tasks, 3u);
}

TEST(StoreControllerTest, SkipL1DeletesFromL1OnceEveryAdapterStored) {
  auto l1 = MakeL1();
  auto a = MustCreate(R"({"type":"mock"})");
  auto b = MustCreate(R"({"type":"mock","latency_ms":5})");
  StoreControllerOptions o;
  o.policy = L2StorePolicy::kSkipL1;
  auto ctl = MakeStore(l1.get(), {a.get(), b.get()}, o);
  auto keys = KeyRange(0, 6);
  PutL1(l1.get(), keys);
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  for (const auto& k : keys) EXPECT_FALSE(l1->Contains(k));
  EXPECT_EQ(ctl->Stats().l1_deleted_keys, 6u);
  EXPECT_EQ(Bits(LookupSync(a.get(), keys)), "111111");
  EXPECT_EQ(Bits(LookupSync(b.get(), keys)), "111111");
  EXPECT_EQ(l1->Stats().used_bytes, 0u);
}

TEST(StoreControllerTest, SkipL1KeepsWhatAnAdapterFailedToStore) {
  auto l1 = MakeL1();
  auto good = MustCreate(R"({"type":"mock"})");
  auto bad = MustCreate(R"({"type":"fault_inject","inner":{"type":"mock"},"fail_rate":1,"fail_ops":["store"]})");
  StoreControllerOptions o;
  o.policy = L2StorePolicy::kSkipL1;
  auto ctl = MakeStore(l1.get(), {good.get(), bad.get()}, o);
  auto keys = KeyRange(0, 4);
  PutL1(l1.get(), keys);
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  EXPECT_EQ(l1->PrefixHits(keys), 4u);  // not in every adapter: L1 keeps it
  StoreControllerStats s = ctl->Stats();
  EXPECT_EQ(s.stored_keys, 4u);
  EXPECT_EQ(s.failed_keys, 4u);
  EXPECT_EQ(s.l1_deleted_keys, 0u);
  EXPECT_EQ(s.l1_delete_skipped, 4u);
  ExpectL1Quiet(l1.get());
}

TEST(StoreControllerTest, SkipL1LeavesReadLockedKeysInL1) {
  auto l1 = MakeL1();
  auto a = MustCreate(R"({"type":"mock","latency_ms":20})");
  StoreControllerOptions o;
  o.policy = L2StorePolicy::kSkipL1;
  auto ctl = MakeStore(l1.get(), {a.get()}, o);
  auto keys = KeyRange(0, 2);
  PutL1(l1.get(), keys);
  std::vector<ObjectView> v;
  std::vector<ObjectKey> first{keys[0]};
  ASSERT_EQ(l1->ReserveReadPrefix(first, 1, &v), 1u);  // a reader holds key 0
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  EXPECT_TRUE(l1->Contains(keys[0]));
  EXPECT_FALSE(l1->Contains(keys[1]));
  EXPECT_EQ(ctl->Stats().l1_delete_skipped, 1u);
  l1->FinishRead(first);
  ExpectL1Quiet(l1.get());
}

TEST(StoreControllerTest, ObjectsLoadedFromL2AreNotWrittenBack) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto ctl = MakeStore(l1.get(), {mock.get()});
  // A prefetch admission (tag with kL2PrefetchTagBit), resident (retain) and temporary.
  auto keys = KeyRange(0, 2);
  PutL1(l1.get(), {keys[0]}, kObj, kL2PrefetchTagBit | 5);
  std::vector<ObjectKey> tmp{keys[1]};
  std::vector<uint64_t> sizes{kObj};
  std::vector<ReserveOutcome> out;
  std::vector<ObjectView> views;
  ASSERT_TRUE(l1->ReserveWrite(tmp, sizes, 77, &out, &views).ok());
  ASSERT_TRUE(l1->FinishWriteAndReserveRead(tmp, 77, 1, /*temporary=*/true, &views).ok());
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  EXPECT_EQ(ctl->Stats().queued_keys, 0u);
  EXPECT_EQ(mock->ReportStatus().counters.store_tasks, 0u);
  l1->FinishRead(tmp);
}

TEST(StoreControllerTest, HoldsL1ReadLocksWhileWritingSoEvictionCannotFreeTheObjects) {
  auto l1 = MakeL1(8 * kObj);
  auto slow = MustCreate(R"({"type":"mock","latency_ms":300})");
  auto ctl = MakeStore(l1.get(), {slow.get()});
  auto keys = KeyRange(0, 4);
  PutL1(l1.get(), keys);
  ASSERT_TRUE(Eventually([&] { return ctl->Stats().in_flight_batches == 1; }));
  EXPECT_EQ(l1->Stats().read_locked_objects, 4u);
  EXPECT_EQ(l1->EvictBytes(4 * kObj), 0u);  // locked: nothing evictable
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  EXPECT_EQ(l1->Stats().read_locked_objects, 0u);
  EXPECT_GT(l1->EvictBytes(4 * kObj), 0u);
}

TEST(StoreControllerTest, KeysThatLeftL1BeforeTheirTurnAreSkipped) {
  auto l1 = MakeL1();
  auto slow = MustCreate(R"({"type":"mock","latency_ms":300})");
  StoreControllerOptions o;
  o.max_in_flight_batches = 1;
  auto ctl = MakeStore(l1.get(), {slow.get()}, o);
  auto first = KeyRange(0, 1);
  PutL1(l1.get(), first);
  ASSERT_TRUE(Eventually([&] { return ctl->Stats().in_flight_batches == 1; }));
  auto later = KeyRange(10, 3);
  PutL1(l1.get(), later);  // queued behind the slow batch
  EXPECT_EQ(l1->Delete(later, false), 3u);
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  StoreControllerStats s = ctl->Stats();
  EXPECT_EQ(s.skipped_keys, 3u);
  EXPECT_EQ(s.stored_keys, 1u);
  ExpectL1Quiet(l1.get());
}

TEST(StoreControllerTest, BoundedQueueDropsInsteadOfBlockingTheWriter) {
  auto l1 = MakeL1(64ull << 20);
  auto slow = MustCreate(R"({"type":"mock","latency_ms":200})");
  StoreControllerOptions o;
  o.max_queued_keys = 4;
  o.max_batch_keys = 1;
  o.max_in_flight_batches = 1;
  auto ctl = MakeStore(l1.get(), {slow.get()}, o);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < 40; ++i) PutL1(l1.get(), KeyRange(i, 1), 4096);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(elapsed, std::chrono::seconds(2));  // never waited for L2 (that would take 40 x 200 ms)
  StoreControllerStats s = ctl->Stats();
  EXPECT_GT(s.dropped_keys, 0u);
  EXPECT_EQ(s.queued_keys + s.dropped_keys, 40u);
  EXPECT_LE(s.queue_depth, 4u);
  ctl->Close();  // drops the rest of the queue (counted), waits for the batch in flight
  StoreControllerStats after = ctl->Stats();
  EXPECT_EQ(after.queue_depth, 0u);
  EXPECT_EQ(after.in_flight_batches, 0u);
  EXPECT_EQ(after.dropped_keys + after.stored_keys, 40u);
  ExpectL1Quiet(l1.get());
}

TEST(StoreControllerTest, CloseWithWorkInFlightReleasesEveryLock) {
  auto l1 = MakeL1();
  auto slow = MustCreate(R"({"type":"mock","latency_ms":100})");
  auto ctl = MakeStore(l1.get(), {slow.get()});
  for (uint64_t i = 0; i < 8; ++i) PutL1(l1.get(), KeyRange(i * 4, 4));
  ctl->Close();
  ctl->Close();  // idempotent
  ExpectL1Quiet(l1.get());
  PutL1(l1.get(), KeyRange(100, 2));  // after Close: not listening any more
  EXPECT_EQ(l1->Stats().read_locked_objects, 0u);
}

TEST(StoreControllerTest, ClosedAdapterCountsFailuresAndReleasesLocks) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  auto ctl = MakeStore(l1.get(), {mock.get()});
  mock->Close();
  PutL1(l1.get(), KeyRange(0, 3));
  ASSERT_TRUE(ctl->Flush(10 * kSecond));
  StoreControllerStats s = ctl->Stats();
  EXPECT_EQ(s.submit_errors, 1u);
  EXPECT_EQ(s.failed_keys, 3u);
  ExpectL1Quiet(l1.get());
}

TEST(StoreControllerTest, RejectsBadArguments) {
  auto l1 = MakeL1();
  auto mock = MustCreate(R"({"type":"mock"})");
  EXPECT_FALSE(StoreController::Create(nullptr, {mock.get()}, {}).ok());
  EXPECT_FALSE(StoreController::Create(l1.get(), {}, {}).ok());
  EXPECT_FALSE(StoreController::Create(l1.get(), {nullptr}, {}).ok());
  StoreControllerOptions o;
  o.max_batch_keys = 0;
  EXPECT_EQ(StoreController::Create(l1.get(), {mock.get()}, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseL2StorePolicy("skip_l1").value(), L2StorePolicy::kSkipL1);
  EXPECT_FALSE(ParseL2StorePolicy("nope").ok());
  EXPECT_EQ(ParseL2PrefetchPolicy("retain").value(), L2PrefetchPolicy::kRetain);
  EXPECT_FALSE(ParseL2PrefetchPolicy("").ok());
}

}  // namespace
}  // namespace lmcache
