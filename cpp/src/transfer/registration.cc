// KvCacheRegistration: groups, Gather / Scatter between paged KV and L1
// objects, and the close protocol.
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "lmcache/transfer.h"
#include "transfer/internal.h"

namespace lmcache {

namespace {

std::string GroupStr(const std::vector<uint32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

enum class RunMode : uint8_t {
  kBlock,    // a block's tokens of one K/V plane are one contiguous run
  kToken,    // each token's row (all heads) is contiguous
  kHead,     // each head's head_size elements are contiguous (e.g. HND)
  kElement,  // nothing contiguous: element by element
};

RunMode ModeOf(const PagedKvLayout& l) {
  const int64_t e = l.elem_size;
  if (l.head_size > 1 && l.elem_stride != e) return RunMode::kElement;
  if (l.num_heads > 1 && l.head_stride != int64_t{l.head_size} * e) return RunMode::kHead;
  if (l.block_size > 1 && l.token_stride != static_cast<int64_t>(l.RowBytes())) return RunMode::kToken;
  return RunMode::kBlock;
}

inline void Move(bool to_object, uint8_t* obj, uint8_t* kv, size_t len) {
  if (to_object) {
    std::memcpy(obj, kv, len);
  } else {
    std::memcpy(kv, obj, len);
  }
}

// Copies one layer's slice of one chunk: every K/V plane, every block,
// tokens [skip_tokens, chunk) (skip only matters for scatter).
void CopyLayerChunk(bool to_object, const PagedKvLayout& l, RunMode mode, uint8_t* region, uint32_t group_layers,
                    uint32_t layer_pos, uint32_t chunk_tokens, const int64_t* blocks, uint32_t nblocks,
                    uint32_t skip_tokens) {
  const uint64_t row = l.RowBytes();
  const uint32_t bs = l.block_size;
  const uint32_t e = l.elem_size;
  const uint64_t head_bytes = uint64_t{l.head_size} * e;
  for (uint32_t k = 0; k < l.kv_size; ++k) {
    uint8_t* plane = region + (uint64_t{k} * group_layers + layer_pos) * chunk_tokens * row;
    uint8_t* kv_k = l.base + int64_t{k} * l.kv_stride;
    for (uint32_t j = 0; j < nblocks; ++j) {
      const uint64_t first = uint64_t{j} * bs;  // chunk token of the block's first row
      const uint32_t t0 = skip_tokens > first ? static_cast<uint32_t>(std::min<uint64_t>(bs, skip_tokens - first)) : 0;
      if (t0 == bs) continue;
      uint8_t* kvb = kv_k + blocks[j] * l.block_stride;
      uint8_t* objb = plane + first * row;
      switch (mode) {
        case RunMode::kBlock:
          Move(to_object, objb + t0 * row, kvb + int64_t{t0} * l.token_stride, (bs - t0) * row);
          break;
        case RunMode::kToken:
          for (uint32_t t = t0; t < bs; ++t) Move(to_object, objb + t * row, kvb + int64_t{t} * l.token_stride, row);
          break;
        case RunMode::kHead:
          for (uint32_t t = t0; t < bs; ++t) {
            uint8_t* o = objb + t * row;
            uint8_t* s = kvb + int64_t{t} * l.token_stride;
            for (uint32_t h = 0; h < l.num_heads; ++h) {
              Move(to_object, o + h * head_bytes, s + int64_t{h} * l.head_stride, head_bytes);
            }
          }
          break;
        case RunMode::kElement:
          for (uint32_t t = t0; t < bs; ++t) {
            uint8_t* o = objb + t * row;
            uint8_t* s = kvb + int64_t{t} * l.token_stride;
            for (uint32_t h = 0; h < l.num_heads; ++h) {
              for (uint32_t x = 0; x < l.head_size; ++x) {
                Move(to_object, o + h * head_bytes + uint64_t{x} * e,
                     s + int64_t{h} * l.head_stride + int64_t{x} * l.elem_stride, e);
              }
            }
          }
          break;
      }
    }
  }
}

constexpr uint64_t kPopulateStep = 64ull << 20;
constexpr int kMadvPopulateWrite = 23;  // MADV_POPULATE_WRITE (Linux 5.14+)

// Fills the page tables of [data, data + size) step by step until done or
// *stop. Mapping existing shm pages is a minor fault each; doing it here
// keeps those faults off the copy path. Best effort: a kernel without
// MADV_POPULATE_WRITE (EINVAL) just stops, the copies then fault as before.
void PopulateMapping(uint8_t* data, uint64_t size, const std::atomic<bool>* stop, std::atomic<uint64_t>* done) {
  for (uint64_t off = 0; off < size;) {
    if (stop->load(std::memory_order_relaxed)) return;
    const uint64_t len = std::min(kPopulateStep, size - off);
    if (madvise(data + off, len, kMadvPopulateWrite) != 0) {
      if (errno == EINTR || errno == EAGAIN) continue;  // retry this step
      return;
    }
    off += len;
    done->fetch_add(len, std::memory_order_relaxed);
  }
}

}  // namespace

KvCacheRegistration::~KvCacheRegistration() { Close(); }

uint64_t KvCacheRegistration::populated_bytes() const { return state_->populated.load(std::memory_order_relaxed); }

Result<std::shared_ptr<KvCacheRegistration>> KvCacheRegistration::Create(
    std::vector<PagedKvLayout> layers, const RegistrationOptions& options,
    std::vector<std::unique_ptr<ShmMapping>> mappings) {
  if (layers.empty()) return Status::InvalidArgument("a KV cache registration needs at least one layer");
  if (options.chunk_tokens == 0) return Status::InvalidArgument("chunk_tokens must be positive");
  const uint32_t n = static_cast<uint32_t>(layers.size());
  for (uint32_t i = 0; i < n; ++i) {
    const PagedKvLayout& l = layers[i];
    if (l.base == nullptr || l.elem_size != KvDtypeSize(l.dtype) || l.kv_size == 0 || l.kv_size > 2 ||
        l.num_blocks == 0 || l.block_size == 0 || l.num_heads == 0 || l.head_size == 0) {
      return Status::InvalidArgument("layer " + std::to_string(i) + " has an invalid layout");
    }
  }

  // Kernel groups.
  std::vector<std::vector<uint32_t>> kgs = options.kernel_groups;
  if (kgs.empty()) {
    using Identity = std::tuple<KvFormat, uint32_t, uint32_t, uint32_t, uint32_t, KvDtype>;
    std::map<Identity, size_t> index;
    for (uint32_t i = 0; i < n; ++i) {
      const PagedKvLayout& l = layers[i];
      const Identity id{l.format, l.kv_size, l.num_heads, l.head_size, l.block_size, l.dtype};
      auto [it, inserted] = index.emplace(id, kgs.size());
      if (inserted) kgs.emplace_back();
      kgs[it->second].push_back(i);
    }
  }
  std::vector<int> owner(n, -1);
  auto out = std::shared_ptr<KvCacheRegistration>(new KvCacheRegistration());
  out->chunk_tokens_ = options.chunk_tokens;
  for (size_t g = 0; g < kgs.size(); ++g) {
    const std::vector<uint32_t>& members = kgs[g];
    if (members.empty()) return Status::InvalidArgument("kernel group " + std::to_string(g) + " is empty");
    for (uint32_t li : members) {
      if (li >= n) {
        return Status::InvalidArgument("kernel group " + std::to_string(g) + " names layer " + std::to_string(li) +
                                       " of " + std::to_string(n));
      }
      if (owner[li] >= 0) {
        return Status::InvalidArgument("layer " + std::to_string(li) + " is in kernel groups " +
                                       std::to_string(owner[li]) + " and " + std::to_string(g));
      }
      owner[li] = static_cast<int>(g);
    }
    const PagedKvLayout& f = layers[members[0]];
    KernelGroupInfo info;
    info.layers = members;
    info.dtype = f.dtype;
    info.kv_size = f.kv_size;
    info.num_heads = f.num_heads;
    info.head_size = f.head_size;
    info.block_size = f.block_size;
    info.num_blocks = f.num_blocks;
    for (uint32_t li : members) {
      const PagedKvLayout& l = layers[li];
      if (l.dtype != f.dtype || l.kv_size != f.kv_size || l.num_heads != f.num_heads || l.head_size != f.head_size ||
          l.block_size != f.block_size) {
        return Status::InvalidArgument("kernel group " + std::to_string(g) + " " + GroupStr(members) +
                                       " mixes layer geometries (dtype, kv_size, heads, head_size, block_size)");
      }
      info.num_blocks = std::min(info.num_blocks, l.num_blocks);
    }
    if (options.chunk_tokens % f.block_size != 0) {
      return Status::InvalidArgument("chunk_tokens " + std::to_string(options.chunk_tokens) +
                                     " is not a multiple of block_size " + std::to_string(f.block_size) +
                                     " (kernel group " + std::to_string(g) + ")");
    }
    info.blocks_per_chunk = options.chunk_tokens / f.block_size;
    info.region_bytes = uint64_t{f.kv_size} * members.size() * options.chunk_tokens * f.RowBytes();
    out->kernel_groups_.push_back(std::move(info));
  }

  // Object groups.
  std::vector<std::vector<uint32_t>> ogs = options.object_groups;
  if (ogs.empty()) {
    ogs.emplace_back();
    for (uint32_t g = 0; g < out->kernel_groups_.size(); ++g) ogs[0].push_back(g);
  }
  std::vector<int> og_owner(out->kernel_groups_.size(), -1);
  for (size_t o = 0; o < ogs.size(); ++o) {
    if (ogs[o].empty()) return Status::InvalidArgument("object group " + std::to_string(o) + " is empty");
    ObjectGroupInfo info;
    info.object_bytes = 0;
    for (uint32_t g : ogs[o]) {
      if (g >= out->kernel_groups_.size()) {
        return Status::InvalidArgument("object group " + std::to_string(o) + " names kernel group " +
                                       std::to_string(g) + " of " + std::to_string(out->kernel_groups_.size()));
      }
      if (og_owner[g] >= 0) {
        return Status::InvalidArgument("kernel group " + std::to_string(g) + " is in object groups " +
                                       std::to_string(og_owner[g]) + " and " + std::to_string(o));
      }
      og_owner[g] = static_cast<int>(o);
      info.kernel_groups.push_back(g);
      info.region_offsets.push_back(info.object_bytes);
      info.object_bytes += out->kernel_groups_[g].region_bytes;
    }
    out->object_groups_.push_back(std::move(info));
  }
  for (size_t g = 0; g < og_owner.size(); ++g) {
    if (og_owner[g] < 0) return Status::InvalidArgument("kernel group " + std::to_string(g) + " is in no object group");
  }

  out->layers_ = std::move(layers);
  out->mappings_ = std::move(mappings);
  out->state_ = std::make_unique<State>();
  return out;
}

Result<std::shared_ptr<KvCacheRegistration>> KvCacheRegistration::Open(const std::vector<KvTensorHandle>& tensors,
                                                                       const RegistrationOptions& options) {
  if (tensors.empty()) return Status::InvalidArgument("a KV cache registration needs at least one tensor");
  std::vector<std::unique_ptr<ShmMapping>> mappings;
  std::map<std::string, size_t> by_name;  // normalized name -> mappings index
  std::vector<PagedKvLayout> layers;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const KvTensorHandle& t = tensors[i];
    std::string key = t.shm_name;
    if (key.empty() || key.front() != '/') key.insert(key.begin(), '/');
    auto it = by_name.find(key);
    if (it == by_name.end()) {
      Result<std::unique_ptr<ShmMapping>> m = ShmMapping::Open(t.shm_name, t.nbytes);
      if (!m.ok()) return Status(m.status().code(), "layer " + std::to_string(i) + ": " + m.status().message());
      it = by_name.emplace(key, mappings.size()).first;
      mappings.push_back(std::move(m).value());
    } else if (mappings[it->second]->size() != t.nbytes) {
      return Status::InvalidArgument("layer " + std::to_string(i) + ": segment " + key + " was given as " +
                                     std::to_string(mappings[it->second]->size()) + " and " +
                                     std::to_string(t.nbytes) + " bytes");
    }
    const ShmMapping& m = *mappings[it->second];
    Result<KvFormat> f = DetectKvFormat(t.meta, options.layout_hint);
    if (!f.ok()) return Status(f.status().code(), "layer " + std::to_string(i) + ": " + f.status().message());
    Result<PagedKvLayout> l = PagedKvLayout::FromTensor(m.data(), m.size(), t.meta, f.value());
    if (!l.ok()) return Status(l.status().code(), "layer " + std::to_string(i) + ": " + l.status().message());
    layers.push_back(l.value());
  }
  Result<std::shared_ptr<KvCacheRegistration>> reg = Create(std::move(layers), options, std::move(mappings));
  if (reg.ok() && options.populate_in_background) {
    KvCacheRegistration* r = reg.value().get();
    std::vector<std::pair<uint8_t*, uint64_t>> ranges;
    for (const auto& m : r->mappings_) ranges.emplace_back(m->data(), m->size());
    State* st = r->state_.get();
    st->populator = std::thread([st, ranges = std::move(ranges)] {
      // Low priority: this is a head start, not work anyone waits for.
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
      for (const auto& [data, size] : ranges) PopulateMapping(data, size, &st->stop_populate, &st->populated);
    });
  }
  return reg;
}

uint64_t KvCacheRegistration::mapped_bytes() const {
  internal::MutexLock lock(&state_->mu);
  uint64_t b = 0;
  for (const auto& m : mappings_) b += m->size();
  return b;
}

std::vector<std::string> KvCacheRegistration::shm_names() const {
  internal::MutexLock lock(&state_->mu);
  std::vector<std::string> out;
  for (const auto& m : mappings_) out.push_back(m->name());
  return out;
}

bool KvCacheRegistration::closed() const {
  internal::MutexLock lock(&state_->mu);
  return state_->closed;
}

void KvCacheRegistration::Close() {
  if (!state_) return;
  std::vector<std::unique_ptr<ShmMapping>> doomed;
  state_->stop_populate.store(true, std::memory_order_relaxed);
  if (state_->populator.joinable()) {
    if (state_->populator.get_id() == std::this_thread::get_id()) {
      state_->populator.detach();  // cannot happen (the thread never calls Close); be safe
    } else {
      state_->populator.join();  // it touches the mappings: stop it before unmapping
    }
  }
  {
    internal::MutexLock lock(&state_->mu);
    state_->closed = true;
    while (state_->users > 0) state_->idle.Wait(&state_->mu);
    doomed.swap(mappings_);
  }
  doomed.clear();  // munmap outside the lock
}

Status KvCacheRegistration::ValidateBlockIds(uint32_t object_group, BlockIdLists block_ids, size_t num_chunks) const {
  if (object_group >= object_groups_.size()) {
    return Status::InvalidArgument("object group " + std::to_string(object_group) + " does not exist (" +
                                   std::to_string(object_groups_.size()) + " object groups)");
  }
  if (block_ids.size() != kernel_groups_.size()) {
    return Status::InvalidArgument("expected one block-id list per kernel group (" +
                                   std::to_string(kernel_groups_.size()) + "), got " +
                                   std::to_string(block_ids.size()));
  }
  for (uint32_t g : object_groups_[object_group].kernel_groups) {
    const KernelGroupInfo& kg = kernel_groups_[g];
    const uint64_t need = uint64_t{kg.blocks_per_chunk} * num_chunks;
    if (block_ids[g].size() < need) {
      return Status::InvalidArgument("kernel group " + std::to_string(g) + ": " + std::to_string(num_chunks) +
                                     " chunks need " + std::to_string(need) + " block ids, got " +
                                     std::to_string(block_ids[g].size()));
    }
    for (uint64_t i = 0; i < need; ++i) {
      const int64_t b = block_ids[g][i];
      if (b < 0 || b >= int64_t{kg.num_blocks}) {
        return Status::InvalidArgument("kernel group " + std::to_string(g) + ": block id " + std::to_string(b) +
                                       " outside [0, " + std::to_string(kg.num_blocks) + ")");
      }
    }
  }
  return Status::OK();
}

Status KvCacheRegistration::Copy(bool to_object, uint32_t object_group, BlockIdLists block_ids,
                                 std::span<const ObjectView> views, uint64_t skip_first_n_tokens,
                                 CopyPool* pool) const {
  Use use(this);
  if (!use.ok()) return Status::Unavailable("the KV cache registration is closed");
  LMCACHE_RETURN_IF_ERROR(ValidateBlockIds(object_group, block_ids, views.size()));
  const ObjectGroupInfo& og = object_groups_[object_group];
  std::vector<uint32_t> chunks;
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i].data == nullptr) continue;
    if (views[i].size != og.object_bytes) {
      return Status::InvalidArgument("object " + std::to_string(i) + " has " + std::to_string(views[i].size) +
                                     " bytes; this layout's objects have " + std::to_string(og.object_bytes));
    }
    chunks.push_back(static_cast<uint32_t>(i));
  }
  // One work item per (chunk, layer of the object group).
  struct Slot {
    uint32_t kg_pos;
    uint32_t layer_pos;
  };
  std::vector<Slot> slots;
  for (uint32_t p = 0; p < og.kernel_groups.size(); ++p) {
    const KernelGroupInfo& kg = kernel_groups_[og.kernel_groups[p]];
    for (uint32_t lp = 0; lp < kg.layers.size(); ++lp) slots.push_back({p, lp});
  }
  const uint32_t chunk_tokens = chunk_tokens_;
  auto item = [&](size_t i) {
    const uint32_t c = chunks[i / slots.size()];
    const Slot s = slots[i % slots.size()];
    const uint32_t g = og.kernel_groups[s.kg_pos];
    const KernelGroupInfo& kg = kernel_groups_[g];
    const PagedKvLayout& l = layers_[kg.layers[s.layer_pos]];
    const uint64_t chunk_start = uint64_t{c} * chunk_tokens;
    const uint32_t skip = skip_first_n_tokens > chunk_start
                              ? static_cast<uint32_t>(std::min<uint64_t>(chunk_tokens, skip_first_n_tokens - chunk_start))
                              : 0;
    uint8_t* region = views[c].data + og.region_offsets[s.kg_pos];
    CopyLayerChunk(to_object, l, ModeOf(l), region, static_cast<uint32_t>(kg.layers.size()), s.layer_pos, chunk_tokens,
                   block_ids[g].data() + uint64_t{c} * kg.blocks_per_chunk, kg.blocks_per_chunk, skip);
  };
  const size_t items = chunks.size() * slots.size();
  if (pool != nullptr) {
    pool->ParallelFor(items, item);
  } else {
    for (size_t i = 0; i < items; ++i) item(i);
  }
  return Status::OK();
}

Status KvCacheRegistration::Gather(uint32_t object_group, BlockIdLists block_ids, std::span<const ObjectView> dsts,
                                   CopyPool* pool) const {
  return Copy(/*to_object=*/true, object_group, block_ids, dsts, 0, pool);
}

Status KvCacheRegistration::Scatter(uint32_t object_group, BlockIdLists block_ids, std::span<const ObjectView> srcs,
                                    uint64_t skip_first_n_tokens, CopyPool* pool) const {
  return Copy(/*to_object=*/false, object_group, block_ids, srcs, skip_first_n_tokens, pool);
}

}  // namespace lmcache
