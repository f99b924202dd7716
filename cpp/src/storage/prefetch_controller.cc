// PrefetchController: L2 -> L1 loads for lookups. See lmcache/l2_controllers.h.
//
// Threads: min(max_in_flight, kMaxPrefetchThreads) workers, each running one
// request at a time from a FIFO queue, and one pump thread. A worker that
// submitted an L2 task registers a slot and waits on a condition variable;
// the pump polls the adapters' lookup/load eventfds (and its wake fd, which
// the notifier ticks), queries the pending slots and hands results to their
// workers. A slot whose worker gave up (timeout, or closing) becomes an
// orphan: the pump collects its result later and undoes it (unlocks lookup
// hits in L2, frees the load's staging objects), so no buffer is freed while
// an adapter may still write into it.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <thread>
#include <tuple>
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

namespace {

enum class JobState : uint8_t { kQueued, kRunning, kDone };

struct Job {
  PrefetchId id = 0;
  PrefetchRequest request;
  // Guarded by Impl::mu.
  JobState state = JobState::kQueued;
  bool cancelled = false;
  PrefetchResult result;
};

enum class TaskKind : uint8_t { kLookup, kLoad };

struct Slot {
  std::optional<L2Bitmap> result;
  bool orphan = false;
  // For an orphan: what to undo when the task completes.
  std::vector<ObjectKey> keys;
  WriterTag tag = 0;
};

using SlotKey = std::tuple<size_t, TaskKind, L2TaskId>;

// One key of the request grid.
struct Pos {
  uint32_t row;
  uint32_t index;
};

void ReleaseReaders(L1Store* l1, const std::vector<ObjectKey>& keys, uint32_t readers) {
  if (keys.empty()) return;
  for (uint32_t n = 0; n < readers; ++n) l1->FinishRead(keys);
}

}  // namespace

struct PrefetchController::Impl {
  L1Store* l1 = nullptr;
  std::vector<L2Adapter*> adapters;
  PrefetchControllerOptions options;
  internal::WakeFd wake;
  bool notifier_registered = false;
  std::vector<std::thread> workers;
  std::thread pump;
  std::atomic<uint64_t> tag_seq{1};

  mutable Mutex mu;
  CondVar work_cv;
  CondVar done_cv;
  std::deque<std::shared_ptr<Job>> queue GUARDED_BY(mu);
  std::unordered_map<PrefetchId, std::shared_ptr<Job>> jobs GUARDED_BY(mu);  // not taken, not cancelled
  PrefetchId next_id GUARDED_BY(mu) = 1;
  bool closing GUARDED_BY(mu) = false;
  uint64_t in_flight GUARDED_BY(mu) = 0;
  uint64_t max_in_flight_seen GUARDED_BY(mu) = 0;
  uint64_t results_pending GUARDED_BY(mu) = 0;

  mutable Mutex task_mu;
  CondVar task_cv;
  std::map<SlotKey, Slot> slots GUARDED_BY(task_mu);
  bool abandon GUARDED_BY(task_mu) = false;    // waiters give up at once (closing)
  bool pump_stop GUARDED_BY(task_mu) = false;  // pump exits once no slot is left
  bool closed = false;                         // FinishClose ran (Close is idempotent)

  std::atomic<uint64_t> submitted{0}, completed{0}, cancelled{0}, l1_hit_chunks{0}, l2_hit_chunks{0},
      prefix_chunks{0}, l2_lookup_keys{0}, l2_hit_keys{0}, loaded_keys{0}, loaded_bytes{0}, lookup_failures{0},
      load_failures{0}, timeouts{0}, no_space{0};

  static void Add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

  bool Cancelled(const Job& job) {
    MutexLock lock(&mu);
    return job.cancelled || closing;
  }

  // ---- L2 task waiting ----

