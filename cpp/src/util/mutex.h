// Mutex with clang thread-safety annotations (checked by -Wthread-safety in
// the clang CI build; no-ops under gcc). Use GUARDED_BY on shared members and
// REQUIRES on helpers that expect the lock to be held.
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define LMC_TSA(x) __attribute__((x))
#else
#define LMC_TSA(x)
#endif

#define CAPABILITY(x) LMC_TSA(capability(x))
#define SCOPED_CAPABILITY LMC_TSA(scoped_lockable)
#define GUARDED_BY(x) LMC_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) LMC_TSA(pt_guarded_by(x))
#define REQUIRES(...) LMC_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) LMC_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) LMC_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) LMC_TSA(release_capability(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS LMC_TSA(no_thread_safety_analysis)

namespace lmcache::internal {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// Condition variable bound to a Mutex. Wait* REQUIRE the mutex held.
class CondVar {
 public:
  void Wait(Mutex* mu) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
    std::unique_lock<std::mutex> lk(mu->native(), std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // Returns false on timeout.
  template <class Rep, class Period>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> d) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
    std::unique_lock<std::mutex> lk(mu->native(), std::adopt_lock);
    bool ok = cv_.wait_for(lk, d) == std::cv_status::no_timeout;
    lk.release();
    return ok;
  }
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace lmcache::internal
