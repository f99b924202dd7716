// EvictionController: the background thread that keeps L1 below its
// watermark (compat reference §12.5, with memory counted in bytes).
//
// Every `interval` (1 s by default) it:
//   1. sweeps expired locks (L1Store::SweepExpired);
//   2. if used/capacity >= trigger_watermark, evicts eviction_ratio x used
//      bytes in policy order (never a locked object);
//   3. enforces per-salt quotas when the policy has them (IsolatedLRU).
// Eviction on the allocation path is separate (ReserveWrite evicts
// synchronously); this thread only keeps headroom.
//
// Health: healthy() is true while the thread runs and its last tick ended
// within max(3 x interval, 5 s). Nothing thrown escapes the thread; a tick
// that fails is counted and logged in last_error.
//
// Thread safety: thread-safe. The store must outlive the controller.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "lmcache/l1_store.h"
#include "lmcache/status.h"

namespace lmcache {

struct EvictionControllerOptions {
  double trigger_watermark = 0.8;  // REQUIRES: 0 < x <= 1
  double eviction_ratio = 0.2;     // REQUIRES: 0 < x <= 1
  int64_t interval_ns = 1'000'000'000;
};

struct EvictionControllerStats {
  uint64_t ticks = 0;
  uint64_t evictions_triggered = 0;
  uint64_t evicted_bytes = 0;
  uint64_t quota_evicted_bytes = 0;
  uint64_t swept = 0;
  uint64_t failed_ticks = 0;
  int64_t last_tick_ns = 0;
  bool thread_alive = false;
  bool healthy = false;
  std::string last_error;
};

class EvictionController {
 public:
  // InvalidArgument for out-of-range options.
  static Result<std::unique_ptr<EvictionController>> Create(L1Store* store,
                                                            const EvictionControllerOptions& options);
  ~EvictionController();  // Stop()
  EvictionController(const EvictionController&) = delete;
  EvictionController& operator=(const EvictionController&) = delete;

  Status Start();
  void Stop();
  // One tick on the caller's thread (what the thread does each interval).
  void RunOnce();
  bool healthy() const;
  EvictionControllerStats Stats() const;
  const EvictionControllerOptions& options() const;

 private:
  EvictionController();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmcache
