// L2Index<Payload>: the in-memory catalogue of one L2 adapter (src-only).
//
// Maps ObjectKey -> {size, payload, lock count}, keeps the bytes used in
// total and per cache_salt, and orders the evictable objects with an
// EvictionPolicy from lmcache/eviction_policy.h (LRU by default): an object
// is evictable while it is not locked; a lock is taken by LookupAndLock and
// released by Unlock or after lock_ttl.
//
// Capacity. With capacity_bytes > 0 a writer first calls Reserve(size):
// it evicts evictable objects in policy order until the new object fits
// (expired locks are swept once before giving up) and hands the victims back
// so the caller can free their storage after the index lock is dropped;
// NoSpace when nothing more can go. Insert consumes the reservation,
// Unreserve returns it. With an eviction config, Insert also evicts down to
// (1 - eviction_ratio) x used once used >= trigger_watermark x capacity.
// Without a capacity nothing is ever evicted.
//
// Payload is the adapter's per-object metadata (checksum, inode, a data
// buffer...). Get returns a copy, so a shared_ptr payload keeps data alive
// while a reader copies it even if the object is deleted meanwhile.
//
// Thread safety: thread-safe, one mutex (batches take it once). Lock order:
// index -> policy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmcache/clock.h"
#include "lmcache/eviction_policy.h"
#include "lmcache/key.h"
#include "lmcache/l2_adapter.h"
#include "util/mutex.h"

namespace lmcache::internal {

struct L2IndexOptions {
  uint64_t capacity_bytes = 0;  // 0: unbounded
  std::optional<L2EvictionConfig> eviction;
  Clock* clock = nullptr;  // null: Clock::Default()
  int64_t lock_ttl_ns = SecondsToNs(300);
};

template <class Payload>
class L2Index {
 public:
  struct Victim {
    ObjectKey key;
    uint64_t size = 0;
    Payload payload;
  };

  // InvalidArgument for an unknown eviction policy.
  static Result<std::unique_ptr<L2Index>> Create(const L2IndexOptions& options) {
    const std::string policy_name = options.eviction ? options.eviction->eviction_policy : "LRU";
    auto policy = CreateEvictionPolicy(policy_name);
    if (!policy.ok()) return policy.status();
    std::unique_ptr<L2Index> index(new L2Index(options, std::move(policy).value()));
    return index;
  }

  ~L2Index() {
    MutexLock lock(&mu_);
    for (auto& [key, e] : map_) policy_->Remove(&e.node);
  }

  uint64_t capacity_bytes() const { return options_.capacity_bytes; }

  bool Contains(const ObjectKey& key) const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return map_.count(key) != 0;
  }

