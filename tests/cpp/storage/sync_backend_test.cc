// CreateL2AdapterOverBackend: an in-memory L2SyncBackend registered at run
// time as "sync_mem" goes through the whole conformance suite (directly and
// inside fault_inject), plus the failure paths a real backend has: failed
// calls, per-key errors, wrong-length answers, objects without a checksum,
// objects damaged or removed behind the adapter's back, capacity eviction,
// and Close while a backend call is blocked.

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "lmcache/l2_sync_backend.h"
#include "storage/l2_conformance.h"
#include "util/xxhash64.h"

namespace lmcache {
namespace {

using testing::Bits;
using testing::Key;
using testing::LoadSync;
using testing::LookupSync;
using testing::Pattern;
using testing::StoreSync;
using testing::ViewOf;

struct StoredObject {
  std::vector<uint8_t> bytes;
  std::optional<uint64_t> checksum;
};

// A "bucket": objects by name, shared by every backend opened on the same
// bucket name (so a new adapter finds what an old one stored).
struct Bucket {
  std::mutex mu;
  std::map<std::string, StoredObject> objects;
};

Bucket& BucketNamed(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Bucket>> buckets;
  std::lock_guard<std::mutex> lock(mu);
  auto& b = buckets[name];
  if (!b) b = std::make_unique<Bucket>();
  return *b;
}

// Failure knobs, set by the tests.
struct Faults {
  std::atomic<bool> fail_calls{false};     // every call returns IOError
  std::atomic<bool> error_odd_keys{false};  // per-key error for odd positions
  std::atomic<bool> short_answers{false};  // one result too few
  std::atomic<bool> block_gets{false};     // Get waits until released
  std::mutex mu;
  std::condition_variable cv;
  bool gets_released = false;
  std::atomic<int> gets_entered{0};
};

class MemBackend final : public L2SyncBackend {
 public:
  MemBackend(Bucket* bucket, Faults* faults) : bucket_(bucket), faults_(faults) {}

  Result<L2BackendResults> Put(std::span<const std::string> names, std::span<const ObjectView> objects,
                               std::span<const uint64_t> checksums) override {
    return Each(names, [&](size_t i, L2BackendResult& r) {
      auto [it, inserted] = bucket_->objects.try_emplace(names[i]);
      if (inserted) {
        it->second.bytes.assign(objects[i].data, objects[i].data + objects[i].size);
        it->second.checksum = checksums[i];
      }
      r.ok = true;
    });
  }
  Result<L2BackendResults> Stat(std::span<const std::string> names) override {
    return Each(names, [&](size_t i, L2BackendResult& r) {
      auto it = bucket_->objects.find(names[i]);
      if (it == bucket_->objects.end()) return;
      r.ok = true;
      r.size = it->second.bytes.size();
    });
  }
  Result<L2BackendResults> Get(std::span<const std::string> names, std::span<const ObjectView> buffers) override {
    if (faults_ != nullptr && faults_->block_gets.load()) {
      faults_->gets_entered.fetch_add(1);
      std::unique_lock<std::mutex> lock(faults_->mu);
      faults_->cv.wait(lock, [&] { return faults_->gets_released; });
    }
    return Each(names, [&](size_t i, L2BackendResult& r) {
      auto it = bucket_->objects.find(names[i]);
      if (it == bucket_->objects.end()) return;
      r.ok = true;
      r.size = it->second.bytes.size();
      r.checksum = it->second.checksum;
      if (r.size == buffers[i].size) std::memcpy(buffers[i].data, it->second.bytes.data(), r.size);
    });
  }
  Result<L2BackendResults> Delete(std::span<const std::string> names) override {
    return Each(names, [&](size_t i, L2BackendResult& r) { r.ok = bucket_->objects.erase(names[i]) > 0; });
  }
  Result<std::vector<std::pair<std::string, uint64_t>>> ListAll() override {
    if (faults_ != nullptr && faults_->fail_calls.load()) return Status::IOError("bucket unreachable");
    std::lock_guard<std::mutex> lock(bucket_->mu);
    std::vector<std::pair<std::string, uint64_t>> out;
    for (const auto& [name, o] : bucket_->objects) out.emplace_back(name, o.bytes.size());
    return out;
  }
  void Close() override { ++closes_; }
  std::vector<std::pair<std::string, std::string>> Details() const override { return {{"bucket", "mem"}}; }
  bool CanDamage() const override { return true; }
  Status Damage(const std::string& name) override {
    std::lock_guard<std::mutex> lock(bucket_->mu);
    auto it = bucket_->objects.find(name);
    if (it == bucket_->objects.end()) return Status::NotFound(name);
    it->second.bytes[it->second.bytes.size() / 2] ^= 0x5A;
    return Status::OK();
  }

