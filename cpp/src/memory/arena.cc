// Arena implementation (contract in lmcache/arena.h).
//
// Layout decisions:
//   * capacity() is options.capacity_bytes rounded up to align_bytes. The
//     mapping covers capacity() rounded up to the page size.
//   * base() is aligned to max(align_bytes, 2 MiB): huge pages (THP, devdax)
//     need 2 MiB-aligned virtual addresses, and an `align`-aligned base makes
//     every allocator offset an `align`-aligned address. To get it we reserve
//     `len + alignment - page` bytes and trim both ends.
//   * File/device backing maps the file MAP_SHARED|MAP_FIXED over an
//     anonymous PROT_NONE reservation (same alignment trick).
//   * SHM backing does the same with a segment it creates (O_EXCL, 0600) and
//     sizes to the mapped length. Eager SHM arenas fallocate the segment
//     before prefaulting (tmpfs answers ENOSPC instead of a later SIGBUS).
//     The fd is closed after mmap; the name is unlinked by UnlinkShm() or the
//     destructor, also when Create fails after creating it.
//
// Growth (lazy arenas). Let u0 be the initial usable size (min(initial_bytes
// or capacity, capacity) rounded up to align) and step = max(u0, 64 MiB)
// rounded up to align. The usable size is always one of the boundaries
// u0, u0 + step, u0 + 2*step, ... or capacity. Grow(min_extra) moves to the
// smallest boundary >= usable + max(min_extra, 1), capped at capacity, so a
// Grow adds at least one step. The registrar sees one Register call per
// piece [boundary_k, boundary_k+1) (a multi-step Grow registers several
// pieces), so the destructor can recompute every registered range from
// (u0, step, usable) alone and Unregister each with the exact (addr, len) it
// was registered with (cudaHostUnregister needs the registered pointer).
// `grow_step_` stores u0; the step is derived from it (see GrowStep()).
// Eager arenas register [0, capacity) once.
//
// Concurrency: Grow calls are serialized by `growing_`, PrefaultUpTo calls by
// `prefaulting_` (both used as small locks that sleep on the flag with C++20
// atomic wait, never spin for long). usable_ is published (release) only
// after the new range is registered; prefaulted_ is published per 64 MiB
// chunk, so a reader of prefaulted_bytes() sees progress during a long
// prefault. Grow and PrefaultUpTo do not exclude each other: Prefault reads
// usable_ once and faults at most up to it.
//
// Prefaulting never changes memory contents (MADV_POPULATE_WRITE, or the
// fallback's atomic `fetch_or(0)` per page), so it is safe to prefault pages
// the allocator has already handed out and that a copy is writing into.
#include "lmcache/arena.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace lmcache {

namespace internal {
// Fault in [p, p + len) by an atomic no-op write to one byte per page.
// Exposed (not static) so tests can exercise the fallback on kernels that do
// have MADV_POPULATE_WRITE. REQUIRES: p page-aligned, range mapped writable.
void PrefaultByTouch(uint8_t* p, uint64_t len);
}  // namespace internal