  // Wait for the result of an L2 task; nullopt on timeout or when closing
  // (the task becomes an orphan: `undo_keys`/`tag` are undone when it completes).
  std::optional<L2Bitmap> WaitTask(size_t adapter, TaskKind kind, L2TaskId id, const std::vector<ObjectKey>& undo_keys,
                                   WriterTag tag) {
    const SlotKey key{adapter, kind, id};
    {
      MutexLock lock(&task_mu);
      slots.emplace(key, Slot{});
    }
    wake.Signal();  // the pump queries new slots at once (the fd may have fired before we registered)
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(options.task_timeout_ns);
    MutexLock lock(&task_mu);
    for (;;) {
      auto it = slots.find(key);
      if (it->second.result.has_value()) {
        L2Bitmap bits = std::move(*it->second.result);
        slots.erase(it);
        return bits;
      }
      const auto now = std::chrono::steady_clock::now();
      if (abandon || now >= deadline) {
        it->second.orphan = true;
        it->second.keys = undo_keys;
        it->second.tag = tag;
        if (!abandon) Add(timeouts, 1);
        return std::nullopt;
      }
      task_cv.WaitFor(&task_mu, std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(100)));
    }
  }

  void PumpLoop() {
    std::vector<pollfd> fds;
    fds.push_back(pollfd{wake.fd(), POLLIN, 0});
    for (L2Adapter* a : adapters) {
      fds.push_back(pollfd{a->lookup_event_fd(), POLLIN, 0});
      fds.push_back(pollfd{a->load_event_fd(), POLLIN, 0});
    }
    for (;;) {
      bool pending;
      {
        MutexLock lock(&task_mu);
        if (pump_stop && slots.empty()) return;
        pending = !slots.empty();
      }
      internal::PollAndDrain(fds, pending ? (notifier_registered ? 1000 : 10) : -1);
      CollectSlots();
    }
  }

  void CollectSlots() {
    struct Undo {
      size_t adapter;
      TaskKind kind;
      L2Bitmap bits;
      std::vector<ObjectKey> keys;
      WriterTag tag;
    };
    std::vector<Undo> undo;
    bool delivered = false;
    {
      MutexLock lock(&task_mu);
      for (auto it = slots.begin(); it != slots.end();) {
        auto& [key, slot] = *it;
        if (slot.result.has_value()) {
          ++it;
          continue;
        }
        const auto& [a, kind, id] = key;
        std::optional<L2Bitmap> r =
            kind == TaskKind::kLookup ? adapters[a]->QueryLookupResult(id) : adapters[a]->QueryLoadResult(id);
        if (!r.has_value()) {
          ++it;
          continue;
        }
        if (slot.orphan) {
          undo.push_back(Undo{a, kind, std::move(*r), std::move(slot.keys), slot.tag});
          it = slots.erase(it);
        } else {
          slot.result = std::move(r);
          delivered = true;
          ++it;
        }
      }
    }
    if (delivered) task_cv.NotifyAll();
    for (Undo& u : undo) {
      if (u.kind == TaskKind::kLookup) {
        std::vector<ObjectKey> hits;
        for (size_t i = 0; i < u.keys.size() && i < u.bits.size(); ++i) {
          if (u.bits[i]) hits.push_back(u.keys[i]);
        }
        if (!hits.empty()) adapters[u.adapter]->SubmitUnlock(hits);
      } else {
        l1->AbortWrite(u.keys, u.tag);
      }
    }
  }

  // ---- workers ----

  void WorkerLoop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        MutexLock lock(&mu);
        while (!closing && queue.empty()) work_cv.Wait(&mu);
        if (closing) return;  // BeginClose cancelled what is queued
        job = queue.front();
        queue.pop_front();
        job->state = JobState::kRunning;
        ++in_flight;
        max_in_flight_seen = std::max(max_in_flight_seen, in_flight);
      }
      PrefetchResult r = Process(*job);
      // Counted before the result is visible, so a caller that got it sees it counted.
      Add(completed, 1);
      Add(prefix_chunks, r.prefix_chunks);
      Add(l1_hit_chunks, r.l1_hit_chunks);
      Add(l2_hit_chunks, r.l2_hit_chunks);
      Add(loaded_bytes, r.loaded_bytes);
      bool drop;
      {
        MutexLock lock(&mu);
        --in_flight;
        drop = job->cancelled;
        if (!drop) {
          job->state = JobState::kDone;
          job->result = r;
          ++results_pending;
        }
      }
      done_cv.NotifyAll();
      if (drop) ReleasePrefix(job->request, r.prefix_chunks);
    }
  }

  void ReleasePrefix(const PrefetchRequest& req, size_t prefix) {
    for (const PrefetchRow& row : req.rows) {
      const size_t n = std::min(prefix, row.keys.size());
      if (n == 0) continue;
      ReleaseReaders(l1, std::vector<ObjectKey>(row.keys.begin(), row.keys.begin() + static_cast<ptrdiff_t>(n)),
                     req.readers);
    }
  }

  // Run one request; returns with `readers` locks on [0, prefix) of each row
  // and nothing else held (L1 or L2).
  PrefetchResult Process(const Job& job) {
    const PrefetchRequest& req = job.request;
    const std::vector<PrefetchRow>& rows = req.rows;
    const uint32_t readers = req.readers;
    PrefetchResult result;
    if (rows.empty()) return result;
    const size_t R = rows.size();
    size_t limit = SIZE_MAX;
    for (const PrefetchRow& row : rows) limit = std::min(limit, row.keys.size());

    // Per key: holds `readers` L1 locks; adapter that has it (-1: none); loaded from L2.
    std::vector<std::vector<uint8_t>> locked(R);
    std::vector<std::vector<int32_t>> source(R);
    std::vector<std::vector<uint8_t>> loaded(R);

    // Phase 1: L1.
    for (size_t r = 0; r < R; ++r) {
      std::vector<bool> hits;
      std::vector<ObjectView> views;
      l1->ReserveRead(rows[r].keys, readers, &hits, &views);
      locked[r].assign(rows[r].keys.size(), 0);
      for (size_t i = 0; i < hits.size(); ++i) locked[r][i] = hits[i] ? 1 : 0;
      source[r].assign(limit, -1);
      loaded[r].assign(limit, 0);
    }
    auto release_beyond = [&](size_t bound) {
      for (size_t r = 0; r < R; ++r) {
        std::vector<ObjectKey> rel;
        for (size_t i = bound; i < locked[r].size(); ++i) {
          if (locked[r][i]) {
            rel.push_back(rows[r].keys[i]);
            locked[r][i] = 0;
          }
        }
        ReleaseReaders(l1, rel, readers);
      }
    };
    auto covered_prefix = [&](size_t upto, bool count_found) {
      for (size_t i = 0; i < upto; ++i) {
        for (size_t r = 0; r < R; ++r) {
          if (!locked[r][i] && !(count_found && source[r][i] >= 0)) return i;
        }
      }
      return upto;
    };
    release_beyond(limit);
    size_t bound = covered_prefix(limit, false);
    if (bound == limit || Cancelled(job)) {
      if (bound < limit) release_beyond(bound);  // cancelled: ReleasePrefix drops the rest
      result.prefix_chunks = bound;
      result.l1_hit_chunks = bound;
      return result;
    }

    // Phase 2: cascade lookup-and-lock of the keys L1 lacks.
    std::vector<Pos> need;
    for (size_t i = 0; i < limit; ++i) {
      for (size_t r = 0; r < R; ++r) {
        if (!locked[r][i]) need.push_back(Pos{static_cast<uint32_t>(r), static_cast<uint32_t>(i)});
      }
    }
    std::vector<std::vector<ObjectKey>> l2_locked(adapters.size());  // to unlock at the end
    for (size_t a = 0; a < adapters.size() && !need.empty(); ++a) {
      if (Cancelled(job)) break;
      std::vector<ObjectKey> keys;
      keys.reserve(need.size());
      for (const Pos& p : need) keys.push_back(rows[p.row].keys[p.index]);
      Add(l2_lookup_keys, keys.size());
      Result<L2TaskId> id = adapters[a]->SubmitLookupAndLock(keys);
      if (!id.ok()) {
        Add(lookup_failures, 1);
        result.degraded = true;
        continue;
      }
      std::optional<L2Bitmap> bits = WaitTask(a, TaskKind::kLookup, id.value(), keys, 0);
      if (!bits.has_value()) {
        Add(lookup_failures, 1);
        result.degraded = true;
        continue;
      }
      std::vector<Pos> still;
      for (size_t j = 0; j < need.size(); ++j) {
        if (j < bits->size() && (*bits)[j]) {
          source[need[j].row][need[j].index] = static_cast<int32_t>(a);
          l2_locked[a].push_back(keys[j]);
        } else {
          still.push_back(need[j]);
        }
      }
      Add(l2_hit_keys, keys.size() - still.size());
      need.swap(still);
    }
    bound = covered_prefix(limit, true);

    // Phase 3: L1 staging objects for the keys to load, in chunk order.
    const WriterTag tag = kL2PrefetchTagBit | tag_seq.fetch_add(1, std::memory_order_relaxed);
    std::vector<Pos> to_load;
    for (size_t i = 0; i < bound; ++i) {
      for (size_t r = 0; r < R; ++r) {
        if (!locked[r][i] && source[r][i] >= 0) to_load.push_back(Pos{static_cast<uint32_t>(r), static_cast<uint32_t>(i)});
      }
    }
    std::vector<ObjectView> staged(to_load.size());
    std::vector<uint8_t> is_staged(to_load.size(), 0);
    size_t staged_count = 0;  // to_load[0, staged_count) were given to ReserveWrite successfully
    if (!to_load.empty() && !Cancelled(job)) {
      auto reserve = [&](size_t from, size_t to) {
        std::vector<ObjectKey> keys;
        std::vector<uint64_t> sizes;
        for (size_t j = from; j < to; ++j) {
          keys.push_back(rows[to_load[j].row].keys[to_load[j].index]);
          sizes.push_back(rows[to_load[j].row].object_bytes);
        }
        std::vector<ReserveOutcome> outcomes;
        std::vector<ObjectView> views;
        Status s = l1->ReserveWrite(keys, sizes, tag, &outcomes, &views);
        if (!s.ok()) return false;
        for (size_t j = from; j < to; ++j) {
          if (outcomes[j - from] == ReserveOutcome::kReserved) {
            staged[j] = views[j - from];
            is_staged[j] = 1;
          } else {  // became resident meanwhile (a store): lock it like an L1 hit
            std::vector<bool> hit;
            std::vector<ObjectView> v;
            std::vector<ObjectKey> one{keys[j - from]};
            l1->ReserveRead(one, readers, &hit, &v);
            if (hit[0]) locked[to_load[j].row][to_load[j].index] = 1;
          }
        }
        return true;
      };
      if (reserve(0, to_load.size())) {
        staged_count = to_load.size();
      } else {
        // Not everything fits: reserve chunk by chunk; the prefix stops at the first that does not.
        size_t j = 0;
        while (j < to_load.size()) {
          size_t e = j;
          while (e < to_load.size() && to_load[e].index == to_load[j].index) ++e;
          if (!reserve(j, e)) {
            bound = std::min<size_t>(bound, to_load[j].index);
            Add(no_space, 1);
            result.degraded = true;
            break;
          }
          j = e;
        }
        staged_count = j;
      }
    }

    // Phase 4: load, per adapter (all submitted first, then collected).
    std::vector<std::vector<size_t>> per_adapter(adapters.size());
    for (size_t j = 0; j < staged_count; ++j) {
      if (is_staged[j]) per_adapter[static_cast<size_t>(source[to_load[j].row][to_load[j].index])].push_back(j);
    }
    std::vector<std::optional<L2TaskId>> load_ids(adapters.size());
    std::vector<std::vector<ObjectKey>> load_keys(adapters.size());
    std::vector<ObjectKey> failed;  // staging to free
    const bool cancelled_now = Cancelled(job);
    for (size_t a = 0; a < adapters.size(); ++a) {
      if (per_adapter[a].empty()) continue;
      std::vector<ObjectView> bufs;
      for (size_t j : per_adapter[a]) {
        load_keys[a].push_back(rows[to_load[j].row].keys[to_load[j].index]);
        bufs.push_back(staged[j]);
      }
      if (cancelled_now) {
        failed.insert(failed.end(), load_keys[a].begin(), load_keys[a].end());
        continue;
      }
      Result<L2TaskId> id = adapters[a]->SubmitLoad(load_keys[a], bufs);
      if (id.ok()) {
        load_ids[a] = id.value();
      } else {
        Add(load_failures, load_keys[a].size());
        result.degraded = true;
        failed.insert(failed.end(), load_keys[a].begin(), load_keys[a].end());
      }
    }
    const bool temporary = options.policy == L2PrefetchPolicy::kDefault && !req.retain;
    for (size_t a = 0; a < adapters.size(); ++a) {
      if (!load_ids[a].has_value()) continue;
      std::optional<L2Bitmap> bits = WaitTask(a, TaskKind::kLoad, *load_ids[a], load_keys[a], tag);
      if (!bits.has_value()) {  // the orphan frees the staging objects when the task completes
        Add(load_failures, load_keys[a].size());
        result.degraded = true;
        continue;
      }
      std::vector<ObjectKey> ok;
      std::vector<size_t> ok_pos;
      for (size_t k = 0; k < per_adapter[a].size(); ++k) {
        if (k < bits->size() && (*bits)[k]) {
          ok.push_back(load_keys[a][k]);
          ok_pos.push_back(per_adapter[a][k]);
        } else {
          failed.push_back(load_keys[a][k]);
          Add(load_failures, 1);
          result.degraded = true;
        }
      }
      if (ok.empty()) continue;
      std::vector<ObjectView> views;
      (void)l1->FinishWriteAndReserveRead(ok, tag, readers, temporary, &views);  // NotFound: cancelled staging
      for (size_t k = 0; k < ok.size(); ++k) {
        if (views[k].data == nullptr) continue;  // staging cancelled (Clear(force)) or expired: a miss
        const Pos& p = to_load[ok_pos[k]];
        locked[p.row][p.index] = 1;
        loaded[p.row][p.index] = 1;
        Add(loaded_keys, 1);
        result.loaded_bytes += rows[p.row].object_bytes;
      }
    }
    if (!failed.empty()) l1->AbortWrite(failed, tag);

    // Phase 5: the final prefix; release everything beyond it, unlock L2.
    bound = std::min(bound, covered_prefix(limit, false));
    release_beyond(bound);
    for (size_t a = 0; a < adapters.size(); ++a) {
      if (!l2_locked[a].empty()) adapters[a]->SubmitUnlock(l2_locked[a]);
    }
    result.prefix_chunks = bound;
    for (size_t i = 0; i < bound; ++i) {
      bool any = false;
      for (size_t r = 0; r < R && !any; ++r) any = loaded[r][i] != 0;
      if (any) ++result.l2_hit_chunks;
    }
    result.l1_hit_chunks = bound - result.l2_hit_chunks;
    return result;
  }
};

