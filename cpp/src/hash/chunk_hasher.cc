// Prefix-chain chunk hashing: see lmcache/chunk_hasher.h.
#include "lmcache/chunk_hasher.h"

#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "hash/blake3.h"
#include "hash/cbor.h"
#include "hash/sha256.h"

namespace lmcache {
namespace {

using internal::Blake3;
using internal::Sha256Digest;
namespace cbor = internal::cbor;

// A token as uint32, or false when it does not fit.
template <typename T>
inline bool ToUint32(T v, uint32_t* out) {
  if constexpr (std::is_same_v<T, uint32_t>) {
    *out = v;
    return true;
  } else if constexpr (std::is_signed_v<T>) {
    if (v < 0 || static_cast<uint64_t>(v) > std::numeric_limits<uint32_t>::max()) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  } else {
    if (v > std::numeric_limits<uint32_t>::max()) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  }
}

template <typename T>
Status OutOfRange(T v, size_t index) {
  return Status::InvalidArgument("token id " + std::to_string(v) + " at index " + std::to_string(index) +
                                 " does not fit in uint32 (0..4294967295)");
}

// LMCache's seed input (0, (0,), None) through vLLM's sha256_cbor.
ChunkHash Sha256CborLMCacheSeed() {
  // [0, [0], null]: array(3), unsigned 0, array(1), unsigned 0, null.
  const uint8_t encoded[] = {0x83, 0x00, 0x81, 0x00, cbor::kNull};
  ChunkHash h;
  Sha256Digest(encoded, sizeof(encoded), h.data());
  return h;
}

ChunkHash Blake3Seed() {
  // LMCache's blake3 function on (0, (0,), None): int 0 as 8 big-endian bytes,
  // then token 0 as 4.
  const uint8_t zeros[12] = {};
  ChunkHash h;
  Blake3(zeros, sizeof(zeros), h.data());
  return h;
}

// Index of the first token of t[0, n) outside uint32, or n. The common case
// (all fit) is one branch-free pass the compiler vectorises.
template <typename T>
size_t FirstOutOfRange(const T* t, size_t n) {
  if constexpr (std::is_same_v<T, uint32_t>) {
    return n;
  } else {
    using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
    bool bad = false;
    for (size_t i = 0; i < n; ++i) {
      // Negative values become huge as uint64.
      bad |= static_cast<uint64_t>(static_cast<Wide>(t[i])) > 0xFFFFFFFFull;
    }
    if (!bad) return n;
    for (size_t i = 0; i < n; ++i) {
      uint32_t v;
      if (!ToUint32(t[i], &v)) return i;
    }
    return n;
  }
}

// dst = each of n tokens as a big-endian uint32. REQUIRES: they all fit.
template <typename T>
inline void StoreBigEndianPortable(const T* t, size_t n, uint8_t* dst) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = static_cast<uint32_t>(t[i]);
    if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap32(v);
    std::memcpy(dst + 4 * i, &v, 4);
  }
}

#if defined(__x86_64__) || defined(__i386__)
template <typename T>
__attribute__((target("avx2"))) void StoreBigEndianAvx2(const T* t, size_t n, uint8_t* dst) {
  StoreBigEndianPortable(t, n, dst);  // inlined here and vectorised with AVX2
}
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

template <typename T>
void StoreBigEndian(const T* t, size_t n, uint8_t* dst) {
#if defined(__x86_64__) || defined(__i386__)
  if (HasAvx2()) return StoreBigEndianAvx2(t, n, dst);
#endif
  StoreBigEndianPortable(t, n, dst);
}

// h = BLAKE3(prev || tokens as big-endian uint32), chunk by chunk.
template <typename T>
Status HashBlake3(std::span<const T> tokens, size_t chunk_size, size_t num_chunks, ChunkHash prev,
                  std::vector<ChunkHash>* out) {
  std::vector<uint8_t> buf(kChunkHashLen + 4 * chunk_size);
  for (size_t c = 0; c < num_chunks; ++c) {
    const T* t = tokens.data() + c * chunk_size;
    const size_t bad = FirstOutOfRange(t, chunk_size);
    if (bad != chunk_size) return OutOfRange(t[bad], c * chunk_size + bad);
    std::memcpy(buf.data(), prev.data(), kChunkHashLen);
    StoreBigEndian(t, chunk_size, buf.data() + kChunkHashLen);
    Blake3(buf.data(), buf.size(), prev.data());
    out->push_back(prev);
  }
  return Status::OK();
}

