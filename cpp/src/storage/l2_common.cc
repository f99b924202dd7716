#include "storage/l2_common.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace lmcache::internal {

Result<std::unique_ptr<L2Completions>> L2Completions::Create() {
  std::unique_ptr<L2Completions> c(new L2Completions());
  for (int& fd : c->fds_) {
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return Status::FromErrno("eventfd", errno);  // the destructor closes the others
  }
  return c;
}

L2Completions::~L2Completions() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

void L2Completions::Signal(int fd) {
  const uint64_t one = 1;
  ssize_t r;
  do {
    r = write(fd, &one, sizeof(one));
  } while (r < 0 && errno == EINTR);
}

void L2Completions::PublishStore(L2TaskId id, L2StoreResult result) {
  {
    MutexLock lock(&mu_);
    stores_.emplace_back(id, std::move(result));
  }
  Signal(store_fd());
}

void L2Completions::PublishLookup(L2TaskId id, L2Bitmap bits) {
  {
    MutexLock lock(&mu_);
    lookups_[id] = std::move(bits);
  }
  Signal(lookup_fd());
}

void L2Completions::PublishLoad(L2TaskId id, L2Bitmap bits) {
  {
    MutexLock lock(&mu_);
    loads_[id] = std::move(bits);
  }
  Signal(load_fd());
}

std::vector<std::pair<L2TaskId, L2StoreResult>> L2Completions::PopStores() {
  MutexLock lock(&mu_);
  std::vector<std::pair<L2TaskId, L2StoreResult>> out;
  out.swap(stores_);
  return out;
}

std::optional<L2Bitmap> L2Completions::TakeLookup(L2TaskId id) {
  MutexLock lock(&mu_);
  auto it = lookups_.find(id);
  if (it == lookups_.end()) return std::nullopt;
  L2Bitmap bits = std::move(it->second);
  lookups_.erase(it);
  return bits;
}

std::optional<L2Bitmap> L2Completions::TakeLoad(L2TaskId id) {
  MutexLock lock(&mu_);
  auto it = loads_.find(id);
  if (it == loads_.end()) return std::nullopt;
  L2Bitmap bits = std::move(it->second);
  loads_.erase(it);
  return bits;
}

Status WorkerPool::Start(int num_threads, std::function<void(int)> init) {
  for (int i = 0; i < num_threads; ++i) {
    try {
      threads_.emplace_back([this, i, init] {
        if (init) init(i);
        Loop(i);
      });
    } catch (const std::system_error& e) {
      Shutdown();
      return Status::Unavailable(std::string("cannot start L2 worker thread: ") + e.what());
    }
  }
  return Status::OK();
}

bool WorkerPool::Submit(Job job) {
  {
    MutexLock lock(&mu_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.NotifyOne();
  return true;
}

size_t WorkerPool::queued() const {
  MutexLock lock(&mu_);
  return jobs_.size();
}

void WorkerPool::Loop(int worker) {
  for (;;) {
    Job job;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && jobs_.empty()) cv_.Wait(&mu_);
      if (stopping_) return;  // queued jobs are cancelled by Shutdown
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job(worker);
  }
}

void WorkerPool::Shutdown() {
  MutexLock serial(&shutdown_mu_);
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  std::deque<Job> left;
  {
    MutexLock lock(&mu_);
    left.swap(jobs_);
  }
  for (Job& job : left) job(-1);
}

Status ValidateBatch(std::span<const ObjectKey> keys, std::span<const ObjectView> views, const char* what) {
  if (keys.size() != views.size()) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(keys.size()) + " keys but " +
                                   std::to_string(views.size()) + " buffers");
  }
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i].data == nullptr || views[i].size == 0) {
      return Status::InvalidArgument(std::string(what) + ": buffer " + std::to_string(i) + " is empty");
    }
  }
  return Status::OK();
}

Status ClosedStatus(const std::string& type) {
  return Status::Unavailable("L2 adapter '" + type + "' is closed");
}

// ---- L2AdapterBase ----

L2AdapterBase::L2AdapterBase(const L2CommonConfig& common, std::unique_ptr<L2Completions> completions)
    : common_(common), completions_(std::move(completions)) {
  LMCACHE_CHECK(completions_ != nullptr, "L2AdapterBase needs an L2Completions");
}

// ---- BatchedL2Adapter ----

BatchedL2Adapter::BatchedL2Adapter(const L2CommonConfig& common, std::unique_ptr<L2Completions> completions,
                                   L2Spread spread)
    : L2AdapterBase(common, std::move(completions)), spread_(spread) {
  LMCACHE_CHECK(spread_.max_jobs >= 1 && spread_.keys_per_job >= 1, "L2Spread needs max_jobs, keys_per_job >= 1");
}

