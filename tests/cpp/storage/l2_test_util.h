// Helpers for the L2 adapter suites: temp dirs, buffers, and waiting for
// task results through the adapter's eventfds.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "test_util.h"

namespace lmcache::testing {

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lmcache-l2-test-XXXXXX";
    const char* p = mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An object's bytes: a deterministic pattern per (seed, size).
inline std::vector<uint8_t> Pattern(uint64_t seed, size_t size) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) v[i] = PatternByte(seed, i);
  return v;
}

inline ObjectView ViewOf(std::vector<uint8_t>& v) { return ObjectView{v.data(), v.size()}; }

// True once fd is readable (within timeout); drains it.
inline bool WaitReadable(int fd, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  uint64_t v = 0;
  while (read(fd, &v, sizeof(v)) > 0) {
  }
  return true;
}

// Collects store results (PopCompletedStores hands out every task's result
// to whoever calls it; this keeps the ones other waiters need). Thread-safe.
class StoreWaiter {
 public:
  explicit StoreWaiter(L2Adapter* a) : a_(a) {}
  std::optional<L2StoreResult> Wait(L2TaskId id, int timeout_ms = 20000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [tid, r] : a_->PopCompletedStores()) done_[tid] = std::move(r);
        auto it = done_.find(id);
        if (it != done_.end()) {
          L2StoreResult r = std::move(it->second);
          done_.erase(it);
          return r;
        }
      }
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      pollfd p{a_->store_event_fd(), POLLIN, 0};
      poll(&p, 1, 5);
    }
  }

 private:
  L2Adapter* a_;
  std::mutex mu_;
  std::map<L2TaskId, L2StoreResult> done_;
};

inline std::optional<L2Bitmap> WaitLookup(L2Adapter* a, L2TaskId id, int timeout_ms = 20000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (auto r = a->QueryLookupResult(id)) return r;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    pollfd p{a->lookup_event_fd(), POLLIN, 0};
    poll(&p, 1, 5);
  }
}

inline std::optional<L2Bitmap> WaitLoad(L2Adapter* a, L2TaskId id, int timeout_ms = 20000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (auto r = a->QueryLoadResult(id)) return r;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    pollfd p{a->load_event_fd(), POLLIN, 0};
    poll(&p, 1, 5);
  }
}

inline std::string Bits(const L2Bitmap& b) {
  std::string s;
  for (bool x : b) s += x ? '1' : '0';
  return s;
}

inline std::unique_ptr<L2Adapter> MustCreate(const std::string& json) {
  auto r = CreateL2Adapter(json);
  EXPECT_TRUE(r.ok()) << json << " -> " << r.status().ToString();
  if (!r.ok()) return nullptr;
  return std::move(r).value();
}

// Synchronous wrappers (one task at a time; StoreSync pops every store
// result, so use a shared StoreWaiter when several threads store at once).
inline L2StoreResult StoreSync(L2Adapter* a, const std::vector<ObjectKey>& keys, std::vector<ObjectView> views) {
  auto id = a->SubmitStore(keys, views);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return {};
  StoreWaiter w(a);
  auto r = w.Wait(id.value());
  EXPECT_TRUE(r.has_value()) << "store task did not complete";
  return r.value_or(L2StoreResult{});
}

inline L2Bitmap LookupSync(L2Adapter* a, const std::vector<ObjectKey>& keys) {
  auto id = a->SubmitLookupAndLock(keys);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return {};
  auto r = WaitLookup(a, id.value());
  EXPECT_TRUE(r.has_value()) << "lookup task did not complete";
  return r.value_or(L2Bitmap{});
}

inline L2Bitmap LoadSync(L2Adapter* a, const std::vector<ObjectKey>& keys, std::vector<ObjectView> views) {
  auto id = a->SubmitLoad(keys, views);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return {};
  auto r = WaitLoad(a, id.value());
  EXPECT_TRUE(r.has_value()) << "load task did not complete";
  return r.value_or(L2Bitmap{});
}

}  // namespace lmcache::testing
