// NoopPolicy: L1 as a pure write buffer in front of L2. Nothing is ever
// linked, so nothing is ever evicted by the policy; Remove and Touch (inline
// in policies.h) are always no-ops on the never-linked nodes.

#include "eviction/policies.h"

namespace lmcache::internal {

void NoopPolicy::Insert(EvictionNode* node) {
  // Same precondition as the other policies, so a store bug shows up whichever
  // policy is configured. The node itself is not touched.
  LMCACHE_CHECK(node != nullptr && node->key != nullptr, "EvictionNode needs a key before Insert");
}

}  // namespace lmcache::internal
