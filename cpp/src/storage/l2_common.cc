#include "storage/l2_common.h"

#include <sys/eventfd.h>
#include <unistd.h>

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

}  // namespace lmcache::internal
