// Tests for lmcache::PeriodicNotifier (lmcache/notifier.h).
//
// Timing assertions are deliberately loose: CI machines are small and noisy
// and these tests also run under TSAN. Exact checks use properties that do
// not depend on scheduling (the eventfd counter equals the writes counted,
// no write after Unregister/Stop, ticks never exceed the schedule).
#include "lmcache/notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace lmcache {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kMs = 1'000'000;

// An eventfd(0, EFD_NONBLOCK) closed on destruction.
class EventFd {
 public:
  EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~EventFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;
  int fd() const { return fd_; }

  // Reads and resets the counter; 0 when nothing was written (EAGAIN).
  uint64_t Drain() const {
    uint64_t v = 0;
    for (;;) {
      ssize_t n = ::read(fd_, &v, sizeof(v));
      if (n == static_cast<ssize_t>(sizeof(v))) return v;
      if (n < 0 && errno == EINTR) continue;
      EXPECT_TRUE(n < 0 && errno == EAGAIN) << "unexpected eventfd read result " << n << " errno " << errno;
      return 0;
    }
  }

 private:
  int fd_;
};

// Polls `pred` every millisecond until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout = milliseconds(5000)) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!pred()) {
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

TEST(PeriodicNotifierTest, IntervalAccessor) {
  PeriodicNotifier n(5 * kMs);
  EXPECT_EQ(n.interval_ns(), 5 * kMs);
  NotifierStats s = n.Stats();
  EXPECT_FALSE(s.running);
  EXPECT_EQ(s.ticks, 0u);
  EXPECT_EQ(s.writes, 0u);
  EXPECT_EQ(s.registered_fds, 0u);
}

TEST(PeriodicNotifierTest, TicksArriveAtRoughlyTheInterval) {
  constexpr int64_t kInterval = 10 * kMs;
  EventFd a, b;
  ASSERT_GE(a.fd(), 0);
  ASSERT_GE(b.fd(), 0);
  PeriodicNotifier n(kInterval);
  ASSERT_TRUE(n.Register(a.fd()).ok());
  ASSERT_TRUE(n.Register(b.fd()).ok());
  EXPECT_EQ(n.Stats().registered_fds, 2u);

  const auto t0 = SteadyClock::now();
  ASSERT_TRUE(n.Start().ok());
  EXPECT_TRUE(n.Stats().running);
  std::this_thread::sleep_for(milliseconds(400));
  n.Stop();
  const int64_t elapsed_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count();

  NotifierStats s = n.Stats();
  EXPECT_FALSE(s.running);
  // The absolute schedule never runs ahead: tick k is at start + k x interval.
  EXPECT_LE(s.ticks, static_cast<uint64_t>(elapsed_ns / kInterval) + 1);
  // ~40 expected; very loose lower bound for slow/sanitized machines.
  EXPECT_GE(s.ticks, 5u);
  // Every tick writes 1 to each fd (no saturation here), and eventfd adds up.
  EXPECT_EQ(s.writes, 2 * s.ticks);
  EXPECT_EQ(a.Drain(), s.ticks);
  EXPECT_EQ(b.Drain(), s.ticks);
  // Nothing is written after Stop returns.
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(a.Drain(), 0u);
  EXPECT_EQ(n.Stats().ticks, s.ticks);
}

TEST(PeriodicNotifierTest, RegisterAndUnregisterWhileRunning) {
  constexpr int64_t kInterval = 5 * kMs;
  EventFd a, b;
  PeriodicNotifier n(kInterval);
  ASSERT_TRUE(n.Register(a.fd()).ok());
  ASSERT_TRUE(n.Start().ok());

  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= 2; }));
  ASSERT_TRUE(n.Register(b.fd()).ok());
  EXPECT_EQ(n.Stats().registered_fds, 2u);
  uint64_t got_b = 0;
  ASSERT_TRUE(WaitFor([&] {
    got_b += b.Drain();
    return got_b >= 2;
  }));

  // Unregister b: after it returns, nothing more is written to b.
  ASSERT_TRUE(n.Unregister(b.fd()).ok());
  EXPECT_EQ(n.Stats().registered_fds, 1u);
  b.Drain();
  const uint64_t ticks_before = n.Stats().ticks;
  // Several intervals pass (and a keeps getting ticks) ...
  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= ticks_before + 5; }));
  // ... but b stays silent.
  EXPECT_EQ(b.Drain(), 0u);
  EXPECT_GT(a.Drain(), 0u);

  EXPECT_EQ(n.Unregister(b.fd()).code(), StatusCode::kNotFound);
  n.Stop();
}

