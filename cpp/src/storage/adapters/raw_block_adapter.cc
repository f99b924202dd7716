// `raw_block`: fixed-size slots on a block device or a preallocated regular
// file, read and written with pread/pwrite, O_DIRECT by default. The layout,
// the persisted slot records and the engine are in slot_store.h; this file
// is the medium (aligned direct I/O with per-worker bounce buffers) and the
// JSON fields.
//
// Fields (LMCache 0.5.6's names where it has them):
//   device_path       required: a block device, or a regular file. A missing
//                     file is created (sparse) with the capacity's size, so a
//                     capacity is then required.
//   slot_bytes        slot size (default 4 MiB); a multiple of block_align.
//                     An object larger than a slot is refused (bit 0).
//   block_align       power of two in [512, 1 MiB] (default 4096): O_DIRECT
//                     alignment of offsets, lengths and buffers.
//   header_bytes      bytes of each slot's record (default 4096, a multiple
//                     of block_align, >= 512): the persisted index entry.
//   capacity_bytes    bytes of the device/file to use (0 = all of it); for a
//   capacity_gb       regular file, also the size it is created / extended
//                     to. Give one of the two.
//   use_odirect       default true. When the filesystem refuses O_DIRECT
//                     (EINVAL at open), buffered I/O is used and status says so.
//   num_workers       I/O threads (default: num_store_workers +
//                     num_load_workers when those LMCache fields are given,
//                     else 4).
//   load_checkpoint_on_init  default true: find the objects stored before;
//                     false (or persist_enabled false) starts empty (reformat).
//   io_engine         "posix" only.
//
// Durability: O_DIRECT writes bypass the page cache; no fsync per object (a
// cache, like LMCache's raw_block); Close() calls fdatasync. After a crash
// a record whose slot bytes do not match its checksum is caught on load.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/adapters/slot_store.h"
#include "storage/l2_config.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

constexpr uint64_t kChunk = 4u << 20;  // bounce buffer / transfer size

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBuffer AllocAligned(size_t align, size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, std::max<size_t>(align, sizeof(void*)), n) != 0) return nullptr;
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

uint64_t RoundUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

bool PReadAll(int fd, uint8_t* dst, uint64_t n, uint64_t off) {
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, dst + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;  // error, or past the end of the device
    done += static_cast<uint64_t>(r);
  }
  return true;
}

bool PWriteAll(int fd, const uint8_t* src, uint64_t n, uint64_t off) {
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = pwrite(fd, src + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<uint64_t>(r);
  }
  return true;
}

struct RawBlockOptions {
  std::string device_path;
  uint64_t slot_bytes = 4u << 20;
  uint64_t block_align = 4096;
  uint64_t header_bytes = 4096;
  uint64_t capacity_bytes = 0;  // 0: the whole device / file
  bool use_odirect = true;
  int num_workers = 4;
  bool load_existing = true;
};

class RawBlockMedium final : public SlotMedium {
 public:
  RawBlockMedium(std::string path, int fd, bool direct, bool odirect_requested, uint64_t align, bool block_device,
                 bool created, uint64_t device_bytes)
      : path_(std::move(path)),
        fd_(fd),
        direct_(direct),
        odirect_requested_(odirect_requested),
        align_(align),
        block_device_(block_device),
        created_(created),
        device_bytes_(device_bytes) {}
  ~RawBlockMedium() override {
    if (fd_ >= 0) close(fd_);
  }

  Status Init(const SlotGeometry& g, int num_workers) override {
    if (!direct_) return Status::OK();
    bounce_.resize(static_cast<size_t>(num_workers));
    for (auto& b : bounce_) {
      if ((b = AllocAligned(align_, kChunk)) == nullptr) return Status::NoSpace("cannot allocate O_DIRECT bounce buffers");
    }
    return Status::OK();
  }

  bool WriteData(int worker, uint64_t off, const uint8_t* src, uint64_t n, uint64_t* xxh) override {
    Xxh64 h;
    for (uint64_t done = 0; done < n; done += kChunk) {
      const uint64_t len = std::min(kChunk, n - done);
      h.Update(src + done, len);
      if (!direct_ || (reinterpret_cast<uintptr_t>(src + done) % align_ == 0 && len % align_ == 0)) {
        if (!PWriteAll(fd_, src + done, len, off + done)) return false;
      } else {
        uint8_t* b = bounce_[static_cast<size_t>(worker)].get();
        const uint64_t padded = RoundUp(len, align_);  // stays inside the slot (slot_bytes % align == 0)
        std::memcpy(b, src + done, len);
        std::memset(b + len, 0, padded - len);
        if (!PWriteAll(fd_, b, padded, off + done)) return false;
      }
    }
    *xxh = h.Digest();
    return true;
  }

