// IsolatedLruPolicy: one intrusive LRU list per cache_salt, with per-salt byte
// quotas (allow-list semantics: a salt without a quota has a limit of 0).
//
// Every Insert/Touch stamps the node with a global, increasing seq, so the
// heads of the per-salt lists can be compared to find the globally least
// recently used object. Insert, Remove and Touch are O(1) (one hash lookup on
// Insert of an unlinked node); PopVictims is O(victims x salts) and
// PopQuotaVictims O(victims + salts x log(usage entries)).

#include <algorithm>
#include <cmath>
#include <limits>

#include "eviction/policies.h"

namespace lmcache::internal {
namespace {

// Bytes PopQuotaVictims takes from a salt with a quota that triggered:
// max(ceil(eviction_ratio x usage), usage - limit), saturating.
uint64_t QuotaTarget(uint64_t usage, uint64_t limit, double eviction_ratio) {
  uint64_t by_ratio = 0;
  const double r = eviction_ratio * static_cast<double>(usage);
  if (r > 0) {  // false for NaN and non-positive ratios
    // 2^64 as a double; anything at or above it saturates.
    constexpr double kTwoTo64 = 18446744073709551616.0;
    const double c = std::ceil(r);
    by_ratio = c >= kTwoTo64 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(c);
  }
  const uint64_t over_limit = usage > limit ? usage - limit : 0;
  return std::max(by_ratio, over_limit);
}

}  // namespace

IsolatedLruPolicy::SaltList* IsolatedLruPolicy::ListOf(const EvictionNode* node) const {
  if (!node->linked) return nullptr;
  return static_cast<SaltList*>(node->list);
}

void IsolatedLruPolicy::Unlink(SaltList* s, EvictionNode* node) {
  s->list.Unlink(node);
  node->list = nullptr;
  --linked_objects_;
  linked_bytes_ -= node->bytes;
}

uint64_t IsolatedLruPolicy::PopHead(SaltList* s, std::vector<ObjectKey>* out) {
  EvictionNode* victim = s->list.head;
  Unlink(s, victim);
  out->push_back(*victim->key);
  return victim->bytes;
}

void IsolatedLruPolicy::Insert(EvictionNode* node) {
  LMCACHE_CHECK(node != nullptr && node->key != nullptr, "EvictionNode needs a key before Insert");
  MutexLock lock(&mu_);
  if (SaltList* s = ListOf(node)) {  // already evictable: just more recently used
    s->list.MoveToBack(node);
    node->seq = next_seq_++;
    return;
  }
  const Symbol salt = node->key->cache_salt;
  auto [it, inserted] = salts_.try_emplace(salt);
  SaltList& s = it->second;
  if (inserted) {
    s.salt = salt;
    auto q = quotas_.find(salt);
    if (q != quotas_.end()) {
      s.has_quota = true;
      s.limit_bytes = q->second;
    }
  }
  s.list.PushBack(node);
  node->list = &s;
  node->seq = next_seq_++;
  ++linked_objects_;
  linked_bytes_ += node->bytes;
}

void IsolatedLruPolicy::Remove(EvictionNode* node) {
  MutexLock lock(&mu_);
  SaltList* s = ListOf(node);
  if (s == nullptr) return;
  Unlink(s, node);
  if (s->list.empty()) salts_.erase(s->salt);
}

void IsolatedLruPolicy::Touch(EvictionNode* node) {
  MutexLock lock(&mu_);
  SaltList* s = ListOf(node);
  if (s == nullptr) return;
  s->list.MoveToBack(node);
  node->seq = next_seq_++;
}

IsolatedLruPolicy::SaltList* IsolatedLruPolicy::PickVictimList() {
  SaltList* unquoted = nullptr;  // salt without a quota with the oldest head
  SaltList* over = nullptr;      // salt with the largest excess over its quota
  uint64_t over_excess = 0;
  SaltList* oldest = nullptr;    // salt with the globally oldest head
  for (auto& entry : salts_) {
    SaltList* s = &entry.second;
    const uint64_t head_seq = s->list.head->seq;  // lists in salts_ are never empty
    if (!s->has_quota) {
      if (unquoted == nullptr || head_seq < unquoted->list.head->seq) unquoted = s;
    } else if (s->list.bytes > s->limit_bytes) {
      const uint64_t excess = s->list.bytes - s->limit_bytes;
      if (over == nullptr || excess > over_excess ||
          (excess == over_excess && head_seq < over->list.head->seq)) {
        over = s;
        over_excess = excess;
      }
    }
    if (oldest == nullptr || head_seq < oldest->list.head->seq) oldest = s;
  }
  if (unquoted != nullptr) return unquoted;
  if (over != nullptr) return over;
  return oldest;
}

uint64_t IsolatedLruPolicy::PopVictims(uint64_t target_bytes, std::vector<ObjectKey>* out) {
  MutexLock lock(&mu_);
  uint64_t popped = 0;
  while (popped < target_bytes && linked_objects_ > 0) {
    SaltList* s = PickVictimList();
    popped += PopHead(s, out);
    if (s->list.empty()) salts_.erase(s->salt);
  }
  return popped;
}

uint64_t IsolatedLruPolicy::PopQuotaVictims(const SaltUsage& usage, double trigger_watermark,
                                            double eviction_ratio, std::vector<ObjectKey>* out) {
  MutexLock lock(&mu_);
  uint64_t popped = 0;
  for (auto it = salts_.begin(); it != salts_.end();) {
    SaltList* s = &it->second;
    uint64_t target = std::numeric_limits<uint64_t>::max();  // no quota: everything
    if (s->has_quota) {
      auto u = usage.find(s->salt);
      const uint64_t used = u == usage.end() ? 0 : u->second;
      if (static_cast<double>(used) >= trigger_watermark * static_cast<double>(s->limit_bytes)) {
        target = QuotaTarget(used, s->limit_bytes, eviction_ratio);
      } else {
        target = 0;
      }
    }
    uint64_t taken = 0;
    while (taken < target && !s->list.empty()) taken += PopHead(s, out);
    popped += taken;
    if (s->list.empty()) {
      it = salts_.erase(it);
    } else {
      ++it;
    }
  }
  return popped;
}

Status IsolatedLruPolicy::SetQuota(Symbol salt, uint64_t limit_bytes) {
  MutexLock lock(&mu_);
  quotas_[salt] = limit_bytes;
  auto it = salts_.find(salt);
  if (it != salts_.end()) {
    it->second.has_quota = true;
    it->second.limit_bytes = limit_bytes;
  }
  return Status::OK();
}

Status IsolatedLruPolicy::RemoveQuota(Symbol salt) {
  MutexLock lock(&mu_);
  if (quotas_.erase(salt) == 0) {
    return Status::NotFound("no quota for cache_salt '" + salt.str() + "'");
  }
  auto it = salts_.find(salt);
  if (it != salts_.end()) {
    it->second.has_quota = false;
    it->second.limit_bytes = 0;
  }
  return Status::OK();
}

std::map<std::string, uint64_t> IsolatedLruPolicy::Quotas() const {
  MutexLock lock(&mu_);
  std::map<std::string, uint64_t> result;
  for (const auto& [salt, limit] : quotas_) result.emplace(salt.str(), limit);
  return result;
}

QuotaInfo IsolatedLruPolicy::GetQuota(Symbol salt) const {
  MutexLock lock(&mu_);
  auto it = quotas_.find(salt);
  if (it == quotas_.end()) return {};
  return {it->second, true};
}

PolicyStats IsolatedLruPolicy::Stats() const {
  MutexLock lock(&mu_);
  return {linked_objects_, linked_bytes_};
}

size_t IsolatedLruPolicy::num_salt_lists_for_testing() const {
  MutexLock lock(&mu_);
  return salts_.size();
}

}  // namespace lmcache::internal
