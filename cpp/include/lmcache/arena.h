// Arena: the one contiguous region of host memory that holds every L1 object.
//
// The arena reserves `capacity_bytes` of address space once and never moves
// it, so an object's address is stable for its whole life. Two backings:
//   * anonymous memory (default): mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE),
//     MADV_HUGEPAGE when `huge_pages` (THP is `madvise` on our machines);
//   * a file or /dev/dax device (`devdax_path`): mmap(MAP_SHARED) of the first
//     `capacity_bytes` of it. A regular file shorter than that is extended with
//     ftruncate; a device shorter than that is an InvalidArgument.
//   * a new named POSIX shared-memory segment (`shm_name`, the engine_driven
//     pool: workers map the same segment and copy KV straight into L1 objects):
//     shm_open(O_CREAT|O_EXCL|O_RDWR, 0600), ftruncate to capacity(),
//     mmap(MAP_SHARED). An existing segment of that name is never reused or
//     replaced: Create fails with AlreadyExists. Lazy is allowed (tmpfs pages
//     materialize on first touch; the prefault thread faults them ahead of
//     use); an eager SHM arena fallocates the whole segment first, so a full
//     /dev/shm is a clean NoSpace at Create, never a SIGBUS later. The name is
//     unlinked by UnlinkShm() or the destructor (whichever comes first), and the
//     mapping is unmapped by the destructor. Other processes' mappings stay
//     valid after the unlink; only new shm_open calls fail.
//
// Commit model. `usable_bytes()` is the prefix [0, usable) the allocator may
// hand out. Eager arenas (lazy=false) are usable and pre-faulted in full at
// Create (like LMCache). Lazy arenas start with min(initial_bytes, capacity)
// usable and none of it faulted; Grow() extends the usable prefix (never
// moving anything), and PrefaultUpTo() faults pages ahead of use so that copies
// into L1 never pay first-touch page faults on the request path (a copy into
// never-touched memory runs ~5x slower than into faulted memory here). The
// L1 store drives Prefault from a background thread, keeping a window ahead
// of the allocator's high-water mark; an idle lazy arena costs almost no RSS.
//
// capacity() is capacity_bytes rounded up to align; base() is aligned to
// max(align, 2 MiB) (huge pages, devdax). A lazy arena registers and grows in
// steps of max(initial usable, 64 MiB).
//
// Pinning seam: a MemoryRegistrar (the CUDA layer supplies one that calls
// cudaHostRegister) is told about every range before it becomes usable and
// about every range on destruction.
//
// Thread safety: thread-safe. Grow and Prefault may race with each other and
// with readers of base()/usable_bytes().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "lmcache/status.h"

namespace lmcache {

struct ArenaOptions {
  uint64_t capacity_bytes = 0;        // REQUIRES: > 0
  uint64_t align_bytes = 4096;        // REQUIRES: power of two, >= 64
  bool lazy = true;
  uint64_t initial_bytes = 0;         // lazy only; 0 means capacity_bytes
  std::string devdax_path;            // non-empty: file/device backed (forces eager)
  // Non-empty: a new POSIX SHM segment of this name ("x" or "/x"; 1..255
  // characters after the optional '/', no other '/'). Exclusive with devdax_path.
  std::string shm_name;
  bool huge_pages = true;             // MADV_HUGEPAGE on anonymous memory
};

// Seam for page-locking the arena (CUDA pinned memory). Both calls must be
// thread-safe; Register failing makes Create/Grow fail with its Status.
class MemoryRegistrar {
 public:
  virtual ~MemoryRegistrar() = default;
  virtual Status Register(void* addr, uint64_t len) = 0;
  virtual void Unregister(void* addr, uint64_t len) = 0;
};

class Arena {
 public:
  // InvalidArgument for bad options; IOError/NoSpace when mapping fails.
  // `registrar` may be null; if not, it must outlive the arena.
  static Result<std::unique_ptr<Arena>> Create(const ArenaOptions& options,
                                               MemoryRegistrar* registrar = nullptr);
  ~Arena();  // unregisters and unmaps everything
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  uint8_t* base() const { return base_; }
  uint64_t capacity() const { return capacity_; }
  uint64_t align() const { return align_; }
  bool lazy() const { return lazy_; }
  bool file_backed() const { return fd_ >= 0; }
  // SHM-backed arenas: the segment name without the leading '/' (what other
  // processes pass to shm_open / Python's SharedMemory); "" otherwise. Stays
  // set after UnlinkShm().
  const std::string& shm_name() const { return shm_name_; }
  bool shm_backed() const { return !shm_name_.empty(); }
  // Remove the SHM name now (idempotent, thread-safe). Returns true when this
  // call unlinked it; false for non-SHM arenas, a second call, or a name that
  // someone else already removed.
  bool UnlinkShm();
  // Byte offset from base() of [p, p + len): InvalidArgument unless the whole
  // range lies inside [base(), base() + capacity()). For SHM arenas this is
  // the offset inside the segment (the slot descriptors of engine_driven).
  Result<uint64_t> OffsetOf(const void* p, uint64_t len) const;
  // Bytes the allocator may use: monotonic, <= capacity().
  uint64_t usable_bytes() const { return usable_.load(std::memory_order_acquire); }
  // Bytes known to be faulted in, counted from offset 0 (monotonic).
  uint64_t prefaulted_bytes() const { return prefaulted_.load(std::memory_order_acquire); }

  // Extend the usable prefix to at least min(capacity, usable + min_extra)
  // (rounded up to the growth step). Returns the new usable size; NoSpace
  // when already at capacity.
  Result<uint64_t> Grow(uint64_t min_extra);

  // Fault in [prefaulted_bytes(), min(upto, usable_bytes())). Uses
  // MADV_POPULATE_WRITE where the kernel has it, else touches one byte per
  // page. Returns the new prefaulted_bytes().
  uint64_t PrefaultUpTo(uint64_t upto);

 private:
  Arena() = default;
  uint8_t* base_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t align_ = 4096;
  uint64_t grow_step_ = 0;
  bool lazy_ = false;
  int fd_ = -1;
  std::string shm_name_;                 // bare name; "" when not SHM-backed
  std::atomic<bool> shm_linked_{false};  // the name still exists (ours to unlink)
  MemoryRegistrar* registrar_ = nullptr;
  std::atomic<uint64_t> usable_{0};
  std::atomic<uint64_t> prefaulted_{0};
  std::atomic_flag growing_ = ATOMIC_FLAG_INIT;
  std::atomic_flag prefaulting_ = ATOMIC_FLAG_INIT;
};

}  // namespace lmcache
