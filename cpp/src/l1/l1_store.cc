// L1Store implementation. See lmcache/l1_store.h for the contract.
//
// Layout: N shards, each a mutex over three maps:
//   visible  key -> Entry           resident and temporary objects
//   staging  (key, tag) -> Entry    reserved, being written, invisible
//   doomed   key -> Entry (multi)   deleted while read-locked; freed later
// plus `order`, the visible entries in the order they became visible (for
// ListObjects): each visible entry gets a sequence number from one
// store-wide counter, taken under its shard's lock, and a slot appended to
// its shard's `order`; removal leaves a tombstone there, and the vector is
// compacted once tombstones are more than half of it, so both stay O(1)
// amortized and `order` stays sorted by sequence. A cursor is (shard, last
// sequence seen, the counter when the pass began): resuming is a binary
// search, whatever was inserted or removed meanwhile.
// Every Entry embeds the EvictionNode the policy links; a node is linked iff
// its object is visible, resident (not temporary) and not read-locked. The
// policy only ever hands back key copies, so an entry freed concurrently is
// never touched through a stale node.
#include "lmcache/l1_store.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "util/mutex.h"

namespace lmcache {

using internal::CondVar;
using internal::Mutex;
using internal::MutexLock;

namespace {

enum class State : uint8_t { kResident, kTemporary, kStaging, kDoomed };

struct Entry {
  uint64_t offset = 0;      // in the arena
  uint64_t size = 0;        // bytes the caller asked for
  uint32_t handle = Allocation::kInvalidHandle;
  uint32_t readers = 0;     // read locks (visible/doomed) ; unused for staging
  int64_t expiry_ns = 0;    // read-lock expiry, or write-lock expiry for staging
  State state = State::kStaging;
  bool cancelled = false;   // staging object cancelled by Clear(force)
  uint64_t seq = 0;         // visible: listing order (store-wide, increasing)
  size_t order_slot = 0;    // visible: index in Shard::order
  EvictionNode node;        // node.bytes == the allocation's (rounded) size

  Allocation alloc() const { return Allocation{offset, node.bytes, handle}; }
};

struct StagingKey {
  ObjectKey key;
  WriterTag tag;
  bool operator==(const StagingKey& o) const { return tag == o.tag && key == o.key; }
};

struct StagingKeyHash {
  size_t operator()(const StagingKey& k) const {
    return ObjectKeyHash()(k.key) ^ (k.tag * 0x9E3779B97F4A7C15ull);
  }
};

struct SymbolHash {
  size_t operator()(const Symbol& s) const { return s.hash(); }
};

// One slot of Shard::order; entry == nullptr is a tombstone (it keeps its seq).
struct OrderSlot {
  uint64_t seq;
  Entry* entry;  // the visible entry (its key is *entry->node.key)
};

struct Shard {
  mutable Mutex mu;
  std::vector<OrderSlot> order GUARDED_BY(mu);  // sorted by seq
  size_t order_dead GUARDED_BY(mu) = 0;         // tombstones in order
  std::unordered_map<ObjectKey, Entry, ObjectKeyHash> visible GUARDED_BY(mu);
  std::unordered_map<StagingKey, Entry, StagingKeyHash> staging GUARDED_BY(mu);
  std::unordered_multimap<ObjectKey, Entry, ObjectKeyHash> doomed GUARDED_BY(mu);
  std::unordered_map<Symbol, uint64_t, SymbolHash> salt_bytes GUARDED_BY(mu);
  uint64_t locked GUARDED_BY(mu) = 0;  // visible entries with readers > 0
};

// A listing cursor: "l1-<epoch hex>-<shard>-<after>-<limit>" (decimal).
struct ListCursor {
  uint64_t epoch = 0;
  uint64_t shard = 0;
  uint64_t after = 0;  // the last sequence number examined in `shard`
  uint64_t limit = 0;  // the store's last sequence number when the pass began
};

std::string EncodeCursor(const ListCursor& c) {
  char epoch[17];
  auto r = std::to_chars(epoch, epoch + sizeof(epoch) - 1, c.epoch, 16);
  *r.ptr = '\0';
  return "l1-" + std::string(epoch) + "-" + std::to_string(c.shard) + "-" + std::to_string(c.after) + "-" +
         std::to_string(c.limit);
}

bool DecodeCursor(std::string_view text, ListCursor* c) {
  if (!text.starts_with("l1-")) return false;
  text.remove_prefix(3);
  uint64_t* fields[] = {&c->epoch, &c->shard, &c->after, &c->limit};
  for (size_t i = 0; i < 4; ++i) {
    const size_t dash = text.find('-');
    const bool last = i == 3;
    if (last != (dash == std::string_view::npos)) return false;
    std::string_view part = text.substr(0, last ? text.size() : dash);
    if (part.empty() || part.size() > 20) return false;
    auto r = std::from_chars(part.data(), part.data() + part.size(), *fields[i], i == 0 ? 16 : 10);
    if (r.ec != std::errc() || r.ptr != part.data() + part.size()) return false;
    if (!last) text.remove_prefix(dash + 1);
  }
  return c->after <= c->limit;
}

}  // namespace

struct L1Store::Impl {
  L1Options options;
  Clock* clock = nullptr;
  int64_t write_ttl_ns = 0;
  int64_t read_ttl_ns = 0;
  std::unique_ptr<Arena> arena;
  std::unique_ptr<Allocator> allocator;
  std::unique_ptr<EvictionPolicy> policy;
  std::unique_ptr<Shard[]> shards;
  uint64_t shard_mask = 0;

