// Clock: the time source for lock TTLs, eviction ticks and liveness.
//
// Everything in lmcache that compares against a deadline takes a Clock* so
// tests can drive time by hand (ManualClock). Times are nanoseconds on a
// monotonic scale; only differences are meaningful.
//
// Thread safety: all implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace lmcache {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNs() const = 0;
  // The process-wide steady clock. Never null, never freed.
  static Clock* Default();
};

// A clock that moves only when told to. Starts at `start_ns`.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 1'000'000'000) : now_(start_ns) {}
  int64_t NowNs() const override { return now_.load(std::memory_order_acquire); }
  void Advance(int64_t ns) { now_.fetch_add(ns, std::memory_order_acq_rel); }
  void AdvanceSeconds(double s) { Advance(static_cast<int64_t>(s * 1e9)); }

 private:
  std::atomic<int64_t> now_;
};

inline constexpr int64_t SecondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

}  // namespace lmcache
