// L1Store: the host-memory tier. Maps ObjectKey -> an object in the arena,
// with the states, locks, accounting and eviction hooks of LMCache's L1
// manager (compat reference §12), minus its defects.
//
// Object states
//   staging    reserved by ReserveWrite for one writer `tag`, write-locked for
//              write_ttl; invisible to readers. Several writers may stage the
//              same key; the first FinishWrite wins and later copies are
//              discarded (first writer wins, as on disk).
//   resident   visible to readers; evictable while no read lock is held.
//   temporary  visible like resident, but freed when its last read lock is
//              released (prefetch buffers loaded from L2).
// A lock past its TTL counts as released: expired write locks make staging
// objects reclaimable, expired read locks make objects evictable again
// (SweepExpired applies both; the eviction controller calls it each tick).
//
// Space. ReserveWrite never fails silently: when the objects do not fit, it
// grows a lazy arena, then evicts synchronously (unlocked objects, in policy
// order) until they fit, and only then gives up with NoSpace, reserving
// nothing. Memory of an object that is deleted while read-locked (Clear or
// Delete with force) is not reused until its readers are done or their
// locks expire: it is unlinked from the index at once ("doomed") and freed
// on its last FinishRead.
//
// Views. ObjectView pointers stay valid while the caller holds the object's
// write lock (staging) or a read lock, and within the lock's TTL.
//
// Listeners are called on the thread that made the change, after the
// store's locks are released, with the keys that became resident or were
// removed (deleted, evicted, cleared, freed temporaries); OnAdmitted also
// names the writer tag and whether the objects are temporary. They must be quick
// and must not call AddListener/RemoveListener.
//
// Thread safety: thread-safe. The index is sharded by key hash (one mutex
// per shard); the allocator and the policy have their own mutexes. Lock
// order: shard -> policy, shard -> allocator; no two shard locks are held
// at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lmcache/allocator.h"
#include "lmcache/arena.h"
#include "lmcache/clock.h"
#include "lmcache/eviction_policy.h"
#include "lmcache/key.h"
#include "lmcache/status.h"

namespace lmcache {

struct L1Options {
  ArenaOptions arena;
  double write_ttl_seconds = 600;
  double read_ttl_seconds = 300;
  std::string eviction_policy = "LRU";  // "LRU", "IsolatedLRU", "noop"
  uint32_t num_shards = 64;             // rounded up to a power of two
  // Lazy arenas: bytes kept pre-faulted beyond the allocator's high-water
  // mark by the background prefault thread (0 disables the thread).
  uint64_t prefault_window_bytes = 64ull << 20;
  Clock* clock = nullptr;               // null: Clock::Default()
  MemoryRegistrar* registrar = nullptr; // pinning seam (CUDA layer)
};

struct ObjectView {
  uint8_t* data = nullptr;
  uint64_t size = 0;
};

using WriterTag = uint64_t;

enum class ReserveOutcome : uint8_t {
  kReserved = 0,         // a staging object was reserved: write it, then FinishWrite
  kAlreadyResident = 1,  // nothing reserved: the key is already stored
};

struct L1Stats {
  uint64_t capacity_bytes = 0;     // arena capacity (--l1-size-gb)
  uint64_t usable_bytes = 0;       // arena prefix the allocator manages now
  uint64_t prefaulted_bytes = 0;
  uint64_t used_bytes = 0;         // bytes held by objects in any state
  uint64_t resident_objects = 0;   // resident + temporary
  uint64_t temporary_objects = 0;
  uint64_t staging_objects = 0;
  uint64_t staging_bytes = 0;
  uint64_t doomed_objects = 0;     // deleted while locked, awaiting their readers
  uint64_t read_locked_objects = 0;
  uint64_t write_locked_objects = 0;  // == staging objects with unexpired locks
  uint64_t evicted_objects = 0;    // totals since creation
  uint64_t evicted_bytes = 0;
  uint64_t allocation_failures = 0;   // objects a ReserveWrite could not place
  uint64_t largest_free_block = 0;
  uint64_t high_water_mark = 0;
  double write_ttl_seconds = 0;
  double read_ttl_seconds = 0;
};

// Listing (GET /cache/objects?tier=l1). A listing pass walks the shards in
// order and, within a shard, the objects in the order they became visible;
// it covers the objects that were visible when its first page was asked
// for. Every object visible for the whole pass is returned exactly once; one
// removed during the pass may be missing; objects admitted after the pass
// began are left out (a key evicted and stored again meanwhile is therefore
// never returned twice). Staging and doomed objects are not listed.
struct L1ListRequest {
  std::optional<std::string> model_name;  // only objects of this model
  size_t page_size = 500;                 // REQUIRES: > 0
  std::string cursor;                     // "" to start a pass, then next_cursor
};

struct L1ObjectInfo {
  ObjectKey key;
  uint64_t size = 0;             // bytes as written
  uint64_t allocated_bytes = 0;  // arena bytes it holds (size rounded to the alignment)
  uint32_t read_locks = 0;       // unexpired read locks
  bool temporary = false;        // freed at its last read (a prefetch buffer)
};

struct L1ObjectPage {
  std::vector<L1ObjectInfo> objects;
  // "" when the pass is complete. A page may hold fewer than page_size
  // objects (even none) while next_cursor is not empty: one call examines a
  // bounded number of index slots (O(page_size)), however selective the
  // model filter.
  std::string next_cursor;
};

class L1Listener {
 public:
  virtual ~L1Listener() = default;
  virtual void OnResident(const std::vector<ObjectKey>& /*keys*/) {}
  // The keys that FinishWrite* of writer `tag` made visible; `temporary`
  // when they were admitted as temporary objects. Lets a listener tell who
  // wrote them (the L2 store controller skips what the prefetch controller
  // loaded). The default forwards to OnResident(keys).
  virtual void OnAdmitted(const std::vector<ObjectKey>& keys, WriterTag /*tag*/, bool /*temporary*/) {
    OnResident(keys);
  }
  virtual void OnRemoved(const std::vector<ObjectKey>& /*keys*/) {}
};

class L1Store {
 public:
  // InvalidArgument for bad options (unknown policy, zero size, bad TTLs);
  // IOError/NoSpace when the arena cannot be mapped.
  static Result<std::unique_ptr<L1Store>> Create(const L1Options& options);
  ~L1Store();
  L1Store(const L1Store&) = delete;
  L1Store& operator=(const L1Store&) = delete;

