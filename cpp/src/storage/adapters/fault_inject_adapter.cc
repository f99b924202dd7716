// `fault_inject`: wraps another adapter and fails, delays or corrupts its
// work on a seeded, deterministic schedule (tests and diagnostics only).
//
//   {"type":"fault_inject", "inner":{...any adapter...}, "seed":N,
//    "fail_rate":p, "fail_ops":["store","lookup","load"],
//    "delay_ms":d, "delay_rate":q, "corrupt_rate":c,
//    "rate":r, "gap_indices":[...], "gap_tail_ratios":[...]}
//
// Every decision is a hash of (seed, what, key) -- or of the task id for
// delays -- compared with its rate, so the same keys fail the same way in
// every run and on every thread interleaving:
//  * fail_rate, per op in fail_ops (default all three): a failed store key
//    is not passed to the inner adapter (its bit is 0, the task is not ok);
//    a failed lookup key reads as a miss (its inner lock is released); a
//    failed load key reads as a miss (its buffer content is undefined).
//  * rate, gap_indices, gap_tail_ratios: LMCache 0.5.6's load-only drops
//    (a key present at lookup whose load fails); gap_tail_ratios pick
//    round((1 - ratio) * (n - 1)) in a load of n keys (ties to even, as
//    Python's round). (0.5.6 buckets a
//    blake2b hash; ours is XXH64, so the dropped keys differ from 0.5.6's.)
//  * delay_ms, delay_rate (default 1 when delay_ms > 0): the completion of a
//    selected task is held back by delay_ms.
//  * corrupt_rate: after a store completes, selected stored keys have their
//    bytes damaged inside the inner adapter (L2Adapter::InjectCorruption),
//    so a later load must detect it (a miss and corrupt_objects + 1).
//
// Structure: the adapter has its own three eventfds and a pump thread that
// polls the inner adapter's fds, translates inner results into outer ones,
// applies the schedule and publishes. Usage, List and Delete go straight to
// the inner adapter.

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_common.h"
#include "storage/l2_config.h"
#include "util/mutex.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

struct FaultOptions {
  uint64_t seed = 0;
  double fail_rate = 0;
  bool fail_store = true, fail_lookup = true, fail_load = true;
  double rate = 0;  // LMCache: load drop rate
  std::vector<int64_t> gap_indices;
  std::vector<double> gap_tail_ratios;
  int64_t delay_ns = 0;
  double delay_rate = 1.0;
  double corrupt_rate = 0;
};