  bool ReadData(int worker, uint64_t off, uint8_t* dst, uint64_t n, uint64_t* xxh) override {
    Xxh64 h;
    for (uint64_t done = 0; done < n; done += kChunk) {
      const uint64_t len = std::min(kChunk, n - done);
      if (!direct_ || (reinterpret_cast<uintptr_t>(dst + done) % align_ == 0 && len % align_ == 0)) {
        if (!PReadAll(fd_, dst + done, len, off + done)) return false;
      } else {
        uint8_t* b = bounce_[static_cast<size_t>(worker)].get();
        if (!PReadAll(fd_, b, RoundUp(len, align_), off + done)) return false;
        std::memcpy(dst + done, b, len);
      }
      h.Update(dst + done, len);
    }
    *xxh = h.Digest();
    return true;
  }

  bool WriteRange(uint64_t off, const uint8_t* src, uint64_t n) override {
    if (!direct_ || reinterpret_cast<uintptr_t>(src) % align_ == 0) return PWriteAll(fd_, src, n, off);
    AlignedBuffer b = AllocAligned(align_, n);
    if (!b) return false;
    std::memcpy(b.get(), src, n);
    return PWriteAll(fd_, b.get(), n, off);
  }

  bool ReadRange(uint64_t off, uint8_t* dst, uint64_t n) override {
    if (!direct_ || reinterpret_cast<uintptr_t>(dst) % align_ == 0) return PReadAll(fd_, dst, n, off);
    AlignedBuffer b = AllocAligned(align_, n);
    if (!b || !PReadAll(fd_, b.get(), n, off)) return false;
    std::memcpy(dst, b.get(), n);
    return true;
  }

  Status FlipByte(uint64_t off) override {
    const uint64_t block = off / align_ * align_;
    AlignedBuffer b = AllocAligned(align_, align_);
    if (!b) return Status::NoSpace("cannot allocate a block buffer");
    if (!PReadAll(fd_, b.get(), align_, block)) return Status::FromErrno("read " + path_, errno);
    b.get()[off - block] ^= 0x5A;
    if (!PWriteAll(fd_, b.get(), align_, block)) return Status::FromErrno("write " + path_, errno);
    return Status::OK();
  }

  void Flush() override { fdatasync(fd_); }

  void Details(std::vector<std::pair<std::string, std::string>>* d) const override {
    d->emplace_back("device_path", path_);
    d->emplace_back("device_kind", block_device_ ? "block device" : created_ ? "regular file (created)" : "regular file");
    d->emplace_back("device_bytes", std::to_string(device_bytes_));
    d->emplace_back("block_align", std::to_string(align_));
    d->emplace_back("use_odirect", !odirect_requested_ ? "false"
                                   : direct_           ? "true"
                                                       : "requested; refused by the filesystem, using buffered I/O");
  }

  std::string Problem() const override {
    struct stat st;
    if (fstat(fd_, &st) != 0) return "device_path " + path_ + " cannot be examined";
    if (!block_device_ && st.st_nlink == 0) return "device_path " + path_ + " was removed";
    return {};
  }

 private:
  const std::string path_;
  const int fd_;
  const bool direct_;
  const bool odirect_requested_;
  const uint64_t align_;
  const bool block_device_;
  const bool created_;
  const uint64_t device_bytes_;
  std::vector<AlignedBuffer> bounce_;  // worker w touches only bounce_[w]
};

