// Prefix-chain chunk hashing of token sequences, bit-identical to LMCache
// 0.5.6 (compat reference §6).
//
// A token sequence is cut into chunks of `chunk_size` tokens and only FULL
// chunks are hashed (a partial tail never gets a hash). Chunk i's hash chains
// the previous one:
//
//   h_i = H(h_{i-1}, tokens[i*C .. (i+1)*C)),   h_{-1} = NONE_HASH,
//
// so equal h_i means equal tokens [0, (i+1)*C). Every hash is 32 bytes.
//
//   kBlake3      h_i = BLAKE3(h_{i-1} || each token as a big-endian uint32)
//                NONE_HASH = BLAKE3(12 zero bytes) = 7e3eff9e...d56d473b: what
//                LMCache's blake3 function gives for its seed input
//                (0, (0,), None), the int 0 as 8 bytes and the token 0 as 4.
//   kSha256Cbor  vLLM's sha256_cbor applied as LMCache applies it,
//                hash_fn((h_{i-1}, tuple(tokens), None)):
//                h_i = SHA-256(cbor2.dumps([h_{i-1}, [t0, t1, ...], None],
//                canonical=True)), i.e. a 3-array of a 32-byte byte string,
//                an array of unsigned integers and null, every head in its
//                shortest form.
//                NONE_HASH (LMCache calls vLLM's init_none_hash): with
//                PYTHONHASHSEED set to S, sha256_cbor(S), the CBOR text
//                string S (SeededNoneHash); without it vLLM draws 32 random
//                bytes per process, which nothing else can reproduce: we use
//                the deterministic value LMCache computes when vLLM's
//                init_none_hash is unavailable, sha256_cbor((0, (0,), None))
//                (NoneHash).
//
// Resuming: a caller that cached h_{k-1} passes it as `prefix_hash` with the
// tokens from chunk k on and gets h_k, h_{k+1}, ... exactly as if it had
// hashed from the start.
//
// Token ids must fit in uint32 (they are hashed as uint32); the 32- and
// 64-bit signed and unsigned overloads check every token they hash. Tokens of
// the partial tail are not read.
//
// Thread safety: pure functions, safe from any number of threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "lmcache/status.h"

namespace lmcache {

enum class HashAlgorithm : uint8_t { kBlake3, kSha256Cbor };

inline constexpr size_t kChunkHashLen = 32;
using ChunkHash = std::array<uint8_t, kChunkHashLen>;

// "blake3" or "sha256_cbor" (the names of LMCache's --hash-algorithm).
std::string_view HashAlgorithmName(HashAlgorithm algorithm);

// Parses a --hash-algorithm name. Returns InvalidArgument for anything else,
// "builtin" included (Python's hash(), implemented in the Python layer).
Status ParseHashAlgorithm(std::string_view name, HashAlgorithm* out);

// The default chain seed h_{-1} of `algorithm` (see above).
ChunkHash NoneHash(HashAlgorithm algorithm);

// The chain seed vLLM's init_none_hash derives when PYTHONHASHSEED is
// `python_hash_seed`: sha256_cbor of that text for kSha256Cbor. kBlake3 has no
// seeded form (LMCache never hands blake3 to vLLM): NoneHash(kBlake3).
ChunkHash SeededNoneHash(HashAlgorithm algorithm, std::string_view python_hash_seed);

// Hashes the full chunks of `tokens` (tokens.size() / chunk_size of them),
// chained from `prefix_hash` (empty: NoneHash(algorithm)), and replaces *out
// with their hashes in order.
// Returns InvalidArgument (and leaves *out empty) when chunk_size is 0, when
// prefix_hash is neither empty nor kChunkHashLen bytes, or when a hashed
// token is outside uint32 (the message names its index in `tokens`).
// REQUIRES: out != nullptr.
Status ChunkHashes(HashAlgorithm algorithm, std::span<const uint32_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out);
Status ChunkHashes(HashAlgorithm algorithm, std::span<const int32_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out);
Status ChunkHashes(HashAlgorithm algorithm, std::span<const int64_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out);
Status ChunkHashes(HashAlgorithm algorithm, std::span<const uint64_t> tokens, size_t chunk_size,
                   std::span<const uint8_t> prefix_hash, std::vector<ChunkHash>* out);

}  // namespace lmcache