// h = SHA-256(CBOR [prev (bytes), [tokens (unsigned)], null]), chunk by chunk.
template <typename T>
Status HashSha256Cbor(std::span<const T> tokens, size_t chunk_size, size_t num_chunks, ChunkHash prev,
                      std::vector<ChunkHash>* out) {
  // Fixed part: array(3), bytes(32) head, the 32 bytes, array(C) head.
  // Tokens take at most 5 bytes each; 8 bytes of slack for the batch writer.
  std::vector<uint8_t> buf(1 + 2 + kChunkHashLen + cbor::kMaxHeadLen + 5 * chunk_size + 8);
  uint8_t* p = cbor::PutHead(buf.data(), cbor::kArray, 3);
  p = cbor::PutHead(p, cbor::kByteString, kChunkHashLen);
  uint8_t* const prev_at = p;
  p = cbor::PutHead(p + kChunkHashLen, cbor::kArray, chunk_size);
  uint8_t* const tokens_at = p;
  std::vector<uint32_t> converted;  // other token types, range-checked
  if constexpr (!std::is_same_v<T, uint32_t>) converted.resize(chunk_size);
  for (size_t c = 0; c < num_chunks; ++c) {
    std::memcpy(prev_at, prev.data(), kChunkHashLen);
    const T* t = tokens.data() + c * chunk_size;
    const uint32_t* u;
    if constexpr (std::is_same_v<T, uint32_t>) {
      u = t;
    } else {
      const size_t bad = FirstOutOfRange(t, chunk_size);
      if (bad != chunk_size) return OutOfRange(t[bad], c * chunk_size + bad);
      for (size_t i = 0; i < chunk_size; ++i) converted[i] = static_cast<uint32_t>(t[i]);
      u = converted.data();
    }
    p = cbor::PutUint32Array(tokens_at, u, chunk_size);
    *p++ = cbor::kNull;
    Sha256Digest(buf.data(), static_cast<size_t>(p - buf.data()), prev.data());
    out->push_back(prev);
  }
  return Status::OK();
}

template <typename T>
Status ChunkHashesImpl(HashAlgorithm algorithm, std::span<const T> tokens, size_t chunk_size,
                       std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out) {
  LMCACHE_CHECK(out != nullptr, "ChunkHashes: out is null");
  out->clear();
  if (chunk_size == 0) return Status::InvalidArgument("chunk_size must be positive");
  if (!prefix_hash.empty() && prefix_hash.size() != kChunkHashLen) {
    return Status::InvalidArgument("prefix hash must be " + std::to_string(kChunkHashLen) + " bytes, got " +
                                   std::to_string(prefix_hash.size()));
  }
  if (algorithm != HashAlgorithm::kBlake3 && algorithm != HashAlgorithm::kSha256Cbor) {
    return Status::InvalidArgument("unknown hash algorithm");
  }
  const size_t num_chunks = tokens.size() / chunk_size;
  if (num_chunks == 0) return Status::OK();
  ChunkHash prev;
  if (prefix_hash.empty()) {
    prev = NoneHash(algorithm);
  } else {
    std::memcpy(prev.data(), prefix_hash.data(), kChunkHashLen);
  }
  out->reserve(num_chunks);
  Status s = algorithm == HashAlgorithm::kBlake3 ? HashBlake3(tokens, chunk_size, num_chunks, prev, out)
                                                 : HashSha256Cbor(tokens, chunk_size, num_chunks, prev, out);
  if (!s.ok()) out->clear();
  return s;
}

}  // namespace

std::string_view HashAlgorithmName(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::kBlake3:
      return "blake3";
    case HashAlgorithm::kSha256Cbor:
      return "sha256_cbor";
  }
  return "unknown";
}

Status ParseHashAlgorithm(std::string_view name, HashAlgorithm* out) {
  if (name == "blake3") {
    *out = HashAlgorithm::kBlake3;
  } else if (name == "sha256_cbor") {
    *out = HashAlgorithm::kSha256Cbor;
  } else if (name == "builtin") {
    return Status::InvalidArgument(
        "hash algorithm 'builtin' is Python's hash() and has no native form; use "
        "lmcache.protocol.hashing.TokenHasher");
  } else {
    return Status::InvalidArgument("unknown hash algorithm '" + std::string(name) +
                                   "' (native algorithms: blake3, sha256_cbor)");
  }
  return Status::OK();
}

ChunkHash NoneHash(HashAlgorithm algorithm) {
  static const ChunkHash kBlake3None = Blake3Seed();
  static const ChunkHash kSha256CborNone = Sha256CborLMCacheSeed();
  return algorithm == HashAlgorithm::kSha256Cbor ? kSha256CborNone : kBlake3None;
}

ChunkHash SeededNoneHash(HashAlgorithm algorithm, std::string_view python_hash_seed) {
  if (algorithm != HashAlgorithm::kSha256Cbor) return NoneHash(algorithm);
  // sha256_cbor(seed): the seed is a Python str, encoded as a CBOR text string.
  std::vector<uint8_t> buf(cbor::kMaxHeadLen + python_hash_seed.size());
  uint8_t* p = cbor::PutHead(buf.data(), cbor::kTextString, python_hash_seed.size());
  if (!python_hash_seed.empty()) std::memcpy(p, python_hash_seed.data(), python_hash_seed.size());
  p += python_hash_seed.size();
  ChunkHash h;
  Sha256Digest(buf.data(), static_cast<size_t>(p - buf.data()), h.data());
  return h;
}

Status ChunkHashes(HashAlgorithm algorithm, std::span<const uint32_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out) {
  return ChunkHashesImpl(algorithm, tokens, chunk_size, prefix_hash, out);
}
Status ChunkHashes(HashAlgorithm algorithm, std::span<const int32_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out) {
  return ChunkHashesImpl(algorithm, tokens, chunk_size, prefix_hash, out);
}
Status ChunkHashes(HashAlgorithm algorithm, std::span<const int64_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out) {
  return ChunkHashesImpl(algorithm, tokens, chunk_size, prefix_hash, out);
}
Status ChunkHashes(HashAlgorithm algorithm, std::span<const uint64_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out) {
  return ChunkHashesImpl(algorithm, tokens, chunk_size, prefix_hash, out);
}

}  // namespace lmcache