  int closes_ = 0;

 private:
  template <class F>
  Result<L2BackendResults> Each(std::span<const std::string> names, F&& f) {
    if (faults_ != nullptr && faults_->fail_calls.load()) return Status::IOError("bucket unreachable");
    std::lock_guard<std::mutex> lock(bucket_->mu);
    L2BackendResults out(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      if (faults_ != nullptr && faults_->error_odd_keys.load() && i % 2 == 1) {
        out[i].error = true;
        continue;
      }
      f(i, out[i]);
    }
    if (faults_ != nullptr && faults_->short_answers.load() && !out.empty()) out.pop_back();
    return out;
  }

  Bucket* bucket_;
  Faults* faults_;
};

Faults& GlobalFaults() {
  static Faults* f = new Faults();
  return *f;
}

// {"type":"sync_mem","bucket":"name","num_workers":N,"capacity_bytes":B,"faults":true}
const bool kRegistered = [] {
  const Status st = RegisterL2AdapterType(
      "sync_mem", [](const L2CommonConfig& common, const std::string& fields_json,
                     const L2AdapterContext& context) -> Result<std::unique_ptr<L2Adapter>> {
        const auto f = nlohmann::json::parse(fields_json);
        if (!f.contains("bucket")) return Status::InvalidArgument("L2 adapter 'sync_mem': field 'bucket' is required");
        L2SyncAdapterOptions o;
        o.num_workers = f.value("num_workers", 1);
        o.capacity_bytes = f.value("capacity_bytes", uint64_t{0});
        Faults* faults = f.value("faults", false) ? &GlobalFaults() : nullptr;
        return CreateL2AdapterOverBackend(
            common, std::make_unique<MemBackend>(&BucketNamed(f["bucket"].get<std::string>()), faults), o, context);
      });
  return st.ok();
}();

}  // namespace

namespace conformance {
namespace {

struct SyncMemTraits {
  static constexpr const char* kType = "sync_mem";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"sync_mem","bucket":")" + dir + R"(","num_workers":3})";
  }
};

struct FaultInjectSyncMemTraits {
  static constexpr const char* kType = "fault_inject";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"fault_inject","seed":3,"delay_ms":1,"delay_rate":0.3,"inner":{"type":"sync_mem","bucket":")" +
           dir + R"("}})";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(sync_mem, L2ConformanceTest, ::testing::Types<SyncMemTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(fault_inject_sync_mem, L2ConformanceTest, ::testing::Types<FaultInjectSyncMemTraits>);

}  // namespace
}  // namespace conformance

namespace {

class SyncBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kRegistered);
    Faults& f = GlobalFaults();
    f.fail_calls = false;
    f.error_odd_keys = false;
    f.short_answers = false;
    f.block_gets = false;
    f.gets_released = false;
    f.gets_entered = 0;
    bucket_ = dir_.path();
  }
  std::unique_ptr<L2Adapter> Open(const std::string& extra = "") {
    return testing::MustCreate(R"({"type":"sync_mem","faults":true,"bucket":")" + bucket_ + "\"" + extra + "}");
  }
  testing::TempDir dir_;
  std::string bucket_;
};

