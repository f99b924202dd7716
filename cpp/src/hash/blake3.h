// BLAKE3 (hash mode, 32-byte output), written from the BLAKE3 specification
// (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, "BLAKE3: one function, fast
// everywhere", 2020, section 2 and the reference implementation described
// there): 1024-byte chunks of 64-byte blocks, a 7-round compression function,
// and a binary tree of parent nodes whose left subtrees are complete and as
// large as possible, merged with a stack of chaining values.
//
// Only what chunk hashing needs is here: unkeyed hashing, 32-byte digests.
// Keyed hashing, key derivation and extendable output are not implemented.
//
// Two compression functions: a portable one and an SSE4.1 one (rows of the
// state in four 128-bit registers, diagonalised by lane shuffles), chosen once
// per process from CPUID. Both give identical results; tests run both.
//
// Thread safety: Blake3Hasher is a value type owned by one thread; Blake3()
// is a pure function, safe from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmcache::internal {

inline constexpr size_t kBlake3OutLen = 32;
inline constexpr size_t kBlake3BlockLen = 64;
inline constexpr size_t kBlake3ChunkLen = 1024;

enum class Blake3Impl : uint8_t { kAuto, kPortable, kSse41 };

// True when `impl` can run on this CPU (kAuto and kPortable always can).
bool Blake3ImplAvailable(Blake3Impl impl);

// Incremental hasher. Update() any number of times, then Finalize() (which
// does not change the state: more input may follow).
class Blake3Hasher {
 public:
  // REQUIRES: Blake3ImplAvailable(impl).
  explicit Blake3Hasher(Blake3Impl impl = Blake3Impl::kAuto);

  void Update(const void* data, size_t len);
  void Finalize(uint8_t out[kBlake3OutLen]) const;

 private:
  using CompressFn = void (*)(uint32_t cv[8], const uint8_t block[kBlake3BlockLen], uint8_t block_len,
                              uint64_t counter, uint8_t flags);

  void ChunkUpdate(const uint8_t* data, size_t len);
  void PushChunkCv(uint32_t cv[8], uint64_t total_chunks);
  uint8_t StartFlag() const { return blocks_compressed_ == 0 ? 1 : 0; }  // CHUNK_START
  size_t ChunkLen() const { return kBlake3BlockLen * blocks_compressed_ + block_len_; }

  CompressFn compress_;
  // The chunk being filled.
  uint32_t chunk_cv_[8];
  uint64_t chunk_counter_ = 0;
  uint8_t block_[kBlake3BlockLen] = {};
  uint8_t block_len_ = 0;
  uint8_t blocks_compressed_ = 0;
  // Chaining values of complete subtrees, largest first. 54 levels cover
  // 2^64 bytes of input.
  uint32_t cv_stack_[54][8];
  uint8_t cv_stack_len_ = 0;
};

// One-shot hash of `len` bytes.
void Blake3(const void* data, size_t len, uint8_t out[kBlake3OutLen], Blake3Impl impl = Blake3Impl::kAuto);

}  // namespace lmcache::internal
