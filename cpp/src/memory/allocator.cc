// Allocator implementation (contract in lmcache/allocator.h): TLSF over
// external block descriptors.
//
// Units. Internally every offset and size is counted in `align` units
// (bytes >> shift), so the smallest block is one unit and every split
// remainder is a valid block.
//
// Size classes. A size of u units belongs to class (fl, sl):
//   u <  32: fl = 0, sl = u                 (exact classes for tiny blocks)
//   u >= 32: fl = msb(u) - 4, sl = the 5 bits below the msb
// i.e. 32 linear subdivisions per power of two; a class spans
// [lo, lo + 2^(msb-5)). fl_bitmap_ has bit fl set when any class of row fl is
// non-empty; sl_bitmap_[fl] has bit sl set when list (fl, sl) is non-empty.
//
// Allocation of u units, in this order:
//   1. exact reuse: the first kExactScan blocks of u's own class list are
//      tried (the head first); the first that fits is taken. With a churn of
//      equal sizes every freed block sits in that list and fits, so reuse is
//      exact even at 100% occupancy (plain TLSF would skip the class).
//   2. TLSF good fit: round u up to the next class boundary and take the
//      head of the first non-empty class at or above it (any block there
//      fits), found with two find-first-set operations.
//   3. the wilderness: the free block that ends at the region end. It is
//      never in the class lists, so it is only used when 1 and 2 fail.
// The chosen block is split: the front is handed out, the remainder (a
// multiple of align, so always >= align) stays free (and stays the
// wilderness when it was cut from it).
//
// Invariants (checked by the tests through Stats()): free blocks are never
// physically adjacent (Free merges at once); the free block ending at the
// region end, if any, is `wild_` and is in no list; every other free block
// is in exactly one class list; used_ is the sum of used block sizes.
//
// largest_free_block: a request succeeds iff it is at most the wilderness,
// or its rounded class is at most the highest non-empty class H, or it lies
// in H's class and one of the first kExactScan blocks of H's list fits. So
// the largest allocatable size is max(wilderness, the largest of the first
// kExactScan blocks of H's list) (that block is >= H's lower bound).
//
// Descriptors live in `nodes_` and are recycled through `spare_`; a handle
// is a node index.
#include "lmcache/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <vector>

#include "lmcache/status.h"
#include "util/mutex.h"

namespace lmcache {

namespace {

constexpr uint32_t kNone = Allocation::kInvalidHandle;
constexpr int kSlLog2 = 5;
constexpr uint64_t kSlCount = uint64_t{1} << kSlLog2;  // 32 subdivisions
constexpr int kFlCount = 64;
constexpr int kExactScan = 4;

struct Class {
  int fl;
  int sl;
};

// The class containing size u (u >= 1).
inline Class ClassOf(uint64_t u) {
  if (u < kSlCount) return {0, static_cast<int>(u)};
  const int msb = 63 - std::countl_zero(u);
  return {msb - (kSlLog2 - 1), static_cast<int>((u >> (msb - kSlLog2)) & (kSlCount - 1))};
}

// u rounded up to the next class boundary (so every block of the resulting
// class is >= u). REQUIRES: no overflow (u < 2^62).
inline uint64_t RoundToClass(uint64_t u) {
  if (u < kSlCount) return u;
  const int msb = 63 - std::countl_zero(u);
  const uint64_t granule = (uint64_t{1} << (msb - kSlLog2)) - 1;
  return (u + granule) & ~granule;
}

enum class State : uint8_t { kSpare, kFree, kUsed };

struct Node {
  uint64_t offset = 0;  // units
  uint64_t size = 0;    // units
  uint32_t phys_prev = kNone;
  uint32_t phys_next = kNone;
  uint32_t free_prev = kNone;
  uint32_t free_next = kNone;
  State state = State::kSpare;
};

}  // namespace

struct Allocator::Impl {
  Impl(uint64_t region_bytes, uint64_t align_bytes)
      : align(align_bytes), shift(std::countr_zero(align_bytes)) {
    internal::MutexLock lock(&mu);
    for (auto& row : heads) std::fill(std::begin(row), std::end(row), kNone);
    ExtendLocked(region_bytes >> shift);
  }

