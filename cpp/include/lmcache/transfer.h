// Transfer: moves KV bytes between an inference worker's paged KV cache and
// L1 objects (compat reference §9.2 lmcache_driven STORE/RETRIEVE, §9.5
// checksums, §20 items 2, 3 and 9).
//
// Pieces
//   ShmMapping         RAII owner of one mapped POSIX SHM segment (a CPU
//                      worker's KV storage, `cpu_shm` handle of §9.1).
//   UnlinkIfOwnerDead  removes /lmcache_kv_<pid>_<n> only when <pid> is gone.
//   PagedKvLayout      one registered KV tensor (one layer): base address,
//                      element type and a byte stride for each logical axis
//                      (kv, block, token-in-block, head, element), so any
//                      strided tensor works. Built from the client's
//                      (dtype, shape, stride, storage_offset) and a KvFormat.
//   KvCacheRegistration all layers of one registered worker, partitioned into
//                      kernel groups (layers with one geometry) and object
//                      groups (kernel groups stored in one L1 object).
//                      Gather (paged KV -> object), Scatter (object -> paged
//                      KV) and the MD5 checksums of POST /cache/checksums.
//   CopyPool           a small persistent thread pool the copies may use.
//   StoreChunks / RetrieveChunks  reserve + gather + publish, and
//                      read-lock + scatter + release, against an L1Store.
//
// L1 object format (LMCache 0.5.6 `get_layout_desc`, compat §15 "Content").
// One object holds one chunk of C tokens (C = chunk_tokens, a multiple of
// every group's block size) of one object group. It is the concatenation, in
// the object group's kernel-group order, of one region per kernel group:
//     region = [kv_size][num_layers_in_group][C][num_heads * head_size]
// in the group's dtype, row-major, no header and no padding. kv_size is 2
// (K then V) for classical attention and 1 for MLA (whose row is the
// latent vector, head_size elements). With the default single object group
// and a homogeneous model this is exactly [2][L][C][NH*HS].
//
// Block ids. Every call takes one block-id list per kernel group (indexed
// by kernel-group index, as 0.5.6's `gpu_block_ids`); chunk i of a batch
// uses ids [i*bpc, (i+1)*bpc) of its group's list, bpc = C / block_size.
// Lists may be longer than needed; shorter ones and ids outside
// [0, num_blocks) are rejected with InvalidArgument before any byte moves.
//
// Thread safety: ShmMapping and PagedKvLayout are immutable values.
// KvCacheRegistration is thread-safe: any number of threads may gather,
// scatter and hash at once (concurrent scatters into the same blocks are the
// caller's race). Close() waits for calls in flight, then unmaps; calls
// after Close() return Unavailable. CopyPool is thread-safe; a pool busy
// with another caller's batch runs the new batch on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmcache/key.h"
#include "lmcache/l1_store.h"
#include "lmcache/status.h"

namespace lmcache {

// ---------------------------------------------------------------- dtypes --

enum class KvDtype : uint8_t {
  kFloat16 = 0,
  kBFloat16 = 1,
  kFloat32 = 2,
  kFloat64 = 3,
  kUInt8 = 4,
  kInt8 = 5,
  kFloat8E4M3 = 6,  // "float8_e4m3fn"
  kFloat8E5M2 = 7,  // "float8_e5m2"
};

// Accepts the torch names with or without a "torch." prefix ("float16",
// "half", "bfloat16", "float32", "float", "float64", "uint8", "int8",
// "float8_e4m3fn", "float8_e5m2"). InvalidArgument for anything else.
Result<KvDtype> ParseKvDtype(std::string_view name);
std::string_view KvDtypeName(KvDtype dtype);
uint32_t KvDtypeSize(KvDtype dtype);

// ------------------------------------------------------------------- SHM --

// One POSIX SHM segment mapped read-write and shared. The fd is closed right
// after mmap; the destructor munmaps. Never unlinks (see UnlinkIfOwnerDead).
// Process-wide counters of live mappings back /status (compat §20 item 2).
class ShmMapping {
 public:
  // Maps the first `nbytes` of segment `name` ("/x" or "x").
  // NotFound: no such segment. InvalidArgument: bad name, nbytes == 0, or the
  // segment is smaller than nbytes. IOError (with the errno text) for
  // permission and mmap failures.
  static Result<std::unique_ptr<ShmMapping>> Open(std::string_view name, uint64_t nbytes);
  ~ShmMapping();
  ShmMapping(const ShmMapping&) = delete;
  ShmMapping& operator=(const ShmMapping&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }  // always with a leading '/'

  static uint64_t LiveCount();
  static uint64_t LiveBytes();