PrefetchController::PrefetchController() : impl_(std::make_unique<Impl>()) {}

PrefetchController::~PrefetchController() { Close(); }

Result<std::unique_ptr<PrefetchController>> PrefetchController::Create(L1Store* l1, std::vector<L2Adapter*> adapters,
                                                                       const PrefetchControllerOptions& options) {
  if (l1 == nullptr) return Status::InvalidArgument("prefetch controller: the L1 store is null");
  if (adapters.empty()) return Status::InvalidArgument("prefetch controller: no L2 adapters");
  for (L2Adapter* a : adapters) {
    if (a == nullptr) return Status::InvalidArgument("prefetch controller: an L2 adapter is null");
  }
  if (options.max_in_flight < 1 || options.max_in_flight > 65536) {
    return Status::InvalidArgument("prefetch controller: max_in_flight must be in [1, 65536]");
  }
  if (options.task_timeout_ns <= 0) return Status::InvalidArgument("prefetch controller: task timeout must be positive");
  if (options.max_queued_requests == 0) {
    return Status::InvalidArgument("prefetch controller: max_queued_requests must be positive");
  }
  std::unique_ptr<PrefetchController> c(new PrefetchController());
  Impl& d = *c->impl_;
  d.l1 = l1;
  d.adapters = std::move(adapters);
  d.options = options;
  LMCACHE_RETURN_IF_ERROR(d.wake.Open());
  if (options.notifier != nullptr) {
    LMCACHE_RETURN_IF_ERROR(options.notifier->Register(d.wake.fd()));
    d.notifier_registered = true;
  }
  const size_t n = std::min(options.max_in_flight, kMaxPrefetchThreads);
  try {
    d.pump = std::thread([&d] { d.PumpLoop(); });
    for (size_t i = 0; i < n; ++i) d.workers.emplace_back([&d] { d.WorkerLoop(); });
  } catch (const std::system_error& e) {
    c->Close();
    return Status::Unavailable(std::string("cannot start the L2 prefetch threads: ") + e.what());
  }
  return c;
}

