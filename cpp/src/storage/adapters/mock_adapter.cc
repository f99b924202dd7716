// `mock`: an in-memory L2 for tests of the controllers, with a simulated
// link. Fields (LMCache 0.5.6's names, GB = GiB as there):
//   max_size_gb        capacity; 0 or absent = unbounded. When full, objects
//                      are evicted in policy order (LRU), unlocked ones only.
//   mock_bandwidth_gb  link bandwidth in GiB/s; 0 or absent = infinite.
//   latency_ms         added to every task's completion (default 0).
// Transfers share one link: a task that moves B bytes completes at
//   max(now, link free) + B / bandwidth + latency,
// and its effect (data stored, bits computed, buffers filled) happens at
// that moment on the mock's thread, in completion order.
// Objects are copies with an XXH64 checksum verified on load, so
// InjectCorruption (fault_inject's corrupt_rate) exercises the same
// integrity path as a real backend.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_common.h"
#include "storage/l2_config.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct MockObject {
  std::shared_ptr<const std::vector<uint8_t>> data;
  uint64_t checksum = 0;
};

struct MockOptions {
  uint64_t capacity_bytes = 0;
  double bandwidth_bytes_per_s = 0;  // 0: infinite
  int64_t latency_ns = 0;
};

class MockAdapter final : public L2Adapter {
 public:
  using Index = L2Index<MockObject>;

  static Result<std::unique_ptr<L2Adapter>> Create(const L2CommonConfig& common, const MockOptions& opts,
                                                   const L2AdapterContext& context) {
    auto completions = L2Completions::Create();
    if (!completions.ok()) return completions.status();
    L2IndexOptions io;
    io.capacity_bytes = opts.capacity_bytes;
    io.eviction = common.eviction;
    io.clock = context.clock;
    auto index = Index::Create(io);
    if (!index.ok()) return index.status();
    std::unique_ptr<MockAdapter> a(new MockAdapter(common, opts, std::move(completions).value(),
                                                   std::move(index).value()));
    try {
      a->thread_ = std::thread([p = a.get()] { p->Loop(); });
    } catch (const std::system_error& e) {
      return Status::Unavailable(std::string("cannot start the mock L2 thread: ") + e.what());
    }
    return std::unique_ptr<L2Adapter>(std::move(a));
  }

  ~MockAdapter() override { Close(); }

  const L2CommonConfig& common_config() const override { return common_; }
  int store_event_fd() const override { return completions_->store_fd(); }
  int lookup_event_fd() const override { return completions_->lookup_fd(); }
  int load_event_fd() const override { return completions_->load_fd(); }