Result<std::unique_ptr<L2Adapter>> OpenRawBlock(const L2CommonConfig& common, const RawBlockOptions& o,
                                                const L2AdapterContext& context) {
  const std::string ctx = "L2 adapter 'raw_block': ";
  struct stat st;
  bool created = false;
  if (stat(o.device_path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::FromErrno(ctx + "cannot examine device_path '" + o.device_path + "'", errno);
    if (o.capacity_bytes == 0) {
      return Status::InvalidArgument(ctx + "device_path '" + o.device_path +
                                     "' does not exist (give capacity_bytes or capacity_gb to create a file of that size)");
    }
    const int fd = open(o.device_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(ctx + "cannot create device_path '" + o.device_path + "'", errno);
    const bool sized = ftruncate(fd, static_cast<off_t>(o.capacity_bytes)) == 0;
    const int err = errno;
    close(fd);
    if (!sized) {
      unlink(o.device_path.c_str());
      return Status::FromErrno(ctx + "cannot size device_path '" + o.device_path + "'", err);
    }
    created = true;
    if (stat(o.device_path.c_str(), &st) != 0) return Status::FromErrno(ctx + "stat " + o.device_path, errno);
  }
  const bool block_device = S_ISBLK(st.st_mode);
  if (!block_device && !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(ctx + "device_path '" + o.device_path + "' is neither a block device nor a regular file");
  }
  int flags = O_RDWR | O_CLOEXEC;
  int fd = open(o.device_path.c_str(), flags | (o.use_odirect ? O_DIRECT : 0));
  bool direct = o.use_odirect;
  if (fd < 0 && o.use_odirect && errno == EINVAL) {  // e.g. a filesystem without O_DIRECT
    direct = false;
    fd = open(o.device_path.c_str(), flags);
  }
  if (fd < 0) return Status::FromErrno(ctx + "cannot open device_path '" + o.device_path + "'", errno);
  auto fail = [&](Status s) {
    close(fd);
    return s;
  };
  uint64_t device_bytes = 0;
  if (block_device) {
    if (ioctl(fd, BLKGETSIZE64, &device_bytes) != 0) return fail(Status::FromErrno(ctx + "BLKGETSIZE64 " + o.device_path, errno));
    int lbs = 0;
    if (direct && ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0 && o.block_align % static_cast<uint64_t>(lbs) != 0) {
      return fail(Status::InvalidArgument(ctx + "field 'block_align' must be a multiple of the device's logical block size " +
                                          std::to_string(lbs) + ", got " + std::to_string(o.block_align)));
    }
  } else {
    device_bytes = static_cast<uint64_t>(st.st_size);
    if (o.capacity_bytes > device_bytes) {  // extend a preallocated file to the configured capacity
      if (ftruncate(fd, static_cast<off_t>(o.capacity_bytes)) != 0) {
        return fail(Status::FromErrno(ctx + "cannot extend device_path '" + o.device_path + "'", errno));
      }
      device_bytes = o.capacity_bytes;
    }
  }
  const uint64_t usable = o.capacity_bytes > 0 ? std::min(o.capacity_bytes, device_bytes) : device_bytes;
  SlotGeometry geo;
  const uint64_t superblock = std::max<uint64_t>(4096, o.block_align);
  if (!SlotGeometry::Compute(usable, superblock, o.header_bytes, o.slot_bytes, o.block_align, &geo)) {
    return fail(Status::InvalidArgument(ctx + "device_path '" + o.device_path + "' (" + std::to_string(usable) +
                                        " usable bytes) is too small for one slot of slot_bytes " +
                                        std::to_string(o.slot_bytes) + " plus its header"));
  }
  auto medium = std::make_unique<RawBlockMedium>(o.device_path, fd, direct, o.use_odirect, o.block_align, block_device,
                                                 created, device_bytes);
  SlotOptions so;
  so.type = "raw_block";
  so.kind = kSlotKindRawBlock;
  so.num_workers = o.num_workers;
  so.load_existing = o.load_existing;
  so.device_path = o.device_path;
  return SlotAdapter::Create(common, so, geo, std::move(medium), context);
}

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateRawBlockAdapter(const L2CommonConfig& common, JsonFields& f,
                                                         const L2AdapterContext& context) {
  RawBlockOptions o;
  constexpr int64_t kMaxBytes = int64_t{1} << 50;
  o.device_path = f.RequiredString("device_path");
  o.block_align = static_cast<uint64_t>(f.Int("block_align", 4096, 512, 1 << 20));
  o.slot_bytes = static_cast<uint64_t>(f.Int("slot_bytes", static_cast<int64_t>(o.slot_bytes), 1, int64_t{1} << 40));
  o.header_bytes = static_cast<uint64_t>(f.Int("header_bytes", 4096, 512, 1 << 20));
  const auto cap_bytes = f.OptionalInt("capacity_bytes", 0, kMaxBytes);
  const double cap_gb = f.Number("capacity_gb", 0, 0, 1e6);
  o.use_odirect = f.Bool("use_odirect", true);
  const auto store_workers = f.OptionalInt("num_store_workers", 1, 256);
  const auto load_workers = f.OptionalInt("num_load_workers", 1, 256);
  f.OptionalInt("num_lookup_workers", 1, 256);  // lookups are answered from the index, no threads
  const int64_t default_workers =
      (store_workers || load_workers) ? std::min<int64_t>(256, store_workers.value_or(2) + load_workers.value_or(4)) : 4;
  o.num_workers = static_cast<int>(f.Int("num_workers", default_workers, 1, 256));
  o.load_existing = f.Bool("load_checkpoint_on_init", true) && common.persist_enabled;
  f.Choice("io_engine", "posix", {"posix"});
  if (!IsPowerOfTwo(o.block_align)) {
    f.Fail("block_align", "must be a power of two, got " + std::to_string(o.block_align));
  } else if (o.slot_bytes % o.block_align != 0) {
    f.Fail("slot_bytes", "must be a multiple of block_align (" + std::to_string(o.block_align) + "), got " +
                             std::to_string(o.slot_bytes));
  } else if (o.header_bytes % o.block_align != 0) {
    f.Fail("header_bytes", "must be a multiple of block_align (" + std::to_string(o.block_align) + "), got " +
                               std::to_string(o.header_bytes));
  }
  if (cap_bytes && cap_gb > 0) {
    f.Fail("capacity_gb", "give capacity_bytes or capacity_gb, not both");
  }
  o.capacity_bytes = cap_bytes ? static_cast<uint64_t>(*cap_bytes)
                               : static_cast<uint64_t>(cap_gb * static_cast<double>(1ull << 30)) / o.block_align * o.block_align;
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  return OpenRawBlock(common, o, context);
}

}  // namespace lmcache::internal
