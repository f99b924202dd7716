// XXH3-64 (the 64-bit XXH3 of the xxHash family, default secret, seed 0),
// one-shot and streaming, written from the published xxHash specification.
// Output is the standard XXH3_64bits value, so `xxhsum -H3` or any other
// xxHash library verifies what we write.
//
// Why: the checksums of L2 objects are computed on every store and verified
// on every load. XXH64 runs at about 10 GB/s per core here, which is a third
// of the time of a warm 256 KiB file read; XXH3 with AVX2 runs at 25-35 GB/s.
// Large inputs use an AVX2 kernel when the CPU has it (checked once at run
// time) and a portable kernel otherwise; both give the same value.
//
// Thread safety: Xxh3 is a value type (one per stream); Xxh3Digest is pure.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmcache::internal {

uint64_t Xxh3Digest(const void* data, size_t len);

class Xxh3 {
 public:
  Xxh3() { Reset(); }
  void Reset();
  void Update(const void* data, size_t len);
  // The XXH3-64 of everything passed to Update so far; the stream can go on.
  uint64_t Digest() const;

 private:
  static constexpr size_t kBuffer = 256;  // 4 stripes

  alignas(32) uint64_t acc_[8];
  alignas(32) unsigned char buf_[kBuffer];
  unsigned char prev_[64];  // the last 64 bytes consumed before buf_
  size_t buffered_ = 0;
  size_t stripes_in_block_ = 0;
  uint64_t total_ = 0;
};

// Which kernel Xxh3Digest uses for inputs over 240 bytes ("avx2" or
// "scalar"); for logs and benchmarks.
const char* Xxh3Kernel();

namespace xxh3_testing {
// The portable kernel, whatever the CPU has (tests compare it to AVX2).
uint64_t ScalarDigest(const void* data, size_t len);
}  // namespace xxh3_testing

}  // namespace lmcache::internal
