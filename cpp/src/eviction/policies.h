// The eviction policies behind lmcache::CreateEvictionPolicy (private to
// cpp/src; the public contract is lmcache/eviction_policy.h).
//
//   LruPolicy          "LRU"          one intrusive list, head = least recently used.
//   IsolatedLruPolicy  "IsolatedLRU"  one intrusive list per cache_salt plus per-salt
//                                     byte quotas (allow-list: no quota = limit 0).
//   NoopPolicy         "noop"         links nothing, never returns a victim.
//
// Behaviour shared by all three, beyond the public contract:
//   * Insert of a node that is already linked acts as Touch (it becomes most
//     recently used; it is not counted twice).
//   * REQUIRES: node != nullptr and node->key != nullptr on Insert (checked).
//   * Nothing is allocated per object. IsolatedLRU allocates one map entry per
//     salt that has evictable objects and frees it when the salt's list empties.
//   * No method calls anything outside the policy (the store calls Insert,
//     Remove and Touch under its shard locks; lock order shard -> policy).
//
// Thread safety: thread-safe; every method takes the policy's own mutex. The
// link fields of an EvictionNode (prev, next, list, seq, linked) are read and
// written only under that mutex.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lmcache/eviction_policy.h"
#include "lmcache/key.h"
#include "lmcache/status.h"
#include "util/mutex.h"

namespace lmcache::internal {

// The names CreateEvictionPolicy accepts, in the order error messages list them.
inline constexpr std::string_view kEvictionPolicyNames[] = {"LRU", "IsolatedLRU", "noop"};

// A new policy for one of kEvictionPolicyNames (exact, case-sensitive), or
// nullptr for any other name.
std::unique_ptr<EvictionPolicy> NewEvictionPolicyOrNull(std::string_view name);

struct SymbolHash {
  size_t operator()(const Symbol& s) const { return s.hash(); }
};

// An intrusive doubly linked list of EvictionNodes with its totals; head is
// the next victim, tail the most recently used. Not synchronized: the owning
// policy calls it under its mutex. It sets node->prev/next/linked only;
// node->list and node->seq are the caller's.
struct NodeList {
  EvictionNode* head = nullptr;
  EvictionNode* tail = nullptr;
  uint64_t objects = 0;
  uint64_t bytes = 0;

  bool empty() const { return head == nullptr; }

  // REQUIRES: !node->linked.
  void PushBack(EvictionNode* node) {
    node->prev = tail;
    node->next = nullptr;
    if (tail != nullptr) {
      tail->next = node;
    } else {
      head = node;
    }
    tail = node;
    node->linked = true;
    ++objects;
    bytes += node->bytes;
  }

  // REQUIRES: node is linked on this list.
  void Unlink(EvictionNode* node) {
    if (node->prev != nullptr) {
      node->prev->next = node->next;
    } else {
      head = node->next;
    }
    if (node->next != nullptr) {
      node->next->prev = node->prev;
    } else {
      tail = node->prev;
    }
    node->prev = nullptr;
    node->next = nullptr;
    node->linked = false;
    --objects;
    bytes -= node->bytes;
  }

  // REQUIRES: node is linked on this list.
  void MoveToBack(EvictionNode* node) {
    if (node == tail) return;
    Unlink(node);
    PushBack(node);
  }
};

class LruPolicy final : public EvictionPolicy {
 public:
  LruPolicy() = default;
  LruPolicy(const LruPolicy&) = delete;
  LruPolicy& operator=(const LruPolicy&) = delete;

  std::string_view name() const override { return "LRU"; }
  void Insert(EvictionNode* node) override EXCLUDES(mu_);
  void Remove(EvictionNode* node) override EXCLUDES(mu_);
  void Touch(EvictionNode* node) override EXCLUDES(mu_);
  uint64_t PopVictims(uint64_t target_bytes, std::vector<ObjectKey>* out) override EXCLUDES(mu_);
  PolicyStats Stats() const override EXCLUDES(mu_);

 private:
  // Whether `node` is linked on this policy's list.
  bool IsMine(const EvictionNode* node) const REQUIRES(mu_) {
    return node->linked && node->list == &list_;
  }

