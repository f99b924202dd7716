// Declarations shared by the transfer module's sources (not public).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "lmcache/transfer.h"
#include "util/mutex.h"

namespace lmcache {

// Close protocol of KvCacheRegistration: calls in flight are counted; Close
// marks the registration closed and waits for the count to drop to zero.
struct KvCacheRegistration::State {
  internal::Mutex mu;
  internal::CondVar idle;
  bool closed GUARDED_BY(mu) = false;
  uint32_t users GUARDED_BY(mu) = 0;
  // Background populate of the mappings (Open with populate_in_background).
  std::thread populator;                     // joined by Close() before unmapping
  std::atomic<bool> stop_populate{false};
  std::atomic<uint64_t> populated{0};
};

// Keeps the mappings alive for one call: Close() waits for every Use.
class KvCacheRegistration::Use {
 public:
  explicit Use(const KvCacheRegistration* r) : state_(r->state_.get()) {
    internal::MutexLock lock(&state_->mu);
    ok_ = !state_->closed;
    if (ok_) ++state_->users;
  }
  ~Use() {
    if (!ok_) return;
    internal::MutexLock lock(&state_->mu);
    if (--state_->users == 0) state_->idle.NotifyAll();
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  bool ok() const { return ok_; }

 private:
  State* state_;
  bool ok_ = false;
};

namespace internal {

// One dim of a layer tensor in its physical order (the KvFormat's dim
// order): size, byte stride, and whether it is the block axis.
struct PhysDim {
  int64_t size;
  int64_t stride;
  bool block;
};

std::vector<PhysDim> PhysicalDims(const PagedKvLayout& layout);

}  // namespace internal
}  // namespace lmcache
