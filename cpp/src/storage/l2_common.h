// Building blocks shared by the L2 adapters (src-only):
//   L2Completions    the three eventfds, task ids and the result maps;
//   L2AtomicCounters lock-free counters behind L2Counters;
//   WorkerPool       N threads draining one job queue, with cancellation;
//   ValidateBatch    the argument checks every Submit* starts with;
//   L2AdapterBase    the completion surface of an adapter (config, fds,
//                    result hand-out) over one L2Completions;
//   BatchedL2Adapter the task machinery of an adapter that runs per-key (or
//                    per-range) work on worker threads: Submit* prologue,
//                    batches, dispatch, counting, publishing, Close;
//   CreateBatchedAdapter  the Create boilerplate (completions + index + Open).
//
// Thread safety: all thread-safe (the adapters' hooks are called from any
// thread, concurrently; see BatchedL2Adapter).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_index.h"
#include "util/mutex.h"

namespace lmcache::internal {

class L2Completions {
 public:
  // IOError when an eventfd cannot be created.
  static Result<std::unique_ptr<L2Completions>> Create();
  ~L2Completions();  // closes the fds
  L2Completions(const L2Completions&) = delete;
  L2Completions& operator=(const L2Completions&) = delete;

  int store_fd() const { return fds_[0]; }
  int lookup_fd() const { return fds_[1]; }
  int load_fd() const { return fds_[2]; }

  L2TaskId NextId() { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  // Publish a result, then signal the fd of its kind.
  void PublishStore(L2TaskId id, L2StoreResult result) EXCLUDES(mu_);
  void PublishLookup(L2TaskId id, L2Bitmap bits) EXCLUDES(mu_);
  void PublishLoad(L2TaskId id, L2Bitmap bits) EXCLUDES(mu_);

  std::vector<std::pair<L2TaskId, L2StoreResult>> PopStores() EXCLUDES(mu_);
  std::optional<L2Bitmap> TakeLookup(L2TaskId id) EXCLUDES(mu_);
  std::optional<L2Bitmap> TakeLoad(L2TaskId id) EXCLUDES(mu_);

  // Write 1 to an eventfd (ignores EAGAIN: the counter is saturated, a
  // poller will wake anyway).
  static void Signal(int fd);

 private:
  L2Completions() = default;
  int fds_[3] = {-1, -1, -1};
  std::atomic<L2TaskId> next_id_{1};
  mutable Mutex mu_;
  std::vector<std::pair<L2TaskId, L2StoreResult>> stores_ GUARDED_BY(mu_);
  std::unordered_map<L2TaskId, L2Bitmap> lookups_ GUARDED_BY(mu_);
  std::unordered_map<L2TaskId, L2Bitmap> loads_ GUARDED_BY(mu_);
};

#define LMCACHE_L2_COUNTER_FIELDS(X)                                                               \
  X(store_tasks) X(stored_objects) X(stored_bytes) X(store_skipped) X(store_failures)             \
  X(lookup_tasks) X(lookup_hits) X(lookup_misses) X(load_tasks) X(loaded_objects) X(loaded_bytes)  \
  X(load_misses) X(corrupt_objects) X(size_mismatches) X(unverified_loads) X(io_errors)           \
  X(rejected_keys) X(evicted_objects) X(evicted_bytes) X(deleted_objects)

struct L2AtomicCounters {
#define LMCACHE_L2_DECLARE(name) std::atomic<uint64_t> name{0};
  LMCACHE_L2_COUNTER_FIELDS(LMCACHE_L2_DECLARE)
#undef LMCACHE_L2_DECLARE