enum class What : uint8_t { kStore = 1, kLookup = 2, kLoad = 3, kLoadDrop = 4, kCorrupt = 5, kDelay = 6 };

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class FaultInjectAdapter final : public L2AdapterBase {
 public:
  static Result<std::unique_ptr<L2Adapter>> Create(const L2CommonConfig& common, const FaultOptions& opts,
                                                   std::unique_ptr<L2Adapter> inner) {
    auto completions = L2Completions::Create();
    if (!completions.ok()) return completions.status();
    std::unique_ptr<FaultInjectAdapter> a(
        new FaultInjectAdapter(common, opts, std::move(inner), std::move(completions).value()));
    a->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->wake_fd_ < 0) return Status::FromErrno("eventfd", errno);
    try {
      a->pump_ = std::thread([p = a.get()] { p->Pump(); });
    } catch (const std::system_error& e) {
      return Status::Unavailable(std::string("cannot start the fault_inject thread: ") + e.what());
    }
    return std::unique_ptr<L2Adapter>(std::move(a));
  }

  ~FaultInjectAdapter() override {
    Close();
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  Result<L2TaskId> SubmitStore(std::span<const ObjectKey> keys, std::span<const ObjectView> objects) override {
    LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, objects, "SubmitStore"));
    PendingStore p;
    p.keys.assign(keys.begin(), keys.end());
    std::vector<ObjectKey> sub_keys;
    std::vector<ObjectView> sub_views;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (opts_.fail_store && Hit(What::kStore, keys[i], opts_.fail_rate)) {
        Bump(injected_store_failures_);
        continue;
      }
      p.positions.push_back(i);
      sub_keys.push_back(keys[i]);
      sub_views.push_back(objects[i]);
    }
    MutexLock lock(&mu_);
    if (closed_) return ClosedStatus(common_.type);
    p.outer = completions().NextId();
    const L2TaskId outer = p.outer;
    if (sub_keys.empty() && !keys.empty()) {
      L2StoreResult r;
      r.stored.assign(keys.size(), false);
      DeliverLocked(0, outer, std::move(r), {});
    } else {
      auto inner = inner_->SubmitStore(sub_keys, sub_views);
      if (!inner.ok()) return inner.status();
      stores_[inner.value()] = std::move(p);
    }
    Wake();
    return outer;
  }

  Result<L2TaskId> SubmitLookupAndLock(std::span<const ObjectKey> keys) override {
    MutexLock lock(&mu_);
    if (closed_) return ClosedStatus(common_.type);
    auto inner = inner_->SubmitLookupAndLock(keys);
    if (!inner.ok()) return inner.status();
    const L2TaskId outer = completions().NextId();
    lookups_[inner.value()] = Pending{outer, std::vector<ObjectKey>(keys.begin(), keys.end())};
    Wake();
    return outer;
  }

  void SubmitUnlock(std::span<const ObjectKey> keys) override { inner_->SubmitUnlock(keys); }

  Result<L2TaskId> SubmitLoad(std::span<const ObjectKey> keys, std::span<const ObjectView> buffers) override {
    LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, buffers, "SubmitLoad"));
    MutexLock lock(&mu_);
    if (closed_) return ClosedStatus(common_.type);
    auto inner = inner_->SubmitLoad(keys, buffers);
    if (!inner.ok()) return inner.status();
    const L2TaskId outer = completions().NextId();
    loads_[inner.value()] = Pending{outer, std::vector<ObjectKey>(keys.begin(), keys.end())};
    Wake();
    return outer;
  }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override { return inner_->Delete(keys); }
  Result<L2KeyPage> List(const L2ListRequest& request) const override { return inner_->List(request); }
  L2Usage Usage() const override { return inner_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s = inner_->ReportStatus();
    const std::string inner_type = s.type;
    s.type = common_.type;
    {
      MutexLock lock(&mu_);
      s.pending_tasks = stores_.size() + lookups_.size() + loads_.size() + delayed_.size();
      if (closed_) {
        s.healthy = false;
        s.message = "closed";
      }
    }
    auto d = std::move(s.details);
    s.details.clear();
    s.details.emplace_back("inner_type", inner_type);
    s.details.emplace_back("seed", std::to_string(opts_.seed));
    s.details.emplace_back("injected_store_failures", std::to_string(injected_store_failures_.load()));
    s.details.emplace_back("injected_lookup_misses", std::to_string(injected_lookup_misses_.load()));
    s.details.emplace_back("injected_load_failures", std::to_string(injected_load_failures_.load()));
    s.details.emplace_back("injected_corruptions", std::to_string(injected_corruptions_.load()));
    s.details.emplace_back("delayed_tasks", std::to_string(delayed_tasks_.load()));
    for (auto& [k, v] : d) s.details.emplace_back("inner." + k, std::move(v));
    return s;
  }

  void Close() override {
    MutexLock serial(&close_mu_);
    {
      MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
    }
    Wake();
    if (pump_.joinable()) pump_.join();
    // The inner adapter completes whatever it still had as failures; hand
    // those results on, release everything delayed, and fail what is left.
    inner_->Close();
    Collect();
    MutexLock lock(&mu_);
    while (!delayed_.empty()) {
      auto publish = std::move(const_cast<Delayed&>(delayed_.top()).publish);
      delayed_.pop();
      publish();
    }
    for (auto& [id, p] : stores_) {
      L2StoreResult r;
      r.stored.assign(p.keys.size(), false);
      completions().PublishStore(p.outer, std::move(r));
    }
    for (auto& [id, p] : lookups_) completions().PublishLookup(p.outer, L2Bitmap(p.keys.size(), false));
    for (auto& [id, p] : loads_) completions().PublishLoad(p.outer, L2Bitmap(p.keys.size(), false));
    stores_.clear();
    lookups_.clear();
    loads_.clear();
  }

  bool supports_corruption_injection() const override { return inner_->supports_corruption_injection(); }
  Status InjectCorruption(const ObjectKey& key) override { return inner_->InjectCorruption(key); }

 private:
  struct Pending {
    L2TaskId outer = 0;
    std::vector<ObjectKey> keys;
  };
  struct PendingStore {
    L2TaskId outer = 0;
    std::vector<ObjectKey> keys;   // all outer keys
    std::vector<size_t> positions;  // outer index of each key passed to the inner adapter
  };
  struct Delayed {
    int64_t due_ns;
    uint64_t seq;
    std::function<void()> publish;
    bool operator>(const Delayed& o) const { return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq; }
  };

  FaultInjectAdapter(const L2CommonConfig& common, const FaultOptions& opts, std::unique_ptr<L2Adapter> inner,
                     std::unique_ptr<L2Completions> completions)
      : L2AdapterBase(common, std::move(completions)), opts_(opts), inner_(std::move(inner)) {}

  // Uniform in [0, 1) from (seed, what, key).
  double Draw(What what, const ObjectKey& key) const {
    std::string buf;
    buf.reserve(96);
    buf.append(reinterpret_cast<const char*>(&opts_.seed), sizeof(opts_.seed));
    buf.push_back(static_cast<char>(what));
    buf.append(key.chunk_hash_bytes());
    buf.append(reinterpret_cast<const char*>(&key.kv_rank), sizeof(key.kv_rank));
    buf.append(reinterpret_cast<const char*>(&key.object_group_id), sizeof(key.object_group_id));
    buf.append(key.model_name.str());
    buf.push_back('\0');
    buf.append(key.cache_salt.str());
    return static_cast<double>(Xxh64Digest(buf.data(), buf.size(), opts_.seed) >> 11) * 0x1.0p-53;
  }
  bool Hit(What what, const ObjectKey& key, double rate) const { return rate > 0 && Draw(what, key) < rate; }
  bool DelayTask(L2TaskId id) const {
    if (opts_.delay_ns <= 0) return false;
    uint64_t v[2] = {opts_.seed, id};
    const double u = static_cast<double>(Xxh64Digest(v, sizeof(v), static_cast<uint64_t>(What::kDelay)) >> 11) *
                     0x1.0p-53;
    return u < opts_.delay_rate;
  }

  void Wake() { L2Completions::Signal(wake_fd_); }

  // kind: 0 store, 1 lookup, 2 load.
  void DeliverLocked(int kind, L2TaskId outer, L2StoreResult store, L2Bitmap bits) REQUIRES(mu_) {
    std::function<void()> publish;
    if (kind == 0) {
      publish = [this, outer, r = std::move(store)]() mutable { completions().PublishStore(outer, std::move(r)); };
    } else if (kind == 1) {
      publish = [this, outer, b = std::move(bits)]() mutable { completions().PublishLookup(outer, std::move(b)); };
    } else {
      publish = [this, outer, b = std::move(bits)]() mutable { completions().PublishLoad(outer, std::move(b)); };
    }
    if (!closed_ && DelayTask(outer)) {
      Bump(delayed_tasks_);
      delayed_.push(Delayed{NowNs() + opts_.delay_ns, delay_seq_++, std::move(publish)});
    } else {
      publish();
    }
  }

  static void Drain(int fd) {
    uint64_t v;
    while (read(fd, &v, sizeof(v)) > 0) {
    }
  }

  void Pump() {
    for (;;) {
      int timeout_ms = -1;
      {
        MutexLock lock(&mu_);
        if (closed_) return;
        if (!delayed_.empty()) {
          const int64_t wait = delayed_.top().due_ns - NowNs();
          timeout_ms = wait <= 0 ? 0 : static_cast<int>(std::min<int64_t>((wait + 999'999) / 1'000'000, 1000));
        }
      }
      pollfd fds[4] = {{wake_fd_, POLLIN, 0},
                       {inner_->store_event_fd(), POLLIN, 0},
                       {inner_->lookup_event_fd(), POLLIN, 0},
                       {inner_->load_event_fd(), POLLIN, 0}};
      poll(fds, 4, timeout_ms);
      for (const pollfd& p : fds) {
        if (p.revents & POLLIN) Drain(p.fd);
      }
      Collect();
      ReleaseDue();
    }
  }

  void ReleaseDue() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    const int64_t now = NowNs();
    while (!delayed_.empty() && delayed_.top().due_ns <= now) {
      auto publish = std::move(const_cast<Delayed&>(delayed_.top()).publish);
      delayed_.pop();
      publish();
    }
  }

  // Translate every finished inner task into its outer result.
  void Collect() EXCLUDES(mu_) {
    for (auto& [inner_id, r] : inner_->PopCompletedStores()) {
      PendingStore p;
      {
        MutexLock lock(&mu_);
        auto it = stores_.find(inner_id);
        if (it == stores_.end()) continue;  // not ours (cannot happen: we submit every inner task)
        p = std::move(it->second);
        stores_.erase(it);
      }
      L2StoreResult out;
      out.stored.assign(p.keys.size(), false);
      out.bytes_written = r.bytes_written;
      for (size_t j = 0; j < p.positions.size() && j < r.stored.size(); ++j) {
        const size_t i = p.positions[j];
        out.stored[i] = r.stored[j];
        if (r.stored[j] && Hit(What::kCorrupt, p.keys[i], opts_.corrupt_rate) &&
            inner_->InjectCorruption(p.keys[i]).ok()) {
          Bump(injected_corruptions_);
        }
      }
      out.ok = !out.stored.empty() && std::all_of(out.stored.begin(), out.stored.end(), [](bool b) { return b; });
      if (p.keys.empty()) out.ok = true;
      MutexLock lock(&mu_);
      DeliverLocked(0, p.outer, std::move(out), {});
    }
    CollectBitmaps(/*lookup=*/true);
    CollectBitmaps(/*lookup=*/false);
  }

  void CollectBitmaps(bool lookup) EXCLUDES(mu_) {
    std::vector<L2TaskId> ids;
    {
      MutexLock lock(&mu_);
      for (const auto& [id, p] : lookup ? lookups_ : loads_) ids.push_back(id);
    }
    for (L2TaskId id : ids) {
      std::optional<L2Bitmap> bits = lookup ? inner_->QueryLookupResult(id) : inner_->QueryLoadResult(id);
      if (!bits) continue;
      Pending p;
      {
        MutexLock lock(&mu_);
        auto& map = lookup ? lookups_ : loads_;
        auto it = map.find(id);
        if (it == map.end()) continue;
        p = std::move(it->second);
        map.erase(it);
      }
      bits->resize(p.keys.size(), false);
      if (lookup) {
        std::vector<ObjectKey> unlock;
        for (size_t i = 0; i < p.keys.size(); ++i) {
          if ((*bits)[i] && opts_.fail_lookup && Hit(What::kLookup, p.keys[i], opts_.fail_rate)) {
            (*bits)[i] = false;
            unlock.push_back(p.keys[i]);
            Bump(injected_lookup_misses_);
          }
        }
        if (!unlock.empty()) inner_->SubmitUnlock(unlock);
      } else {
        const size_t n = p.keys.size();
        std::vector<bool> gap(n, false);
        for (int64_t g : opts_.gap_indices) {
          if (static_cast<size_t>(g) < n) gap[static_cast<size_t>(g)] = true;
        }
        if (n > 0) {
          // Python's round() (ties to even), as LMCache computes it.
          for (double r : opts_.gap_tail_ratios) {
            gap[static_cast<size_t>(std::nearbyint((1.0 - r) * static_cast<double>(n - 1)))] = true;
          }
        }
        for (size_t i = 0; i < n; ++i) {
          if (!(*bits)[i]) continue;
          if (gap[i] || Hit(What::kLoadDrop, p.keys[i], opts_.rate) ||
              (opts_.fail_load && Hit(What::kLoad, p.keys[i], opts_.fail_rate))) {
            (*bits)[i] = false;
            Bump(injected_load_failures_);
          }
        }
      }
      MutexLock lock(&mu_);
      DeliverLocked(lookup ? 1 : 2, p.outer, {}, std::move(*bits));
    }
  }

  const FaultOptions opts_;
  std::unique_ptr<L2Adapter> inner_;
  int wake_fd_ = -1;

  mutable Mutex mu_;  // held while submitting to the inner adapter, so a mapping exists before its result
  bool closed_ GUARDED_BY(mu_) = false;
  std::unordered_map<L2TaskId, PendingStore> stores_ GUARDED_BY(mu_);
  std::map<L2TaskId, Pending> lookups_ GUARDED_BY(mu_);
  std::map<L2TaskId, Pending> loads_ GUARDED_BY(mu_);
  std::priority_queue<Delayed, std::vector<Delayed>, std::greater<Delayed>> delayed_ GUARDED_BY(mu_);
  uint64_t delay_seq_ GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> injected_store_failures_{0};
  std::atomic<uint64_t> injected_lookup_misses_{0};
  std::atomic<uint64_t> injected_load_failures_{0};
  std::atomic<uint64_t> injected_corruptions_{0};
  std::atomic<uint64_t> delayed_tasks_{0};

  Mutex close_mu_;
  std::thread pump_;
};

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateFaultInjectAdapter(const L2CommonConfig& common, JsonFields& f,
                                                            const L2AdapterContext& context) {
  FaultOptions o;
  const nlohmann::json* inner_spec = f.Object("inner", true);
  o.seed = static_cast<uint64_t>(f.Int("seed", 0, 0, INT64_MAX));
  o.fail_rate = f.Number("fail_rate", 0, 0, 1);
  if (f.Has("fail_ops")) {
    const auto ops = f.ChoiceList("fail_ops", {"store", "lookup", "load"});
    o.fail_store = std::find(ops.begin(), ops.end(), "store") != ops.end();
    o.fail_lookup = std::find(ops.begin(), ops.end(), "lookup") != ops.end();
    o.fail_load = std::find(ops.begin(), ops.end(), "load") != ops.end();
  }
  o.rate = f.Number("rate", 0, 0, 1);
  o.gap_indices = f.IntList("gap_indices", 0, INT32_MAX);
  o.gap_tail_ratios = f.NumberList("gap_tail_ratios", 0, 1);
  o.delay_ns = static_cast<int64_t>(f.Number("delay_ms", 0, 0, 3.6e6) * 1e6);
  o.delay_rate = f.Number("delay_rate", 1, 0, 1);
  o.corrupt_rate = f.Number("corrupt_rate", 0, 0, 1);
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  auto inner = CreateL2AdapterFromJson(*inner_spec, context);
  if (!inner.ok()) {
    return Status(inner.status().code(), "L2 adapter 'fault_inject': inner: " + inner.status().message());
  }
  if (o.corrupt_rate > 0 && !inner.value()->supports_corruption_injection()) {
    return Status::InvalidArgument("L2 adapter 'fault_inject': field 'corrupt_rate' needs an inner adapter that "
                                   "supports corruption injection, and '" +
                                   inner.value()->common_config().type + "' does not");
  }
  return FaultInjectAdapter::Create(common, o, std::move(inner).value());
}

}  // namespace lmcache::internal
