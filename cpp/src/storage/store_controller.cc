// StoreController: L1 -> L2 write-behind. See lmcache/l2_controllers.h.
//
// One thread. The L1 listener only appends keys to a bounded queue and
// writes the wake fd. The thread takes keys, forms batches (one per
// (model_name, kv_rank) group), read-locks them in L1, submits one store
// task per adapter, and on completion (store eventfds; the notifier's ticks
// on the wake fd as a safety net) counts the result and releases the locks.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "lmcache/l2_controllers.h"
#include "lmcache/notifier.h"
#include "storage/controller_util.h"
#include "util/mutex.h"

namespace lmcache {

using internal::CondVar;
using internal::Mutex;
using internal::MutexLock;

Result<L2StorePolicy> ParseL2StorePolicy(std::string_view name) {
  if (name == "default") return L2StorePolicy::kDefault;
  if (name == "skip_l1") return L2StorePolicy::kSkipL1;
  return Status::InvalidArgument("unknown L2 store policy '" + std::string(name) + "' (choose default, skip_l1)");
}

Result<L2PrefetchPolicy> ParseL2PrefetchPolicy(std::string_view name) {
  if (name == "default") return L2PrefetchPolicy::kDefault;
  if (name == "retain") return L2PrefetchPolicy::kRetain;
  return Status::InvalidArgument("unknown L2 prefetch policy '" + std::string(name) +
                                 "' (choose default, retain)");
}

const char* L2StorePolicyName(L2StorePolicy p) { return p == L2StorePolicy::kSkipL1 ? "skip_l1" : "default"; }
const char* L2PrefetchPolicyName(L2PrefetchPolicy p) {
  return p == L2PrefetchPolicy::kRetain ? "retain" : "default";
}

namespace {

// Keys of one (model_name, kv_rank) group, read-locked once in L1 while
// their store tasks run.
struct Batch {
  std::vector<ObjectKey> keys;
  std::vector<ObjectView> views;
  std::vector<uint32_t> stored_by;  // per key: adapters that stored it
  size_t pending = 0;               // adapters whose task has not completed
};

}  // namespace

struct StoreController::Impl : public L1Listener {
  L1Store* l1 = nullptr;
  std::vector<L2Adapter*> adapters;
  StoreControllerOptions options;
  internal::WakeFd wake;
  bool notifier_registered = false;
  bool listening = false;
  std::thread thread;

  mutable Mutex mu;
  CondVar idle_cv;
  std::vector<ObjectKey> queue GUARDED_BY(mu);
  bool closing GUARDED_BY(mu) = false;
  bool busy GUARDED_BY(mu) = false;          // keys taken from the queue, batches not registered yet
  uint64_t in_flight GUARDED_BY(mu) = 0;     // batches with tasks outstanding
  bool thread_running GUARDED_BY(mu) = false;

  // Touched by the controller thread only.
  std::map<std::pair<size_t, L2TaskId>, std::shared_ptr<Batch>> tasks;

  std::atomic<uint64_t> queued_keys{0}, dropped_keys{0}, skipped_keys{0}, submitted_keys{0}, stored_keys{0},
      failed_keys{0}, stored_bytes{0}, batches{0}, submit_errors{0}, l1_deleted{0}, l1_delete_skipped{0};

  static void Add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

  // ---- L1 listener (request threads) ----
  void OnAdmitted(const std::vector<ObjectKey>& keys, WriterTag tag, bool temporary) override {
    if ((tag & kL2PrefetchTagBit) != 0 || temporary) return;  // loaded from L2: not written back
    size_t accepted = 0;
    {
      MutexLock lock(&mu);
      if (!closing) {
        const size_t room = options.max_queued_keys - std::min(options.max_queued_keys, queue.size());
        accepted = std::min(room, keys.size());
        queue.insert(queue.end(), keys.begin(), keys.begin() + static_cast<ptrdiff_t>(accepted));
      }
    }
    Add(queued_keys, accepted);
    if (accepted < keys.size()) Add(dropped_keys, keys.size() - accepted);
    if (accepted > 0) wake.Signal();
  }