BatchedL2Adapter::~BatchedL2Adapter() {
  MutexLock lock(&close_mu_);
  // Jobs call the adapter's hooks: they must be gone before it is.
  LMCACHE_CHECK(close_done_, "an adapter derived from BatchedL2Adapter must call Close() in its destructor");
}

Result<L2TaskId> BatchedL2Adapter::SubmitStore(std::span<const ObjectKey> keys, std::span<const ObjectView> objects) {
  LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, objects, "SubmitStore"));
  if (closed_.load()) return ClosedStatus(common_.type);
  Bump(counters_.store_tasks);
  BatchPtr b = NewBatch(Kind::kStore, keys, objects);
  if (!keys.empty()) StartStore(b);
  return b->id;
}

Result<L2TaskId> BatchedL2Adapter::SubmitLookupAndLock(std::span<const ObjectKey> keys) {
  if (closed_.load()) return ClosedStatus(common_.type);
  Bump(counters_.lookup_tasks);
  BatchPtr b = NewBatch(Kind::kLookup, keys, {});
  if (!keys.empty()) StartLookup(b);
  return b->id;
}

Result<L2TaskId> BatchedL2Adapter::SubmitLoad(std::span<const ObjectKey> keys, std::span<const ObjectView> buffers) {
  LMCACHE_RETURN_IF_ERROR(ValidateBatch(keys, buffers, "SubmitLoad"));
  if (closed_.load()) return ClosedStatus(common_.type);
  Bump(counters_.load_tasks);
  BatchPtr b = NewBatch(Kind::kLoad, keys, buffers);
  if (!keys.empty()) Run(b, spread_);
  return b->id;
}

void BatchedL2Adapter::Close() {
  closed_.store(true);
  MutexLock serial(&close_mu_);
  if (close_done_) return;
  StopWorkers([this] { pool_.Shutdown(); });
  OnClose();
  close_done_ = true;
}

bool BatchedL2Adapter::StoreKey(const ObjectKey&, const ObjectView&, int, std::atomic<uint64_t>*) { return false; }
bool BatchedL2Adapter::LoadKey(const ObjectKey&, const ObjectView&, int) { return false; }
bool BatchedL2Adapter::ProbeKey(const ObjectKey&, int) { return false; }

void BatchedL2Adapter::RunKeys(Batch& b, size_t begin, size_t end, int worker) {
  for (size_t p = begin; p < end; ++p) {
    const size_t i = b.KeyAt(p);
    switch (b.kind) {
      case Kind::kStore: b.ok[i] = StoreKey(b.keys[i], b.views[i], worker, &b.bytes) ? 1 : 0; break;
      case Kind::kLoad: b.ok[i] = LoadKey(b.keys[i], b.views[i], worker) ? 1 : 0; break;
      case Kind::kLookup:
        if (ProbeKey(b.keys[i], worker)) b.ok[i] = 1;
        break;
    }
  }
}

void BatchedL2Adapter::StartLookup(const BatchPtr& b) { Run(b, spread_); }

void BatchedL2Adapter::StartStore(const BatchPtr& b) { Run(b, spread_); }

bool BatchedL2Adapter::Enqueue(const Batch& /*b*/, WorkerPool::Job job) { return pool_.Submit(std::move(job)); }

Status BatchedL2Adapter::StartWorkers(int num_threads, std::function<void(int)> init) {
  return pool_.Start(num_threads, std::move(init));
}

BatchedL2Adapter::BatchPtr BatchedL2Adapter::NewBatch(Kind kind, std::span<const ObjectKey> keys,
                                                      std::span<const ObjectView> views) {
  auto b = std::make_shared<Batch>();
  b->id = completions().NextId();
  b->kind = kind;
  b->keys.assign(keys.begin(), keys.end());
  b->views.assign(views.begin(), views.end());
  b->ok.assign(keys.size(), 0);
  pending_.fetch_add(1);
  if (keys.empty()) Publish(*b);
  return b;
}

