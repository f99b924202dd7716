// ObjectKey: the identity of one stored KV object, in L1 and in every L2.
//
//   ObjectKey = (chunk_hash, model_name, kv_rank, object_group_id, cache_salt)
//
// as in LMCache 0.5.6 (compat reference §7). chunk_hash is up to 32 bytes (a
// blake3/sha256 prefix-chain digest; shorter for the process-local builtin
// hash). model_name and cache_salt are interned Symbols: a key is 64 bytes,
// copying it allocates nothing, and hashing it reads the digest's first
// eight bytes plus two pointers.
//
// Symbols are interned in a process-wide table and never freed: their number
// is bounded by the distinct model names and salts a process ever sees.
//
// Thread safety: ObjectKey and Symbol are immutable values. Symbol::Intern is
// thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

namespace lmcache {

// An interned string; equality and hashing are by identity.
class Symbol {
 public:
  Symbol();  // the empty string
  static Symbol Intern(std::string_view s);
  const std::string& str() const { return *p_; }
  bool empty() const { return p_->empty(); }
  bool operator==(const Symbol& o) const { return p_ == o.p_; }
  bool operator!=(const Symbol& o) const { return p_ != o.p_; }
  size_t hash() const { return std::hash<const void*>()(p_); }

 private:
  explicit Symbol(const std::string* p) : p_(p) {}
  const std::string* p_;
};

inline constexpr size_t kMaxChunkHashBytes = 32;

struct ObjectKey {
  std::array<uint8_t, kMaxChunkHashBytes> chunk_hash{};
  uint8_t hash_len = 0;
  int32_t kv_rank = 0;
  int32_t object_group_id = 0;
  Symbol model_name;
  Symbol cache_salt;

  // REQUIRES: digest.size() <= kMaxChunkHashBytes (else InvalidArgument from MakeKey).
  std::string_view chunk_hash_bytes() const {
    return {reinterpret_cast<const char*>(chunk_hash.data()), hash_len};
  }
  std::string ChunkHashHex() const;
  // "model@0x01000100@0@<hex>[@salt]": the LMCache fs file stem of this key.
  std::string ToString() const;

  bool operator==(const ObjectKey& o) const {
    return hash_len == o.hash_len && kv_rank == o.kv_rank &&
           object_group_id == o.object_group_id && model_name == o.model_name &&
           cache_salt == o.cache_salt && std::memcmp(chunk_hash.data(), o.chunk_hash.data(), hash_len) == 0;
  }
  bool operator!=(const ObjectKey& o) const { return !(*this == o); }
};

// Builds a key; fails (returns false) when the digest is longer than 32 bytes.
bool MakeKey(std::string_view chunk_hash, std::string_view model_name, int32_t kv_rank,
             int32_t object_group_id, std::string_view cache_salt, ObjectKey* out);

// Inverse of ObjectKey::ToString (an LMCache fs file stem, without ".data"):
// 4 or 5 '@'-separated fields, "-SEP-" back to '/', kv_rank in hex with or
// without "0x", group id in hex, chunk hash as an even number of hex digits
// (either case, at most 64). Returns false for anything else.
bool ParseObjectKey(std::string_view s, ObjectKey* out);

// kv_rank packing of LMCache: (world_size << 24) | (global_rank << 16) |
// (local_world_size << 8) | local_rank.
constexpr int32_t PackKvRank(int world_size, int global_rank, int local_world_size, int local_rank) {
  return static_cast<int32_t>((static_cast<uint32_t>(world_size) << 24) |
                              (static_cast<uint32_t>(global_rank) << 16) |
                              (static_cast<uint32_t>(local_world_size) << 8) |
                              static_cast<uint32_t>(local_rank));
}

struct ObjectKeyHash {
  size_t operator()(const ObjectKey& k) const {
    // Real digests are uniformly random, but synthetic ones (LMCache's bench
    // uses idx.to_bytes(16, "big")) vary only in their last bytes: mix every
    // 8-byte word of the digest, not just the first.
    uint64_t h = static_cast<uint64_t>(k.hash_len) * 0x9E3779B97F4A7C15ull;
    for (size_t off = 0; off < sizeof(k.chunk_hash); off += sizeof(uint64_t)) {
      uint64_t w = 0;
      std::memcpy(&w, k.chunk_hash.data() + off, sizeof(w));
      h = (h ^ w) * 0xFF51AFD7ED558CCDull;
      h ^= h >> 32;
    }
    h ^= (static_cast<uint64_t>(static_cast<uint32_t>(k.kv_rank)) << 32 |
          static_cast<uint32_t>(k.object_group_id)) * 0xC2B2AE3D27D4EB4Full;
    h ^= k.model_name.hash() * 0x165667B19E3779F9ull;
    h ^= k.cache_salt.hash() * 0x27D4EB2F165667C5ull;
    h ^= h >> 29;
    return static_cast<size_t>(h);
  }
};

}  // namespace lmcache

template <>
struct std::hash<lmcache::ObjectKey> {
  size_t operator()(const lmcache::ObjectKey& k) const { return lmcache::ObjectKeyHash()(k); }
};