  // Copy of the object's size and payload.
  std::optional<std::pair<uint64_t, Payload>> Get(const ObjectKey& key) const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return std::make_pair(it->second.size, it->second.payload);
  }

  // Sets bits[i] (and locks) for present keys; returns the hit count.
  // REQUIRES: bits->size() == keys.size().
  size_t LookupAndLock(std::span<const ObjectKey> keys, L2Bitmap* bits) EXCLUDES(mu_) {
    const int64_t deadline = clock_->NowNs() + options_.lock_ttl_ns;
    size_t hits = 0;
    MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = map_.find(keys[i]);
      if (it == map_.end()) continue;
      LockEntry(it->second, deadline);
      (*bits)[i] = true;
      ++hits;
    }
    return hits;
  }

  // Locks one present key; false if absent.
  bool Lock(const ObjectKey& key) EXCLUDES(mu_) {
    const int64_t deadline = clock_->NowNs() + options_.lock_ttl_ns;
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    LockEntry(it->second, deadline);
    return true;
  }

  void Unlock(std::span<const ObjectKey> keys) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    for (const ObjectKey& key : keys) {
      auto it = map_.find(key);
      if (it == map_.end() || it->second.locks == 0) continue;
      Entry& e = it->second;
      if (--e.locks == 0) {
        --locked_entries_;
        policy_->Insert(&e.node);
      }
    }
  }

  void Touch(const ObjectKey& key) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it != map_.end()) policy_->Touch(&it->second.node);
  }

  // Make room for `size` more bytes (see the file comment).
  Status Reserve(uint64_t size, std::vector<Victim>* victims) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (options_.capacity_bytes == 0) return Status::OK();
    if (size > options_.capacity_bytes) {
      return Status::NoSpace("object of " + std::to_string(size) + " bytes exceeds the L2 capacity of " +
                             std::to_string(options_.capacity_bytes));
    }
    bool swept = false;
    for (;;) {
      const uint64_t committed = used_ + reserved_;
      if (committed + size <= options_.capacity_bytes) break;
      const uint64_t need = committed + size - options_.capacity_bytes;
      if (EvictLocked(need, victims) > 0) continue;
      if (swept || !SweepExpiredLocked()) {
        return Status::NoSpace("L2 is full: " + std::to_string(used_) + " bytes stored, " +
                               std::to_string(reserved_) + " being written, nothing evictable");
      }
      swept = true;
    }
    reserved_ += size;
    return Status::OK();
  }

  void Unreserve(uint64_t size) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    reserved_ -= std::min(reserved_, size);
  }

  // Add an object, releasing `reserved` bytes of reservation. Returns false
  // (and changes nothing else) if the key is present. Watermark eviction
  // victims, if any, are appended to *victims (may be null without an
  // eviction config).
  bool Insert(const ObjectKey& key, uint64_t size, Payload payload, uint64_t reserved,
              std::vector<Victim>* victims = nullptr) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    reserved_ -= std::min(reserved_, reserved);
    auto [it, inserted] = map_.try_emplace(key);
    if (!inserted) return false;
    Entry& e = it->second;
    e.size = size;
    e.payload = std::move(payload);
    e.node.key = &it->first;
    e.node.bytes = size;
    policy_->Insert(&e.node);
    used_ += size;
    by_salt_[key.cache_salt] += size;
    if (options_.eviction && options_.capacity_bytes > 0 && victims != nullptr &&
        static_cast<double>(used_) >= options_.eviction->trigger_watermark * options_.capacity_bytes) {
      const auto target = static_cast<uint64_t>(options_.eviction->eviction_ratio * used_);
      EvictLocked(std::max<uint64_t>(target, 1), victims);
    }
    return true;
  }

  // Replace the payload of a present key; false if absent.
  bool SetPayload(const ObjectKey& key, Payload payload) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    it->second.payload = std::move(payload);
    return true;
  }

  std::optional<Victim> Remove(const ObjectKey& key) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    Victim v{it->first, it->second.size, std::move(it->second.payload)};
    EraseLocked(it);
    return v;
  }

  L2Usage Usage() const EXCLUDES(mu_) {
    L2Usage u;
    MutexLock lock(&mu_);
    u.total_bytes = used_;
    u.capacity_bytes = options_.capacity_bytes;
    u.objects = map_.size();
    for (const auto& [salt, bytes] : by_salt_) {
      if (bytes > 0) u.bytes_by_salt[salt.str()] = bytes;
    }
    return u;
  }

  size_t size() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return map_.size();
  }

  size_t locked_objects() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return locked_entries_;
  }

  // One page of keys ordered by ObjectKey::ToString (see L2Adapter::List).
  Result<L2KeyPage> List(const L2ListRequest& request) const EXCLUDES(mu_) {
    if (request.page_size == 0) return Status::InvalidArgument("page_size must be > 0");
    std::string after;  // the last stem of the previous page
    if (!request.cursor.empty() && !DecodeCursor(request.cursor, &after)) {
      return Status::InvalidArgument("malformed list cursor '" + request.cursor + "'");
    }
    std::vector<std::pair<std::string, L2KeyInfo>> items;
    {
      MutexLock lock(&mu_);
      for (const auto& [key, e] : map_) {
        if (request.model_name && key.model_name.str() != *request.model_name) continue;
        std::string stem = key.ToString();
        if (!after.empty() && stem <= after) continue;
        items.emplace_back(std::move(stem), L2KeyInfo{key, e.size});
      }
    }
    L2KeyPage page;
    const size_t n = std::min(items.size(), request.page_size);
    std::partial_sort(items.begin(), items.begin() + static_cast<ptrdiff_t>(n), items.end(),
                      [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < n; ++i) page.keys.push_back(items[i].second);
    if (items.size() > n) page.next_cursor = EncodeCursor(items[n - 1].first);
    return page;
  }

  // Cursors are opaque: the hex of the last stem returned.
  static std::string EncodeCursor(const std::string& stem) {
    static const char* kHex = "0123456789abcdef";
    std::string c;
    c.reserve(stem.size() * 2);
    for (unsigned char ch : stem) {
      c += kHex[ch >> 4];
      c += kHex[ch & 15];
    }
    return c;
  }
  static bool DecodeCursor(const std::string& c, std::string* stem) {
    if (c.size() % 2 != 0) return false;
    auto nibble = [](char x) { return x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10 : -1; };
    stem->clear();
    for (size_t i = 0; i < c.size(); i += 2) {
      const int hi = nibble(c[i]), lo = nibble(c[i + 1]);
      if (hi < 0 || lo < 0) return false;
      *stem += static_cast<char>(hi << 4 | lo);
    }
    return !stem->empty();
  }

 private:
  struct Entry {
    uint64_t size = 0;
    Payload payload{};
    uint32_t locks = 0;
    int64_t lock_deadline = 0;
    EvictionNode node;
  };
  using Map = std::unordered_map<ObjectKey, Entry, ObjectKeyHash>;

  L2Index(const L2IndexOptions& options, std::unique_ptr<EvictionPolicy> policy)
      : options_(options), clock_(options.clock ? options.clock : Clock::Default()), policy_(std::move(policy)) {}

  void LockEntry(Entry& e, int64_t deadline) REQUIRES(mu_) {
    if (e.locks == 0) {
      policy_->Remove(&e.node);
      ++locked_entries_;
    }
    ++e.locks;
    e.lock_deadline = std::max(e.lock_deadline, deadline);
  }

  void EraseLocked(typename Map::iterator it) REQUIRES(mu_) {
    Entry& e = it->second;
    policy_->Remove(&e.node);
    if (e.locks > 0) --locked_entries_;
    used_ -= e.size;
    auto s = by_salt_.find(it->first.cache_salt);
    if (s != by_salt_.end()) {
      s->second -= std::min(s->second, e.size);
      if (s->second == 0) by_salt_.erase(s);
    }
    map_.erase(it);
  }

  // Evict evictable objects until `target` bytes are freed; returns bytes freed.
  uint64_t EvictLocked(uint64_t target, std::vector<Victim>* victims) REQUIRES(mu_) {
    std::vector<ObjectKey> keys;
    policy_->PopVictims(target, &keys);
    uint64_t freed = 0;
    for (const ObjectKey& k : keys) {
      auto it = map_.find(k);
      if (it == map_.end()) continue;
      freed += it->second.size;
      victims->push_back(Victim{it->first, it->second.size, std::move(it->second.payload)});
      EraseLocked(it);
    }
    return freed;
  }

  // Release locks past their TTL; true if any object became evictable.
  bool SweepExpiredLocked() REQUIRES(mu_) {
    if (locked_entries_ == 0) return false;
    const int64_t now = clock_->NowNs();
    bool any = false;
    for (auto& [key, e] : map_) {
      if (e.locks > 0 && e.lock_deadline <= now) {
        e.locks = 0;
        --locked_entries_;
        policy_->Insert(&e.node);
        any = true;
      }
    }
    return any;
  }

  const L2IndexOptions options_;
  Clock* const clock_;
  mutable Mutex mu_;
  std::unique_ptr<EvictionPolicy> policy_;  // its own mutex; called under mu_
  Map map_ GUARDED_BY(mu_);
  SaltUsage by_salt_ GUARDED_BY(mu_);
  uint64_t used_ GUARDED_BY(mu_) = 0;
  uint64_t reserved_ GUARDED_BY(mu_) = 0;
  size_t locked_entries_ GUARDED_BY(mu_) = 0;
};

}  // namespace lmcache::internal