  L2Counters Snapshot() const {
    L2Counters c;
#define LMCACHE_L2_COPY(name) c.name = name.load(std::memory_order_relaxed);
    LMCACHE_L2_COUNTER_FIELDS(LMCACHE_L2_COPY)
#undef LMCACHE_L2_COPY
    return c;
  }
};

inline void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

// Fixed set of threads draining one FIFO of jobs. A job gets its worker
// index (0..n-1), or -1 when it is cancelled: Shutdown() lets running jobs
// finish, then runs every job still queued with -1 on the calling thread,
// so each job runs exactly once and can complete its task as a failure.
class WorkerPool {
 public:
  using Job = std::function<void(int worker)>;
  WorkerPool() = default;
  ~WorkerPool() { Shutdown(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // `init(worker)` runs first on each thread (per-thread buffers). Unavailable
  // if a thread cannot be created (the ones created are shut down again).
  Status Start(int num_threads, std::function<void(int)> init = nullptr) EXCLUDES(mu_);
  // False (and the job is not queued) after Shutdown.
  bool Submit(Job job) EXCLUDES(mu_);
  void Shutdown() EXCLUDES(mu_);
  size_t queued() const EXCLUDES(mu_);
  int num_threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop(int worker) EXCLUDES(mu_);

  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Job> jobs_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // written by Start/Shutdown only
  Mutex shutdown_mu_;                 // serializes Shutdown callers
};

// InvalidArgument when sizes differ or a view is empty / null.
Status ValidateBatch(std::span<const ObjectKey> keys, std::span<const ObjectView> views, const char* what);

// Shared "Unavailable: adapter is closed" status.
Status ClosedStatus(const std::string& type);

// ---- adapter bases ----

// The part of L2Adapter that only hands out results: the common config, the
// three eventfds and the result queues of one L2Completions. Adapters that
// publish through an L2Completions of their own derive from it (directly, as
// fault_inject does, or through BatchedL2Adapter).
//
// Thread safety: thread-safe (L2Completions is).
class L2AdapterBase : public L2Adapter {
 public:
  const L2CommonConfig& common_config() const final { return common_; }
  int store_event_fd() const final { return completions_->store_fd(); }
  int lookup_event_fd() const final { return completions_->lookup_fd(); }
  int load_event_fd() const final { return completions_->load_fd(); }
  std::vector<std::pair<L2TaskId, L2StoreResult>> PopCompletedStores() final { return completions_->PopStores(); }
  std::optional<L2Bitmap> QueryLookupResult(L2TaskId task) final { return completions_->TakeLookup(task); }
  std::optional<L2Bitmap> QueryLoadResult(L2TaskId task) final { return completions_->TakeLoad(task); }

 protected:
  // REQUIRES: completions != nullptr.
  L2AdapterBase(const L2CommonConfig& common, std::unique_ptr<L2Completions> completions);

  L2Completions& completions() const { return *completions_; }

  const L2CommonConfig common_;

 private:
  const std::unique_ptr<L2Completions> completions_;
};

// One submitted task of a BatchedL2Adapter. `keys`/`views` are copies of the
// caller's spans (views: the store objects or load buffers; empty for a
// lookup). Each key's `ok` byte is written by exactly one party at a time:
// the submitting thread before dispatch, then the one job that owns the key;
// the job that brings `remaining` to 0 publishes (acq_rel orders the other
// jobs' writes before it).
struct L2Batch {
  enum class Kind : uint8_t { kStore, kLookup, kLoad };

  L2TaskId id = 0;
  Kind kind = Kind::kStore;
  std::vector<ObjectKey> keys;
  std::vector<ObjectView> views;
  std::vector<uint8_t> ok;             // per key: 1 = stored / found and locked / loaded
  std::vector<size_t> todo;            // the keys the jobs work on (indexes into keys); empty = all
  std::atomic<size_t> remaining{0};    // work positions not completed yet
  std::atomic<size_t> next{0};         // kClaim: the next work position a job claims
  std::atomic<uint64_t> bytes{0};      // store: bytes written (L2StoreResult::bytes_written)
  std::atomic<bool> cancelled{false};  // lookup: some of its work was cancelled by Close

  // The number of work positions, and the key index at position `p`.
  size_t work_size() const { return todo.empty() ? keys.size() : todo.size(); }
  size_t KeyAt(size_t p) const { return todo.empty() ? p : todo[p]; }
};

// How the work positions of a batch are spread over jobs.
//   kClaim:  ceil(n / keys_per_job) jobs, at most max_jobs, that each claim
//            the next unclaimed position until none is left (one position
//            per RunKeys call): few queue operations, and keys still spread
//            over every idle worker.
//   kSlices: min(n, max_jobs) jobs of one contiguous range each (one RunKeys
//            call per range; for backends that pipeline a range, or do a
//            whole batch at once with max_jobs = 1).
struct L2Spread {
  enum class Mode : uint8_t { kClaim, kSlices };
  Mode mode = Mode::kClaim;
  size_t max_jobs = 1;      // >= 1; usually the number of workers
  size_t keys_per_job = 1;  // kClaim only, >= 1
};

// BatchedL2Adapter: the L2Adapter task machinery shared by the adapters that
// run their I/O on worker threads (fs, resp, native_plugin, raw_block, dax,
// mock, the sync-backend adapter). A plain base class with virtual hooks
// rather than a template or CRTP: the machinery is one compiled copy in
// l2_common.cc, adapters are already used through L2Adapter's vtable, and a
// hook call per key (or per range) is noise next to the I/O it starts.
//
// What the base does (the adapter writes none of it):
//  * Submit*: ValidateBatch (store, load), Unavailable after Close, the
//    *_tasks counter, a new L2Batch (id, copies of keys and views, pending
//    count; an empty batch is published at once), then dispatch;
//  * dispatch: the batch's work positions are spread over jobs (L2Spread)
//    that are queued through Enqueue (default: the base's WorkerPool). A job
//    runs RunKeys on a worker (index >= 0); a job cancelled by Close, or
//    started after Close began, completes its keys as failures instead
//    (worker -1 is never passed to a hook);
//  * counting when a key's work completes: store_failures (0 bits),
//    loaded_objects / loaded_bytes / load_misses; at publish: lookup_hits and
//    lookup_misses (from the final bits). Everything else (stored_objects,
//    store_skipped, corrupt_objects, io_errors, ...) is the adapter's;
//  * publishing: BeforePublish, then for a lookup with cancelled work every
//    lock taken for it is given back (SubmitUnlock) and all its bits are 0;
//    the pending count drops before the result is visible; then the result
//    is published and its eventfd signalled;
//  * Close (idempotent; a concurrent caller waits for the first): Submit*
//    fail from then on, StopWorkers joins the workers (running jobs finish,
//    queued ones complete as failures), then OnClose runs once.
//
// Hooks (the adapter implements what it needs):
//  * StoreKey / LoadKey / ProbeKey: one key's work, used by the default
//    RunKeys. An adapter that overrides RunKeys for a kind need not
//    implement that kind's per-key hook;
//  * RunKeys(b, begin, end, worker): the work of positions [begin, end) of
//    b (key index b.KeyAt(p)); sets b.ok of those keys (and b.bytes);
//  * StartLookup: what SubmitLookupAndLock does after the prologue; default
//    Run(b, spread) over all keys. Inline answers use FinishInline, index
//    misses probed on workers use ProbeMisses;
//  * StartStore: what SubmitStore does after the prologue; default
//    Run(b, spread) (e.g. fs catches up with other writers first);
//  * Enqueue: where jobs run (default the WorkerPool started by
//    StartWorkers); false = not queued (the job then runs cancelled);
//  * BeforePublish, StopWorkers (wraps the pool shutdown, e.g. to release a
//    lock the workers need), OnClose (after the workers are joined).
//
// Lifecycle. The adapter starts the workers (StartWorkers) while it opens;
// its destructor MUST call Close() first thing, so no job or hook runs on a
// half-destroyed adapter (the base destructor checks that it was closed).
//
// Thread safety: thread-safe. Hooks run concurrently on workers and on the
// threads that call Submit* and Close; a key's ok byte is touched by one
// party at a time (see L2Batch).
class BatchedL2Adapter : public L2AdapterBase {
 public:
  using Batch = L2Batch;
  using BatchPtr = std::shared_ptr<L2Batch>;
  using Kind = L2Batch::Kind;

  Result<L2TaskId> SubmitStore(std::span<const ObjectKey> keys, std::span<const ObjectView> objects) final;
  Result<L2TaskId> SubmitLookupAndLock(std::span<const ObjectKey> keys) final;
  Result<L2TaskId> SubmitLoad(std::span<const ObjectKey> keys, std::span<const ObjectView> buffers) final;
  void Close() final EXCLUDES(close_mu_);

 protected:
  // `spread`: how store and load batches (and the default lookup) are
  // spread over jobs. REQUIRES: completions != nullptr, spread.max_jobs >= 1.
  BatchedL2Adapter(const L2CommonConfig& common, std::unique_ptr<L2Completions> completions, L2Spread spread);
  ~BatchedL2Adapter() override;

  // ---- hooks ----
  // Store one object; true when the key is stored afterwards (written now,
  // or already present). Add the bytes written to *bytes.
  virtual bool StoreKey(const ObjectKey& key, const ObjectView& object, int worker, std::atomic<uint64_t>* bytes);
  // Load one object into `buffer`; true only when it was read and verified.
  virtual bool LoadKey(const ObjectKey& key, const ObjectView& buffer, int worker);
  // Lookup work for one key on a worker: true when the key is present and
  // now locked.
  virtual bool ProbeKey(const ObjectKey& key, int worker);
  // Positions [begin, end) of b on `worker` (>= 0). Default: the per-key
  // hook of b.kind for each key.
  virtual void RunKeys(Batch& b, size_t begin, size_t end, int worker);
  // REQUIRES: b has keys. Default: Run(b, spread of the constructor).
  virtual void StartLookup(const BatchPtr& b);
  // REQUIRES: b has keys. Default: Run(b, spread of the constructor).
  virtual void StartStore(const BatchPtr& b);
  // Queue one job of b. Default: the WorkerPool.
  virtual bool Enqueue(const Batch& b, WorkerPool::Job job);
  // Called once per batch, before its result is computed and published.
  virtual void BeforePublish(Batch& /*b*/) {}
  // Close: run `stop` (joins the workers). Default: stop().
  virtual void StopWorkers(const std::function<void()>& stop) { stop(); }
  // Close, once, after the workers are joined.
  virtual void OnClose() {}

  // ---- helpers for the adapter ----
  // Start the WorkerPool (see WorkerPool::Start).
  Status StartWorkers(int num_threads, std::function<void(int)> init = nullptr);
  // Queue a job of the adapter's own on the pool (false after Close).
  bool SubmitJob(WorkerPool::Job job) const { return pool_.Submit(std::move(job)); }
  // Dispatch b's work positions (b->todo, or every key) over jobs.
  // REQUIRES: b->work_size() > 0 and b is not published.
  void Run(const BatchPtr& b, L2Spread spread);
  // Publish a lookup answered on the calling thread: bit i = bits[i].
  void FinishInline(const BatchPtr& b, const L2Bitmap& bits);
  // The index answered `bits` (hits locked): publish at once when nothing
  // missed, else run ProbeKey (RunKeys) for the misses, spread as `spread`.
  void ProbeMisses(const BatchPtr& b, const L2Bitmap& bits, L2Spread spread);
  bool closed() const { return closed_.load(); }
  uint64_t pending_tasks() const { return pending_.load(); }
  const L2Spread& spread() const { return spread_; }
  // ReportStatus's common part: type, counters, pending tasks, "closed".
  L2Status BaseStatus() const;

  mutable L2AtomicCounters counters_;

 private:
  BatchPtr NewBatch(Kind kind, std::span<const ObjectKey> keys, std::span<const ObjectView> views);
  void Dispatch(const BatchPtr& b, const WorkerPool::Job& job);
  // Run positions [begin, end) (worker -1: cancelled), count them, and
  // publish when they were the last.
  void Complete(Batch& b, size_t begin, size_t end, int worker);
  void Publish(Batch& b);

  const L2Spread spread_;
  std::atomic<uint64_t> pending_{0};
  std::atomic<bool> closed_{false};
  Mutex close_mu_;  // serializes Close
  bool close_done_ GUARDED_BY(close_mu_) = false;
  mutable WorkerPool pool_;
};

// The Create of an adapter with an L2Index<Meta>: a new L2Completions and
// index (capacity_bytes, the common eviction config, the context's clock),
// then `new A(args..., completions, index)` and A::Open(). IOError /
// InvalidArgument from the parts or from Open (the adapter is destroyed).
template <class A, class Meta, class... Args>
Result<std::unique_ptr<L2Adapter>> CreateBatchedAdapter(uint64_t capacity_bytes, const L2CommonConfig& common,
                                                        const L2AdapterContext& context, Args&&... args) {
  auto completions = L2Completions::Create();
  if (!completions.ok()) return completions.status();
  L2IndexOptions io;
  io.capacity_bytes = capacity_bytes;
  io.eviction = common.eviction;
  io.clock = context.clock;
  auto index = L2Index<Meta>::Create(io);
  if (!index.ok()) return index.status();
  std::unique_ptr<A> a(new A(std::forward<Args>(args)..., std::move(completions).value(), std::move(index).value()));
  LMCACHE_RETURN_IF_ERROR(a->Open());
  return std::unique_ptr<L2Adapter>(std::move(a));
}

}  // namespace lmcache::internal
