// Allocator: hands out aligned byte ranges of the arena's usable prefix.
//
// Design: a two-level segregated-fit allocator (TLSF) over externally stored
// block descriptors (nothing is written into the arena, which may be shared
// memory or a DAX device). Every free block sits in one of the size-class
// lists indexed by two bitmaps; allocation finds a fitting class with two
// find-first-set operations and splits; free merges with free physical
// neighbours at once (no deferred coalescing, so no fragmentation creep).
// Both are O(1). Two refinements matter for KV caches:
//   * exact reuse: before rounding up to the next class, the head of the
//     request's own class list is tried, so a churn of equal-size objects (all
//     chunks of one model) always reuses freed blocks, even at 100% occupancy;
//   * wilderness last: the free block that ends at the usable end (the
//     never-used tail) is taken only when nothing else fits, which keeps the
//     high-water mark (and so the faulted, resident memory) low.
// Sizes are rounded up to `align` bytes; offsets are multiples of `align`.
// Exact reuse looks at the first four blocks of the class. A batch is
// allocated in the given order. RoundUp saturates at UINT64_MAX; regions are
// limited to < 2^62 bytes. A double free (or a foreign handle) aborts.
//
// Thread safety: thread-safe (one internal mutex; every call is a few
// hundred nanoseconds at most, so it is never held across I/O or copies).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace lmcache {

struct Allocation {
  static constexpr uint32_t kInvalidHandle = 0xFFFFFFFFu;
  uint64_t offset = 0;   // from the arena base, multiple of align
  uint64_t size = 0;     // rounded-up size actually reserved
  uint32_t handle = kInvalidHandle;  // opaque; identifies the block for Free()
  bool valid() const { return handle != kInvalidHandle; }
};

struct AllocatorStats {
  uint64_t region_bytes = 0;        // managed bytes (the arena's usable prefix)
  uint64_t used_bytes = 0;          // sum of live Allocation::size
  uint64_t free_bytes = 0;          // region_bytes - used_bytes
  uint64_t largest_free_block = 0;  // biggest single allocation that would succeed now
  uint64_t high_water_mark = 0;     // highest end offset ever handed out
  uint64_t num_allocations = 0;     // live allocations
  uint64_t num_free_blocks = 0;
};

class Allocator {
 public:
  // REQUIRES: align is a power of two; region_bytes is a multiple of align.
  Allocator(uint64_t region_bytes, uint64_t align);
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // An invalid Allocation (valid()==false) when no free block fits, or when
  // bytes == 0.
  Allocation Allocate(uint64_t bytes);
  // All or nothing: on success fills out[0..n) and returns true; on failure
  // allocates nothing and returns false.
  bool AllocateBatch(const uint64_t* sizes, size_t n, Allocation* out);
  // REQUIRES: `a` came from this allocator and was not freed yet.
  void Free(const Allocation& a);
  // Grow the managed region to new_region_bytes (the arena grew). Memory is
  // never moved; the new bytes join the tail block. REQUIRES: not smaller
  // than the current region, multiple of align.
  void Extend(uint64_t new_region_bytes);

  AllocatorStats Stats() const;
  uint64_t align() const;
  uint64_t RoundUp(uint64_t bytes) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmcache
