// LruPolicy: one intrusive list, head = least recently used, tail = most
// recently used. Every operation is O(1) except PopVictims (O(victims)).

#include "eviction/policies.h"

namespace lmcache::internal {

void LruPolicy::Insert(EvictionNode* node) {
  LMCACHE_CHECK(node != nullptr && node->key != nullptr, "EvictionNode needs a key before Insert");
  MutexLock lock(&mu_);
  if (IsMine(node)) {
    list_.MoveToBack(node);  // already evictable: just more recently used
  } else {
    list_.PushBack(node);
    node->list = &list_;
  }
  node->seq = next_seq_++;
}

void LruPolicy::Remove(EvictionNode* node) {
  MutexLock lock(&mu_);
  if (!IsMine(node)) return;
  list_.Unlink(node);
  node->list = nullptr;
}

void LruPolicy::Touch(EvictionNode* node) {
  MutexLock lock(&mu_);
  if (!IsMine(node)) return;
  list_.MoveToBack(node);
  node->seq = next_seq_++;
}

uint64_t LruPolicy::PopVictims(uint64_t target_bytes, std::vector<ObjectKey>* out) {
  MutexLock lock(&mu_);
  uint64_t popped = 0;
  while (popped < target_bytes && !list_.empty()) {
    EvictionNode* victim = list_.head;
    list_.Unlink(victim);
    victim->list = nullptr;
    out->push_back(*victim->key);
    popped += victim->bytes;
  }
  return popped;
}

PolicyStats LruPolicy::Stats() const {
  MutexLock lock(&mu_);
  return {list_.objects, list_.bytes};
}

}  // namespace lmcache::internal