  Mutex grow_mu;

  // Counters (relaxed: statistics only).
  std::atomic<uint64_t> visible_objects{0};
  std::atomic<uint64_t> temporary_objects{0};
  std::atomic<uint64_t> staging_objects{0};
  std::atomic<uint64_t> staging_bytes{0};
  std::atomic<uint64_t> doomed_objects{0};
  std::atomic<uint64_t> read_locked_objects{0};
  std::atomic<uint64_t> evicted_objects{0};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> allocation_failures{0};

  // Listing: the last sequence number handed out, and this store's cursor
  // epoch (cursors of another store or an earlier server are rejected).
  std::atomic<uint64_t> last_seq{0};
  uint64_t list_epoch = 0;

  std::shared_mutex listeners_mu;
  std::vector<L1Listener*> listeners;

  // Background prefault thread (lazy arenas).
  std::thread prefault_thread;
  Mutex prefault_mu;
  CondVar prefault_cv;
  bool prefault_stop GUARDED_BY(prefault_mu) = false;

  Shard& ShardFor(const ObjectKey& k) { return shards[ObjectKeyHash()(k) & shard_mask]; }
  const Shard& ShardFor(const ObjectKey& k) const { return shards[ObjectKeyHash()(k) & shard_mask]; }

  ObjectView ViewOf(const Entry& e) const { return ObjectView{arena->base() + e.offset, e.size}; }

  bool Locked(const Entry& e, int64_t now) const { return e.readers > 0 && now <= e.expiry_ns; }

  // ---- helpers called with the shard lock held ----

  // Take `n` read locks on a visible entry.
  void LockRead(Shard& s, Entry& e, uint32_t n, int64_t now) REQUIRES(s.mu) {
    if (e.readers > 0 && now > e.expiry_ns) {
      e.readers = 0;  // expired: counts as unlocked; it is unlinked already
    } else if (e.readers == 0) {
      policy->Remove(&e.node);
      ++s.locked;
      read_locked_objects.fetch_add(1, std::memory_order_relaxed);
    }
    e.readers += n;
    e.expiry_ns = now + read_ttl_ns;
  }

  // Mark a visible entry's locks as released (its count reached zero or its
  // TTL expired). Returns true when the entry must be freed (temporary).
  bool Unlocked(Shard& s, Entry& e) REQUIRES(s.mu) {
    e.readers = 0;
    --s.locked;
    read_locked_objects.fetch_sub(1, std::memory_order_relaxed);
    if (e.state == State::kTemporary) return true;
    policy->Insert(&e.node);
    return false;
  }

  // Append a new visible entry to its shard's listing order.
  void AddToOrder(Shard& s, Entry& e) REQUIRES(s.mu) {
    e.seq = last_seq.fetch_add(1, std::memory_order_relaxed) + 1;
    e.order_slot = s.order.size();
    s.order.push_back(OrderSlot{e.seq, &e});
  }

  // Tombstone a visible entry's slot; trims trailing tombstones and compacts
  // the vector once more than half of it is tombstones.
  void RemoveFromOrder(Shard& s, const Entry& e) REQUIRES(s.mu) {
    LMCACHE_CHECK(e.order_slot < s.order.size() && s.order[e.order_slot].entry == &e, "L1 order slot out of sync");
    s.order[e.order_slot].entry = nullptr;
    ++s.order_dead;
    while (!s.order.empty() && s.order.back().entry == nullptr) {
      s.order.pop_back();
      --s.order_dead;
    }
    if (s.order_dead > 32 && s.order_dead * 2 > s.order.size()) {
      size_t j = 0;
      for (size_t i = 0; i < s.order.size(); ++i) {
        if (s.order[i].entry == nullptr) continue;
        s.order[j] = s.order[i];
        s.order[j].entry->order_slot = j;
        ++j;
      }
      s.order.resize(j);
      s.order_dead = 0;
      if (s.order.capacity() > 1024 && s.order.capacity() > 4 * s.order.size()) s.order.shrink_to_fit();
    }
  }

