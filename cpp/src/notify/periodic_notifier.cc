// PeriodicNotifier implementation.
//
// One mutex (mu_) guards everything the tick thread shares with callers: the
// fd set, the counters and the stop flag. The thread holds mu_ while it
// writes to the fds, so Unregister(fd), which erases under mu_, cannot return
// while a write to that fd is in flight, and no later tick sees the fd. The
// writes are to nonblocking eventfds (8 bytes, never block), so holding mu_
// across them is cheap. The thread waits on a condition variable bound to
// mu_, which Stop() signals, so a long interval never delays Stop().
//
// Schedule: tick k happens at start + k x interval (absolute, no drift).
// When the thread falls behind by a whole interval or more (a stalled
// machine), the missed ticks are skipped rather than burst, keeping the
// phase.
//
// A second mutex (lifecycle_mu_) serializes Start/Stop and owns the
// std::thread object; it is never taken by the tick thread, so Stop can hold
// it while joining.
//
// Counters: `ticks` restarts at 0 on every Start ("since Start"); `writes`
// and `dropped_fds` are totals over the notifier's life.
#include "lmcache/notifier.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "util/mutex.h"

namespace lmcache {

namespace {

using SteadyClock = std::chrono::steady_clock;

// What happened to one eventfd write.
enum class WriteOutcome { kWritten, kSaturated, kBadFd, kOtherError };

WriteOutcome WriteOne(int fd) {
  const uint64_t one = 1;
  for (;;) {
    ssize_t n = ::write(fd, &one, sizeof(one));
    if (n == static_cast<ssize_t>(sizeof(one))) return WriteOutcome::kWritten;
    if (n >= 0) return WriteOutcome::kOtherError;  // short write: not an eventfd
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WriteOutcome::kSaturated;
    if (errno == EBADF) return WriteOutcome::kBadFd;
    return WriteOutcome::kOtherError;
  }
}

}  // namespace

struct PeriodicNotifier::Impl {
  explicit Impl(int64_t interval) : interval_ns(interval) {}

  void Run() EXCLUDES(mu);
  void TickLocked() REQUIRES(mu);

  const int64_t interval_ns;

  internal::Mutex lifecycle_mu;
  std::thread thread GUARDED_BY(lifecycle_mu);

  mutable internal::Mutex mu;
  internal::CondVar cv;  // signalled by Stop (bound to mu)
  std::vector<int> fds GUARDED_BY(mu);
  bool stop_requested GUARDED_BY(mu) = false;
  bool running GUARDED_BY(mu) = false;
  uint64_t ticks GUARDED_BY(mu) = 0;
  uint64_t writes GUARDED_BY(mu) = 0;
  uint64_t dropped_fds GUARDED_BY(mu) = 0;
};

void PeriodicNotifier::Impl::TickLocked() {
  size_t i = 0;
  while (i < fds.size()) {
    switch (WriteOne(fds[i])) {
      case WriteOutcome::kWritten:
        ++writes;
        ++i;
        break;
      case WriteOutcome::kBadFd:
        // Order of fds does not matter: swap-remove.
        fds[i] = fds.back();
        fds.pop_back();
        ++dropped_fds;
        break;
      case WriteOutcome::kSaturated:  // counter full: the reader has a wakeup pending
      case WriteOutcome::kOtherError:  // not ours to fix; keep trying next tick
        ++i;
        break;
    }
  }
  ++ticks;
}

void PeriodicNotifier::Impl::Run() {
  const SteadyClock::duration interval = std::chrono::nanoseconds(interval_ns);
  SteadyClock::time_point next = SteadyClock::now() + interval;
  internal::MutexLock lock(&mu);
  try {
    while (!stop_requested) {
      const SteadyClock::time_point now = SteadyClock::now();
      if (now < next) {
        // Wakes on Stop, on timeout or spuriously; the loop re-checks both.
        cv.WaitFor(&mu, next - now);
        continue;
      }
      TickLocked();
      next += interval;
      if (next <= now) {
        // Fell behind by at least one whole interval: skip the missed ticks.
        const auto behind = (now - next) / interval + 1;
        next += behind * interval;
      }
    }
  } catch (const std::exception& e) {
    // Nothing here is expected to throw; never let it escape the thread.
    std::fprintf(stderr, "lmcache: periodic notifier thread stopped: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "lmcache: periodic notifier thread stopped: unknown exception\n");
  }
}

PeriodicNotifier::PeriodicNotifier(int64_t interval_ns) {
  LMCACHE_CHECK(interval_ns > 0, "PeriodicNotifier interval_ns must be > 0");
  impl_ = std::make_unique<Impl>(interval_ns);
}

PeriodicNotifier::~PeriodicNotifier() { Stop(); }

Status PeriodicNotifier::Start() {
  internal::MutexLock lifecycle(&impl_->lifecycle_mu);
  if (impl_->thread.joinable()) return Status::Unavailable("periodic notifier is already running");
  {
    internal::MutexLock lock(&impl_->mu);
    impl_->stop_requested = false;
    impl_->ticks = 0;
    impl_->running = true;
  }
  try {
    Impl* impl = impl_.get();
    impl_->thread = std::thread([impl] { impl->Run(); });
  } catch (const std::system_error& e) {
    internal::MutexLock lock(&impl_->mu);
    impl_->running = false;
    return Status::Unavailable(std::string("periodic notifier: cannot create thread: ") + e.what());
  }
  return Status::OK();
}

void PeriodicNotifier::Stop() {
  internal::MutexLock lifecycle(&impl_->lifecycle_mu);
  if (!impl_->thread.joinable()) return;
  {
    internal::MutexLock lock(&impl_->mu);
    impl_->stop_requested = true;
    impl_->cv.NotifyAll();
  }
  impl_->thread.join();
  internal::MutexLock lock(&impl_->mu);
  impl_->running = false;
}

Status PeriodicNotifier::Register(int fd) {
  if (fd < 0) return Status::InvalidArgument("periodic notifier: fd must be >= 0, got " + std::to_string(fd));
  internal::MutexLock lock(&impl_->mu);
  auto& fds = impl_->fds;
  if (std::find(fds.begin(), fds.end(), fd) != fds.end()) {
    return Status::AlreadyExists("periodic notifier: fd " + std::to_string(fd) + " is already registered");
  }
  fds.push_back(fd);
  return Status::OK();
}

Status PeriodicNotifier::Unregister(int fd) {
  // Holding mu excludes a tick in progress: once erased here, the fd is
  // never written again.
  internal::MutexLock lock(&impl_->mu);
  auto& fds = impl_->fds;
  auto it = std::find(fds.begin(), fds.end(), fd);
  if (it == fds.end()) {
    return Status::NotFound("periodic notifier: fd " + std::to_string(fd) + " is not registered");
  }
  fds.erase(it);
  return Status::OK();
}

NotifierStats PeriodicNotifier::Stats() const {
  internal::MutexLock lock(&impl_->mu);
  NotifierStats s;
  s.ticks = impl_->ticks;
  s.writes = impl_->writes;
  s.dropped_fds = impl_->dropped_fds;
  s.registered_fds = impl_->fds.size();
  s.running = impl_->running;
  return s;
}

int64_t PeriodicNotifier::interval_ns() const { return impl_->interval_ns; }

}  // namespace lmcache