TEST(PeriodicNotifierTest, NoWriteAfterUnregisterReturnsRepeated) {
  // Races Unregister against ticks many times; with a 1 ms interval a tick is
  // often in progress when Unregister is called.
  PeriodicNotifier n(1 * kMs);
  ASSERT_TRUE(n.Start().ok());
  EventFd e;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(n.Register(e.fd()).ok());
    std::this_thread::sleep_for(std::chrono::microseconds(300 + 97 * (i % 17)));
    ASSERT_TRUE(n.Unregister(e.fd()).ok());
    e.Drain();
    const uint64_t t = n.Stats().ticks;
    ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= t + 2; }));
    ASSERT_EQ(e.Drain(), 0u) << "write after Unregister returned (iteration " << i << ")";
  }
  n.Stop();
}

TEST(PeriodicNotifierTest, ClosedFdIsDropped) {
  EventFd keep;
  // Duplicate onto a high fd number and close it. New fds always take the
  // lowest free number, so nothing in this process reuses it during the test
  // (unless ~900 fds are open, which the ASSERT below rules out).
  int src = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(src, 0);
  const int high = ::fcntl(src, F_DUPFD_CLOEXEC, 900);
  ASSERT_GE(high, 900);
  ::close(src);
  ASSERT_LT(keep.fd(), 900);

  PeriodicNotifier n(2 * kMs);
  ASSERT_TRUE(n.Register(keep.fd()).ok());
  ASSERT_TRUE(n.Register(high).ok());
  ASSERT_EQ(::close(high), 0);
  ASSERT_EQ(::fcntl(high, F_GETFD), -1);  // really closed

  ASSERT_TRUE(n.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return n.Stats().dropped_fds >= 1; }));
  NotifierStats s = n.Stats();
  EXPECT_EQ(s.dropped_fds, 1u);
  EXPECT_EQ(s.registered_fds, 1u);
  // The dropped fd is gone from the set; the other one keeps ticking.
  EXPECT_EQ(n.Unregister(high).code(), StatusCode::kNotFound);
  const uint64_t t = s.ticks;
  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= t + 2; }));
  n.Stop();
  s = n.Stats();
  EXPECT_EQ(s.dropped_fds, 1u);
  EXPECT_EQ(keep.Drain(), s.ticks);
  EXPECT_EQ(s.writes, s.ticks);
}

TEST(PeriodicNotifierTest, SaturatedCounterIsIgnored) {
  EventFd e;
  // Bring the counter to its maximum (0xfffffffffffffffe): every further
  // write fails with EAGAIN, which must not drop the fd.
  const uint64_t max = 0xfffffffffffffffeull;
  ASSERT_EQ(::write(e.fd(), &max, sizeof(max)), static_cast<ssize_t>(sizeof(max)));
  PeriodicNotifier n(2 * kMs);
  ASSERT_TRUE(n.Register(e.fd()).ok());
  ASSERT_TRUE(n.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= 3; }));
  n.Stop();
  NotifierStats s = n.Stats();
  EXPECT_EQ(s.writes, 0u);
  EXPECT_EQ(s.dropped_fds, 0u);
  EXPECT_EQ(s.registered_fds, 1u);
  EXPECT_EQ(e.Drain(), max);
}