  // Remove a visible entry from the index (it must not be linked any more
  // after this); frees its memory or dooms it when still locked.
  void RemoveVisible(Shard& s, std::unordered_map<ObjectKey, Entry, ObjectKeyHash>::iterator it, int64_t now,
                     bool count_as_eviction) REQUIRES(s.mu) {
    Entry& e = it->second;
    policy->Remove(&e.node);
    RemoveFromOrder(s, e);
    auto sb = s.salt_bytes.find(it->first.cache_salt);
    if (sb != s.salt_bytes.end()) {
      sb->second -= e.node.bytes;
      if (sb->second == 0) s.salt_bytes.erase(sb);
    }
    visible_objects.fetch_sub(1, std::memory_order_relaxed);
    if (e.state == State::kTemporary) temporary_objects.fetch_sub(1, std::memory_order_relaxed);
    if (e.readers > 0) {
      --s.locked;
      read_locked_objects.fetch_sub(1, std::memory_order_relaxed);
    }
    if (count_as_eviction) {
      evicted_objects.fetch_add(1, std::memory_order_relaxed);
      evicted_bytes.fetch_add(e.node.bytes, std::memory_order_relaxed);
    }
    if (Locked(e, now)) {
      Entry d = e;
      d.state = State::kDoomed;
      d.node = EvictionNode{};
      d.node.bytes = e.node.bytes;
      s.doomed.emplace(it->first, d);
      doomed_objects.fetch_add(1, std::memory_order_relaxed);
    } else {
      allocator->Free(e.alloc());
    }
    s.visible.erase(it);
  }

  // Admit tag's staging object for key. Returns the visible entry the key
  // maps to afterwards (null when there was nothing to admit) and whether a
  // new object became visible.
  Entry* Admit(Shard& s, const ObjectKey& key, WriterTag tag, bool temporary, bool* became_visible)
      REQUIRES(s.mu) {
    *became_visible = false;
    auto st = s.staging.find(StagingKey{key, tag});
    if (st == s.staging.end()) return nullptr;
    Entry e = st->second;
    s.staging.erase(st);
    staging_objects.fetch_sub(1, std::memory_order_relaxed);
    staging_bytes.fetch_sub(e.node.bytes, std::memory_order_relaxed);
    if (e.cancelled) {
      allocator->Free(e.alloc());
      return nullptr;
    }
    auto vis = s.visible.find(key);
    if (vis != s.visible.end()) {  // first writer wins
      allocator->Free(e.alloc());
      return &vis->second;
    }
    e.state = temporary ? State::kTemporary : State::kResident;
    e.readers = 0;
    e.expiry_ns = 0;
    auto [it, inserted] = s.visible.emplace(key, e);
    Entry& ne = it->second;
    ne.node = EvictionNode{};
    ne.node.key = &it->first;
    ne.node.bytes = e.node.bytes;
    AddToOrder(s, ne);
    s.salt_bytes[key.cache_salt] += ne.node.bytes;
    visible_objects.fetch_add(1, std::memory_order_relaxed);
    if (temporary) temporary_objects.fetch_add(1, std::memory_order_relaxed);
    *became_visible = true;
    return &ne;
  }

  // ---- helpers called without shard locks ----

  void NotifyResident(const std::vector<ObjectKey>& keys, WriterTag tag, bool temporary) {
    if (keys.empty()) return;
    std::shared_lock lock(listeners_mu);
    for (L1Listener* l : listeners) l->OnAdmitted(keys, tag, temporary);
  }
  void NotifyRemoved(const std::vector<ObjectKey>& keys) {
    if (keys.empty()) return;
    std::shared_lock lock(listeners_mu);
    for (L1Listener* l : listeners) l->OnRemoved(keys);
  }

  // Evict the given victims (already unlinked by the policy) when they are
  // still visible and unlocked. Returns bytes freed.
  uint64_t EvictKeys(const std::vector<ObjectKey>& keys, std::vector<ObjectKey>* removed) {
    uint64_t freed = 0;
    const int64_t now = clock->NowNs();
    for (const ObjectKey& k : keys) {
      Shard& s = ShardFor(k);
      MutexLock lock(&s.mu);
      auto it = s.visible.find(k);
      // An expired read lock counts as released.
      if (it == s.visible.end() || Locked(it->second, now)) continue;
      freed += it->second.node.bytes;
      removed->push_back(k);
      RemoveVisible(s, it, now, /*count_as_eviction=*/true);
    }
    return freed;
  }