TEST_F(SyncBackendTest, FailedCallsAreFailedKeysAndIoErrors) {
  auto a = Open();
  auto d1 = Pattern(1, 1000), d2 = Pattern(2, 1000);
  GlobalFaults().fail_calls = true;
  const L2StoreResult r = StoreSync(a.get(), {Key(1), Key(2)}, {ViewOf(d1), ViewOf(d2)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(Bits(r.stored), "00");
  EXPECT_EQ(a->Usage().objects, 0u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(1)})), "0");
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->Delete(std::vector<ObjectKey>{Key(1)}).status().code(), StatusCode::kIOError);
  L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.io_errors, 5u);  // 2 puts, 1 stat, 1 get, 1 delete
  EXPECT_EQ(c.store_failures, 2u);
  EXPECT_TRUE(a->ReportStatus().healthy);

  // Recovered backend: everything works again.
  GlobalFaults().fail_calls = false;
  EXPECT_TRUE(StoreSync(a.get(), {Key(1), Key(2)}, {ViewOf(d1), ViewOf(d2)}).ok);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d1);
}

TEST_F(SyncBackendTest, PerKeyErrorsAndShortAnswers) {
  auto a = Open();
  std::vector<std::vector<uint8_t>> d = {Pattern(1, 100), Pattern(2, 100), Pattern(3, 100)};
  GlobalFaults().error_odd_keys = true;
  EXPECT_EQ(Bits(StoreSync(a.get(), {Key(1), Key(2), Key(3)}, {ViewOf(d[0]), ViewOf(d[1]), ViewOf(d[2])}).stored),
            "101");
  EXPECT_EQ(a->ReportStatus().counters.io_errors, 1u);
  GlobalFaults().error_odd_keys = false;
  GlobalFaults().short_answers = true;
  EXPECT_EQ(Bits(StoreSync(a.get(), {Key(4), Key(5)}, {ViewOf(d[0]), ViewOf(d[1])}).stored), "00");
  EXPECT_EQ(a->ReportStatus().counters.io_errors, 3u);
  GlobalFaults().short_answers = false;
  // The short answer hid that Key(4) and Key(5) were written: the adapter
  // reported them failed, and a lookup finds them through the backend (Stat probe).
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(1), Key(2), Key(3), Key(4), Key(5)})), "10111");
}

TEST_F(SyncBackendTest, ForeignObjectsAreFoundAndServedUnverified) {
  auto a = Open();
  auto d = Pattern(7, 5000);
  {  // written by another program: no checksum
    Bucket& b = BucketNamed(bucket_);
    std::lock_guard<std::mutex> lock(b.mu);
    b.objects[Key(7).ToString()] = StoredObject{d, std::nullopt};
    b.objects["not-a-key"] = StoredObject{d, std::nullopt};
  }
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(7)})), "1");  // probed
  a->SubmitUnlock(std::vector<ObjectKey>{Key(7)});
  std::vector<uint8_t> out(5000), small(10);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(7)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(7)}, {ViewOf(small)})), "0");
  L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 1u);
  EXPECT_EQ(c.size_mismatches, 1u);
  EXPECT_EQ(a->Usage().total_bytes, 5000u);
  // A new adapter scans both names, ignores the one that is not a key.
  auto b = Open();
  EXPECT_EQ(b->Usage().objects, 1u);
  bool found = false;
  for (const auto& [k, v] : b->ReportStatus().details) found |= k == "ignored_objects" && v == "1";
  EXPECT_TRUE(found);
}