  // ---- controller thread ----
  void Run() {
    std::vector<pollfd> fds;
    fds.push_back(pollfd{wake.fd(), POLLIN, 0});
    for (L2Adapter* a : adapters) fds.push_back(pollfd{a->store_event_fd(), POLLIN, 0});
    for (;;) {
      std::vector<ObjectKey> take;
      bool stop = false;
      {
        MutexLock lock(&mu);
        if (in_flight < options.max_in_flight_batches && !queue.empty()) {
          const size_t n = std::min(options.max_batch_keys, queue.size());
          take.assign(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(n));
          queue.erase(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(n));
          busy = true;
        }
        stop = closing && queue.empty() && in_flight == 0 && take.empty();
        if (!busy && queue.empty() && in_flight == 0) idle_cv.NotifyAll();
      }
      if (stop) break;
      if (!take.empty()) {
        const uint64_t started = SubmitBatches(std::move(take));
        MutexLock lock(&mu);
        in_flight += started;
        busy = false;
        continue;  // maybe more to take before sleeping
      }
      // Nothing to take: wait for completions, new keys or a tick.
      bool waiting;
      {
        MutexLock lock(&mu);
        waiting = in_flight > 0;
      }
      // With tasks out and no notifier, poll() wakes every 10 ms anyway.
      const int timeout = waiting ? (notifier_registered ? 1000 : 10) : -1;
      PollAndDrainAll(fds, timeout);
      Collect();
    }
    MutexLock lock(&mu);
    thread_running = false;
    idle_cv.NotifyAll();
  }

  static void PollAndDrainAll(std::vector<pollfd>& fds, int timeout) { internal::PollAndDrain(fds, timeout); }

  // Group, lock, submit. Returns the number of batches now in flight.
  uint64_t SubmitBatches(std::vector<ObjectKey> keys) {
    // Group by (model_name, kv_rank), keeping arrival order inside a group.
    std::vector<std::vector<ObjectKey>> groups;
    std::unordered_map<uint64_t, std::vector<size_t>> index;  // hash -> group ids (collisions resolved below)
    for (const ObjectKey& k : keys) {
      const uint64_t h = k.model_name.hash() * 31 + static_cast<uint32_t>(k.kv_rank);
      size_t gid = SIZE_MAX;
      for (size_t g : index[h]) {
        const ObjectKey& f = groups[g].front();
        if (f.model_name == k.model_name && f.kv_rank == k.kv_rank) {
          gid = g;
          break;
        }
      }
      if (gid == SIZE_MAX) {
        gid = groups.size();
        groups.emplace_back();
        index[h].push_back(gid);
      }
      groups[gid].push_back(k);
    }
    uint64_t started = 0;
    for (std::vector<ObjectKey>& g : groups) {
      std::vector<bool> hits;
      std::vector<ObjectView> views;
      // Deduplicate (a key admitted, evicted and admitted again may be queued twice).
      if (g.size() > 1) {
        std::unordered_set<ObjectKey, ObjectKeyHash> seen;
        g.erase(std::remove_if(g.begin(), g.end(), [&seen](const ObjectKey& k) { return !seen.insert(k).second; }),
                g.end());
      }
      l1->ReserveRead(g, 1, &hits, &views);
      auto batch = std::make_shared<Batch>();
      for (size_t i = 0; i < g.size(); ++i) {
        if (hits[i]) {
          batch->keys.push_back(g[i]);
          batch->views.push_back(views[i]);
        }
      }
      Add(skipped_keys, g.size() - batch->keys.size());
      if (batch->keys.empty()) continue;
      batch->stored_by.assign(batch->keys.size(), 0);
      for (size_t a = 0; a < adapters.size(); ++a) {
        Result<L2TaskId> id = adapters[a]->SubmitStore(batch->keys, batch->views);
        Add(submitted_keys, batch->keys.size());
        if (!id.ok()) {
          Add(submit_errors, 1);
          Add(failed_keys, batch->keys.size());
          continue;
        }
        Add(batches, 1);
        ++batch->pending;
        tasks[{a, id.value()}] = batch;
      }
      if (batch->pending == 0) {
        Finish(*batch);
      } else {
        ++started;
      }
    }
    return started;
  }

  // Pop every adapter's completed stores and finish batches that are done.
  void Collect() {
    uint64_t finished = 0;
    for (size_t a = 0; a < adapters.size(); ++a) {
      for (auto& [id, result] : adapters[a]->PopCompletedStores()) {
        auto it = tasks.find({a, id});
        if (it == tasks.end()) continue;  // not ours (cannot happen: one store controller per adapter)
        std::shared_ptr<Batch> batch = it->second;
        tasks.erase(it);
        uint64_t ok = 0;
        for (size_t i = 0; i < batch->keys.size(); ++i) {
          const bool stored = i < result.stored.size() && result.stored[i];
          if (stored) {
            ++batch->stored_by[i];
            ++ok;
          }
        }
        Add(stored_keys, ok);
        Add(failed_keys, batch->keys.size() - ok);
        Add(stored_bytes, result.bytes_written);
        if (--batch->pending == 0) {
          Finish(*batch);
          ++finished;
        }
      }
    }
    if (finished > 0) {
      MutexLock lock(&mu);
      in_flight -= finished;
    }
  }

  // Every adapter answered for this batch: release the read locks, apply skip_l1.
  void Finish(Batch& batch) {
    l1->FinishRead(batch.keys);
    if (options.policy != L2StorePolicy::kSkipL1) return;
    std::vector<ObjectKey> everywhere;
    for (size_t i = 0; i < batch.keys.size(); ++i) {
      if (batch.stored_by[i] == adapters.size()) everywhere.push_back(batch.keys[i]);
    }
    const size_t deleted = everywhere.empty() ? 0 : l1->Delete(everywhere, /*force=*/false);
    Add(l1_deleted, deleted);
    Add(l1_delete_skipped, batch.keys.size() - deleted);
  }
};

StoreController::StoreController() : impl_(std::make_unique<Impl>()) {}

StoreController::~StoreController() { Close(); }

Result<std::unique_ptr<StoreController>> StoreController::Create(L1Store* l1, std::vector<L2Adapter*> adapters,
                                                                 const StoreControllerOptions& options) {
  if (l1 == nullptr) return Status::InvalidArgument("store controller: the L1 store is null");
  if (adapters.empty()) return Status::InvalidArgument("store controller: no L2 adapters");
  for (L2Adapter* a : adapters) {
    if (a == nullptr) return Status::InvalidArgument("store controller: an L2 adapter is null");
  }
  if (options.max_queued_keys == 0 || options.max_batch_keys == 0 || options.max_in_flight_batches == 0) {
    return Status::InvalidArgument("store controller: queue, batch and in-flight limits must be positive");
  }
  std::unique_ptr<StoreController> c(new StoreController());
  Impl& d = *c->impl_;
  d.l1 = l1;
  d.adapters = std::move(adapters);
  d.options = options;
  LMCACHE_RETURN_IF_ERROR(d.wake.Open());
  if (options.notifier != nullptr) {
    LMCACHE_RETURN_IF_ERROR(options.notifier->Register(d.wake.fd()));
    d.notifier_registered = true;
  }
  {
    MutexLock lock(&d.mu);
    d.thread_running = true;
  }
  try {
    d.thread = std::thread([&d] { d.Run(); });
  } catch (const std::system_error& e) {
    if (d.notifier_registered) (void)options.notifier->Unregister(d.wake.fd());
    d.notifier_registered = false;
    return Status::Unavailable(std::string("cannot start the L2 store controller thread: ") + e.what());
  }
  l1->AddListener(&d);
  d.listening = true;
  return c;
}

bool StoreController::Flush(int64_t timeout_ns) {
  Impl& d = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
  MutexLock lock(&d.mu);
  while (d.busy || !d.queue.empty() || d.in_flight > 0) {
    if (!d.thread_running) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    d.idle_cv.WaitFor(&d.mu, std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(50)));
  }
  return true;
}

void StoreController::Close() {
  Impl& d = *impl_;
  if (d.listening) {
    d.l1->RemoveListener(&d);  // waits for callbacks in progress
    d.listening = false;
  }
  {
    MutexLock lock(&d.mu);
    if (!d.closing) {
      d.closing = true;
      d.dropped_keys.fetch_add(d.queue.size(), std::memory_order_relaxed);
      d.queue.clear();
    }
  }
  d.wake.Signal();
  if (d.thread.joinable()) d.thread.join();
  if (d.notifier_registered) {
    (void)d.options.notifier->Unregister(d.wake.fd());
    d.notifier_registered = false;
  }
}

StoreControllerStats StoreController::Stats() const {
  const Impl& d = *impl_;
  StoreControllerStats s;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  s.queued_keys = get(d.queued_keys);
  s.dropped_keys = get(d.dropped_keys);
  s.skipped_keys = get(d.skipped_keys);
  s.submitted_keys = get(d.submitted_keys);
  s.stored_keys = get(d.stored_keys);
  s.failed_keys = get(d.failed_keys);
  s.stored_bytes = get(d.stored_bytes);
  s.batches = get(d.batches);
  s.submit_errors = get(d.submit_errors);
  s.l1_deleted_keys = get(d.l1_deleted);
  s.l1_delete_skipped = get(d.l1_delete_skipped);
  MutexLock lock(&d.mu);
  s.queue_depth = d.queue.size();
  s.in_flight_batches = d.in_flight;
  s.running = d.thread_running && !d.closing;
  return s;
}

const StoreControllerOptions& StoreController::options() const { return impl_->options; }

}  // namespace lmcache