  mutable Mutex mu_;
  NodeList list_ GUARDED_BY(mu_);
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
};

class IsolatedLruPolicy final : public EvictionPolicy {
 public:
  IsolatedLruPolicy() = default;
  IsolatedLruPolicy(const IsolatedLruPolicy&) = delete;
  IsolatedLruPolicy& operator=(const IsolatedLruPolicy&) = delete;

  std::string_view name() const override { return "IsolatedLRU"; }
  void Insert(EvictionNode* node) override EXCLUDES(mu_);
  void Remove(EvictionNode* node) override EXCLUDES(mu_);
  void Touch(EvictionNode* node) override EXCLUDES(mu_);

  // Pops in this order until target_bytes are reached:
  //   1. objects of salts without a quota, oldest first across those salts;
  //   2. objects of salts whose evictable bytes exceed their quota, always
  //      from the salt with the largest excess (evictable bytes - limit; the
  //      policy does not see locked bytes here), its least recently used first;
  //   3. the globally least recently used object of any salt.
  // Each pick is O(number of salts with evictable objects).
  uint64_t PopVictims(uint64_t target_bytes, std::vector<ObjectKey>* out) override EXCLUDES(mu_);

  // For every salt with evictable objects: a salt without a quota loses all
  // of them; a salt with limit L and usage U (from `usage`, 0 when absent)
  // with U >= trigger_watermark x L loses, least recently used first, objects
  // worth at least max(ceil(eviction_ratio x U), U - L) bytes, or all it has.
  // Other salts are untouched.
  uint64_t PopQuotaVictims(const SaltUsage& usage, double trigger_watermark, double eviction_ratio,
                           std::vector<ObjectKey>* out) override EXCLUDES(mu_);

  bool supports_quotas() const override { return true; }
  // Sets or replaces the salt's limit (0 is a valid limit). Always OK.
  Status SetQuota(Symbol salt, uint64_t limit_bytes) override EXCLUDES(mu_);
  Status RemoveQuota(Symbol salt) override EXCLUDES(mu_);
  // Keyed by salt string; the empty salt is "".
  std::map<std::string, uint64_t> Quotas() const override EXCLUDES(mu_);
  QuotaInfo GetQuota(Symbol salt) const override EXCLUDES(mu_);
  PolicyStats Stats() const override EXCLUDES(mu_);

  // Number of per-salt lists (salts with at least one linked object).
  size_t num_salt_lists_for_testing() const EXCLUDES(mu_);

 private:
  struct SaltList {
    Symbol salt;
    NodeList list;
    bool has_quota = false;
    uint64_t limit_bytes = 0;  // 0 when !has_quota
  };

  // The linked node's list, when it is linked on this policy.
  SaltList* ListOf(const EvictionNode* node) const REQUIRES(mu_);
  void Unlink(SaltList* s, EvictionNode* node) REQUIRES(mu_);
  // Unlinks the head of `s`, appends its key, returns its bytes. Does not
  // erase `s` from salts_. REQUIRES: !s->list.empty().
  uint64_t PopHead(SaltList* s, std::vector<ObjectKey>* out) REQUIRES(mu_);
  // The list PopVictims takes its next victim from; nullptr when all are empty.
  SaltList* PickVictimList() REQUIRES(mu_);

  mutable Mutex mu_;
  // Node-based map: a SaltList's address is stable until it is erased, and it
  // is erased as soon as its list is empty, so node->list of a linked node
  // always points at a live SaltList.
  std::unordered_map<Symbol, SaltList, SymbolHash> salts_ GUARDED_BY(mu_);
  std::unordered_map<Symbol, uint64_t, SymbolHash> quotas_ GUARDED_BY(mu_);
  uint64_t linked_objects_ GUARDED_BY(mu_) = 0;
  uint64_t linked_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
};

class NoopPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "noop"; }
  // Links nothing: node->linked stays false. REQUIRES: node->key != nullptr.
  void Insert(EvictionNode* node) override;
  void Remove(EvictionNode* /*node*/) override {}
  void Touch(EvictionNode* /*node*/) override {}
  // Always 0; *out is left unchanged.
  uint64_t PopVictims(uint64_t /*target_bytes*/, std::vector<ObjectKey>* /*out*/) override {
    return 0;
  }
  PolicyStats Stats() const override { return {}; }
};

}  // namespace lmcache::internal
