#include "lmcache/eviction_controller.h"

#include <algorithm>
#include <exception>
#include <thread>

#include "util/mutex.h"

namespace lmcache {

using internal::CondVar;
using internal::Mutex;
using internal::MutexLock;

struct EvictionController::Impl {
  L1Store* store = nullptr;
  EvictionControllerOptions options;

  std::thread thread;
  mutable Mutex mu;
  CondVar cv;
  bool stop GUARDED_BY(mu) = false;
  bool running GUARDED_BY(mu) = false;
  EvictionControllerStats stats GUARDED_BY(mu);

  void Tick() {
    EvictionControllerStats delta;
    std::string error;
    try {
      delta.swept = store->SweepExpired();
      L1Stats st = store->Stats();
      const double usage =
          st.capacity_bytes == 0 ? 0.0 : static_cast<double>(st.used_bytes) / static_cast<double>(st.capacity_bytes);
      if (usage >= options.trigger_watermark) {
        delta.evictions_triggered = 1;
        uint64_t target = static_cast<uint64_t>(options.eviction_ratio * static_cast<double>(st.used_bytes));
        delta.evicted_bytes = store->EvictBytes(std::max<uint64_t>(target, 1));
      }
      delta.quota_evicted_bytes = store->EnforceQuotas(options.trigger_watermark, options.eviction_ratio);
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    MutexLock lock(&mu);
    stats.ticks += 1;
    stats.swept += delta.swept;
    stats.evictions_triggered += delta.evictions_triggered;
    stats.evicted_bytes += delta.evicted_bytes;
    stats.quota_evicted_bytes += delta.quota_evicted_bytes;
    stats.last_tick_ns = store->clock()->NowNs();
    if (!error.empty()) {
      stats.failed_ticks += 1;
      stats.last_error = error;
    }
  }

  void Loop() {
    auto next = std::chrono::steady_clock::now();
    while (true) {
      next += std::chrono::nanoseconds(options.interval_ns);
      {
        MutexLock lock(&mu);
        while (!stop) {
          auto now = std::chrono::steady_clock::now();
          if (now >= next) break;
          cv.WaitFor(&mu, next - now);
        }
        if (stop) return;
      }
      Tick();
      auto now = std::chrono::steady_clock::now();
      if (now > next + std::chrono::nanoseconds(options.interval_ns)) next = now;  // fell behind: don't burst
    }
  }
};

EvictionController::EvictionController() : impl_(std::make_unique<Impl>()) {}

EvictionController::~EvictionController() { Stop(); }

Result<std::unique_ptr<EvictionController>> EvictionController::Create(L1Store* store,
                                                                       const EvictionControllerOptions& options) {
  if (store == nullptr) return Status::InvalidArgument("eviction controller needs an L1 store");
  if (!(options.trigger_watermark > 0 && options.trigger_watermark <= 1)) {
    return Status::InvalidArgument("eviction trigger watermark must be in (0, 1]");
  }
  if (!(options.eviction_ratio > 0 && options.eviction_ratio <= 1)) {
    return Status::InvalidArgument("eviction ratio must be in (0, 1]");
  }
  if (options.interval_ns <= 0) return Status::InvalidArgument("eviction interval must be positive");
  std::unique_ptr<EvictionController> c(new EvictionController());
  c->impl_->store = store;
  c->impl_->options = options;
  return c;
}

Status EvictionController::Start() {
  Impl& d = *impl_;
  MutexLock lock(&d.mu);
  if (d.running) return Status::Unavailable("eviction controller already running");
  d.stop = false;
  d.running = true;
  d.stats.last_tick_ns = d.store->clock()->NowNs();
  try {
    d.thread = std::thread([&d] { d.Loop(); });
  } catch (const std::exception& e) {
    d.running = false;
    return Status::Unavailable(std::string("cannot start eviction thread: ") + e.what());
  }
  return Status::OK();
}

void EvictionController::Stop() {
  Impl& d = *impl_;
  {
    MutexLock lock(&d.mu);
    if (!d.running) return;
    d.stop = true;
  }
  d.cv.NotifyAll();
  if (d.thread.joinable()) d.thread.join();
  MutexLock lock(&d.mu);
  d.running = false;
}

void EvictionController::RunOnce() { impl_->Tick(); }

bool EvictionController::healthy() const { return Stats().healthy; }

EvictionControllerStats EvictionController::Stats() const {
  const Impl& d = *impl_;
  MutexLock lock(&d.mu);
  EvictionControllerStats s = d.stats;
  s.thread_alive = d.running && !d.stop;
  const int64_t deadline = std::max<int64_t>(3 * d.options.interval_ns, 5'000'000'000);
  s.healthy = s.thread_alive && (d.store->clock()->NowNs() - s.last_tick_ns) <= deadline;
  return s;
}

const EvictionControllerOptions& EvictionController::options() const { return impl_->options; }

}  // namespace lmcache