  const uint64_t align;
  const int shift;

  mutable internal::Mutex mu;
  std::vector<Node> nodes GUARDED_BY(mu);
  std::vector<uint32_t> spare GUARDED_BY(mu);  // recyclable node indices
  uint32_t heads[kFlCount][kSlCount] GUARDED_BY(mu);
  uint64_t fl_bitmap GUARDED_BY(mu) = 0;
  uint32_t sl_bitmap[kFlCount] GUARDED_BY(mu) = {};
  uint32_t wild GUARDED_BY(mu) = kNone;  // free block ending at region end
  uint32_t last GUARDED_BY(mu) = kNone;  // physically last block
  uint64_t region GUARDED_BY(mu) = 0;    // units
  uint64_t used GUARDED_BY(mu) = 0;      // units
  uint64_t hwm GUARDED_BY(mu) = 0;       // units
  uint64_t num_used GUARDED_BY(mu) = 0;
  uint64_t num_free GUARDED_BY(mu) = 0;  // includes the wilderness

  uint32_t NewNode() REQUIRES(mu) {
    if (!spare.empty()) {
      const uint32_t i = spare.back();
      spare.pop_back();
      return i;
    }
    LMCACHE_CHECK(nodes.size() < kNone, "too many allocator blocks");
    nodes.emplace_back();
    return static_cast<uint32_t>(nodes.size() - 1);
  }

  void ReleaseNode(uint32_t i) REQUIRES(mu) {
    nodes[i].state = State::kSpare;
    spare.push_back(i);
  }

  void ListInsert(uint32_t i) REQUIRES(mu) {
    Node& n = nodes[i];
    const Class c = ClassOf(n.size);
    uint32_t& head = heads[c.fl][c.sl];
    n.free_prev = kNone;
    n.free_next = head;
    if (head != kNone) nodes[head].free_prev = i;
    head = i;
    fl_bitmap |= uint64_t{1} << c.fl;
    sl_bitmap[c.fl] |= uint32_t{1} << c.sl;
  }

  void ListRemove(uint32_t i) REQUIRES(mu) {
    Node& n = nodes[i];
    if (n.free_next != kNone) nodes[n.free_next].free_prev = n.free_prev;
    if (n.free_prev != kNone) {
      nodes[n.free_prev].free_next = n.free_next;
    } else {
      const Class c = ClassOf(n.size);
      heads[c.fl][c.sl] = n.free_next;
      if (n.free_next == kNone) {
        sl_bitmap[c.fl] &= ~(uint32_t{1} << c.sl);
        if (sl_bitmap[c.fl] == 0) fl_bitmap &= ~(uint64_t{1} << c.fl);
      }
    }
    n.free_prev = n.free_next = kNone;
  }

  // Puts free block i where it belongs: the wilderness or a class list.
  void FileFree(uint32_t i) REQUIRES(mu) {
    if (nodes[i].phys_next == kNone) {
      wild = i;
    } else {
      ListInsert(i);
    }
  }

  // Takes free block i out of the wilderness slot or its list.
  void UnfileFree(uint32_t i) REQUIRES(mu) {
    if (i == wild) {
      wild = kNone;
    } else {
      ListRemove(i);
    }
  }