namespace {

constexpr uint64_t kMinGrowStep = 64ull << 20;     // 64 MiB
constexpr uint64_t kPrefaultChunk = 64ull << 20;   // publish progress per chunk
constexpr uint64_t kHugePageBytes = 2ull << 20;    // base alignment floor
constexpr int kMadvPopulateWrite = 23;             // MADV_POPULATE_WRITE (5.14+)

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// REQUIRES: a is a power of two and x + a - 1 does not overflow.
uint64_t RoundUpPow2(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

uint64_t MappedLength(uint64_t capacity) { return RoundUpPow2(capacity, PageSize()); }

uint64_t GrowStep(uint64_t u0, uint64_t align) {
  return RoundUpPow2(std::max(u0, kMinGrowStep), align);
}

// A lock over an atomic_flag: sleeps on the flag (futex) while it is held.
class FlagLock {
 public:
  explicit FlagLock(std::atomic_flag* flag) : flag_(flag) {
    while (flag_->test_and_set(std::memory_order_acquire)) {
      flag_->wait(true, std::memory_order_relaxed);
    }
  }
  ~FlagLock() {
    flag_->clear(std::memory_order_release);
    flag_->notify_all();
  }
  FlagLock(const FlagLock&) = delete;
  FlagLock& operator=(const FlagLock&) = delete;

 private:
  std::atomic_flag* flag_;
};

// Faults in [p, p + len). Returns 0, or the errno when the kernel cannot
// back the range (ENOMEM, EFAULT, EHWPOISON). REQUIRES: p page-aligned.
int FaultRange(uint8_t* p, uint64_t len) {
  if (len == 0) return 0;
  while (madvise(p, len, kMadvPopulateWrite) != 0) {
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno == EINVAL) {
      // Kernel without MADV_POPULATE_WRITE, or a mapping it refuses (some
      // device mappings): touch the pages instead.
      internal::PrefaultByTouch(p, len);
      return 0;
    }
    return errno;
  }
  return 0;
}

// Faults [from, to) of the mapping at `base` whose mapped length is
// `mapped_len`, in chunks, storing progress into *published after each one.
// Returns the offset reached (== to on success; else *err is the errno).
uint64_t PrefaultRange(uint8_t* base, uint64_t mapped_len, uint64_t from, uint64_t to,
                       std::atomic<uint64_t>* published, int* err) {
  const uint64_t page = PageSize();
  uint64_t done = from;
  while (done < to) {
    const uint64_t chunk_end = std::min(to, (done / kPrefaultChunk + 1) * kPrefaultChunk);
    const uint64_t start = done & ~(page - 1);
    const uint64_t stop = std::min(RoundUpPow2(chunk_end, page), mapped_len);
    *err = FaultRange(base + start, stop - start);
    if (*err != 0) break;
    done = chunk_end;
    published->store(done, std::memory_order_release);
  }
  return done;
}

Status MapError(std::string_view what, int err) {
  if (err == ENOMEM) {
    return Status::NoSpace(std::string(what) + ": out of memory (ENOMEM)");
  }
  return Status::FromErrno(what, err);
}

// Size of a device, or 0 when it cannot be determined cheaply.
uint64_t DeviceSize(int fd, const struct stat& st) {
  if (S_ISBLK(st.st_mode)) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) == 0) return size;
    return 0;
  }
  // Character devices (/dev/daxX.Y) publish their size in sysfs.
  char path[96];
  std::snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/size", major(st.st_rdev),
                minor(st.st_rdev));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  if (std::fscanf(f, "%llu", &size) != 1) size = 0;
  std::fclose(f);
  return size;
}

// Opens and sizes the backing file. Returns the fd.
Result<int> OpenBacking(const std::string& path, uint64_t capacity) {
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("devdax_path: cannot open " + path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno("devdax_path: cannot stat " + path, err);
  }
  if (S_ISREG(st.st_mode)) {
    if (static_cast<uint64_t>(st.st_size) < capacity &&
        ftruncate(fd, static_cast<off_t>(capacity)) != 0) {
      const int err = errno;
      close(fd);
      return Status::FromErrno("devdax_path: cannot extend " + path, err);
    }
    return fd;
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    const uint64_t size = DeviceSize(fd, st);
    if (size != 0 && size < capacity) {
      close(fd);
      return Status::InvalidArgument("devdax_path: device " + path + " holds " +
                                     std::to_string(size) + " bytes, capacity_bytes is " +
                                     std::to_string(capacity));
    }
    return fd;  // size unknown or large enough; mmap has the last word
  }
  close(fd);
  return Status::InvalidArgument("devdax_path: " + path +
                                 " is neither a regular file nor a device");
}

// The bare SHM name ("x" for "x" or "/x"), or an InvalidArgument.
Result<std::string> BareShmName(const std::string& name) {
  std::string bare = name[0] == '/' ? name.substr(1) : name;
  if (bare.empty() || bare.size() > 255 || bare.find('/') != std::string::npos || bare == "." ||
      bare == ".." || bare.find('\0') != std::string::npos) {
    return Status::InvalidArgument("shm_name '" + name +
                                   "' is not a POSIX shared-memory name (1 to 255 characters after an "
                                   "optional '/', no other '/')");
  }
  return bare;
}

// Creates the segment /<bare> (never an existing one) and sizes it. Returns
// the fd; on failure nothing is left behind.
Result<int> CreateShm(const std::string& bare, uint64_t len, bool allocate) {
  const std::string full = "/" + bare;
  const int fd = shm_open(full.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return Status::AlreadyExists("shm_name: a shared-memory segment named " + full +
                                   " already exists (another server's pool, or a stale one: remove "
                                   "/dev/shm/" + bare + " if no process uses it, or pick another name)");
    }
    return Status::FromErrno("shm_name: cannot create " + full, err);
  }
  auto fail = [&](Status st) -> Result<int> {
    close(fd);
    shm_unlink(full.c_str());
    return st;
  };
  if (ftruncate(fd, static_cast<off_t>(len)) != 0) {
    return fail(Status::FromErrno("shm_name: cannot size " + full, errno));
  }
  if (allocate) {
    int r;
    do {
      r = fallocate(fd, 0, 0, static_cast<off_t>(len));
    } while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EOPNOTSUPP) {
      const int err = errno;
      if (err == ENOSPC || err == ENOMEM) {
        return fail(Status::NoSpace("shm_name: /dev/shm cannot hold the " + std::to_string(len) +
                                    "-byte L1 pool " + full + " (" + std::strerror(err) + ")"));
      }
      return fail(Status::FromErrno("shm_name: cannot allocate " + full, err));
    }
  }
  return fd;
}

}  // namespace

