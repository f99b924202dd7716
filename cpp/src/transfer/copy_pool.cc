// CopyPool: persistent worker threads that split one batch of copy items.
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "lmcache/transfer.h"
#include "util/mutex.h"

namespace lmcache {

struct CopyPool::Impl {
  internal::Mutex mu;
  internal::CondVar work_cv;
  internal::CondVar done_cv;
  uint64_t generation GUARDED_BY(mu) = 0;
  bool stop GUARDED_BY(mu) = false;
  const std::function<void(size_t)>* fn GUARDED_BY(mu) = nullptr;
  size_t n GUARDED_BY(mu) = 0;
  uint32_t active GUARDED_BY(mu) = 0;  // workers not yet done with the batch
  std::atomic<size_t> next{0};         // next item to claim
  std::mutex batch;                    // one batch at a time
  std::vector<std::thread> workers;

  void WorkerLoop() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(size_t)>* f;
      size_t count;
      {
        internal::MutexLock lock(&mu);
        while (!stop && generation == seen) work_cv.Wait(&mu);
        if (stop) return;
        seen = generation;
        f = fn;
        count = n;
      }
      for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) (*f)(i);
      internal::MutexLock lock(&mu);
      if (--active == 0) done_cv.NotifyAll();
    }
  }
};

CopyPool::CopyPool(uint32_t threads) : threads_(threads == 0 ? 1 : threads), impl_(std::make_unique<Impl>()) {
  for (uint32_t i = 1; i < threads_; ++i) impl_->workers.emplace_back([this] { impl_->WorkerLoop(); });
}

CopyPool::~CopyPool() {
  {
    internal::MutexLock lock(&impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.NotifyAll();
  for (std::thread& t : impl_->workers) t.join();
}

void CopyPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  std::unique_lock<std::mutex> batch(impl_->batch, std::defer_lock);
  if (threads_ == 1 || n <= 1 || !batch.try_lock()) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Impl& s = *impl_;
  {
    internal::MutexLock lock(&s.mu);
    s.fn = &fn;
    s.n = n;
    s.next.store(0, std::memory_order_relaxed);
    s.active = static_cast<uint32_t>(s.workers.size());
    ++s.generation;
  }
  s.work_cv.NotifyAll();
  for (size_t i; (i = s.next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  internal::MutexLock lock(&s.mu);
  while (s.active > 0) s.done_cv.Wait(&s.mu);
  s.fn = nullptr;
}

}  // namespace lmcache