TEST_F(SyncBackendTest, ObjectsChangedBehindTheAdaptersBack) {
  auto a = Open();
  auto d = Pattern(1, 4096);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1), Key(2), Key(3)}, {ViewOf(d), ViewOf(d), ViewOf(d)}).ok);
  {
    Bucket& b = BucketNamed(bucket_);
    std::lock_guard<std::mutex> lock(b.mu);
    b.objects.erase(Key(1).ToString());                // removed
    b.objects[Key(2).ToString()].bytes.resize(4000);   // truncated, checksum kept
    b.objects[Key(3).ToString()].bytes[7] ^= 1;        // bit flip
  }
  std::vector<uint8_t> o1(4096), o2(4096), o3(4096);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1), Key(2), Key(3)}, {ViewOf(o1), ViewOf(o2), ViewOf(o3)})), "000");
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.corrupt_objects, 2u);
  EXPECT_EQ(c.load_misses, 3u);
  EXPECT_EQ(a->Usage().objects, 0u);
  Bucket& b = BucketNamed(bucket_);
  std::lock_guard<std::mutex> lock(b.mu);
  EXPECT_TRUE(b.objects.empty());  // the corrupt ones were deleted from the backend
}

TEST_F(SyncBackendTest, CapacityEvictsFromTheBackend) {
  auto a = Open(R"(,"capacity_bytes":3000)");
  auto d = Pattern(1, 1000);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(d)}).ok);
  EXPECT_EQ(a->Usage().objects, 3u);
  EXPECT_EQ(a->ReportStatus().counters.evicted_objects, 2u);
  Bucket& b = BucketNamed(bucket_);
  std::lock_guard<std::mutex> lock(b.mu);
  EXPECT_EQ(b.objects.size(), 3u);
  EXPECT_EQ(b.objects.count(Key(0).ToString()), 0u);  // LRU first
}

TEST_F(SyncBackendTest, CloseWhileABackendCallBlocks) {
  auto a = Open();
  auto d = Pattern(1, 100);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
  Faults& f = GlobalFaults();
  f.block_gets = true;
  std::vector<uint8_t> o1(100), o2(100);
  auto running = a->SubmitLoad(std::vector<ObjectKey>{Key(1)}, std::vector<ObjectView>{ViewOf(o1)});
  ASSERT_TRUE(running.ok());
  while (f.gets_entered.load() == 0) std::this_thread::yield();
  auto queued = a->SubmitLoad(std::vector<ObjectKey>{Key(1)}, std::vector<ObjectView>{ViewOf(o2)});
  ASSERT_TRUE(queued.ok());
  std::thread closer([&] { a->Close(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard<std::mutex> lock(f.mu);
    f.gets_released = true;
  }
  f.cv.notify_all();
  closer.join();
  EXPECT_EQ(Bits(a->QueryLoadResult(running.value()).value()), "1");  // ran to the end
  EXPECT_EQ(Bits(a->QueryLoadResult(queued.value()).value()), "0");   // cancelled
  EXPECT_EQ(a->SubmitLoad(std::vector<ObjectKey>{Key(1)}, std::vector<ObjectView>{ViewOf(o2)}).status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
}

TEST_F(SyncBackendTest, UnreachableBackendFailsCreation) {
  GlobalFaults().fail_calls = true;
  auto r = CreateL2Adapter(R"({"type":"sync_mem","faults":true,"bucket":")" + bucket_ + "\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("L2 adapter 'sync_mem': cannot list the backend: bucket unreachable"),
            std::string::npos)
      << r.status().message();
}

TEST_F(SyncBackendTest, BadOptions) {
  L2CommonConfig common;
  common.type = "x";
  L2SyncAdapterOptions zero;
  zero.num_workers = 0;
  auto r = CreateL2AdapterOverBackend(common, std::make_unique<MemBackend>(&BucketNamed(bucket_), nullptr), zero);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "L2 adapter 'x': field 'num_workers' must be an integer in [1, 256], got 0");
  EXPECT_FALSE(CreateL2AdapterOverBackend(common, nullptr, L2SyncAdapterOptions()).ok());
}

}  // namespace
}  // namespace lmcache
