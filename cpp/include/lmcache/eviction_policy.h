// EvictionPolicy: which evictable L1 objects go first.
//
// A policy orders exactly the objects that may be evicted right now: resident
// and not read-locked. The L1 store owns one EvictionNode per object
// (embedded in the object's entry, so the policy allocates nothing per
// object) and calls:
//   Insert(node)  when the object becomes evictable (admitted unlocked, or its
//                 last read lock was released): it becomes most recently used;
//   Remove(node)  when it stops being evictable (read-locked) or is deleted;
//                 a no-op for a node that is not linked;
//   Touch(node)   on an access that takes no lock (end_session); a no-op for
//                 a node that is not linked.
// To evict, the store calls PopVictims (or PopQuotaVictims), which unlinks
// nodes in eviction order and returns copies of their keys; the store then
// re-checks each victim under its own lock (it may have been locked or
// deleted meanwhile) and frees it. Returning keys, not nodes, means a victim
// freed concurrently is never dereferenced.
//
// Quotas (IsolatedLRU only): per cache_salt byte limits, settable at run
// time. A salt with no quota has an effective limit of 0 (allow-list
// semantics of the configuration reference): its objects are evicted first
// under pressure and all of them at the next periodic pass.
//
// Implementations: "LRU" (one list), "IsolatedLRU" (one list per cache_salt),
// "noop" (never evicts: L1 as a pure write buffer in front of L2).
//
// Thread safety: thread-safe; every method takes the policy's own mutex. The
// store calls Insert/Remove/Touch while holding one of its shard locks, so a
// policy must never call back into the store (lock order: shard -> policy).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lmcache/key.h"
#include "lmcache/status.h"

namespace lmcache {

// Intrusive hook owned by the L1 store. The policy may only touch the link
// fields (prev, next, list, linked) and only under its own mutex; key and
// bytes are set by the store before the first Insert and never change while
// the node is linked.
struct EvictionNode {
  const ObjectKey* key = nullptr;  // stable for the node's life
  uint64_t bytes = 0;
  // -- policy-owned --
  EvictionNode* prev = nullptr;
  EvictionNode* next = nullptr;
  void* list = nullptr;     // which list the node is on (policy-defined)
  uint64_t seq = 0;         // recency stamp (policy-defined)
  bool linked = false;
};

struct SymbolLess {
  bool operator()(const Symbol& a, const Symbol& b) const { return a.str() < b.str(); }
};
// Resident bytes per cache_salt.
using SaltUsage = std::map<Symbol, uint64_t, SymbolLess>;

struct QuotaInfo {
  uint64_t limit_bytes = 0;
  bool has_quota = false;
};

struct PolicyStats {
  uint64_t linked_objects = 0;  // evictable objects known to the policy
  uint64_t linked_bytes = 0;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view name() const = 0;

  virtual void Insert(EvictionNode* node) = 0;
  virtual void Remove(EvictionNode* node) = 0;
  virtual void Touch(EvictionNode* node) = 0;

  // Unlink victims in eviction order until their bytes sum to at least
  // target_bytes or nothing is left; append their keys to *out. Returns the
  // bytes popped.
  virtual uint64_t PopVictims(uint64_t target_bytes, std::vector<ObjectKey>* out) = 0;

  // Periodic quota enforcement. `usage` gives the resident bytes per salt (as
  // accounted by the store, locked objects included). For every salt whose
  // usage is at or above trigger_watermark x limit, pop victims of that salt
  // worth eviction_ratio x its usage, and at least enough to bring it back
  // under the limit; salts without a quota lose all their evictable objects.
  // Policies without quotas do nothing. Returns bytes popped.
  virtual uint64_t PopQuotaVictims(const SaltUsage& /*usage*/, double /*trigger_watermark*/,
                                   double /*eviction_ratio*/, std::vector<ObjectKey>* /*out*/) {
    return 0;
  }

  virtual bool supports_quotas() const { return false; }
  // InvalidArgument for policies without quotas.
  virtual Status SetQuota(Symbol /*salt*/, uint64_t /*limit_bytes*/) {
    return Status::InvalidArgument(std::string(name()) + " eviction policy has no quotas");
  }
  // NotFound when the salt had no quota.
  virtual Status RemoveQuota(Symbol /*salt*/) {
    return Status::InvalidArgument(std::string(name()) + " eviction policy has no quotas");
  }
  virtual std::map<std::string, uint64_t> Quotas() const { return {}; }
  virtual QuotaInfo GetQuota(Symbol /*salt*/) const { return {}; }

  virtual PolicyStats Stats() const = 0;
};

// "LRU", "IsolatedLRU", "noop" (exact, case-sensitive as on the command line).
// InvalidArgument naming the accepted values for anything else.
Result<std::unique_ptr<EvictionPolicy>> CreateEvictionPolicy(std::string_view name);

}  // namespace lmcache