Result<PrefetchId> PrefetchController::Submit(PrefetchRequest request) {
  Impl& d = *impl_;
  if (request.readers < 1 || request.readers > 128) {
    return Status::InvalidArgument("prefetch: readers must be in 1..128, got " + std::to_string(request.readers));
  }
  size_t total = 0;
  for (const PrefetchRow& row : request.rows) {
    if (!row.keys.empty() && row.object_bytes == 0) {
      return Status::InvalidArgument("prefetch: a row with keys needs a positive object size");
    }
    total += row.keys.size();
  }
  if (total > 1) {
    std::unordered_set<ObjectKey, ObjectKeyHash> seen;
    seen.reserve(total);
    for (const PrefetchRow& row : request.rows) {
      for (const ObjectKey& k : row.keys) {
        if (!seen.insert(k).second) return Status::InvalidArgument("prefetch: key " + k.ToString() + " appears twice");
      }
    }
  }
  auto job = std::make_shared<Job>();
  job->request = std::move(request);
  {
    MutexLock lock(&d.mu);
    if (d.closing) return Status::Unavailable("prefetch controller is closed");
    if (d.queue.size() >= d.options.max_queued_requests) {
      return Status::Unavailable("prefetch queue is full (" + std::to_string(d.queue.size()) + " requests waiting)");
    }
    job->id = d.next_id++;
    d.jobs[job->id] = job;
    d.queue.push_back(job);
  }
  d.work_cv.NotifyOne();
  Impl::Add(d.submitted, 1);
  return job->id;
}

