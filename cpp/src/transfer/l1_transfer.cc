// StoreChunks / RetrieveChunks: the lmcache_driven STORE and RETRIEVE data
// path against an L1Store, entirely in C++.
#include <vector>

#include "lmcache/transfer.h"

namespace lmcache {

Result<StoreChunksResult> StoreChunks(L1Store& store, const KvCacheRegistration& reg, uint32_t object_group,
                                      std::span<const ObjectKey> keys, BlockIdLists block_ids, WriterTag tag,
                                      CopyPool* pool) {
  StoreChunksResult res;
  LMCACHE_RETURN_IF_ERROR(reg.ValidateBlockIds(object_group, block_ids, keys.size()));
  if (keys.empty()) return res;
  const std::vector<uint64_t> sizes(keys.size(), reg.ObjectBytes(object_group));
  std::vector<ReserveOutcome> outcomes;
  std::vector<ObjectView> views;
  LMCACHE_RETURN_IF_ERROR(store.ReserveWrite(keys, sizes, tag, &outcomes, &views));
  std::vector<ObjectKey> reserved;
  reserved.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (outcomes[i] == ReserveOutcome::kReserved) {
      reserved.push_back(keys[i]);
    } else {
      views[i] = ObjectView{};  // already resident: nothing to copy
    }
  }
  res.written = reserved.size();
  res.already_resident = keys.size() - reserved.size();
  if (reserved.empty()) return res;
  Status st = reg.Gather(object_group, block_ids, views, pool);
  if (!st.ok()) {
    store.AbortWrite(reserved, tag);
    return st;
  }
  LMCACHE_RETURN_IF_ERROR(store.FinishWrite(reserved, tag));
  return res;
}

Result<size_t> RetrieveChunks(L1Store& store, const KvCacheRegistration& reg, uint32_t object_group,
                              std::span<const ObjectKey> keys, BlockIdLists block_ids, uint64_t skip_first_n_tokens,
                              bool consume_lookup_locks, CopyPool* pool) {
  LMCACHE_RETURN_IF_ERROR(reg.ValidateBlockIds(object_group, block_ids, keys.size()));
  if (keys.empty()) return size_t{0};
  std::vector<ObjectView> views;
  const size_t hits = store.ReserveReadPrefix(keys, 1, &views);
  const std::span<const ObjectKey> locked = keys.first(hits);
  Status st;
  if (hits > 0) st = reg.Scatter(object_group, block_ids, std::span<const ObjectView>(views.data(), hits),
                                 skip_first_n_tokens, pool);
  store.FinishRead(locked);
  if (consume_lookup_locks) store.FinishRead(locked);
  if (!st.ok()) return st;
  return hits;
}

}  // namespace lmcache
