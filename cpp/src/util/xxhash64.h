// XXH64 (Yann Collet's xxHash, 64-bit variant), one-shot and streaming.
// Used for the checksums of L2 objects: about 10 GB/s per core, so verifying
// an object costs far less than reading it. Output is the standard XXH64
// value (interoperable with other xxHash implementations).
//
// Thread safety: Xxh64 is a value type (one per stream); Xxh64Digest is pure.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmcache::internal {

uint64_t Xxh64Digest(const void* data, size_t len, uint64_t seed = 0);

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0) { Reset(seed); }
  void Reset(uint64_t seed = 0);
  void Update(const void* data, size_t len);
  uint64_t Digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_ = 0;
  uint64_t total_len_ = 0;
  unsigned char mem_[32];
  size_t mem_size_ = 0;
};

}  // namespace lmcache::internal