namespace internal {
void PrefaultByTouch(uint8_t* p, uint64_t len) {
  const uint64_t page = PageSize();
  for (uint64_t off = 0; off < len; off += page) {
    // An atomic read-modify-write that stores the value it read: faults the
    // page in writable without racing with concurrent writers of that byte.
    __atomic_fetch_or(p + off, static_cast<uint8_t>(0), __ATOMIC_RELAXED);
  }
}
}  // namespace internal

Result<std::unique_ptr<Arena>> Arena::Create(const ArenaOptions& options,
                                             MemoryRegistrar* registrar) {
  if (options.capacity_bytes == 0) {
    return Status::InvalidArgument("capacity_bytes must be > 0");
  }
  if (!IsPowerOfTwo(options.align_bytes) || options.align_bytes < 64) {
    return Status::InvalidArgument("align_bytes must be a power of two >= 64, got " +
                                   std::to_string(options.align_bytes));
  }
  const uint64_t align = options.align_bytes;
  const uint64_t page = PageSize();
  const uint64_t base_align = std::max({align, kHugePageBytes, page});
  // Keep every later rounding (to align, page, base alignment) overflow-free.
  if (options.capacity_bytes > (uint64_t{1} << 62) - base_align) {
    return Status::InvalidArgument("capacity_bytes is too large: " +
                                   std::to_string(options.capacity_bytes));
  }
  const uint64_t capacity = RoundUpPow2(options.capacity_bytes, align);
  const bool file_backed = !options.devdax_path.empty();
  const bool shm_backed = !options.shm_name.empty();
  if (file_backed && shm_backed) {
    return Status::InvalidArgument("devdax_path and shm_name cannot both be set: L1 lives in one medium");
  }
  std::string shm_bare;
  if (shm_backed) {
    Result<std::string> bare = BareShmName(options.shm_name);
    if (!bare.ok()) return bare.status();
    shm_bare = std::move(bare).value();
  }
  const uint64_t map_len = MappedLength(capacity);

  std::unique_ptr<Arena> arena(new Arena());
  arena->capacity_ = capacity;
  arena->align_ = align;
  arena->lazy_ = options.lazy && !file_backed;
  arena->registrar_ = registrar;

  int shared_fd = -1;  // the fd mapped MAP_SHARED (file, device or SHM segment)
  if (file_backed) {
    Result<int> fd = OpenBacking(options.devdax_path, capacity);
    if (!fd.ok()) return fd.status();
    arena->fd_ = fd.value();
    shared_fd = arena->fd_;
  } else if (shm_backed) {
    Result<int> fd = CreateShm(shm_bare, map_len, /*allocate=*/!arena->lazy_);
    if (!fd.ok()) return fd.status();
    shared_fd = fd.value();
    arena->shm_name_ = shm_bare;  // from here on ~Arena unlinks the name
    arena->shm_linked_.store(true, std::memory_order_release);
  }
  // The SHM fd is only needed until it is mapped.
  struct ShmFdCloser {
    int fd;
    ~ShmFdCloser() {
      if (fd >= 0) close(fd);
    }
  } shm_fd_closer{shm_backed ? shared_fd : -1};

  // Reserve an over-sized range, then keep an aligned window of it.
  const uint64_t reserve_len = map_len + base_align - page;
  const int reserve_prot = shared_fd >= 0 ? PROT_NONE : (PROT_READ | PROT_WRITE);
  void* reserved = mmap(nullptr, reserve_len, reserve_prot,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) return MapError("mmap of the arena", errno);
  const uintptr_t raw = reinterpret_cast<uintptr_t>(reserved);
  const uintptr_t aligned = RoundUpPow2(raw, base_align);
  if (aligned > raw) munmap(reserved, aligned - raw);
  const uintptr_t tail = aligned + map_len;
  if (raw + reserve_len > tail) munmap(reinterpret_cast<void*>(tail), raw + reserve_len - tail);
  uint8_t* base = reinterpret_cast<uint8_t*>(aligned);

  if (shared_fd >= 0) {
    void* m = mmap(base, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shared_fd, 0);
    if (m == MAP_FAILED) {
      const int err = errno;
      munmap(base, map_len);
      return MapError(file_backed ? "mmap of devdax_path " + options.devdax_path
                                  : "mmap of shm_name /" + shm_bare,
                      err);
    }
  }
  if (!file_backed && options.huge_pages) {
    // Best effort: EINVAL when the kernel lacks THP (for SHM, tmpfs huge pages
    // also depend on /sys/kernel/mm/transparent_hugepage/shmem_enabled).
    (void)madvise(base, map_len, MADV_HUGEPAGE);
  }
  arena->base_ = base;  // from here on ~Arena unmaps

  if (arena->lazy_) {
    const uint64_t initial = options.initial_bytes == 0 ? capacity : options.initial_bytes;
    const uint64_t u0 = std::min(RoundUpPow2(std::min(initial, capacity), align), capacity);
    arena->grow_step_ = u0;
    if (registrar != nullptr) LMCACHE_RETURN_IF_ERROR(registrar->Register(base, u0));
    arena->usable_.store(u0, std::memory_order_release);
  } else {
    arena->grow_step_ = capacity;
    int err = 0;
    if (PrefaultRange(base, map_len, 0, capacity, &arena->prefaulted_, &err) != capacity) {
      return MapError("prefault of the " + std::to_string(capacity) + "-byte arena", err);
    }
    if (registrar != nullptr) LMCACHE_RETURN_IF_ERROR(registrar->Register(base, capacity));
    arena->usable_.store(capacity, std::memory_order_release);
  }
  return arena;
}

Arena::~Arena() {
  UnlinkShm();
  if (base_ == nullptr) {
    if (fd_ >= 0) close(fd_);
    return;
  }
  const uint64_t usable = usable_.load(std::memory_order_acquire);
  if (registrar_ != nullptr && usable > 0) {
    if (!lazy_) {
      registrar_->Unregister(base_, capacity_);
    } else {
      // Recompute the pieces Grow registered: [0, u0), then `step`-sized
      // pieces (the last one capped at capacity). Unregister in reverse.
      const uint64_t u0 = grow_step_;
      const uint64_t step = GrowStep(u0, align_);
      uint64_t end = usable;
      while (end > u0) {
        const uint64_t start = u0 + (end - u0 - 1) / step * step;
        registrar_->Unregister(base_ + start, end - start);
        end = start;
      }
      registrar_->Unregister(base_, u0);
    }
  }
  munmap(base_, MappedLength(capacity_));
  if (fd_ >= 0) close(fd_);
}

bool Arena::UnlinkShm() {
  if (!shm_linked_.exchange(false, std::memory_order_acq_rel)) return false;
  return shm_unlink(("/" + shm_name_).c_str()) == 0;
}

Result<uint64_t> Arena::OffsetOf(const void* p, uint64_t len) const {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const uintptr_t base = reinterpret_cast<uintptr_t>(base_);
  if (base_ == nullptr || addr < base || addr - base > capacity_ || len > capacity_ - (addr - base)) {
    return Status::InvalidArgument("the range is not inside the arena");
  }
  return static_cast<uint64_t>(addr - base);
}

Result<uint64_t> Arena::Grow(uint64_t min_extra) {
  FlagLock lock(&growing_);
  const uint64_t usable = usable_.load(std::memory_order_relaxed);
  if (usable >= capacity_) {
    return Status::NoSpace("arena is at its capacity of " + std::to_string(capacity_) + " bytes");
  }
  const uint64_t u0 = grow_step_;
  const uint64_t step = GrowStep(u0, align_);
  const uint64_t want = std::max<uint64_t>(min_extra, 1);
  uint64_t target = capacity_;
  if (want < capacity_ - usable) {
    const uint64_t need = usable + want - u0;  // > 0: usable >= u0
    const uint64_t pieces = (need + step - 1) / step;
    target = std::min(capacity_, u0 + pieces * step);
  }
  // Register piece by piece (see the file comment), rolling back on failure.
  if (registrar_ != nullptr) {
    uint64_t start = usable;
    while (start < target) {
      const uint64_t end = std::min(target, start + step);
      Status st = registrar_->Register(base_ + start, end - start);
      if (!st.ok()) {
        while (start > usable) {
          const uint64_t prev = start - step;
          registrar_->Unregister(base_ + prev, start - prev);
          start = prev;
        }
        return st;
      }
      start = end;
    }
  }
  usable_.store(target, std::memory_order_release);
  return target;
}

uint64_t Arena::PrefaultUpTo(uint64_t upto) {
  FlagLock lock(&prefaulting_);
  const uint64_t done = prefaulted_.load(std::memory_order_relaxed);
  const uint64_t target = std::min(upto, usable_.load(std::memory_order_acquire));
  if (target <= done) return done;
  int err = 0;  // on failure prefaulted_ stays where it got; a later call retries
  return PrefaultRange(base_, MappedLength(capacity_), done, target, &prefaulted_, &err);
}

}  // namespace lmcache