  // A free block of >= u units, still filed, or kNone.
  uint32_t FindFree(uint64_t u) REQUIRES(mu) {
    // 1. exact reuse in u's own class.
    const Class c = ClassOf(u);
    uint32_t i = heads[c.fl][c.sl];
    for (int k = 0; k < kExactScan && i != kNone; ++k, i = nodes[i].free_next) {
      if (nodes[i].size >= u) return i;
    }
    // 2. TLSF: first non-empty class at or above the rounded-up class.
    const Class r = ClassOf(RoundToClass(u));
    uint32_t sl_map = sl_bitmap[r.fl] & (~uint32_t{0} << r.sl);
    int fl = r.fl;
    if (sl_map == 0) {
      const uint64_t fl_map = r.fl + 1 < kFlCount ? fl_bitmap & (~uint64_t{0} << (r.fl + 1)) : 0;
      if (fl_map != 0) {
        fl = std::countr_zero(fl_map);
        sl_map = sl_bitmap[fl];
      }
    }
    if (sl_map != 0) return heads[fl][std::countr_zero(sl_map)];
    // 3. the wilderness.
    if (wild != kNone && nodes[wild].size >= u) return wild;
    return kNone;
  }

  // Allocates u units (u >= 1) or returns an invalid Allocation.
  Allocation AllocateUnits(uint64_t u) REQUIRES(mu) {
    const uint32_t i = FindFree(u);
    if (i == kNone) return Allocation{};
    UnfileFree(i);
    if (nodes[i].size > u) {
      // Split: the tail stays free (and stays the wilderness if it was).
      const uint32_t r = NewNode();  // may reallocate `nodes`
      Node& b = nodes[i];
      Node& rest = nodes[r];
      rest.offset = b.offset + u;
      rest.size = b.size - u;
      rest.state = State::kFree;
      rest.phys_prev = i;
      rest.phys_next = b.phys_next;
      if (b.phys_next != kNone) {
        nodes[b.phys_next].phys_prev = r;
      } else {
        last = r;
      }
      b.phys_next = r;
      b.size = u;
      // The successor of a free block is used (free blocks never touch), so
      // the remainder needs no merge; it is the wilderness iff it ends the
      // region, i.e. iff it was cut from the wilderness.
      FileFree(r);
    } else {
      --num_free;
    }
    Node& b = nodes[i];
    b.state = State::kUsed;
    used += b.size;
    ++num_used;
    hwm = std::max(hwm, b.offset + b.size);
    Allocation a;
    a.offset = b.offset << shift;
    a.size = b.size << shift;
    a.handle = i;
    return a;
  }

  // Absorbs block `next` (free, unfiled) into its physical predecessor `i`.
  void Absorb(uint32_t i, uint32_t next) REQUIRES(mu) {
    Node& b = nodes[i];
    const Node& n = nodes[next];
    b.size += n.size;
    b.phys_next = n.phys_next;
    if (n.phys_next != kNone) {
      nodes[n.phys_next].phys_prev = i;
    } else {
      last = i;
    }
    ReleaseNode(next);
  }

  void FreeHandle(const Allocation& a) REQUIRES(mu) {
    LMCACHE_CHECK(a.handle < nodes.size(), "Free of an unknown allocation handle");
    uint32_t i = a.handle;
    LMCACHE_CHECK(nodes[i].state == State::kUsed, "Free of a block that is not allocated");
    LMCACHE_CHECK(nodes[i].offset << shift == a.offset && nodes[i].size << shift == a.size,
                  "Free of an Allocation that does not match its handle");
    Node& b = nodes[i];
    used -= b.size;
    --num_used;
    b.state = State::kFree;
    ++num_free;
    const uint32_t next = b.phys_next;
    if (next != kNone && nodes[next].state == State::kFree) {
      UnfileFree(next);
      Absorb(i, next);
      --num_free;
    }
    const uint32_t prev = nodes[i].phys_prev;
    if (prev != kNone && nodes[prev].state == State::kFree) {
      UnfileFree(prev);
      Absorb(prev, i);
      --num_free;
      i = prev;
    }
    FileFree(i);
  }

  void ExtendLocked(uint64_t new_region) REQUIRES(mu) {
    LMCACHE_CHECK(new_region >= region, "Extend may not shrink the region");
    if (new_region == region) return;
    const uint64_t extra = new_region - region;
    if (wild != kNone) {
      nodes[wild].size += extra;
    } else {
      const uint32_t w = NewNode();
      Node& n = nodes[w];
      n.offset = region;
      n.size = extra;
      n.state = State::kFree;
      n.phys_prev = last;
      n.phys_next = kNone;
      n.free_prev = n.free_next = kNone;
      if (last != kNone) nodes[last].phys_next = w;
      last = w;
      wild = w;
      ++num_free;
    }
    region = new_region;
  }

  uint64_t LargestFree() const REQUIRES(mu) {
    uint64_t best = wild != kNone ? nodes[wild].size : 0;
    if (fl_bitmap != 0) {
      const int fl = 63 - std::countl_zero(fl_bitmap);
      const int sl = 31 - std::countl_zero(sl_bitmap[fl]);
      uint32_t i = heads[fl][sl];
      for (int k = 0; k < kExactScan && i != kNone; ++k, i = nodes[i].free_next) {
        best = std::max(best, nodes[i].size);
      }
    }
    return best;
  }
};

Allocator::Allocator(uint64_t region_bytes, uint64_t align) {
  LMCACHE_CHECK(align != 0 && (align & (align - 1)) == 0, "align must be a power of two");
  LMCACHE_CHECK(region_bytes % align == 0, "region_bytes must be a multiple of align");
  LMCACHE_CHECK(region_bytes < (uint64_t{1} << 62), "region_bytes is too large");
  impl_ = std::make_unique<Impl>(region_bytes, align);
}

Allocator::~Allocator() = default;

Allocation Allocator::Allocate(uint64_t bytes) {
  internal::MutexLock lock(&impl_->mu);
  if (bytes == 0 || bytes > (impl_->region << impl_->shift)) return Allocation{};
  return impl_->AllocateUnits(RoundUp(bytes) >> impl_->shift);
}

bool Allocator::AllocateBatch(const uint64_t* sizes, size_t n, Allocation* out) {
  internal::MutexLock lock(&impl_->mu);
  const uint64_t region_bytes = impl_->region << impl_->shift;
  const uint64_t hwm_before = impl_->hwm;
  for (size_t k = 0; k < n; ++k) {
    Allocation a;
    if (sizes[k] != 0 && sizes[k] <= region_bytes) {
      a = impl_->AllocateUnits(RoundUp(sizes[k]) >> impl_->shift);
    }
    if (!a.valid()) {
      // Roll back in reverse order; merging restores the same free ranges.
      while (k > 0) {
        --k;
        impl_->FreeHandle(out[k]);
        out[k] = Allocation{};
      }
      impl_->hwm = hwm_before;
      return false;
    }
    out[k] = a;
  }
  return true;
}

void Allocator::Free(const Allocation& a) {
  internal::MutexLock lock(&impl_->mu);
  impl_->FreeHandle(a);
}

void Allocator::Extend(uint64_t new_region_bytes) {
  LMCACHE_CHECK(new_region_bytes % impl_->align == 0, "Extend: size must be a multiple of align");
  LMCACHE_CHECK(new_region_bytes < (uint64_t{1} << 62), "Extend: region is too large");
  internal::MutexLock lock(&impl_->mu);
  impl_->ExtendLocked(new_region_bytes >> impl_->shift);
}

AllocatorStats Allocator::Stats() const {
  internal::MutexLock lock(&impl_->mu);
  const int shift = impl_->shift;
  AllocatorStats s;
  s.region_bytes = impl_->region << shift;
  s.used_bytes = impl_->used << shift;
  s.free_bytes = s.region_bytes - s.used_bytes;
  s.largest_free_block = impl_->LargestFree() << shift;
  s.high_water_mark = impl_->hwm << shift;
  s.num_allocations = impl_->num_used;
  s.num_free_blocks = impl_->num_free;
  return s;
}

uint64_t Allocator::align() const { return impl_->align; }

uint64_t Allocator::RoundUp(uint64_t bytes) const {
  const uint64_t mask = impl_->align - 1;
  if (bytes > std::numeric_limits<uint64_t>::max() - mask) {
    return std::numeric_limits<uint64_t>::max();  // saturates; never allocatable
  }
  return (bytes + mask) & ~mask;
}

}  // namespace lmcache