Result<std::optional<PrefetchResult>> PrefetchController::Query(PrefetchId id) { return Wait(id, 0); }

Result<std::optional<PrefetchResult>> PrefetchController::Wait(PrefetchId id, int64_t timeout_ns) {
  Impl& d = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns));
  MutexLock lock(&d.mu);
  for (;;) {
    auto it = d.jobs.find(id);
    if (it == d.jobs.end()) {
      return Status::NotFound("prefetch " + std::to_string(id) + " is unknown, cancelled or already collected");
    }
    if (it->second->state == JobState::kDone) {
      PrefetchResult r = it->second->result;
      d.jobs.erase(it);
      --d.results_pending;
      return std::optional<PrefetchResult>(r);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::optional<PrefetchResult>();
    d.done_cv.WaitFor(&d.mu, std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(100)));
  }
}

Status PrefetchController::Cancel(PrefetchId id) {
  Impl& d = *impl_;
  std::shared_ptr<Job> done;
  {
    MutexLock lock(&d.mu);
    auto it = d.jobs.find(id);
    if (it == d.jobs.end()) {
      return Status::NotFound("prefetch " + std::to_string(id) + " is unknown, cancelled or already collected");
    }
    std::shared_ptr<Job> job = it->second;
    d.jobs.erase(it);
    switch (job->state) {
      case JobState::kQueued:
        d.queue.erase(std::find(d.queue.begin(), d.queue.end(), job));
        break;
      case JobState::kRunning:
        job->cancelled = true;  // the worker releases what it holds when it finishes
        break;
      case JobState::kDone:
        --d.results_pending;
        done = job;
        break;
    }
  }
  d.done_cv.NotifyAll();
  Impl::Add(d.cancelled, 1);
  if (done) d.ReleasePrefix(done->request, done->result.prefix_chunks);
  return Status::OK();
}