  Result<L2TaskId> SubmitStore(std::span<const ObjectKey> keys, std::span<const ObjectView> objects) override {
    LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, objects, "SubmitStore"));
    const L2TaskId id = completions_->NextId();
    std::vector<ObjectKey> k(keys.begin(), keys.end());
    std::vector<ObjectView> v(objects.begin(), objects.end());
    uint64_t bytes = 0;
    for (const auto& o : objects) bytes += o.size;
    Bump(counters_.store_tasks);
    auto op = [this, id, k = std::move(k), v = std::move(v)](bool cancelled) {
      L2StoreResult r;
      r.stored.assign(k.size(), false);
      if (!cancelled) {
        for (size_t i = 0; i < k.size(); ++i) r.stored[i] = StoreOne(k[i], v[i], &r.bytes_written);
      }
      r.ok = std::all_of(r.stored.begin(), r.stored.end(), [](bool b) { return b; });
      Bump(counters_.store_failures, static_cast<uint64_t>(std::count(r.stored.begin(), r.stored.end(), false)));
      completions_->PublishStore(id, std::move(r));
    };
    if (!Schedule(bytes, std::move(op))) return ClosedStatus(common_.type);
    return id;
  }

  std::vector<std::pair<L2TaskId, L2StoreResult>> PopCompletedStores() override {
    return completions_->PopStores();
  }

  Result<L2TaskId> SubmitLookupAndLock(std::span<const ObjectKey> keys) override {
    const L2TaskId id = completions_->NextId();
    Bump(counters_.lookup_tasks);
    auto op = [this, id, k = std::vector<ObjectKey>(keys.begin(), keys.end())](bool cancelled) {
      L2Bitmap bits(k.size(), false);
      const size_t hits = cancelled ? 0 : index_->LookupAndLock(k, &bits);
      Bump(counters_.lookup_hits, hits);
      Bump(counters_.lookup_misses, k.size() - hits);
      completions_->PublishLookup(id, std::move(bits));
    };
    if (!Schedule(0, std::move(op))) return ClosedStatus(common_.type);
    return id;
  }

  std::optional<L2Bitmap> QueryLookupResult(L2TaskId task) override { return completions_->TakeLookup(task); }

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<L2TaskId> SubmitLoad(std::span<const ObjectKey> keys, std::span<const ObjectView> buffers) override {
    LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, buffers, "SubmitLoad"));
    const L2TaskId id = completions_->NextId();
    uint64_t bytes = 0;
    for (const auto& b : buffers) bytes += b.size;
    Bump(counters_.load_tasks);
    auto op = [this, id, k = std::vector<ObjectKey>(keys.begin(), keys.end()),
               v = std::vector<ObjectView>(buffers.begin(), buffers.end())](bool cancelled) {
      L2Bitmap bits(k.size(), false);
      for (size_t i = 0; i < k.size(); ++i) {
        bits[i] = !cancelled && LoadOne(k[i], v[i]);
        if (!bits[i]) Bump(counters_.load_misses);
      }
      completions_->PublishLoad(id, std::move(bits));
    };
    if (!Schedule(bytes, std::move(op))) return ClosedStatus(common_.type);
    return id;
  }

  std::optional<L2Bitmap> QueryLoadResult(L2TaskId task) override { return completions_->TakeLoad(task); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    size_t n = 0;
    for (const auto& k : keys) n += index_->Remove(k).has_value() ? 1 : 0;
    Bump(counters_.deleted_objects, n);
    return n;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override { return index_->List(request); }
  L2Usage Usage() const override { return index_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s;
    s.type = common_.type;
    s.counters = counters_.Snapshot();
    {
      MutexLock lock(&mu_);
      s.pending_tasks = queue_.size();
      if (stopping_) {
        s.healthy = false;
        s.message = "closed";
      }
    }
    s.details.emplace_back("max_size_bytes", std::to_string(opts_.capacity_bytes));
    s.details.emplace_back("bandwidth_bytes_per_s", std::to_string(static_cast<uint64_t>(opts_.bandwidth_bytes_per_s)));
    s.details.emplace_back("latency_ms", std::to_string(opts_.latency_ns / 1'000'000));
    s.details.emplace_back("stored_objects", std::to_string(index_->size()));
    s.details.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    return s;
  }

  void Close() override {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    cv_.NotifyAll();
    MutexLock serial(&close_mu_);
    if (thread_.joinable()) thread_.join();
    // Complete whatever is still queued as failures.
    std::vector<Op> left;
    {
      MutexLock lock(&mu_);
      while (!queue_.empty()) {
        left.push_back(std::move(const_cast<Op&>(queue_.top())));
        queue_.pop();
      }
    }
    for (Op& op : left) op.run(true);
  }

  bool supports_corruption_injection() const override { return true; }

  Status InjectCorruption(const ObjectKey& key) override {
    auto cur = index_->Get(key);
    if (!cur) return Status::NotFound("key is not stored in the mock L2");
    auto copy = std::make_shared<std::vector<uint8_t>>(*cur->second.data);
    (*copy)[copy->size() / 2] ^= 0x5A;
    MockObject damaged{std::move(copy), cur->second.checksum};
    if (!index_->SetPayload(key, std::move(damaged))) return Status::NotFound("key was removed");
    return Status::OK();
  }

 private:
  struct Op {
    int64_t due_ns;
    uint64_t seq;
    std::function<void(bool cancelled)> run;
    bool operator>(const Op& o) const { return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq; }
  };

  MockAdapter(const L2CommonConfig& common, const MockOptions& opts, std::unique_ptr<L2Completions> completions,
              std::unique_ptr<Index> index)
      : common_(common), opts_(opts), completions_(std::move(completions)), index_(std::move(index)) {}

  static int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch()).count();
  }

  // Queue `run` for when a transfer of `bytes` over the shared link, plus
  // the latency, is done. False after Close.
  bool Schedule(uint64_t bytes, std::function<void(bool)> run) EXCLUDES(mu_) {
    const int64_t now = NowNs();
    {
      MutexLock lock(&mu_);
      if (stopping_) return false;
      int64_t done = now;
      if (bytes > 0 && opts_.bandwidth_bytes_per_s > 0) {
        const int64_t start = std::max(now, link_free_ns_);
        link_free_ns_ = start + static_cast<int64_t>(static_cast<double>(bytes) / opts_.bandwidth_bytes_per_s * 1e9);
        done = link_free_ns_;
      }
      queue_.push(Op{done + opts_.latency_ns, seq_++, std::move(run)});
    }
    cv_.NotifyOne();
    return true;
  }

  void Loop() EXCLUDES(mu_) {
    for (;;) {
      Op op;
      {
        MutexLock lock(&mu_);
        for (;;) {
          if (stopping_) return;
          if (!queue_.empty()) {
            const int64_t wait = queue_.top().due_ns - NowNs();
            if (wait <= 0) break;
            cv_.WaitFor(&mu_, std::chrono::nanoseconds(wait));
          } else {
            cv_.Wait(&mu_);
          }
        }
        op = std::move(const_cast<Op&>(queue_.top()));
        queue_.pop();
      }
      op.run(false);
    }
  }

  bool StoreOne(const ObjectKey& key, const ObjectView& v, uint64_t* bytes) {
    if (index_->Contains(key)) {
      Bump(counters_.store_skipped);
      return true;
    }
    std::vector<Index::Victim> victims;
    const Status st = index_->Reserve(v.size, &victims);
    CountVictims(victims);
    if (!st.ok()) return false;
    auto data = std::make_shared<std::vector<uint8_t>>(v.data, v.data + v.size);
    MockObject obj{std::move(data), Xxh64Digest(v.data, v.size)};
    victims.clear();
    if (!index_->Insert(key, v.size, std::move(obj), v.size, &victims)) {
      Bump(counters_.store_skipped);
      return true;
    }
    CountVictims(victims);
    *bytes += v.size;
    Bump(counters_.stored_objects);
    Bump(counters_.stored_bytes, v.size);
    return true;
  }

  void CountVictims(const std::vector<Index::Victim>& victims) {
    for (const auto& v : victims) {
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.size);
    }
  }

  bool LoadOne(const ObjectKey& key, const ObjectView& v) {
    auto cur = index_->Get(key);
    if (!cur) return false;
    const MockObject& obj = cur->second;
    if (obj.data->size() != v.size) {
      Bump(counters_.size_mismatches);
      return false;
    }
    std::memcpy(v.data, obj.data->data(), v.size);
    if (Xxh64Digest(v.data, v.size) != obj.checksum) {
      Bump(counters_.corrupt_objects);
      index_->Remove(key);
      return false;
    }
    index_->Touch(key);
    Bump(counters_.loaded_objects);
    Bump(counters_.loaded_bytes, v.size);
    return true;
  }

  const L2CommonConfig common_;
  const MockOptions opts_;
  std::unique_ptr<L2Completions> completions_;
  std::unique_ptr<Index> index_;
  mutable L2AtomicCounters counters_;

  mutable Mutex mu_;
  CondVar cv_;
  std::priority_queue<Op, std::vector<Op>, std::greater<Op>> queue_ GUARDED_BY(mu_);
  uint64_t seq_ GUARDED_BY(mu_) = 0;
  int64_t link_free_ns_ GUARDED_BY(mu_) = 0;
  bool stopping_ GUARDED_BY(mu_) = false;
  Mutex close_mu_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateMockAdapter(const L2CommonConfig& common, JsonFields& f,
                                                     const L2AdapterContext& context) {
  MockOptions o;
  constexpr double kGiB = static_cast<double>(1ull << 30);
  o.capacity_bytes = static_cast<uint64_t>(f.Number("max_size_gb", 0, 0, 1e6) * kGiB);
  o.bandwidth_bytes_per_s = f.Number("mock_bandwidth_gb", 0, 0, 1e6) * kGiB;
  o.latency_ns = static_cast<int64_t>(f.Number("latency_ms", 0, 0, 3.6e6) * 1e6);
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  return MockAdapter::Create(common, o, context);
}

}  // namespace lmcache::internal