  // ---- write path ----
  // Reserve one staging object per key that is not resident yet.
  // outcomes/views get one entry per key (views[i] is empty for
  // kAlreadyResident). REQUIRES: keys.size() == sizes.size(), sizes > 0.
  // NoSpace (nothing reserved) when the objects cannot fit even after
  // eviction; InvalidArgument for a size of 0 or duplicate keys in one call.
  Status ReserveWrite(std::span<const ObjectKey> keys, std::span<const uint64_t> sizes, WriterTag tag,
                      std::vector<ReserveOutcome>* outcomes, std::vector<ObjectView>* views);
  // Publish tag's staging objects: each becomes resident unless the key
  // already is (then the staging copy is freed). Keys without a staging
  // object of this tag (never reserved, expired and reclaimed, or cancelled
  // by Clear(force)) are skipped: NotFound names how many.
  Status FinishWrite(std::span<const ObjectKey> keys, WriterTag tag);
  // Publish and read-lock atomically: like FinishWrite, then `readers` read
  // locks on each key's resident object (the admitted copy or the one that
  // was already there). temporary: objects admitted here are temporary.
  // views get one entry per key (empty for keys skipped as in FinishWrite).
  Status FinishWriteAndReserveRead(std::span<const ObjectKey> keys, WriterTag tag, uint32_t readers,
                                   bool temporary, std::vector<ObjectView>* views);
  // Free tag's staging objects for keys (a failed write). Missing ones are ignored.
  void AbortWrite(std::span<const ObjectKey> keys, WriterTag tag);

  // ---- read path ----
  // Take `readers` read locks (REQUIRES: 1..128) on the longest prefix of
  // keys that is visible; returns its length. views[i] for i < result.
  size_t ReserveReadPrefix(std::span<const ObjectKey> keys, uint32_t readers, std::vector<ObjectView>* views);
  // Per key: hits[i] is true when keys[i] was visible and is now locked.
  void ReserveRead(std::span<const ObjectKey> keys, uint32_t readers, std::vector<bool>* hits,
                   std::vector<ObjectView>* views);
  // Release one read lock per key. Keys without a live lock are ignored
  // (returns how many locks were released). Temporary and doomed objects are
  // freed at their last release.
  size_t FinishRead(std::span<const ObjectKey> keys);
  // Is the key visible (resident or temporary)? Takes no lock.
  bool Contains(const ObjectKey& key) const;
  // Count of the leading keys that are visible. Takes no lock.
  size_t PrefixHits(std::span<const ObjectKey> keys) const;
  // Mark keys as recently used (end_session).
  void Touch(std::span<const ObjectKey> keys);

  // ---- removal ----
  // Delete visible objects. Read-locked ones are skipped unless force (then
  // they become doomed). Returns the number removed from the index.
  size_t Delete(std::span<const ObjectKey> keys, bool force);
  // Delete every visible object (as Delete); force also cancels staging
  // objects (their FinishWrite then reports NotFound). Returns objects removed.
  size_t Clear(bool force);

  // ---- eviction ----
  // Evict unlocked objects in policy order until `target_bytes` are freed or
  // nothing evictable is left. Returns bytes freed.
  uint64_t EvictBytes(uint64_t target_bytes);
  // Per-salt quota enforcement (IsolatedLRU); returns bytes freed.
  uint64_t EnforceQuotas(double trigger_watermark, double eviction_ratio);
  // Reclaim staging objects whose write lock expired, clear expired read
  // locks (making those objects evictable again) and free doomed objects
  // whose locks expired. Returns objects reclaimed or unlocked.
  size_t SweepExpired();

  // ---- listing ----
  // One page of a listing pass (see L1ListRequest). Holds one shard lock at a
  // time, for at most a few hundred index slots. InvalidArgument for
  // page_size 0, a malformed cursor or one from another store (a restart).
  Result<L1ObjectPage> ListObjects(const L1ListRequest& request) const;

  EvictionPolicy* policy() const;
  // The arena; for an SHM-backed one (L1Options.arena.shm_name), arena().shm_name()
  // and arena().OffsetOf(view.data, view.size) give what engine_driven workers
  // need to reach an object in their own mapping of the segment.
  const Arena& arena() const;
  // SHM-backed L1: remove the segment's name now (server shutdown), so no new
  // process can attach; mappings stay valid until the store is destroyed.
  // Idempotent; false when there was nothing to unlink.
  bool UnlinkShm();
  L1Stats Stats() const;
  SaltUsage UsageBySalt() const;
  Clock* clock() const;

  void AddListener(L1Listener* listener);
  void RemoveListener(L1Listener* listener);

 private:
  L1Store();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmcache
