// `dax`: objects in an mmap-ed DAX device (/dev/daxX.Y) or regular file.
// Stores and loads are memcpy to/from the mapping (hashing the bytes as they
// are copied); the layout (superblock, one persisted record per slot with
// the key, size and XXH64, fixed-size slots) and the engine are the ones of
// slot_store.h, shared with raw_block, so a restarted server on the same
// file finds its objects. Fixed slots, as LMCache 0.5.6's dax adapter:
// the mapping can be re-indexed after a restart without an allocator log.
//
// Fields (LMCache 0.5.6's names):
//   device_path       required: a DAX character device, or a regular file
//                     (created when missing, extended to max_dax_size_gb).
//   max_dax_size_gb   size of the mapping in GiB; required for a device and
//                     for a file that does not exist yet; for an existing
//                     file, default its size. A device mapping is rounded
//                     down to 2 MiB (device alignment).
//   slot_bytes        slot size (default 4 MiB, a multiple of 4096); larger
//                     objects are refused (bit 0).
//   num_workers       copy threads (default num_store_workers +
//                     num_load_workers when those LMCache fields are given,
//                     else 4).
//   load_checkpoint_on_init  default true; false (or persist_enabled false)
//                     starts empty.
//   msync             "close" (default) | "store" | "none": when a file
//                     mapping is msync-ed (MS_SYNC): at Close; after every
//                     object (data, then record; the store completes after
//                     both are durable); never (the kernel writes back).
//                     MAP_SHARED makes every store visible to the file at
//                     once, so a restarted process sees it either way; msync
//                     only matters for a crash of the machine. On a DAX
//                     device msync is not a CPU cache flush: persistence over
//                     power loss needs a platform with eADR.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

constexpr uint64_t kPage = 4096;
constexpr uint64_t kDeviceAlign = 2u << 20;
constexpr uint64_t kCopyChunk = 256u << 10;  // hash while the chunk is in cache
constexpr uint64_t kRecordBytes = 512;

enum class MsyncPolicy { kClose, kStore, kNone };

struct DaxOptions {
  std::string device_path;
  uint64_t size_bytes = 0;  // 0: the existing file's size
  uint64_t slot_bytes = 4u << 20;
  int num_workers = 4;
  bool load_existing = true;
  MsyncPolicy msync = MsyncPolicy::kClose;
  std::string msync_name = "close";
};

class DaxMedium final : public SlotMedium {
 public:
  DaxMedium(std::string path, uint8_t* base, uint64_t size, bool device, bool created, MsyncPolicy policy,
            std::string policy_name)
      : path_(std::move(path)),
        base_(base),
        size_(size),
        device_(device),
        created_(created),
        policy_(policy),
        policy_name_(std::move(policy_name)) {}
  ~DaxMedium() override { munmap(base_, size_); }

  Status Init(const SlotGeometry&, int) override { return Status::OK(); }

  bool WriteData(int, uint64_t off, const uint8_t* src, uint64_t n, uint64_t* xxh) override {
    Xxh64 h;
    for (uint64_t done = 0; done < n; done += kCopyChunk) {
      const uint64_t len = std::min(kCopyChunk, n - done);
      h.Update(src + done, len);
      std::memcpy(base_ + off + done, src + done, len);
    }
    *xxh = h.Digest();
    return policy_ != MsyncPolicy::kStore || Sync(off, n);
  }

  bool ReadData(int, uint64_t off, uint8_t* dst, uint64_t n, uint64_t* xxh) override {
    Xxh64 h;
    for (uint64_t done = 0; done < n; done += kCopyChunk) {
      const uint64_t len = std::min(kCopyChunk, n - done);
      std::memcpy(dst + done, base_ + off + done, len);
      h.Update(dst + done, len);
    }
    *xxh = h.Digest();
    return true;
  }

  bool WriteRange(uint64_t off, const uint8_t* src, uint64_t n) override {
    std::memcpy(base_ + off, src, n);
    return policy_ != MsyncPolicy::kStore || Sync(off, n);
  }

  bool ReadRange(uint64_t off, uint8_t* dst, uint64_t n) override {
    std::memcpy(dst, base_ + off, n);
    return true;
  }

  Status FlipByte(uint64_t off) override {
    base_[off] ^= 0x5A;
    return Status::OK();
  }

  void Flush() override {
    if (policy_ != MsyncPolicy::kNone) Sync(0, size_);
  }

  void Details(std::vector<std::pair<std::string, std::string>>* d) const override {
    d->emplace_back("device_path", path_);
    d->emplace_back("device_kind", device_ ? "dax device" : created_ ? "regular file (created)" : "regular file");
    d->emplace_back("mapped_bytes", std::to_string(size_));
    d->emplace_back("msync", policy_name_);
  }

  std::string Problem() const override {
    if (device_) return {};
    struct stat st;
    if (stat(path_.c_str(), &st) != 0) return "device_path " + path_ + " was removed";
    return {};
  }

 private:
  bool Sync(uint64_t off, uint64_t n) {
    const uint64_t start = off / kPage * kPage;
    return msync(base_ + start, off + n - start, MS_SYNC) == 0;
  }

  const std::string path_;
  uint8_t* const base_;
  const uint64_t size_;
  const bool device_;
  const bool created_;
  const MsyncPolicy policy_;
  const std::string policy_name_;
};

Result<std::unique_ptr<L2Adapter>> OpenDax(const L2CommonConfig& common, const DaxOptions& o,
                                           const L2AdapterContext& context) {
  const std::string ctx = "L2 adapter 'dax': ";
  struct stat st;
  bool created = false;
  int fd = -1;
  if (stat(o.device_path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::FromErrno(ctx + "cannot examine device_path '" + o.device_path + "'", errno);
    if (o.size_bytes == 0) {
      return Status::InvalidArgument(ctx + "device_path '" + o.device_path +
                                     "' does not exist (give max_dax_size_gb to create a file of that size)");
    }
    fd = open(o.device_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(ctx + "cannot create device_path '" + o.device_path + "'", errno);
    created = true;
    if (fstat(fd, &st) != 0) {
      close(fd);
      return Status::FromErrno(ctx + "stat " + o.device_path, errno);
    }
  } else {
    if (!S_ISCHR(st.st_mode) && !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(ctx + "device_path '" + o.device_path +
                                     "' is neither a DAX character device nor a regular file");
    }
    fd = open(o.device_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(ctx + "cannot open device_path '" + o.device_path + "'", errno);
  }
  const bool device = S_ISCHR(st.st_mode);
  uint64_t size = o.size_bytes;
  if (device) {
    if (size == 0) {
      close(fd);
      return Status::InvalidArgument(ctx + "field 'max_dax_size_gb' is required for the DAX device '" + o.device_path + "'");
    }
    size = size / kDeviceAlign * kDeviceAlign;
  } else {
    if (size == 0) size = static_cast<uint64_t>(st.st_size);
    size = size / kPage * kPage;
    if (size > static_cast<uint64_t>(st.st_size) && ftruncate(fd, static_cast<off_t>(size)) != 0) {
      const int err = errno;
      close(fd);
      if (created) unlink(o.device_path.c_str());
      return Status::FromErrno(ctx + "cannot size device_path '" + o.device_path + "'", err);
    }
  }
  SlotGeometry geo;
  if (!SlotGeometry::Compute(size, kPage, kRecordBytes, o.slot_bytes, kPage, &geo)) {
    close(fd);
    return Status::InvalidArgument(ctx + "the mapping of '" + o.device_path + "' (" + std::to_string(size) +
                                   " bytes) is too small for one slot of slot_bytes " + std::to_string(o.slot_bytes));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);  // the mapping keeps the file
  if (base == MAP_FAILED) return Status::FromErrno(ctx + "cannot mmap device_path '" + o.device_path + "'", err);
  auto medium = std::make_unique<DaxMedium>(o.device_path, static_cast<uint8_t*>(base), size, device, created,
                                            o.msync, o.msync_name);
  SlotOptions so;
  so.type = "dax";
  so.kind = kSlotKindDax;
  so.num_workers = o.num_workers;
  so.load_existing = o.load_existing;
  so.device_path = o.device_path;
  return SlotAdapter::Create(common, so, geo, std::move(medium), context);
}

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateDaxAdapter(const L2CommonConfig& common, JsonFields& f,
                                                    const L2AdapterContext& context) {
  DaxOptions o;
  o.device_path = f.RequiredString("device_path");
  const double gb = f.Number("max_dax_size_gb", 0, 0, 1e6);
  o.size_bytes = static_cast<uint64_t>(gb * static_cast<double>(1ull << 30));
  o.slot_bytes = static_cast<uint64_t>(f.Int("slot_bytes", static_cast<int64_t>(o.slot_bytes), 1, int64_t{1} << 40));
  const auto store_workers = f.OptionalInt("num_store_workers", 1, 256);
  const auto load_workers = f.OptionalInt("num_load_workers", 1, 256);
  f.OptionalInt("num_lookup_workers", 1, 256);  // lookups are answered from the index, no threads
  const int64_t default_workers =
      (store_workers || load_workers) ? std::min<int64_t>(256, store_workers.value_or(1) + load_workers.value_or(4)) : 4;
  o.num_workers = static_cast<int>(f.Int("num_workers", default_workers, 1, 256));
  o.load_existing = f.Bool("load_checkpoint_on_init", true) && common.persist_enabled;
  o.msync_name = f.Choice("msync", "close", {"close", "store", "none"});
  o.msync = o.msync_name == "store" ? MsyncPolicy::kStore : o.msync_name == "none" ? MsyncPolicy::kNone : MsyncPolicy::kClose;
  if (f.Has("devices") || f.Has("hotplug_enabled")) {
    f.Fail(f.Has("devices") ? "devices" : "hotplug_enabled",
           "several DAX devices / hot-plug are not supported in this build; use one device_path");
  }
  if (o.slot_bytes % kPage != 0) {
    f.Fail("slot_bytes", "must be a multiple of 4096, got " + std::to_string(o.slot_bytes));
  }
  if (gb > 0 && o.size_bytes < kPage) f.Fail("max_dax_size_gb", "is smaller than one page");
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  return OpenDax(common, o, context);
}

}  // namespace lmcache::internal