  uint64_t Evict(uint64_t target) {
    uint64_t freed = 0;
    std::vector<ObjectKey> victims;
    std::vector<ObjectKey> removed;
    while (freed < target) {
      victims.clear();
      uint64_t popped = policy->PopVictims(target - freed, &victims);
      if (victims.empty() || popped == 0) break;
      freed += EvictKeys(victims, &removed);
    }
    NotifyRemoved(removed);
    return freed;
  }

  // Extend the allocator to the arena's usable size (after a Grow).
  bool GrowArena(uint64_t min_extra) {
    MutexLock lock(&grow_mu);
    if (arena->usable_bytes() >= arena->capacity()) return false;
    Result<uint64_t> r = arena->Grow(min_extra);
    if (!r.ok()) return false;
    uint64_t usable = arena->usable_bytes();
    if (usable > allocator->Stats().region_bytes) allocator->Extend(usable);
    KickPrefault();
    return true;
  }

  void KickPrefault() {
    if (!prefault_thread.joinable()) return;
    prefault_cv.NotifyOne();
  }

  void PrefaultLoop() {
    while (true) {
      {
        MutexLock lock(&prefault_mu);
        if (prefault_stop) return;
        prefault_cv.WaitFor(&prefault_mu, std::chrono::milliseconds(20));
        if (prefault_stop) return;
      }
      uint64_t hwm = allocator->Stats().high_water_mark;
      uint64_t target = std::min(arena->usable_bytes(), hwm + options.prefault_window_bytes);
      if (target > arena->prefaulted_bytes()) arena->PrefaultUpTo(target);
    }
  }
};

L1Store::L1Store() : impl_(std::make_unique<Impl>()) {}

L1Store::~L1Store() {
  if (impl_->prefault_thread.joinable()) {
    {
      MutexLock lock(&impl_->prefault_mu);
      impl_->prefault_stop = true;
    }
    impl_->prefault_cv.NotifyAll();
    impl_->prefault_thread.join();
  }
}

Result<std::unique_ptr<L1Store>> L1Store::Create(const L1Options& options) {
  if (!(options.write_ttl_seconds > 0) || !(options.read_ttl_seconds > 0)) {
    return Status::InvalidArgument("L1 lock TTLs must be positive");
  }
  Result<std::unique_ptr<EvictionPolicy>> policy = CreateEvictionPolicy(options.eviction_policy);
  if (!policy.ok()) return policy.status();
  Result<std::unique_ptr<Arena>> arena = Arena::Create(options.arena, options.registrar);
  if (!arena.ok()) return arena.status();

  std::unique_ptr<L1Store> store(new L1Store());
  Impl& d = *store->impl_;
  d.options = options;
  d.clock = options.clock ? options.clock : Clock::Default();
  d.write_ttl_ns = SecondsToNs(options.write_ttl_seconds);
  d.read_ttl_ns = SecondsToNs(options.read_ttl_seconds);
  d.policy = std::move(policy).value();
  d.arena = std::move(arena).value();
  d.allocator = std::make_unique<Allocator>(d.arena->usable_bytes(), d.arena->align());
  uint32_t n = std::bit_ceil(std::max<uint32_t>(1, options.num_shards));
  d.shards = std::make_unique<Shard[]>(n);
  d.shard_mask = n - 1;
  {
    // Any value that differs between stores and restarts will do.
    uint64_t x = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                 (reinterpret_cast<uintptr_t>(store.get()) * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    d.list_epoch = x & 0xFFFFFFFFull;
  }
  if (d.arena->lazy() && options.prefault_window_bytes > 0) {
    d.prefault_thread = std::thread([&d] { d.PrefaultLoop(); });
    d.KickPrefault();
  }
  return store;
}

Status L1Store::ReserveWrite(std::span<const ObjectKey> keys, std::span<const uint64_t> sizes, WriterTag tag,
                             std::vector<ReserveOutcome>* outcomes, std::vector<ObjectView>* views) {
  Impl& d = *impl_;
  if (keys.size() != sizes.size()) return Status::InvalidArgument("keys and sizes differ in length");
  const size_t n = keys.size();
  outcomes->assign(n, ReserveOutcome::kAlreadyResident);
  views->assign(n, ObjectView{});
  if (n == 0) return Status::OK();
  for (uint64_t sz : sizes) {
    if (sz == 0) return Status::InvalidArgument("object size must be positive");
  }
  if (n > 1) {
    std::unordered_set<ObjectKey, ObjectKeyHash> seen(keys.begin(), keys.end());
    if (seen.size() != n) return Status::InvalidArgument("duplicate keys in one ReserveWrite");
  }

  // Which keys need an object?
  std::vector<size_t> need;
  std::vector<uint64_t> need_sizes;
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (Contains(keys[i])) continue;
    need.push_back(i);
    need_sizes.push_back(sizes[i]);
    total += d.allocator->RoundUp(sizes[i]);
  }
  if (need.empty()) return Status::OK();
  if (total > d.arena->capacity()) {
    d.allocation_failures.fetch_add(need.size(), std::memory_order_relaxed);
    return Status::NoSpace("objects need " + std::to_string(total) + " bytes, more than the L1 capacity of " +
                           std::to_string(d.arena->capacity()));
  }

  std::vector<Allocation> allocs(need.size());
  bool swept = false;
  while (!d.allocator->AllocateBatch(need_sizes.data(), need_sizes.size(), allocs.data())) {
    if (d.GrowArena(total)) continue;
    AllocatorStats st = d.allocator->Stats();
    uint64_t deficit = st.free_bytes >= total ? total : total - st.free_bytes;
    if (d.Evict(deficit) > 0) continue;
    if (!swept) {  // expired locks may hide evictable objects
      swept = true;
      if (SweepExpired() > 0) continue;
    }
    d.allocation_failures.fetch_add(need.size(), std::memory_order_relaxed);
    return Status::NoSpace("L1 is full: " + std::to_string(total) + " bytes needed, " +
                           std::to_string(st.free_bytes) + " free, nothing left to evict (objects are locked)");
  }

  const int64_t now = d.clock->NowNs();
  for (size_t j = 0; j < need.size(); ++j) {
    const size_t i = need[j];
    Entry e;
    e.offset = allocs[j].offset;
    e.size = sizes[i];
    e.handle = allocs[j].handle;
    e.node.bytes = allocs[j].size;
    e.state = State::kStaging;
    e.expiry_ns = now + d.write_ttl_ns;
    Shard& s = d.ShardFor(keys[i]);
    MutexLock lock(&s.mu);
    auto [it, inserted] = s.staging.try_emplace(StagingKey{keys[i], tag}, e);
    if (!inserted) {  // the same writer reserved this key again: replace
      d.allocator->Free(it->second.alloc());
      d.staging_bytes.fetch_sub(it->second.node.bytes, std::memory_order_relaxed);
      it->second = e;
    } else {
      d.staging_objects.fetch_add(1, std::memory_order_relaxed);
    }
    d.staging_bytes.fetch_add(e.node.bytes, std::memory_order_relaxed);
    (*outcomes)[i] = ReserveOutcome::kReserved;
    (*views)[i] = d.ViewOf(e);
  }
  if (d.arena->lazy() &&
      d.allocator->Stats().high_water_mark + d.options.prefault_window_bytes / 2 > d.arena->prefaulted_bytes()) {
    d.KickPrefault();
  }
  return Status::OK();
}

Status L1Store::FinishWrite(std::span<const ObjectKey> keys, WriterTag tag) {
  return FinishWriteAndReserveRead(keys, tag, 0, false, nullptr);
}

Status L1Store::FinishWriteAndReserveRead(std::span<const ObjectKey> keys, WriterTag tag, uint32_t readers,
                                          bool temporary, std::vector<ObjectView>* views) {
  Impl& d = *impl_;
  if (readers > 128) return Status::InvalidArgument("at most 128 readers per object");
  if (temporary && readers == 0) return Status::InvalidArgument("a temporary object needs readers");
  if (views) views->assign(keys.size(), ObjectView{});
  std::vector<ObjectKey> admitted;
  size_t missing = 0;
  const int64_t now = d.clock->NowNs();
  for (size_t i = 0; i < keys.size(); ++i) {
    Shard& s = d.ShardFor(keys[i]);
    MutexLock lock(&s.mu);
    bool became_visible = false;
    Entry* e = d.Admit(s, keys[i], tag, temporary, &became_visible);
    if (e == nullptr) {
      ++missing;
      continue;
    }
    if (became_visible) admitted.push_back(keys[i]);
    if (readers > 0) {
      d.LockRead(s, *e, readers, now);
      if (views) (*views)[i] = d.ViewOf(*e);
    } else if (became_visible) {
      d.policy->Insert(&e->node);
    }
  }
  d.NotifyResident(admitted, tag, temporary);
  if (missing > 0) {
    return Status::NotFound(std::to_string(missing) + " of " + std::to_string(keys.size()) +
                            " keys had no staging object for this writer (expired, cancelled or never reserved)");
  }
  return Status::OK();
}

void L1Store::AbortWrite(std::span<const ObjectKey> keys, WriterTag tag) {
  Impl& d = *impl_;
  for (const ObjectKey& k : keys) {
    Shard& s = d.ShardFor(k);
    MutexLock lock(&s.mu);
    auto it = s.staging.find(StagingKey{k, tag});
    if (it == s.staging.end()) continue;
    d.allocator->Free(it->second.alloc());
    d.staging_objects.fetch_sub(1, std::memory_order_relaxed);
    d.staging_bytes.fetch_sub(it->second.node.bytes, std::memory_order_relaxed);
    s.staging.erase(it);
  }
}

size_t L1Store::ReserveReadPrefix(std::span<const ObjectKey> keys, uint32_t readers,
                                  std::vector<ObjectView>* views) {
  Impl& d = *impl_;
  LMCACHE_CHECK(readers >= 1 && readers <= 128, "readers must be in 1..128");
  views->clear();
  const int64_t now = d.clock->NowNs();
  size_t i = 0;
  for (; i < keys.size(); ++i) {
    Shard& s = d.ShardFor(keys[i]);
    MutexLock lock(&s.mu);
    auto it = s.visible.find(keys[i]);
    if (it == s.visible.end()) break;
    d.LockRead(s, it->second, readers, now);
    views->push_back(d.ViewOf(it->second));
  }
  return i;
}

void L1Store::ReserveRead(std::span<const ObjectKey> keys, uint32_t readers, std::vector<bool>* hits,
                          std::vector<ObjectView>* views) {
  Impl& d = *impl_;
  LMCACHE_CHECK(readers >= 1 && readers <= 128, "readers must be in 1..128");
  hits->assign(keys.size(), false);
  views->assign(keys.size(), ObjectView{});
  const int64_t now = d.clock->NowNs();
  for (size_t i = 0; i < keys.size(); ++i) {
    Shard& s = d.ShardFor(keys[i]);
    MutexLock lock(&s.mu);
    auto it = s.visible.find(keys[i]);
    if (it == s.visible.end()) continue;
    d.LockRead(s, it->second, readers, now);
    (*hits)[i] = true;
    (*views)[i] = d.ViewOf(it->second);
  }
}

size_t L1Store::FinishRead(std::span<const ObjectKey> keys) {
  Impl& d = *impl_;
  size_t released = 0;
  std::vector<ObjectKey> removed;
  const int64_t now = d.clock->NowNs();
  for (const ObjectKey& k : keys) {
    Shard& s = d.ShardFor(k);
    MutexLock lock(&s.mu);
    auto it = s.visible.find(k);
    if (it != s.visible.end() && it->second.readers > 0) {
      Entry& e = it->second;
      bool expired = now > e.expiry_ns;
      if (!expired) {
        --e.readers;
        ++released;
      }
      if (expired || e.readers == 0) {
        if (d.Unlocked(s, e)) {  // temporary: freed at its last read
          removed.push_back(k);
          d.RemoveVisible(s, it, now, /*count_as_eviction=*/false);
        }
      }
      continue;
    }
    auto range = s.doomed.equal_range(k);
    for (auto dit = range.first; dit != range.second; ++dit) {
      Entry& e = dit->second;
      if (e.readers == 0) continue;
      bool expired = now > e.expiry_ns;
      if (!expired) {
        --e.readers;
        ++released;
      }
      if (expired || e.readers == 0) {
        d.allocator->Free(e.alloc());
        s.doomed.erase(dit);
        d.doomed_objects.fetch_sub(1, std::memory_order_relaxed);
      }
      break;
    }
  }
  d.NotifyRemoved(removed);
  return released;
}

bool L1Store::Contains(const ObjectKey& key) const {
  const Shard& s = impl_->ShardFor(key);
  MutexLock lock(&s.mu);
  return s.visible.count(key) > 0;
}

size_t L1Store::PrefixHits(std::span<const ObjectKey> keys) const {
  size_t i = 0;
  while (i < keys.size() && Contains(keys[i])) ++i;
  return i;
}

void L1Store::Touch(std::span<const ObjectKey> keys) {
  Impl& d = *impl_;
  for (const ObjectKey& k : keys) {
    Shard& s = d.ShardFor(k);
    MutexLock lock(&s.mu);
    auto it = s.visible.find(k);
    if (it != s.visible.end()) d.policy->Touch(&it->second.node);
  }
}

size_t L1Store::Delete(std::span<const ObjectKey> keys, bool force) {
  Impl& d = *impl_;
  size_t count = 0;
  std::vector<ObjectKey> removed;
  const int64_t now = d.clock->NowNs();
  for (const ObjectKey& k : keys) {
    Shard& s = d.ShardFor(k);
    MutexLock lock(&s.mu);
    auto it = s.visible.find(k);
    if (it == s.visible.end()) continue;
    if (d.Locked(it->second, now) && !force) continue;
    removed.push_back(k);
    d.RemoveVisible(s, it, now, /*count_as_eviction=*/false);
    ++count;
  }
  d.NotifyRemoved(removed);
  return count;
}

size_t L1Store::Clear(bool force) {
  Impl& d = *impl_;
  size_t count = 0;
  std::vector<ObjectKey> removed;
  const int64_t now = d.clock->NowNs();
  for (uint64_t si = 0; si <= d.shard_mask; ++si) {
    Shard& s = d.shards[si];
    MutexLock lock(&s.mu);
    for (auto it = s.visible.begin(); it != s.visible.end();) {
      auto next = std::next(it);
      if (force || !d.Locked(it->second, now)) {
        removed.push_back(it->first);
        d.RemoveVisible(s, it, now, /*count_as_eviction=*/false);
        ++count;
      }
      it = next;
    }
    if (force) {
      for (auto& [sk, e] : s.staging) e.cancelled = true;
    }
  }
  d.NotifyRemoved(removed);
  return count;
}

uint64_t L1Store::EvictBytes(uint64_t target_bytes) { return impl_->Evict(target_bytes); }

uint64_t L1Store::EnforceQuotas(double trigger_watermark, double eviction_ratio) {
  Impl& d = *impl_;
  if (!d.policy->supports_quotas()) return 0;
  SaltUsage usage = UsageBySalt();
  std::vector<ObjectKey> victims;
  d.policy->PopQuotaVictims(usage, trigger_watermark, eviction_ratio, &victims);
  std::vector<ObjectKey> removed;
  uint64_t freed = d.EvictKeys(victims, &removed);
  d.NotifyRemoved(removed);
  return freed;
}

size_t L1Store::SweepExpired() {
  Impl& d = *impl_;
  size_t count = 0;
  std::vector<ObjectKey> removed;
  const int64_t now = d.clock->NowNs();
  for (uint64_t si = 0; si <= d.shard_mask; ++si) {
    Shard& s = d.shards[si];
    MutexLock lock(&s.mu);
    for (auto it = s.staging.begin(); it != s.staging.end();) {
      if (now > it->second.expiry_ns) {
        d.allocator->Free(it->second.alloc());
        d.staging_objects.fetch_sub(1, std::memory_order_relaxed);
        d.staging_bytes.fetch_sub(it->second.node.bytes, std::memory_order_relaxed);
        it = s.staging.erase(it);
        ++count;
      } else {
        ++it;
      }
    }
    if (s.locked > 0) {
      for (auto it = s.visible.begin(); it != s.visible.end();) {
        auto next = std::next(it);
        Entry& e = it->second;
        if (e.readers > 0 && now > e.expiry_ns) {
          ++count;
          if (d.Unlocked(s, e)) {
            removed.push_back(it->first);
            d.RemoveVisible(s, it, now, /*count_as_eviction=*/false);
          }
        }
        it = next;
      }
    }
    for (auto it = s.doomed.begin(); it != s.doomed.end();) {
      if (it->second.readers == 0 || now > it->second.expiry_ns) {
        d.allocator->Free(it->second.alloc());
        d.doomed_objects.fetch_sub(1, std::memory_order_relaxed);
        it = s.doomed.erase(it);
        ++count;
      } else {
        ++it;
      }
    }
  }
  d.NotifyRemoved(removed);
  return count;
}

Result<L1ObjectPage> L1Store::ListObjects(const L1ListRequest& request) const {
  const Impl& d = *impl_;
  if (request.page_size == 0) return Status::InvalidArgument("page_size must be positive");
  const uint64_t num_shards = d.shard_mask + 1;
  ListCursor c;
  if (request.cursor.empty()) {
    c.epoch = d.list_epoch;
    c.limit = d.last_seq.load(std::memory_order_relaxed);
  } else {
    if (!DecodeCursor(request.cursor, &c) || c.shard >= num_shards) {
      std::string shown = request.cursor.substr(0, 80);
      for (char& ch : shown) {
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
      }
      return Status::InvalidArgument("malformed L1 list cursor '" + shown +
                                     (request.cursor.size() > 80 ? "...'" : "'"));
    }
    if (c.epoch != d.list_epoch || c.limit > d.last_seq.load(std::memory_order_relaxed)) {
      return Status::InvalidArgument(
          "L1 list cursor is from another L1 store (the server restarted?): start the listing again");
    }
  }

  // Work bounds: index slots examined per call (tombstones, filtered-out
  // objects and shard switches included), and per hold of one shard lock.
  const size_t page_size = std::min<size_t>(request.page_size, size_t{1} << 24);
  size_t budget = 8 * page_size + 1024;
  constexpr size_t kSlotsPerLock = 256;

  L1ObjectPage page;
  page.objects.reserve(std::min<size_t>(page_size, 4096));
  const int64_t now = d.clock->NowNs();
  while (c.shard < num_shards) {
    const Shard& s = d.shards[c.shard];
    bool shard_done = false;
    {
      MutexLock lock(&s.mu);
      auto it = std::upper_bound(s.order.begin(), s.order.end(), c.after,
                                 [](uint64_t seq, const OrderSlot& slot) { return seq < slot.seq; });
      size_t examined = 0;
      for (; it != s.order.end() && examined < kSlotsPerLock && budget > 0; ++it) {
        if (it->seq > c.limit) break;  // visible since the pass began: not listed
        ++examined;
        --budget;
        const Entry* e = it->entry;
        if (e != nullptr && (!request.model_name || e->node.key->model_name.str() == *request.model_name)) {
          if (page.objects.size() == page_size) {
            // One more match exists: the next page starts at it.
            c.after = it->seq - 1;
            page.next_cursor = EncodeCursor(c);
            return page;
          }
          L1ObjectInfo info;
          info.key = *e->node.key;
          info.size = e->size;
          info.allocated_bytes = e->node.bytes;
          info.read_locks = d.Locked(*e, now) ? e->readers : 0;
          info.temporary = e->state == State::kTemporary;
          page.objects.push_back(info);
        }
        c.after = it->seq;
      }
      shard_done = it == s.order.end() || it->seq > c.limit;
    }
    if (shard_done) {
      ++c.shard;
      c.after = 0;
      if (budget > 0) --budget;  // an empty shard costs one step
    }
    if (budget == 0 && c.shard < num_shards) {
      page.next_cursor = EncodeCursor(c);
      return page;
    }
  }
  return page;  // the pass is complete
}

EvictionPolicy* L1Store::policy() const { return impl_->policy.get(); }
const Arena& L1Store::arena() const { return *impl_->arena; }
bool L1Store::UnlinkShm() { return impl_->arena->UnlinkShm(); }
Clock* L1Store::clock() const { return impl_->clock; }

L1Stats L1Store::Stats() const {
  const Impl& d = *impl_;
  AllocatorStats a = d.allocator->Stats();
  L1Stats s;
  s.capacity_bytes = d.arena->capacity();
  s.usable_bytes = d.arena->usable_bytes();
  s.prefaulted_bytes = d.arena->prefaulted_bytes();
  s.used_bytes = a.used_bytes;
  s.resident_objects = d.visible_objects.load(std::memory_order_relaxed);
  s.temporary_objects = d.temporary_objects.load(std::memory_order_relaxed);
  s.staging_objects = d.staging_objects.load(std::memory_order_relaxed);
  s.staging_bytes = d.staging_bytes.load(std::memory_order_relaxed);
  s.doomed_objects = d.doomed_objects.load(std::memory_order_relaxed);
  s.read_locked_objects = d.read_locked_objects.load(std::memory_order_relaxed);
  s.write_locked_objects = s.staging_objects;
  s.evicted_objects = d.evicted_objects.load(std::memory_order_relaxed);
  s.evicted_bytes = d.evicted_bytes.load(std::memory_order_relaxed);
  s.allocation_failures = d.allocation_failures.load(std::memory_order_relaxed);
  s.largest_free_block = a.largest_free_block;
  s.high_water_mark = a.high_water_mark;
  s.write_ttl_seconds = d.options.write_ttl_seconds;
  s.read_ttl_seconds = d.options.read_ttl_seconds;
  return s;
}

SaltUsage L1Store::UsageBySalt() const {
  const Impl& d = *impl_;
  SaltUsage usage;
  for (uint64_t si = 0; si <= d.shard_mask; ++si) {
    const Shard& s = d.shards[si];
    MutexLock lock(&s.mu);
    for (const auto& [salt, bytes] : s.salt_bytes) usage[salt] += bytes;
  }
  return usage;
}

void L1Store::AddListener(L1Listener* listener) {
  std::unique_lock lock(impl_->listeners_mu);
  impl_->listeners.push_back(listener);
}

void L1Store::RemoveListener(L1Listener* listener) {
  std::unique_lock lock(impl_->listeners_mu);
  auto& v = impl_->listeners;
  v.erase(std::remove(v.begin(), v.end(), listener), v.end());
}

}  // namespace lmcache