void PrefetchController::BeginClose() {
  Impl& d = *impl_;
  std::vector<std::shared_ptr<Job>> done;
  {
    MutexLock lock(&d.mu);
    if (!d.closing) {
      d.closing = true;
      for (auto& [id, job] : d.jobs) {
        if (job->state == JobState::kDone) {
          done.push_back(job);
        } else if (job->state == JobState::kRunning) {
          job->cancelled = true;
        }
        Impl::Add(d.cancelled, 1);
      }
      d.jobs.clear();
      d.queue.clear();
      d.results_pending = 0;
    }
  }
  d.work_cv.NotifyAll();
  d.done_cv.NotifyAll();
  {
    MutexLock lock(&d.task_mu);
    d.abandon = true;
  }
  d.task_cv.NotifyAll();
  for (auto& job : done) d.ReleasePrefix(job->request, job->result.prefix_chunks);
  for (std::thread& t : d.workers) {
    if (t.joinable()) t.join();
  }
}

void PrefetchController::FinishClose() {
  Impl& d = *impl_;
  if (d.closed) return;
  {
    MutexLock lock(&d.task_mu);
    d.pump_stop = true;
  }
  d.wake.Signal();
  if (d.pump.joinable()) d.pump.join();
  if (d.notifier_registered) {
    (void)d.options.notifier->Unregister(d.wake.fd());
    d.notifier_registered = false;
  }
  d.closed = true;
}

