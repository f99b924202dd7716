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
// Objects are copies with an XXH3-64 checksum verified on load, so
// InjectCorruption (fault_inject's corrupt_rate) exercises the same
// integrity path as a real backend.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_common.h"
#include "storage/l2_config.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxh3.h"

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

// Tasks are batches of BatchedL2Adapter, one job each (kSlices, one slice),
// queued on the mock's own timed queue (Enqueue) instead of a worker pool.
class MockAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<MockObject>;

  MockAdapter(const L2CommonConfig& common, const MockOptions& opts, std::unique_ptr<L2Completions> completions,
              std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions), L2Spread{L2Spread::Mode::kSlices, 1, 1}),
        opts_(opts),
        index_(std::move(index)) {}

  ~MockAdapter() override { Close(); }

  Status Open() {
    try {
      thread_ = std::thread([this] { Loop(); });
    } catch (const std::system_error& e) {
      return Status::Unavailable(std::string("cannot start the mock L2 thread: ") + e.what());
    }
    return Status::OK();
  }

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    size_t n = 0;
    for (const auto& k : keys) n += index_->Remove(k).has_value() ? 1 : 0;
    Bump(counters_.deleted_objects, n);
    return n;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override { return index_->List(request); }
  L2Usage Usage() const override { return index_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s = BaseStatus();
    s.details.emplace_back("max_size_bytes", std::to_string(opts_.capacity_bytes));
    s.details.emplace_back("bandwidth_bytes_per_s", std::to_string(static_cast<uint64_t>(opts_.bandwidth_bytes_per_s)));
    s.details.emplace_back("latency_ms", std::to_string(opts_.latency_ns / 1'000'000));
    s.details.emplace_back("stored_objects", std::to_string(index_->size()));
    s.details.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    return s;
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
    WorkerPool::Job run;
    bool operator>(const Op& o) const { return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq; }
  };

  static int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch()).count();
  }

  // Queue `job` for when a transfer of the batch's bytes (store objects,
  // load buffers; none for a lookup) over the shared link, plus the
  // latency, is done. False after Close.
  bool Enqueue(const Batch& b, WorkerPool::Job job) override EXCLUDES(mu_) {
    uint64_t bytes = 0;
    for (const auto& v : b.views) bytes += v.size;
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
      queue_.push(Op{done + opts_.latency_ns, seq_++, std::move(job)});
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
      op.run(0);
    }
  }

  // Stop the thread, then complete whatever is still queued as failures.
  void OnClose() override EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    cv_.NotifyAll();
    if (thread_.joinable()) thread_.join();
    std::vector<Op> left;
    {
      MutexLock lock(&mu_);
      while (!queue_.empty()) {
        left.push_back(std::move(const_cast<Op&>(queue_.top())));
        queue_.pop();
      }
    }
    for (Op& op : left) op.run(-1);
  }

  // A lookup takes the index lock once for the whole batch.
  void RunKeys(Batch& b, size_t begin, size_t end, int worker) override {
    if (b.kind != Kind::kLookup) return BatchedL2Adapter::RunKeys(b, begin, end, worker);
    L2Bitmap bits(end - begin, false);
    index_->LookupAndLock(std::span<const ObjectKey>(b.keys).subspan(begin, end - begin), &bits);
    for (size_t i = begin; i < end; ++i) b.ok[i] = bits[i - begin] ? 1 : 0;
  }

  bool StoreKey(const ObjectKey& key, const ObjectView& v, int /*worker*/, std::atomic<uint64_t>* bytes) override {
    if (index_->Contains(key)) {
      Bump(counters_.store_skipped);
      return true;
    }
    std::vector<Index::Victim> victims;
    const Status st = index_->Reserve(v.size, &victims);
    CountVictims(victims);
    if (!st.ok()) return false;
    auto data = std::make_shared<std::vector<uint8_t>>(v.data, v.data + v.size);
    MockObject obj{std::move(data), Xxh3Digest(v.data, v.size)};
    victims.clear();
    if (!index_->Insert(key, v.size, std::move(obj), v.size, &victims)) {
      Bump(counters_.store_skipped);
      return true;
    }
    CountVictims(victims);
    bytes->fetch_add(v.size);
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

  bool LoadKey(const ObjectKey& key, const ObjectView& v, int /*worker*/) override {
    auto cur = index_->Get(key);
    if (!cur) return false;
    const MockObject& obj = cur->second;
    if (obj.data->size() != v.size) {
      Bump(counters_.size_mismatches);
      return false;
    }
    std::memcpy(v.data, obj.data->data(), v.size);
    if (Xxh3Digest(v.data, v.size) != obj.checksum) {
      Bump(counters_.corrupt_objects);
      index_->Remove(key);
      return false;
    }
    index_->Touch(key);
    return true;
  }

  const MockOptions opts_;
  const std::unique_ptr<Index> index_;

  mutable Mutex mu_;
  CondVar cv_;
  std::priority_queue<Op, std::vector<Op>, std::greater<Op>> queue_ GUARDED_BY(mu_);
  uint64_t seq_ GUARDED_BY(mu_) = 0;
  int64_t link_free_ns_ GUARDED_BY(mu_) = 0;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // started by Open, joined by OnClose
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
  return CreateBatchedAdapter<MockAdapter, MockObject>(o.capacity_bytes, common, context, common, o);
}

}  // namespace lmcache::internal