 private:
  ShmMapping(std::string name, uint8_t* data, uint64_t size);
  std::string name_;
  uint8_t* data_;
  uint64_t size_;
};

enum class UnlinkOutcome : uint8_t {
  kUnlinked = 0,    // the owner was dead and the name is gone now
  kOwnerAlive = 1,  // /proc/<pid> exists: left alone
  kNotFound = 2,    // the owner was dead but the name was already gone
};

// For a name "[/]<prefix><pid>_<anything>" (0.5.6 clients use prefix
// "lmcache_kv_"), shm_unlink it only when /proc/<pid> does not exist. A live
// process's segment is never unlinked (a reused pid is treated as alive).
// InvalidArgument when the name does not have that form; IOError when
// shm_unlink fails otherwise.
Result<UnlinkOutcome> UnlinkIfOwnerDead(std::string_view name, std::string_view prefix = "lmcache_kv_");

// Startup sweep: applies UnlinkIfOwnerDead to every entry of shm_dir whose
// name starts with prefix. Returns the names unlinked (with a leading '/').
Result<std::vector<std::string>> UnlinkStaleSegments(std::string_view prefix = "lmcache_kv_",
                                                     const std::string& shm_dir = "/dev/shm");

// --------------------------------------------------------------- layouts --

// Physical layouts of one layer's KV tensor (names as LMCache's
// EngineKVFormat, which 0.5.6 detects after sorting dims by stride).
enum class KvFormat : uint8_t {
  kTwoNbBsNhHs = 0,  // [2, NB, BS, NH, HS]  NL_X_TWO_NB_BS_NH_HS (vLLM flash-attn, NHD)
  kTwoNbNhBsHs = 1,  // [2, NB, NH, BS, HS]  NL_X_TWO_NB_NH_BS_HS (HND; vLLM CPU backend)
  kNbTwoBsNhHs = 2,  // [NB, 2, BS, NH, HS]  NL_X_NB_TWO_BS_NH_HS (flashinfer, NHD)
  kNbTwoNhBsHs = 3,  // [NB, 2, NH, BS, HS]  NL_X_NB_TWO_NH_BS_HS (flashinfer, HND)
  kNbBsHs = 4,       // [NB, BS, HS]         NL_X_NB_BS_HS (MLA, kv_size 1, one "head")
};

// The LMCache names above ("NL_X_TWO_NB_BS_NH_HS", ...), which Parse
// accepts (InvalidArgument otherwise).
std::string_view KvFormatName(KvFormat format);
Result<KvFormat> ParseKvFormat(std::string_view name);

enum class KvLayoutHint : uint8_t { kNHD = 0, kHND = 1 };
Result<KvLayoutHint> ParseKvLayoutHint(std::string_view name);  // "NHD" / "HND"

// A registered tensor as the client describes it (DeviceIPCWrapper metadata,
// compat §9.1): shape and stride in elements, storage_offset in elements
// from the start of the mapping.
struct KvTensorMeta {
  KvDtype dtype = KvDtype::kFloat16;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
  int64_t storage_offset = 0;
};

// 0.5.6's vLLM detection (kv_format/detectors/vllm.py) on the stride-sorted
// view: rank 5 with dim0 == 2 -> TWO_NB_*, else dim1 == 2 -> NB_TWO_*, the
// hint choosing BS,NH (NHD) or NH,BS (HND); rank 3 -> MLA. Note that 0.5.6 on
// a CPU host assumes HND when the client sent no kv_layout hint.
// InvalidArgument for other shapes or inconsistent metadata.
Result<KvFormat> DetectKvFormat(const KvTensorMeta& meta, KvLayoutHint hint);

// One layer's paged KV tensor, in logical axes. Strides are in bytes and
// non-negative; MLA has kv_size == num_heads == 1.
struct PagedKvLayout {
  uint8_t* base = nullptr;  // address of element [kv=0, block=0, token=0, head=0, 0]
  KvDtype dtype = KvDtype::kFloat16;
  KvFormat format = KvFormat::kTwoNbBsNhHs;
  uint32_t elem_size = 2;
  uint32_t kv_size = 2;
  uint32_t num_blocks = 0;
  uint32_t block_size = 0;
  uint32_t num_heads = 0;
  uint32_t head_size = 0;
  int64_t kv_stride = 0;
  int64_t block_stride = 0;
  int64_t token_stride = 0;
  int64_t head_stride = 0;
  int64_t elem_stride = 0;

  // Bytes of one token's row in an object: num_heads * head_size * elem_size.
  uint64_t RowBytes() const { return uint64_t{num_heads} * head_size * elem_size; }

  // Builds the layout of `meta` (stride-sorted first, as 0.5.6 does) inside
  // [mapping, mapping + mapping_bytes). InvalidArgument when the shape does
  // not fit `format`, a stride is negative (or 0 on an axis longer than 1),
  // or any element falls outside the mapping.
  static Result<PagedKvLayout> FromTensor(uint8_t* mapping, uint64_t mapping_bytes, const KvTensorMeta& meta,
                                          KvFormat format);
};

// ------------------------------------------------------------- copy pool --

class CopyPool {
 public:
  // threads: total threads that run a batch, the caller included
  // (1 = everything on the calling thread; extra threads are persistent).
  explicit CopyPool(uint32_t threads = 1);
  ~CopyPool();
  CopyPool(const CopyPool&) = delete;
  CopyPool& operator=(const CopyPool&) = delete;

  uint32_t threads() const { return threads_; }
  // Runs fn(i) for every i in [0, n) and returns when all are done. fn must
  // not throw. If another batch is running, runs this one on the caller.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Impl;
  uint32_t threads_;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------- registration --

struct Md5Digest {
  uint8_t bytes[16] = {};
  std::string Hex() const;  // 32 lower-case hex digits, as hashlib's hexdigest()
};

struct KvTensorHandle {  // a `cpu_shm` handle (compat §9.1)
  std::string shm_name;
  uint64_t nbytes = 0;
  KvTensorMeta meta;
};

struct RegistrationOptions {
  uint32_t chunk_tokens = 256;  // LMCache chunk size in tokens
  KvLayoutHint layout_hint = KvLayoutHint::kNHD;
  // Kernel groups as lists of layer indices. Empty: group layers by
  // (format, kv_size, num_heads, head_size, block_size, dtype) in order of
  // first appearance (0.5.6's group_layers_by_identity without engine groups).
  std::vector<std::vector<uint32_t>> kernel_groups;
  // Object groups as lists of kernel-group indices (layout order). Empty: one
  // object group holding every kernel group (0.5.6's default).
  std::vector<std::vector<uint32_t>> object_groups;
  // Open() only: populate the page tables of the mapped segments in a
  // background thread (MADV_POPULATE_WRITE, 64 MiB at a time, at low
  // priority), so the first copy into or out of a block does not take one
  // minor fault per 4 KiB page. Close() stops and joins it before unmapping.
  bool populate_in_background = true;
};

struct KernelGroupInfo {
  std::vector<uint32_t> layers;
  KvDtype dtype;
  uint32_t kv_size, num_heads, head_size, block_size;
  uint32_t num_blocks;        // the smallest num_blocks of its layers
  uint32_t blocks_per_chunk;  // chunk_tokens / block_size
  uint64_t region_bytes;      // kv_size * layers * chunk_tokens * row bytes
};

struct ObjectGroupInfo {
  std::vector<uint32_t> kernel_groups;
  std::vector<uint64_t> region_offsets;  // byte offset of each kernel group's region
  uint64_t object_bytes;
};

// Block-id lists of one request, one per kernel group.
using BlockIdLists = std::span<const std::span<const int64_t>>;

class KvCacheRegistration {
 public:
  // Maps every distinct segment once (layers may share one), builds one
  // layout per handle (format detected with options.layout_hint) and the
  // groups. Errors from ShmMapping::Open / PagedKvLayout::FromTensor, or
  // InvalidArgument for inconsistent groups (mixed geometry inside a kernel
  // group, a layer in no group or in two, chunk_tokens not a multiple of a
  // block size, a segment named twice with different sizes).
  static Result<std::shared_ptr<KvCacheRegistration>> Open(const std::vector<KvTensorHandle>& tensors,
                                                           const RegistrationOptions& options);
  // Same, over layouts the caller built (memory it keeps alive itself; the
  // optional mappings are owned by the registration and unmapped by Close).
  static Result<std::shared_ptr<KvCacheRegistration>> Create(std::vector<PagedKvLayout> layers,
                                                             const RegistrationOptions& options,
                                                             std::vector<std::unique_ptr<ShmMapping>> mappings = {});
  ~KvCacheRegistration();
  KvCacheRegistration(const KvCacheRegistration&) = delete;
  KvCacheRegistration& operator=(const KvCacheRegistration&) = delete;

  uint32_t chunk_tokens() const { return chunk_tokens_; }
  size_t num_layers() const { return layers_.size(); }
  const PagedKvLayout& layer(size_t i) const { return layers_[i]; }
  const std::vector<KernelGroupInfo>& kernel_groups() const { return kernel_groups_; }
  const std::vector<ObjectGroupInfo>& object_groups() const { return object_groups_; }
  // REQUIRES: object_group < object_groups().size().
  uint64_t ObjectBytes(uint32_t object_group) const { return object_groups_[object_group].object_bytes; }
  uint64_t mapped_bytes() const;
  std::vector<std::string> shm_names() const;
  // Bytes of the mappings whose page tables the background populate has
  // filled so far (0 without one); mapped_bytes() when it has finished.
  uint64_t populated_bytes() const;

  // Paged KV -> objects: dsts[i] receives chunk i. A view with data ==
  // nullptr is skipped (an already-resident key). InvalidArgument for a bad
  // object group, a view whose size is not ObjectBytes, or bad block ids.
  Status Gather(uint32_t object_group, BlockIdLists block_ids, std::span<const ObjectView> dsts,
                CopyPool* pool = nullptr) const;
  // Objects -> paged KV. Tokens before skip_first_n_tokens (counted from
  // chunk 0 of this batch) are not written; the rest of a partly skipped
  // block is. Errors as Gather.
  Status Scatter(uint32_t object_group, BlockIdLists block_ids, std::span<const ObjectView> srcs,
                 uint64_t skip_first_n_tokens = 0, CopyPool* pool = nullptr) const;

  // POST /cache/checksums (0.5.6 http_apis/cache_api.py
  // `_compute_block_checksums`). block_ids are shared by every layer and cut
  // into chunks of blocks_per_chunk blocks (the last may be shorter). For
  // chunk c, layer after layer in registration order, the layer tensor is
  // viewed in its physical dim order (the KvFormat's order, e.g. [2, NB, BS,
  // NH, HS]), index_select-ed on its block axis with the chunk's blocks and
  // made contiguous; those bytes (bf16 first converted to fp32, exactly, as
  // torch's .to(float32)) feed one MD5 per chunk, or one per (layer, chunk)
  // when layerwise. Result: [1][chunk] or [layer][chunk].
  // InvalidArgument for an empty list, blocks_per_chunk == 0 or a bad id.
  Result<std::vector<std::vector<Md5Digest>>> ChunkChecksumsMd5(std::span<const int64_t> block_ids,
                                                               uint32_t blocks_per_chunk, bool layerwise) const;

  // OK when object_group exists, block_ids has one list per kernel group and
  // the lists of the object group's kernel groups hold num_chunks chunks of
  // valid ids; InvalidArgument naming the first problem otherwise.
  Status ValidateBlockIds(uint32_t object_group, BlockIdLists block_ids, size_t num_chunks) const;

  // Waits for calls in flight, then unmaps every segment (synchronously; the
  // registration's memory is gone when it returns). Idempotent.
  void Close();
  bool closed() const;

 private:
  KvCacheRegistration() = default;
  class Use;
  Status Copy(bool to_object, uint32_t object_group, BlockIdLists block_ids, std::span<const ObjectView> views,
              uint64_t skip_first_n_tokens, CopyPool* pool) const;

  uint32_t chunk_tokens_ = 0;
  std::vector<PagedKvLayout> layers_;
  std::vector<KernelGroupInfo> kernel_groups_;
  std::vector<ObjectGroupInfo> object_groups_;
  std::vector<std::unique_ptr<ShmMapping>> mappings_;
  struct State;
  std::unique_ptr<State> state_;
};

// ------------------------------------------------------------ L1 glue --

struct StoreChunksResult {
  size_t written = 0;           // chunks gathered and published now
  size_t already_resident = 0;  // keys that were resident (nothing copied)
};

// lmcache_driven STORE of one object group: ReserveWrite(keys, ObjectBytes)
// -> Gather into the reserved objects -> FinishWrite, all before returning
// (compat §20 item 1). keys[i] is chunk i. Block ids are validated before
// anything is reserved. NoSpace (nothing reserved) when L1 cannot fit the
// objects; on a copy error the reservations are aborted; NotFound when a
// staging object vanished before FinishWrite (Clear(force) or write TTL).
Result<StoreChunksResult> StoreChunks(L1Store& store, const KvCacheRegistration& reg, uint32_t object_group,
                                      std::span<const ObjectKey> keys, BlockIdLists block_ids, WriterTag tag,
                                      CopyPool* pool = nullptr);

// lmcache_driven RETRIEVE of one object group: read-lock the longest visible
// prefix of keys, Scatter it, release those locks; with consume_lookup_locks
// also release one more lock per key read (the lock LOOKUP took, §8.5).
// Returns the number of chunks written (< keys.size() when a key is
// missing). InvalidArgument (nothing written, locks released) for bad block
// ids or an object whose size is not ObjectBytes.
Result<size_t> RetrieveChunks(L1Store& store, const KvCacheRegistration& reg, uint32_t object_group,
                              std::span<const ObjectKey> keys, BlockIdLists block_ids, uint64_t skip_first_n_tokens,
                              bool consume_lookup_locks, CopyPool* pool = nullptr);

}  // namespace lmcache