void PrefetchController::Close() {
  BeginClose();
  FinishClose();
}

PrefetchControllerStats PrefetchController::Stats() const {
  const Impl& d = *impl_;
  PrefetchControllerStats s;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  s.submitted = get(d.submitted);
  s.completed = get(d.completed);
  s.cancelled = get(d.cancelled);
  s.l1_hit_chunks = get(d.l1_hit_chunks);
  s.l2_hit_chunks = get(d.l2_hit_chunks);
  s.prefix_chunks = get(d.prefix_chunks);
  s.l2_lookup_keys = get(d.l2_lookup_keys);
  s.l2_hit_keys = get(d.l2_hit_keys);
  s.loaded_keys = get(d.loaded_keys);
  s.loaded_bytes = get(d.loaded_bytes);
  s.lookup_failures = get(d.lookup_failures);
  s.load_failures = get(d.load_failures);
  s.timeouts = get(d.timeouts);
  s.no_space = get(d.no_space);
  {
    MutexLock lock(&d.mu);
    s.queued = d.queue.size();
    s.in_flight = d.in_flight;
    s.max_in_flight_seen = d.max_in_flight_seen;
    s.results_pending = d.results_pending;
    s.running = !d.closing;
  }
  {
    MutexLock lock(&d.task_mu);
    for (const auto& [k, slot] : d.slots) s.orphaned_tasks += slot.orphan ? 1 : 0;
  }
  return s;
}

const PrefetchControllerOptions& PrefetchController::options() const { return impl_->options; }

}  // namespace lmcache
