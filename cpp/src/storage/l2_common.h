// Building blocks shared by the L2 adapters (src-only):
//   L2Completions   the three eventfds, task ids and the result maps;
//   L2AtomicCounters lock-free counters behind L2Counters;
//   WorkerPool      N threads draining one job queue, with cancellation;
//   ValidateBatch   the argument checks every Submit* starts with.
//
// Thread safety: all thread-safe.
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

}  // namespace lmcache::internal