TEST(PeriodicNotifierTest, StopIsIdempotentAndPrompt) {
  EventFd e;
  PeriodicNotifier n(10'000 * kMs);  // 10 s
  n.Stop();  // before Start: no-op
  ASSERT_TRUE(n.Register(e.fd()).ok());
  ASSERT_TRUE(n.Start().ok());
  std::this_thread::sleep_for(milliseconds(20));
  const auto t0 = SteadyClock::now();
  n.Stop();
  EXPECT_LT(SteadyClock::now() - t0, milliseconds(1000));
  EXPECT_FALSE(n.Stats().running);
  EXPECT_EQ(n.Stats().ticks, 0u);  // the first tick is one interval after Start
  EXPECT_EQ(e.Drain(), 0u);
  n.Stop();
  n.Stop();
  EXPECT_FALSE(n.Stats().running);
}

TEST(PeriodicNotifierTest, DestructorStopsPromptly) {
  const auto t0 = SteadyClock::now();
  {
    PeriodicNotifier n(10'000 * kMs);
    ASSERT_TRUE(n.Start().ok());
  }
  EXPECT_LT(SteadyClock::now() - t0, milliseconds(1000));
}

TEST(PeriodicNotifierTest, StartWhileRunningIsUnavailable) {
  PeriodicNotifier n(5 * kMs);
  ASSERT_TRUE(n.Start().ok());
  EXPECT_EQ(n.Start().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(n.Stats().running);
  n.Stop();
}

TEST(PeriodicNotifierTest, RestartAfterStop) {
  EventFd e;
  PeriodicNotifier n(2 * kMs);
  ASSERT_TRUE(n.Register(e.fd()).ok());
  ASSERT_TRUE(n.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= 2; }));
  n.Stop();
  const uint64_t first_writes = n.Stats().writes;
  EXPECT_EQ(e.Drain(), first_writes);

  // Registration survives Stop; ticks restart from 0, writes keep adding up.
  ASSERT_TRUE(n.Start().ok());
  EXPECT_TRUE(n.Stats().running);
  ASSERT_TRUE(WaitFor([&] { return n.Stats().ticks >= 2; }));
  n.Stop();
  NotifierStats s = n.Stats();
  EXPECT_FALSE(s.running);
  EXPECT_EQ(s.writes, first_writes + s.ticks);
  EXPECT_EQ(e.Drain(), s.ticks);
}

TEST(PeriodicNotifierTest, BadArguments) {
  EventFd e;
  PeriodicNotifier n(5 * kMs);
  EXPECT_EQ(n.Register(-1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(n.Register(-42).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(n.Register(e.fd()).ok());
  EXPECT_EQ(n.Register(e.fd()).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(n.Stats().registered_fds, 1u);
  EXPECT_EQ(n.Unregister(e.fd() + 1000).code(), StatusCode::kNotFound);
  EXPECT_EQ(n.Unregister(-1).code(), StatusCode::kNotFound);
  ASSERT_TRUE(n.Unregister(e.fd()).ok());
  EXPECT_EQ(n.Unregister(e.fd()).code(), StatusCode::kNotFound);
  EXPECT_EQ(n.Stats().registered_fds, 0u);
}

TEST(PeriodicNotifierDeathTest, NonPositiveIntervalIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(PeriodicNotifier(0), "interval_ns");
  EXPECT_DEATH(PeriodicNotifier(-5), "interval_ns");
}

TEST(PeriodicNotifierTest, ConcurrentRegistrationStress) {
  // Several threads register/unregister their own fds and read Stats while
  // the notifier ticks fast and is stopped/restarted; checked by TSAN.
  PeriodicNotifier n(1 * kMs);
  ASSERT_TRUE(n.Start().ok());
  constexpr int kThreads = 4;
  std::vector<EventFd> fds(kThreads);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int fd = fds[t].fd();
      for (int i = 0; i < 200; ++i) {
        if (!n.Register(fd).ok()) failed = true;
        if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        (void)n.Stats();
        if (!n.Unregister(fd).ok()) failed = true;
      }
    });
  }
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
    n.Stop();
    ASSERT_TRUE(n.Start().ok());
  }
  for (auto& th : threads) th.join();
  n.Stop();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(n.Stats().registered_fds, 0u);
  EXPECT_EQ(n.Stats().dropped_fds, 0u);
  uint64_t total = 0;
  for (auto& e : fds) total += e.Drain();
  EXPECT_EQ(total, n.Stats().writes);
}

}  // namespace
}  // namespace lmcache