void BatchedL2Adapter::Run(const BatchPtr& b, L2Spread spread) {
  const size_t n = b->work_size();
  LMCACHE_CHECK(n > 0, "BatchedL2Adapter::Run of a batch without work");
  b->remaining.store(n);
  b->next.store(0);
  const size_t max_jobs = std::max<size_t>(1, spread.max_jobs);
  if (spread.mode == L2Spread::Mode::kClaim) {
    const size_t per_job = std::max<size_t>(1, spread.keys_per_job);
    const size_t jobs = std::min((n + per_job - 1) / per_job, max_jobs);
    for (size_t j = 0; j < jobs; ++j) {
      Dispatch(b, [this, b, n](int w) {
        for (size_t p = b->next.fetch_add(1); p < n; p = b->next.fetch_add(1)) {
          Complete(*b, p, p + 1, w >= 0 && closed_.load() ? -1 : w);
        }
      });
    }
    return;
  }
  const size_t slices = std::min(n, max_jobs);
  for (size_t s = 0; s < slices; ++s) {
    const size_t begin = n * s / slices, end = n * (s + 1) / slices;
    Dispatch(b, [this, b, begin, end](int w) { Complete(*b, begin, end, w >= 0 && closed_.load() ? -1 : w); });
  }
}

void BatchedL2Adapter::Dispatch(const BatchPtr& b, const WorkerPool::Job& job) {
  if (!Enqueue(*b, job)) job(-1);  // closed meanwhile: complete as cancelled
}

void BatchedL2Adapter::Complete(Batch& b, size_t begin, size_t end, int worker) {
  if (worker >= 0) {
    RunKeys(b, begin, end, worker);
  } else if (b.kind == Kind::kLookup) {
    b.cancelled.store(true);
  }
  uint64_t good = 0, good_bytes = 0;
  for (size_t p = begin; p < end; ++p) {
    const size_t i = b.KeyAt(p);
    if (b.ok[i]) {
      ++good;
      if (b.kind == Kind::kLoad) good_bytes += b.views[i].size;
    }
  }
  const uint64_t bad = (end - begin) - good;
  switch (b.kind) {
    case Kind::kStore:
      if (bad > 0) Bump(counters_.store_failures, bad);
      break;
    case Kind::kLoad:
      if (good > 0) {
        Bump(counters_.loaded_objects, good);
        Bump(counters_.loaded_bytes, good_bytes);
      }
      if (bad > 0) Bump(counters_.load_misses, bad);
      break;
    case Kind::kLookup: break;  // counted from the final bits at Publish
  }
  if (b.remaining.fetch_sub(end - begin, std::memory_order_acq_rel) == end - begin) Publish(b);
}

void BatchedL2Adapter::FinishInline(const BatchPtr& b, const L2Bitmap& bits) {
  for (size_t i = 0; i < bits.size(); ++i) b->ok[i] = bits[i] ? 1 : 0;
  b->remaining.store(0);
  Publish(*b);
}

void BatchedL2Adapter::ProbeMisses(const BatchPtr& b, const L2Bitmap& bits, L2Spread spread) {
  b->todo.clear();
  for (size_t i = 0; i < bits.size(); ++i) {
    b->ok[i] = bits[i] ? 1 : 0;
    if (!bits[i]) b->todo.push_back(i);
  }
  if (b->todo.empty()) {
    b->remaining.store(0);
    Publish(*b);
    return;
  }
  Run(b, spread);
}

void BatchedL2Adapter::Publish(Batch& b) {
  BeforePublish(b);
  if (b.kind == Kind::kLookup) {
    if (b.cancelled.load()) {  // Close cancelled part of it: fail the whole task, give its locks back
      std::vector<ObjectKey> locked;
      for (size_t i = 0; i < b.keys.size(); ++i) {
        if (b.ok[i]) locked.push_back(b.keys[i]);
      }
      if (!locked.empty()) SubmitUnlock(locked);
      std::fill(b.ok.begin(), b.ok.end(), 0);
    }
    const auto hits = static_cast<uint64_t>(std::count(b.ok.begin(), b.ok.end(), uint8_t{1}));
    Bump(counters_.lookup_hits, hits);
    Bump(counters_.lookup_misses, b.keys.size() - hits);
  }
  L2Bitmap bits(b.ok.size());
  bool all = true;
  for (size_t i = 0; i < b.ok.size(); ++i) {
    bits[i] = b.ok[i] != 0;
    all = all && bits[i];
  }
  pending_.fetch_sub(1);  // before the result is visible: a caller holding it sees no pending task
  switch (b.kind) {
    case Kind::kStore: completions().PublishStore(b.id, L2StoreResult{all, std::move(bits), b.bytes.load()}); break;
    case Kind::kLookup: completions().PublishLookup(b.id, std::move(bits)); break;
    case Kind::kLoad: completions().PublishLoad(b.id, std::move(bits)); break;
  }
}

L2Status BatchedL2Adapter::BaseStatus() const {
  L2Status s;
  s.type = common_.type;
  s.counters = counters_.Snapshot();
  s.pending_tasks = pending_.load();
  if (closed_.load()) {
    s.healthy = false;
    s.message = "closed";
  }
  return s;
}

}  // namespace lmcache::internal
