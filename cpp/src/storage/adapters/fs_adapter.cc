// `fs` and `fs_native`: one file per object in a directory, with the names
// and content of LMCache 0.5.6 (compat reference §15), so either side reads
// what the other wrote. Both type names select this implementation.
//
//   <base_path>/<model with / -> -SEP->@0x<kv_rank %08x>@<group %x>@<hash hex>[@<salt>].data
//
// Content is the raw object bytes, nothing else. Each file we write carries
// its checksum beside the bytes, never inside them: an extended attribute
// `user.lmcache.checksum` = "xxh3:<16 hex>:<size>" (XXH3-64), or, on a
// filesystem without user xattrs, a line in the sidecar log
// `<base_path>/.lmcache-checksums` ("xxh3:<16 hex> <size> <inode> <mtime ns>
// <file name>"; a record counts only while the file still has that inode).
// Files without a checksum (written by LMCache) are served after a size
// check. Earlier builds wrote XXH64: the xattr `user.lmcache.xxh64` =
// "xxh64:<16 hex>:<size>" and sidecar lines that start with the bare 16 hex
// digits; both are still read and verified with XXH64.
//
// Store: write to a unique temp name (`.lmcache-<pid>-<rand>-<seq>.tmp` in the
// base dir or in relative_tmp_dir), set the xattr, then rename into place
// with RENAME_NOREPLACE (link+unlink where unsupported): the first writer
// wins atomically, a reader never sees a partial file. No fsync (as 0.5.6);
// after a crash a torn file fails its checksum and is dropped.
//
// Index: start-up scans the directory (file names parse back into keys) and
// rebuilds an in-memory index (size, checksum, inode, mtime), oldest mtime
// first in LRU order. Lookup-and-lock answers hits from the index without a
// syscall. Files that other processes sharing the directory write or delete
// (another server, LMCache 0.5.6) are found by one of (probe_misses):
//  * "auto" (default): an inotify watch on base_path when the filesystem is
//    local (inotify does not see other hosts' writes on NFS, SMB, FUSE, Ceph,
//    Lustre, ...), else "true". The kernel queues an event before rename() /
//    unlink() / close() return, so every lookup first drains the
//    queue (non-blocking reads, one mutex) and then answers from the index:
//    a data file that was renamed in (IN_MOVED_TO) or closed after writing
//    (IN_CLOSE_WRITE) is indexed after the checks of the start-up scan; one
//    that was created (IN_CREATE) only when its checksum xattr already covers
//    its whole size (a hard link of a finished file), so a half-written file
//    is never a hit; a deleted or moved-away one is dropped (after an fstatat
//    says the name is gone or names another inode: events can be stale). On
//    IN_Q_OVERFLOW misses are probed as with "true" until a rescan of the
//    directory on a worker has rebuilt the index; if the watch itself goes
//    (base_path deleted or moved) misses are probed from then on.
//  * true: every miss is probed with one fstatat on the workers.
//  * false: the index only (files other processes write are found at restart).

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_common.h"
#include "storage/l2_config.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxh3.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

constexpr size_t kAlign = 4096;                  // O_DIRECT alignment of buffers, offsets, lengths
constexpr size_t kBufferedChunk = 1u << 20;      // read/hash granularity (stays in cache)
constexpr size_t kDirectChunk = 4u << 20;        // O_DIRECT transfer size (bounce buffer)
constexpr char kXattrName[] = "user.lmcache.checksum";
constexpr char kLegacyXattrName[] = "user.lmcache.xxh64";  // XXH64, written by earlier builds
constexpr char kSidecarName[] = ".lmcache-checksums";
constexpr std::string_view kDataSuffix = ".data";
constexpr std::string_view kTmpPrefix = ".lmcache-";
constexpr std::string_view kTmpSuffix = ".tmp";
constexpr int64_t kStaleTmpNs = 600'000'000'000;  // temp files older than this are leftovers
constexpr size_t kNameMax = 255;
constexpr size_t kProbesPerJob = 64;              // lookup misses probed by one worker job

enum class ChecksumMode { kXattr, kSidecar, kOff };

const char* ModeName(ChecksumMode m) {
  switch (m) {
    case ChecksumMode::kXattr: return "xattr";
    case ChecksumMode::kSidecar: return "sidecar";
    case ChecksumMode::kOff: return "off";
  }
  return "?";
}

struct FsOptions {
  std::string type;
  std::string base_path;
  int num_workers = 4;  // LMCache fs_native's default
  std::string relative_tmp_dir;
  bool use_odirect = false;
  uint64_t read_ahead_size = 0;
  uint64_t capacity_bytes = 0;
  std::string checksum = "auto";      // auto, xattr, sidecar, off
  std::string probe_misses = "auto";  // auto, true, false (see the file comment)
};

// How lookup misses are checked against files other processes wrote.
enum class MissMode { kInotify, kProbe, kOff };

const char* MissModeName(MissMode m) {
  switch (m) {
    case MissMode::kInotify: return "inotify";
    case MissMode::kProbe: return "probe";
    case MissMode::kOff: return "off";
  }
  return "?";
}

// Filesystems whose files other hosts change without this kernel seeing it
// (inotify reports only local changes there). statfs f_type magic numbers.
const char* RemoteFsName(int64_t f_type) {
  struct Fs {
    uint32_t magic;
    const char* name;
  };
  static constexpr Fs kRemote[] = {
      {0x6969, "nfs"},         {0x517B, "smb"},        {0xFF534D42, "cifs"},    {0xFE534D42, "smb2"},
      {0x65735546, "fuse"},    {0x00C36400, "ceph"},   {0x0BD00BD0, "lustre"},  {0x47504653, "gpfs"},
      {0x01021997, "9p"},      {0x5346414F, "afs"},    {0x6B414653, "kafs"},    {0x73757245, "coda"},
      {0x564C, "ncp"},         {0x7461636F, "ocfs2"},  {0x01161970, "gfs2"},    {0x19830326, "beegfs"},
      {0x20030528, "orangefs"}, {0xAAD7AAEA, "panfs"}, {0x786F4256, "vboxsf"},
  };
  const auto t = static_cast<uint32_t>(f_type);
  for (const Fs& fs : kRemote) {
    if (fs.magic == t) return fs.name;
  }
  return nullptr;
}

enum class SumAlgo : uint8_t { kXxh3, kXxh64 };

// A streaming checksum of either algorithm.
class ObjectSum {
 public:
  explicit ObjectSum(SumAlgo algo) : algo_(algo) {}
  void Update(const void* p, size_t n) {
    if (algo_ == SumAlgo::kXxh3) {
      x3_.Update(p, n);
    } else {
      x64_.Update(p, n);
    }
  }
  uint64_t Digest() const { return algo_ == SumAlgo::kXxh3 ? x3_.Digest() : x64_.Digest(); }

 private:
  SumAlgo algo_;
  internal::Xxh3 x3_;
  internal::Xxh64 x64_;
};

// What the index keeps per file.
struct FsMeta {
  bool has_checksum = false;
  SumAlgo algo = SumAlgo::kXxh3;
  uint64_t checksum = 0;
  uint64_t recorded_size = 0;  // bytes the checksum covers
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
};

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

uint64_t RoundUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    Reset();
    fd_ = o.fd_;
    o.fd_ = -1;
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // close() and its error (a deferred write error on some filesystems).
  int Close() {
    int r = 0;
    if (fd_ >= 0) r = close(fd_);
    fd_ = -1;
    return r;
  }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBuffer AllocAligned(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlign, n) != 0) return nullptr;
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

std::string FormatXattr(uint64_t hash, uint64_t size) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "xxh3:%016" PRIx64 ":%" PRIu64, hash, size);
  return buf;
}

// "xxh3:" or "xxh64:" off the front of v.
bool TakeAlgo(std::string_view* v, SumAlgo* algo) {
  if (v->substr(0, 5) == "xxh3:") {
    *algo = SumAlgo::kXxh3;
    v->remove_prefix(5);
    return true;
  }
  if (v->substr(0, 6) == "xxh64:") {
    *algo = SumAlgo::kXxh64;
    v->remove_prefix(6);
    return true;
  }
  return false;
}

bool ParseU64(std::string_view s, int base, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  char buf[32];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(buf, &end, base);
  if (errno != 0 || end != buf + s.size() || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ') return false;
  *out = v;
  return true;
}

bool ParseXattr(std::string_view v, SumAlgo* algo, uint64_t* hash, uint64_t* size) {
  if (!TakeAlgo(&v, algo)) return false;
  const size_t colon = v.find(':');
  if (colon != 16) return false;
  return ParseU64(v.substr(0, 16), 16, hash) && ParseU64(v.substr(17), 10, size);
}

bool ReadAll(int fd, uint8_t* dst, size_t n, uint64_t off, size_t* got) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, dst + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      *got = done;
      return false;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  *got = done;
  return true;
}

bool WriteAll(int fd, const uint8_t* src, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pwrite(fd, src + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = EIO;
      return false;
    }
    done += static_cast<size_t>(r);
  }
  return true;
}

// The checksum log for filesystems without user xattrs (see the file comment).
class SidecarLog {
 public:
  struct Record {
    SumAlgo algo = SumAlgo::kXxh3;
    uint64_t hash = 0;
    uint64_t size = 0;
    uint64_t ino = 0;
    int64_t mtime_ns = 0;
  };

  Status Open(int dir_fd, const std::string& dir_path) EXCLUDES(mu_) {
    dir_fd_ = dir_fd;
    dir_path_ = dir_path;
    MutexLock lock(&mu_);
    fd_ = Fd(openat(dir_fd, kSidecarName, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!fd_.valid()) return Status::FromErrno("cannot open checksum sidecar " + dir_path + "/" + kSidecarName, errno);
    return Status::OK();
  }

  // Records by file name; later lines override earlier ones. Sets *lines.
  // Find reads on from where this stopped.
  std::unordered_map<std::string, Record> Load(size_t* lines) EXCLUDES(read_mu_) {
    std::unordered_map<std::string, Record> out;
    MutexLock lock(&read_mu_);
    read_ino_ = 0;
    read_off_ = 0;
    fresh_.clear();
    *lines = ReadNewLocked(&out);
    return out;
  }

  // The record of file `name` with inode `ino` among the lines appended
  // since Load or the last Find: another writer's record of a file written
  // after our start-up (it appends after its rename). Once found, the
  // record is the caller's to keep (it is not returned again).
  std::optional<Record> Find(const std::string& name, uint64_t ino) EXCLUDES(read_mu_) {
    MutexLock lock(&read_mu_);
    ReadNewLocked(&fresh_);
    auto it = fresh_.find(name);
    if (it == fresh_.end() || it->second.ino != ino) return std::nullopt;
    const Record rec = it->second;
    fresh_.erase(it);
    return rec;
  }

  void Append(const std::string& name, const Record& rec) EXCLUDES(mu_) {
    std::string line = FormatLine(name, rec);
    MutexLock lock(&mu_);
    if (!fd_.valid()) return;
    // One write per record: O_APPEND keeps concurrent appenders' lines whole.
    (void)!write(fd_.get(), line.data(), line.size());
  }

  // Replace the log by `live` (temp file + rename), then append to the new one.
  void Rewrite(const std::vector<std::pair<std::string, Record>>& live) EXCLUDES(mu_) {
    std::string text;
    for (const auto& [name, rec] : live) text += FormatLine(name, rec);
    const std::string tmp = std::string(kTmpPrefix) + "checksums-" + std::to_string(getpid()) + std::string(kTmpSuffix);
    Fd fd(openat(dir_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return;
    const bool ok = WriteAll(fd.get(), reinterpret_cast<const uint8_t*>(text.data()), text.size(), 0);
    if (fd.Close() != 0 || !ok || renameat(dir_fd_, tmp.c_str(), dir_fd_, kSidecarName) != 0) {
      unlinkat(dir_fd_, tmp.c_str(), 0);
      return;
    }
    MutexLock lock(&mu_);
    fd_ = Fd(openat(dir_fd_, kSidecarName, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  }

  void Close() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    fd_.Reset();
  }

 private:
  static std::string FormatLine(const std::string& name, const Record& rec) {
    char head[96];
    std::snprintf(head, sizeof(head), "%s%016" PRIx64 " %" PRIu64 " %" PRIu64 " %" PRId64 " ",
                  rec.algo == SumAlgo::kXxh3 ? "xxh3:" : "", rec.hash, rec.size, rec.ino, rec.mtime_ns);
    return head + name + "\n";
  }

  // Parses the complete lines of the log from read_off_ on into *out
  // (name -> record, later lines win) and moves read_off_ past them; a torn
  // last line is read again next time. A log replaced since (another inode:
  // a compaction) is read from its start. Returns the number of lines.
  size_t ReadNewLocked(std::unordered_map<std::string, Record>* out) REQUIRES(read_mu_) {
    Fd fd(openat(dir_fd_, kSidecarName, O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd.valid() || fstat(fd.get(), &st) != 0) return 0;
    if (static_cast<uint64_t>(st.st_ino) != read_ino_ || static_cast<uint64_t>(st.st_size) < read_off_) {
      read_ino_ = static_cast<uint64_t>(st.st_ino);
      read_off_ = 0;
    }
    std::string data;
    char buf[1 << 16];
    for (uint64_t off = read_off_;;) {
      const ssize_t r = pread(fd.get(), buf, sizeof(buf), static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      data.append(buf, static_cast<size_t>(r));
      off += static_cast<uint64_t>(r);
    }
    size_t lines = 0, pos = 0;
    while (pos < data.size()) {
      const size_t nl = data.find('\n', pos);
      if (nl == std::string::npos) break;  // torn (or still being written): next time
      std::string_view line(data.data() + pos, nl - pos);
      pos = nl + 1;
      ++lines;
      std::string_view f[5];
      size_t n = 0;
      while (n < 4) {
        const size_t sp = line.find(' ');
        if (sp == std::string_view::npos) break;
        f[n++] = line.substr(0, sp);
        line.remove_prefix(sp + 1);
      }
      if (n != 4 || line.empty()) continue;
      f[4] = line;
      Record rec;
      uint64_t mt = 0;
      if (!TakeAlgo(&f[0], &rec.algo)) rec.algo = SumAlgo::kXxh64;  // a line of an earlier build
      if (f[0].size() != 16 || !ParseU64(f[0], 16, &rec.hash) || !ParseU64(f[1], 10, &rec.size) ||
          !ParseU64(f[2], 10, &rec.ino) || !ParseU64(f[3], 10, &mt)) {
        continue;
      }
      rec.mtime_ns = static_cast<int64_t>(mt);
      if (out->size() >= kMaxFresh && out->find(std::string(f[4])) == out->end()) {
        out->clear();  // records of files nobody loads: forget them (those files load unverified)
      }
      (*out)[std::string(f[4])] = rec;
    }
    read_off_ += pos;
    return lines;
  }

  static constexpr size_t kMaxFresh = size_t{1} << 16;  // about 10 MB of names at most

  int dir_fd_ = -1;
  std::string dir_path_;
  Mutex mu_;
  Fd fd_ GUARDED_BY(mu_);
  Mutex read_mu_;  // Load and Find
  uint64_t read_ino_ GUARDED_BY(read_mu_) = 0;
  uint64_t read_off_ GUARDED_BY(read_mu_) = 0;
  std::unordered_map<std::string, Record> fresh_ GUARDED_BY(read_mu_);  // unclaimed new records
};

// Tasks, workers and Close are BatchedL2Adapter's: store and load claim one
// key at a time on up to num_workers jobs (kClaim); a lookup is answered
// from the index (after draining the inotify queue when it missed), and
// misses it cannot settle there are probed on the workers, kProbesPerJob per
// job. The rescans after an inotify overflow are jobs of the same pool.
class FsAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<FsMeta>;

  FsAdapter(const L2CommonConfig& common, const FsOptions& opts, std::unique_ptr<L2Completions> completions,
            std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions),
                         L2Spread{L2Spread::Mode::kClaim, static_cast<size_t>(opts.num_workers), 1}),
        opts_(opts),
        index_(std::move(index)) {}

  ~FsAdapter() override { Close(); }  // joins the workers before the members they use go

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    size_t removed = 0;
    for (const ObjectKey& key : keys) {
      const bool indexed = index_->Remove(key).has_value();
      std::string name;
      if (!FileName(key, &name)) continue;
      if (unlinkat(base_fd_.get(), name.c_str(), 0) == 0 || (indexed && errno == ENOENT)) {
        ++removed;
      } else if (errno != ENOENT) {
        Bump(counters_.io_errors);
      }
    }
    Bump(counters_.deleted_objects, removed);
    return removed;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override {
    DrainEvents();
    return index_->List(request);
  }

  L2Usage Usage() const override {
    DrainEvents();
    return index_->Usage();
  }

  L2Status ReportStatus() const override {
    DrainEvents();
    L2Status s = BaseStatus();
    if (s.healthy) {  // not closed
      struct stat st;
      if (fstat(base_fd_.get(), &st) != 0 || st.st_nlink == 0) {
        s.healthy = false;
        s.message = "base_path " + opts_.base_path + " was removed";
      } else if (faccessat(base_fd_.get(), ".", W_OK, AT_EACCESS) != 0) {
        s.healthy = false;
        s.message = "base_path " + opts_.base_path + " is not writable";
      }
    }
    auto& d = s.details;
    d.emplace_back("base_path", opts_.base_path);
    d.emplace_back("num_workers", std::to_string(opts_.num_workers));
    d.emplace_back("relative_tmp_dir", opts_.relative_tmp_dir);
    d.emplace_back("use_odirect", !opts_.use_odirect ? "false"
                                  : odirect_.load() ? "true"
                                                    : "requested; unsupported by the filesystem, using buffered I/O");
    d.emplace_back("read_ahead_size", std::to_string(opts_.read_ahead_size));
    d.emplace_back("checksum", ModeName(mode_));
    d.emplace_back("indexed_objects", std::to_string(index_->size()));
    d.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    d.emplace_back("scanned_files", std::to_string(scanned_files_));
    d.emplace_back("ignored_files", std::to_string(ignored_files_));
    d.emplace_back("probe_misses", opts_.probe_misses);
    // The mode now: inotify falls back to probing while a rescan is due.
    // Read with the watch counters under the watch mutex, which every change
    // of them holds: one snapshot (a completed rescan is counted in
    // "rescans" together with its return to inotify).
    bool exact = true;
    std::string why = miss_reason_;
    std::vector<std::pair<std::string, std::string>> watch_details;
    if (miss_mode_ == MissMode::kInotify) {
      MutexLock lock(&watch_->mu);
      exact = watch_->exact.load(std::memory_order_acquire);
      if (!watch_->broken_reason.empty()) {
        why = watch_->broken_reason;
      } else if (!exact) {
        why = "inotify queue overflowed; probing until the rescan of base_path completes";
      }
      watch_details = {{"inotify_events", std::to_string(watch_->events.load())},
                       {"inotify_indexed", std::to_string(watch_->indexed.load())},
                       {"inotify_dropped", std::to_string(watch_->dropped.load())},
                       {"inotify_overflows", std::to_string(watch_->overflows.load())},
                       {"rescans", std::to_string(watch_->rescans.load())}};
    }
    d.emplace_back("miss_detection", MissModeName(exact ? miss_mode_ : MissMode::kProbe));
    d.emplace_back("miss_detection_reason", why);
    for (auto& kv : watch_details) d.push_back(std::move(kv));
    return s;
  }

  bool supports_corruption_injection() const override { return true; }

  Status InjectCorruption(const ObjectKey& key) override {
    std::string name;
    if (!FileName(key, &name)) return Status::InvalidArgument("key cannot be stored by the fs adapter");
    Fd fd(openat(base_fd_.get(), name.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) return errno == ENOENT ? Status::NotFound(name) : Status::FromErrno("open " + name, errno);
    struct stat st;
    if (fstat(fd.get(), &st) != 0 || st.st_size == 0) return Status::NotFound(name + " is empty");
    const off_t at = st.st_size / 2;
    uint8_t b = 0;
    if (pread(fd.get(), &b, 1, at) != 1) return Status::FromErrno("read " + name, errno);
    b ^= 0x5A;
    if (pwrite(fd.get(), &b, 1, at) != 1) return Status::FromErrno("write " + name, errno);
    return Status::OK();
  }

  // ---- start-up (CreateBatchedAdapter) ----

  Status Open() {
    std::error_code ec;
    std::filesystem::create_directories(opts_.base_path, ec);
    if (ec) return Status::IOError("cannot create base_path '" + opts_.base_path + "': " + ec.message());
    base_fd_ = Fd(open(opts_.base_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!base_fd_.valid()) return Status::FromErrno("cannot open base_path '" + opts_.base_path + "'", errno);
    if (opts_.relative_tmp_dir.empty()) {
      tmp_fd_ = Fd(dup(base_fd_.get()));
    } else {
      std::filesystem::create_directories(std::filesystem::path(opts_.base_path) / opts_.relative_tmp_dir, ec);
      if (ec) return Status::IOError("cannot create relative_tmp_dir '" + opts_.relative_tmp_dir + "': " + ec.message());
      tmp_fd_ = Fd(openat(base_fd_.get(), opts_.relative_tmp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    if (!tmp_fd_.valid()) return Status::FromErrno("cannot open the temp directory", errno);
    struct stat bst, tst;
    if (fstat(base_fd_.get(), &bst) != 0 || fstat(tmp_fd_.get(), &tst) != 0 || bst.st_dev != tst.st_dev) {
      return Status::InvalidArgument("L2 adapter '" + opts_.type +
                                     "': relative_tmp_dir must be on the same filesystem as base_path");
    }

    // Probe: writable? user xattrs? O_DIRECT?
    bool xattr_ok = false;
    {
      const std::string probe = TmpName();
      Fd fd(openat(tmp_fd_.get(), probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (!fd.valid()) return Status::FromErrno("base_path '" + opts_.base_path + "' is not writable", errno);
      xattr_ok = fsetxattr(fd.get(), kXattrName, "probe", 5, 0) == 0;
      fd.Reset();
      if (opts_.use_odirect) {
        Fd d(openat(tmp_fd_.get(), probe.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
        odirect_.store(d.valid());
      }
      unlinkat(tmp_fd_.get(), probe.c_str(), 0);
    }
    if (opts_.checksum == "off") {
      mode_ = ChecksumMode::kOff;
    } else if (opts_.checksum == "sidecar" || (opts_.checksum == "auto" && !xattr_ok)) {
      mode_ = ChecksumMode::kSidecar;
    } else if (xattr_ok) {
      mode_ = ChecksumMode::kXattr;
    } else {
      return Status::IOError("L2 adapter '" + opts_.type + "': checksum 'xattr' requested but " + opts_.base_path +
                             " does not support user extended attributes (use \"checksum\": \"sidecar\")");
    }
    if (mode_ == ChecksumMode::kSidecar) LMCACHE_RETURN_IF_ERROR(sidecar_.Open(base_fd_.get(), opts_.base_path));

    SetUpMissDetection();
    LMCACHE_RETURN_IF_ERROR(Scan());

    bounce_.resize(static_cast<size_t>(opts_.num_workers));
    const bool need_bounce = odirect_.load();
    for (auto& b : bounce_) {
      if (need_bounce && (b = AllocAligned(kDirectChunk)) == nullptr) {
        return Status::NoSpace("cannot allocate O_DIRECT bounce buffers");
      }
    }
    return StartWorkers(opts_.num_workers);
  }

 private:
  // ---- hooks of BatchedL2Adapter ----

  // A key another process deleted must not be skipped as present: apply
  // the queued events before the keys are dispatched.
  void StartStore(const BatchPtr& b) override {
    DrainEvents();
    Run(b, spread());
  }

  // The index answers; misses that may be files another process wrote are
  // settled from the inotify queue, or probed on the workers.
  void StartLookup(const BatchPtr& b) override {
    // Apply what the kernel queued before this call first (it queues an
    // event before rename() / unlink() return): files other processes
    // renamed in are hits, files they deleted are misses, and the index then
    // answers exactly. DrainEvents holds the watch mutex while it reads and
    // applies, so events another thread was applying are in the index too.
    // Costs one non-blocking read() when nothing is queued.
    bool exact = false;
    if (miss_mode_ == MissMode::kInotify) DrainEvents(&exact);
    L2Bitmap bits(b->keys.size(), false);
    const size_t hits = index_->LookupAndLock(b->keys, &bits);
    if (hits == b->keys.size() || miss_mode_ == MissMode::kOff || exact) {
      FinishInline(b, bits);
      return;
    }
    // "true", or inotify lost events (queue overflow) or its watch: probe
    // the misses (one fstatat each) on the workers. A probe is a few
    // microseconds: one job per kProbesPerJob misses, so a small lookup
    // does not pay several thread wake-ups.
    ProbeMisses(b, bits, L2Spread{L2Spread::Mode::kClaim, static_cast<size_t>(opts_.num_workers), kProbesPerJob});
  }

  bool ProbeKey(const ObjectKey& key, int /*worker*/) override { return Probe(key) && index_->Lock(key); }

  // Our own stores queue events too (temp file, rename): drain them here so
  // a workload without lookup misses does not overflow the queue.
  void BeforePublish(Batch& b) override {
    if (b.kind == Kind::kStore) DrainEvents();
  }

  void OnClose() override { sidecar_.Close(); }

  // The LMCache file name of `key`; false if the key cannot be a file name
  // ('@' in the model or salt would not parse back, '/' in a salt would
  // leave the directory, or the name is too long).
  static bool FileName(const ObjectKey& key, std::string* name) {
    const std::string& m = key.model_name.str();
    const std::string& s = key.cache_salt.str();
    if (m.find_first_of(std::string_view("@\0", 2)) != std::string::npos) return false;
    if (s.find_first_of(std::string_view("@/\0", 3)) != std::string::npos) return false;
    *name = key.ToString();
    *name += kDataSuffix;
    return name->size() <= kNameMax;
  }

  // ".lmcache-<pid>-<random>-<seq>.tmp": unique within the process (several
  // adapters may share a directory) and across processes and hosts sharing
  // a filesystem (the pid alone can repeat on another host).
  static std::string TmpName() {
    static const std::string prefix = [] {
      std::random_device rd;
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%d-%08x%08x-", static_cast<int>(getpid()), rd(), rd());
      return std::string(kTmpPrefix) + buf;
    }();
    static std::atomic<uint64_t> seq{0};
    return prefix + std::to_string(seq.fetch_add(1)) + std::string(kTmpSuffix);
  }

  Status Scan() {
    size_t sidecar_lines = 0;
    std::unordered_map<std::string, SidecarLog::Record> records;
    if (mode_ == ChecksumMode::kSidecar) records = sidecar_.Load(&sidecar_lines);
    std::vector<std::pair<std::string, SidecarLog::Record>> live_records;

    struct Found {
      int64_t mtime_ns;
      ObjectKey key;
      uint64_t size;
      FsMeta meta;
    };
    std::vector<Found> found;
    const int64_t now_ns = static_cast<int64_t>(time(nullptr)) * 1'000'000'000;
    {
      int dfd = openat(base_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // own offset, unlike dup
      DIR* dir = dfd >= 0 ? fdopendir(dfd) : nullptr;
      if (dir == nullptr) {
        if (dfd >= 0) close(dfd);
        return Status::FromErrno("cannot list base_path '" + opts_.base_path + "'", errno);
      }
      while (struct dirent* de = readdir(dir)) {
        const std::string_view name(de->d_name);
        if (name == "." || name == ".." || de->d_type == DT_DIR) continue;
        if (name.size() <= kDataSuffix.size() || name.substr(name.size() - kDataSuffix.size()) != kDataSuffix) {
          if (name != kSidecarName && !IsTmpName(name)) ++ignored_files_;
          continue;
        }
        ObjectKey key;
        if (!ParseObjectKey(name.substr(0, name.size() - kDataSuffix.size()), &key)) {
          ++ignored_files_;
          continue;
        }
        struct stat st;
        if (fstatat(base_fd_.get(), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
          ++ignored_files_;
          continue;
        }
        FsMeta meta = MetaFromStat(st);
        if (mode_ == ChecksumMode::kXattr) {
          ReadXattrByPath(opts_.base_path + "/" + de->d_name, &meta);
        } else if (mode_ == ChecksumMode::kSidecar) {
          auto it = records.find(de->d_name);
          if (it != records.end() && it->second.ino == meta.ino) {  // see LoadKey on identity
            meta.has_checksum = true;
            meta.algo = it->second.algo;
            meta.checksum = it->second.hash;
            meta.recorded_size = it->second.size;
            live_records.emplace_back(it->first, it->second);
          }
        }
        ++scanned_files_;
        found.push_back(Found{MtimeNs(st), key, static_cast<uint64_t>(st.st_size), meta});
      }
      closedir(dir);
    }
    // Oldest first, so LRU order starts as modification order.
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
    for (Found& f : found) index_->Insert(f.key, f.size, f.meta, 0);

    RemoveStaleTmp(tmp_fd_.get(), now_ns);
    if (mode_ == ChecksumMode::kSidecar && sidecar_lines > 2 * live_records.size() + 1024) {
      sidecar_.Rewrite(live_records);
    }
    return Status::OK();
  }

  static bool IsTmpName(std::string_view name) {
    return name.size() > kTmpPrefix.size() + kTmpSuffix.size() && name.substr(0, kTmpPrefix.size()) == kTmpPrefix &&
           name.substr(name.size() - kTmpSuffix.size()) == kTmpSuffix;
  }

  // Our temp files older than kStaleTmpNs: leftovers of a crashed writer.
  static void RemoveStaleTmp(int dir_fd, int64_t now_ns) {
    int dfd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* dir = dfd >= 0 ? fdopendir(dfd) : nullptr;
    if (dir == nullptr) {
      if (dfd >= 0) close(dfd);
      return;
    }
    std::vector<std::string> stale;
    while (struct dirent* de = readdir(dir)) {
      struct stat st;
      if (IsTmpName(de->d_name) && fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) && now_ns - MtimeNs(st) > kStaleTmpNs) {
        stale.emplace_back(de->d_name);
      }
    }
    closedir(dir);
    for (const auto& n : stale) unlinkat(dir_fd, n.c_str(), 0);
  }

  static FsMeta MetaFromStat(const struct stat& st) {
    FsMeta m;
    m.ino = static_cast<uint64_t>(st.st_ino);
    m.mtime_ns = MtimeNs(st);
    return m;
  }

  static void ApplyXattr(const char* value, ssize_t n, FsMeta* meta) {
    uint64_t hash = 0, size = 0;
    SumAlgo algo = SumAlgo::kXxh3;
    if (n > 0 && ParseXattr(std::string_view(value, static_cast<size_t>(n)), &algo, &hash, &size)) {
      meta->has_checksum = true;
      meta->algo = algo;
      meta->checksum = hash;
      meta->recorded_size = size;
    }
  }

  // The checksum xattr, else the one of earlier builds (ENODATA only: any
  // other error would fail the same way again).
  static void ReadXattrByPath(const std::string& path, FsMeta* meta) {
    char value[80];
    ssize_t n = getxattr(path.c_str(), kXattrName, value, sizeof(value));
    if (n < 0 && errno == ENODATA) n = getxattr(path.c_str(), kLegacyXattrName, value, sizeof(value));
    ApplyXattr(value, n, meta);
  }

  // Metadata of an open file we did not write (or that changed under us).
  FsMeta MetaFromFd(int fd, const struct stat& st) const {
    FsMeta meta = MetaFromStat(st);
    if (mode_ == ChecksumMode::kXattr) {
      char value[80];
      ssize_t n = fgetxattr(fd, kXattrName, value, sizeof(value));
      if (n < 0 && errno == ENODATA) n = fgetxattr(fd, kLegacyXattrName, value, sizeof(value));
      ApplyXattr(value, n, &meta);
    }
    return meta;
  }

  // Index a file found on disk but not in the index (written by another
  // process). True if the key is indexed afterwards.
  bool Probe(const ObjectKey& key) {
    std::string name;
    if (!FileName(key, &name)) return false;
    if (miss_mode_ != MissMode::kInotify) return IndexFromDisk(key, name, false) != IndexResult::kAbsent;
    // Serialized with the event drain: a file we stat here and index below
    // may be deleted meanwhile, and the drain must see our entry to drop it.
    MutexLock lock(&watch_->mu);
    return IndexFromDisk(key, name, false) != IndexResult::kAbsent;
  }

  enum class IndexResult { kAbsent, kAlreadyIndexed, kIndexed };

  // The checks of the start-up scan for one data file `name` of `key`: a
  // regular file (not followed through a symlink), its size, its checksum
  // xattr. With `only_if_complete` (a name that was just created, maybe
  // still being written) it is indexed only if a checksum xattr covers its
  // whole size, which our writers set after the last byte.
  IndexResult IndexFromDisk(const ObjectKey& key, const std::string& name, bool only_if_complete) const {
    if (index_->Contains(key)) return IndexResult::kAlreadyIndexed;
    struct stat st;
    if (fstatat(base_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
      return IndexResult::kAbsent;
    }
    FsMeta meta = MetaFromStat(st);
    if (mode_ == ChecksumMode::kXattr) ReadXattrByPath(opts_.base_path + "/" + name, &meta);
    if (only_if_complete && !(meta.has_checksum && meta.recorded_size == static_cast<uint64_t>(st.st_size))) {
      return IndexResult::kAbsent;
    }
    const bool inserted = index_->Insert(key, static_cast<uint64_t>(st.st_size), meta, 0);
    return inserted ? IndexResult::kIndexed : IndexResult::kAlreadyIndexed;
  }

  // ---- other writers: the inotify watch ----

  // The key of a data file name ("<stem>.data"); false for other names.
  static bool DataNameToKey(std::string_view name, ObjectKey* key) {
    if (name.size() <= kDataSuffix.size() || name.substr(name.size() - kDataSuffix.size()) != kDataSuffix) {
      return false;
    }
    return ParseObjectKey(name.substr(0, name.size() - kDataSuffix.size()), key);
  }

  // Read every queued event and apply it to the index (newly indexed files
  // are counted in watch_->indexed, as are a rescan's). *exact (if given) says whether the index
  // reflected every event when the drain ended (false after an overflow,
  // until a rescan completed, and when the watch is gone). Logically const:
  // it brings the index up to what the directory already holds.
  void DrainEvents(bool* exact = nullptr) const {
    if (exact != nullptr) *exact = false;
    if (miss_mode_ != MissMode::kInotify) return;
    MutexLock lock(&watch_->mu);
    alignas(struct inotify_event) char buf[16384];  // >= sizeof(inotify_event) + NAME_MAX + 1
    for (;;) {
      const ssize_t n = read(watch_->fd.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) BreakWatchLocked(std::string("inotify read failed: ") + std::strerror(errno));
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
        ApplyEventLocked(*ev);
      }
    }
    // Read under the mutex: a rescan that completes after this drain may
    // have indexed files our caller did not see in `indexed`.
    if (exact != nullptr) *exact = watch_->exact.load(std::memory_order_acquire);
  }

  void ApplyEventLocked(const struct inotify_event& ev) const REQUIRES(watch_->mu) {
    watch_->events.fetch_add(1, std::memory_order_relaxed);
    if (ev.mask & IN_Q_OVERFLOW) {
      OverflowLocked();
      return;
    }
    if (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
      BreakWatchLocked(ev.mask & IN_MOVE_SELF ? "base_path was moved; probing misses"
                                              : "base_path was removed or unmounted; probing misses");
      return;
    }
    if ((ev.mask & IN_ISDIR) || ev.len == 0) return;
    const std::string name(ev.name, strnlen(ev.name, ev.len));
    ObjectKey key;
    if (!DataNameToKey(name, &key)) return;  // temp files, the sidecar, foreign names
    if (ev.mask & (IN_DELETE | IN_MOVED_FROM)) {
      DropIfGoneLocked(key, name);
      return;
    }
    const bool created_only = (ev.mask & (IN_MOVED_TO | IN_CLOSE_WRITE)) == 0;  // IN_CREATE
    if (IndexFromDisk(key, name, created_only) != IndexResult::kIndexed) return;
    watch_->indexed.fetch_add(1, std::memory_order_relaxed);
  }

  // `name` was deleted or moved away. Events can be stale (the name was
  // stored again since): drop the entry only if the name is gone, and take
  // the file as it is now if the name points at another inode.
  void DropIfGoneLocked(const ObjectKey& key, const std::string& name) const REQUIRES(watch_->mu) {
    auto cached = index_->Get(key);
    if (!cached) return;
    struct stat st;
    if (fstatat(base_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        static_cast<uint64_t>(st.st_ino) == cached->second.ino) {
      return;
    }
    // Delete and the load path drop a locked entry too: a lock protects from
    // our eviction, it cannot keep another process's file on disk.
    index_->Remove(key);
    watch_->dropped.fetch_add(1, std::memory_order_relaxed);
    IndexFromDisk(key, name, false);  // replaced by another file
  }

  // The kernel dropped events: the index may miss files or keep deleted
  // ones. Probe misses until a rescan (on a worker) has reconciled it.
  void OverflowLocked() const REQUIRES(watch_->mu) {
    watch_->overflows.fetch_add(1, std::memory_order_relaxed);
    ++watch_->overflow_gen;
    watch_->exact.store(false, std::memory_order_release);
    if (watch_->rescan_queued || !watch_->broken_reason.empty()) return;
    watch_->rescan_queued = true;
    if (!SubmitJob([this](int worker) { Rescan(worker); })) watch_->rescan_queued = false;  // closed
  }

  void BreakWatchLocked(const std::string& why) const REQUIRES(watch_->mu) {
    if (!watch_->broken_reason.empty()) return;
    watch_->broken_reason = why;
    watch_->exact.store(false, std::memory_order_release);
  }

  // Reconcile the index with a listing of base_path after lost events.
  // Each file's check and index update run under the watch mutex, like
  // the drain, so a deletion the drain applies in between is not undone.
  void Rescan(int worker) const {
    uint64_t gen = 0;
    {
      MutexLock lock(&watch_->mu);
      gen = watch_->overflow_gen;
      if (worker < 0) {  // cancelled by Close
        watch_->rescan_queued = false;
        return;
      }
    }
    std::unordered_set<std::string> present;
    int dfd = openat(base_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* dir = dfd >= 0 ? fdopendir(dfd) : nullptr;
    if (dir == nullptr) {
      if (dfd >= 0) close(dfd);
      MutexLock lock(&watch_->mu);
      watch_->rescan_queued = false;
      BreakWatchLocked(std::string("cannot list base_path for a rescan: ") + std::strerror(errno));
      return;
    }
    std::vector<std::pair<ObjectKey, std::string>> files;
    while (struct dirent* de = readdir(dir)) {
      ObjectKey key;
      std::string canonical;
      if (de->d_type == DT_DIR || !DataNameToKey(de->d_name, &key) || !FileName(key, &canonical)) continue;
      present.insert(std::move(canonical));  // as FileName spells it (the hex may be upper case on disk)
      files.emplace_back(std::move(key), de->d_name);
    }
    closedir(dir);
    for (const auto& [key, name] : files) {
      MutexLock lock(&watch_->mu);
      if (IndexFromDisk(key, name, false) == IndexResult::kIndexed) {
        watch_->indexed.fetch_add(1, std::memory_order_relaxed);
      }
    }
    // Indexed keys whose file was not listed: gone, unless written since.
    L2ListRequest all;
    all.page_size = std::numeric_limits<size_t>::max();
    auto page = index_->List(all);
    if (page.ok()) {
      for (const L2KeyInfo& info : page.value().keys) {
        std::string name;
        if (!FileName(info.key, &name) || present.count(name) != 0) continue;
        MutexLock lock(&watch_->mu);
        DropIfGoneLocked(info.key, name);
      }
    }
    MutexLock lock(&watch_->mu);
    watch_->rescans.fetch_add(1, std::memory_order_relaxed);
    watch_->rescan_queued = false;
    if (!watch_->broken_reason.empty()) return;
    if (watch_->overflow_gen == gen) {
      watch_->exact.store(true, std::memory_order_release);
    } else {  // overflowed again meanwhile: once more
      watch_->rescan_queued = true;
      if (!SubmitJob([this](int wk) { Rescan(wk); })) watch_->rescan_queued = false;
    }
  }

  // Choose the miss detection of probe_misses and set up the watch. Before
  // the start-up scan, so that no file written during the scan is missed.
  void SetUpMissDetection() {
    watch_ = std::make_unique<DirWatch>();
    if (opts_.probe_misses == "false") {
      miss_mode_ = MissMode::kOff;
      miss_reason_ = "probe_misses: false (index only)";
      return;
    }
    miss_mode_ = MissMode::kProbe;
    if (opts_.probe_misses == "true") {
      miss_reason_ = "probe_misses: true";
      return;
    }
    struct statfs sfs;
    if (fstatfs(base_fd_.get(), &sfs) != 0) {
      miss_reason_ = std::string("statfs failed: ") + std::strerror(errno);
      return;
    }
    if (const char* remote = RemoteFsName(static_cast<int64_t>(sfs.f_type))) {
      miss_reason_ = std::string("base_path is on ") + remote + ": inotify does not see other hosts' writes";
      return;
    }
    Fd fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd.valid()) {
      miss_reason_ = std::string("inotify unavailable: ") + std::strerror(errno);
      return;
    }
    constexpr uint32_t kMask = IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF |
                               IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
    if (inotify_add_watch(fd.get(), opts_.base_path.c_str(), kMask) < 0) {
      miss_reason_ = std::string("inotify watch failed: ") + std::strerror(errno);
      return;
    }
    // The path must still name the directory we opened.
    struct stat by_path, by_fd;
    if (stat(opts_.base_path.c_str(), &by_path) != 0 || fstat(base_fd_.get(), &by_fd) != 0 ||
        by_path.st_ino != by_fd.st_ino || by_path.st_dev != by_fd.st_dev) {
      miss_reason_ = "base_path changed while it was opened";
      return;
    }
    watch_->fd = std::move(fd);
    watch_->exact.store(true, std::memory_order_release);
    miss_mode_ = MissMode::kInotify;
    miss_reason_ = "local filesystem";
  }

  // ---- store ----

  bool StoreKey(const ObjectKey& key, const ObjectView& view, int worker, std::atomic<uint64_t>* bytes) override {
    std::string name;
    if (!FileName(key, &name)) {
      Bump(counters_.rejected_keys);
      return false;
    }
    // First writer wins. A key we know is skipped at once; a file another
    // process wrote is found by the no-replace rename below (EEXIST), so the
    // common case, a new key, costs no extra lookup of the name.
    if (index_->Contains(key)) {
      Bump(counters_.store_skipped);
      return true;
    }
    std::vector<Index::Victim> victims;
    const Status reserved = index_->Reserve(view.size, &victims);
    FreeVictims(victims);
    if (!reserved.ok()) return false;

    FsMeta meta;
    const std::string tmp = TmpName();
    if (!WriteTmp(tmp, view, worker, &meta)) {
      unlinkat(tmp_fd_.get(), tmp.c_str(), 0);
      index_->Unreserve(view.size);
      Bump(counters_.io_errors);
      return false;
    }
    const int r = RenameNoReplace(tmp, name);
    if (r != 0) {
      unlinkat(tmp_fd_.get(), tmp.c_str(), 0);
      index_->Unreserve(view.size);
      if (r == EEXIST && (index_->Contains(key) || Probe(key))) {  // a concurrent writer won
        Bump(counters_.store_skipped);
        return true;
      }
      Bump(counters_.io_errors);
      return false;
    }
    if (mode_ == ChecksumMode::kSidecar) {
      sidecar_.Append(name, SidecarLog::Record{meta.algo, meta.checksum, meta.recorded_size, meta.ino, meta.mtime_ns});
    }
    victims.clear();
    if (!index_->Insert(key, view.size, meta, view.size, &victims)) {
      // Indexed after our rename by a concurrent probe or event drain: the
      // same file, but without the checksum if it lives in the sidecar.
      auto cur = index_->Get(key);
      if (cur && cur->second.ino == meta.ino && !cur->second.has_checksum) index_->SetPayload(key, meta);
    }
    FreeVictims(victims);
    bytes->fetch_add(view.size);
    Bump(counters_.stored_objects);
    Bump(counters_.stored_bytes, view.size);
    return true;
  }

  void FreeVictims(const std::vector<Index::Victim>& victims) {
    for (const auto& v : victims) {
      std::string name;
      if (FileName(v.key, &name)) unlinkat(base_fd_.get(), name.c_str(), 0);
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.size);
    }
  }

  bool WriteTmp(const std::string& tmp, const ObjectView& view, int worker, FsMeta* meta) {
    const bool direct = odirect_.load();
    Fd fd(openat(tmp_fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644));
    if (!fd.valid()) return false;
    const bool hash = mode_ != ChecksumMode::kOff;
    ObjectSum h(SumAlgo::kXxh3);
    const uint8_t* src = view.data;
    const uint64_t size = view.size;
    bool padded = false;
    if (!direct) {
      for (uint64_t off = 0; off < size; off += kBufferedChunk) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kBufferedChunk, size - off));
        if (hash) h.Update(src + off, n);
        if (!WriteAll(fd.get(), src + off, n, off)) return false;
      }
    } else {
      uint8_t* bounce = bounce_[static_cast<size_t>(worker)].get();
      for (uint64_t off = 0; off < size; off += kDirectChunk) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kDirectChunk, size - off));
        if (hash) h.Update(src + off, n);
        if (reinterpret_cast<uintptr_t>(src + off) % kAlign == 0 && n % kAlign == 0) {
          if (!WriteAll(fd.get(), src + off, n, off)) return false;
        } else {
          const size_t padded_n = static_cast<size_t>(RoundUp(n, kAlign));
          std::memcpy(bounce, src + off, n);
          std::memset(bounce + n, 0, padded_n - n);
          if (!WriteAll(fd.get(), bounce, padded_n, off)) return false;
          padded = padded || padded_n != n;
        }
      }
      if (padded && ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return false;
    }
    if (hash) {
      meta->has_checksum = true;
      meta->algo = SumAlgo::kXxh3;
      meta->checksum = h.Digest();
      meta->recorded_size = size;
      if (mode_ == ChecksumMode::kXattr) {
        const std::string v = FormatXattr(meta->checksum, size);
        if (fsetxattr(fd.get(), kXattrName, v.data(), v.size(), 0) != 0) return false;
      }
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return false;
    meta->ino = static_cast<uint64_t>(st.st_ino);
    meta->mtime_ns = MtimeNs(st);
    return fd.Close() == 0;
  }

  // 0, or the errno (EEXIST: the final name exists; nothing was replaced).
  int RenameNoReplace(const std::string& tmp, const std::string& name) {
    int mode = rename_mode_.load();
    if (mode == 0) {
      if (renameat2(tmp_fd_.get(), tmp.c_str(), base_fd_.get(), name.c_str(), RENAME_NOREPLACE) == 0) return 0;
      if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return errno;
      rename_mode_.store(mode = 1);
    }
    if (mode == 1) {
      if (linkat(tmp_fd_.get(), tmp.c_str(), base_fd_.get(), name.c_str(), 0) == 0) {
        unlinkat(tmp_fd_.get(), tmp.c_str(), 0);
        return 0;
      }
      if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP) return errno;
      rename_mode_.store(mode = 2);
    }
    // Last resort (no atomic no-replace on this filesystem): check, then rename.
    struct stat st;
    if (fstatat(base_fd_.get(), name.c_str(), &st, 0) == 0) return EEXIST;
    return renameat(tmp_fd_.get(), tmp.c_str(), base_fd_.get(), name.c_str()) == 0 ? 0 : errno;
  }

  // ---- load ----

  bool LoadKey(const ObjectKey& key, const ObjectView& view, int worker) override {
    std::string name;
    if (!FileName(key, &name)) return false;
    bool direct = odirect_.load();
    Fd fd(openat(base_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0)));
    if (!fd.valid()) {
      if (errno == ENOENT) {
        index_->Remove(key);  // deleted behind our back
      } else {
        Bump(counters_.io_errors);
      }
      return false;
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0) {
      Bump(counters_.io_errors);
      return false;
    }
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    auto cached = index_->Get(key);
    FsMeta meta;
    // Identity is the inode: a file is never modified in place after its
    // rename (LMCache too replaces files through a new inode), so an inode
    // we know is checked against what we recorded, whatever its mtime says.
    if (cached && cached->second.ino == static_cast<uint64_t>(st.st_ino)) {
      meta = cached->second;
    } else {  // not indexed yet, or replaced since: take it as it is now
      meta = MetaFromFd(fd.get(), st);
      if (cached) index_->Remove(key);
      index_->Insert(key, file_size, meta, 0);
    }

    if (!meta.has_checksum && mode_ == ChecksumMode::kSidecar) {
      // Another server may have written it after our start-up: its record
      // is among the log's new lines.
      if (auto rec = sidecar_.Find(name, meta.ino)) {
        meta.has_checksum = true;
        meta.algo = rec->algo;
        meta.checksum = rec->hash;
        meta.recorded_size = rec->size;
        index_->SetPayload(key, meta);
      }
    }

    const uint64_t want = view.size;
    if (meta.has_checksum) {
      if (file_size != meta.recorded_size) {  // truncated or extended after the checksum
        Quarantine(key, name, st);
        return false;
      }
      if (meta.recorded_size != want) {
        Bump(counters_.size_mismatches);
        return false;
      }
    } else if (!(file_size == want || (want % kAlign != 0 && file_size == RoundUp(want, kAlign)))) {
      // (A file of exactly the next 4 KiB multiple is an LMCache fs_native
      // O_DIRECT write of a padded buffer; its first `want` bytes are the
      // object. Anything else would hand out a prefix of another layout.)
      Bump(counters_.size_mismatches);
      return false;
    }

    ObjectSum h(meta.algo);
    ObjectSum* hp = meta.has_checksum ? &h : nullptr;
    const bool read_ok = direct ? ReadDirect(fd.get(), view, worker, hp) : ReadBuffered(fd.get(), view, hp);
    if (!read_ok) {
      if (meta.has_checksum) {
        Quarantine(key, name, st);
      } else {
        Bump(counters_.io_errors);
      }
      return false;
    }
    if (meta.has_checksum) {
      if (h.Digest() != meta.checksum) {
        Quarantine(key, name, st);
        return false;
      }
    } else {
      Bump(counters_.unverified_loads);
    }
    index_->Touch(key);
    return true;
  }

  // Reads exactly view.size bytes; false on an error or a short file.
  bool ReadBuffered(int fd, const ObjectView& view, ObjectSum* h) {
    uint64_t off = 0;
    const uint64_t size = view.size;
    if (opts_.read_ahead_size > 0) {
      posix_fadvise(fd, 0, static_cast<off_t>(size), POSIX_FADV_SEQUENTIAL);
    }
    while (off < size) {
      // The first read is read_ahead_size bytes when set (a small read that
      // starts the kernel's readahead early, as LMCache's option does).
      const uint64_t chunk = (off == 0 && opts_.read_ahead_size > 0) ? opts_.read_ahead_size : kBufferedChunk;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, size - off));
      size_t got = 0;
      if (!ReadAll(fd, view.data + off, n, off, &got) || got != n) return false;
      if (h) h->Update(view.data + off, n);
      off += n;
    }
    return true;
  }

  bool ReadDirect(int fd, const ObjectView& view, int worker, ObjectSum* h) {
    uint8_t* bounce = bounce_[static_cast<size_t>(worker)].get();
    const uint64_t size = view.size;
    for (uint64_t off = 0; off < size; off += kDirectChunk) {
      const uint64_t left = size - off;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kDirectChunk, left));
      const size_t len = static_cast<size_t>(RoundUp(n, kAlign));  // O_DIRECT length
      uint8_t* dst = view.data + off;
      size_t got = 0;
      if (reinterpret_cast<uintptr_t>(dst) % kAlign == 0 && len == n) {
        if (!ReadAll(fd, dst, len, off, &got) || got < n) return false;
      } else {
        if (!ReadAll(fd, bounce, len, off, &got) || got < n) return false;
        std::memcpy(dst, bounce, n);
      }
      if (h) h->Update(dst, n);
    }
    return true;
  }

  // A checksummed file failed verification: count it, drop it from the
  // index and unlink it (only if the name still points at the same inode).
  void Quarantine(const ObjectKey& key, const std::string& name, const struct stat& seen) {
    Bump(counters_.corrupt_objects);
    index_->Remove(key);
    struct stat now;
    if (fstatat(base_fd_.get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == seen.st_ino &&
        now.st_dev == seen.st_dev) {
      unlinkat(base_fd_.get(), name.c_str(), 0);
    }
  }

  const FsOptions opts_;
  const std::unique_ptr<Index> index_;
  Fd base_fd_;
  Fd tmp_fd_;
  ChecksumMode mode_ = ChecksumMode::kOff;  // fixed after Open
  std::atomic<bool> odirect_{false};
  std::atomic<int> rename_mode_{0};  // 0 renameat2(NOREPLACE), 1 link+unlink, 2 check+rename
  SidecarLog sidecar_;
  std::vector<AlignedBuffer> bounce_;  // one per worker; worker w touches only bounce_[w]
  size_t scanned_files_ = 0;           // fixed after Open
  size_t ignored_files_ = 0;

  // The inotify watch (miss_mode_ kInotify). Held by pointer: const paths
  // (Usage, List, ReportStatus) drain it too.
  struct DirWatch {
    Fd fd;                    // fixed after Open; non-blocking
    Mutex mu;                 // one drainer at a time; events are applied under it
    std::atomic<bool> exact{false};  // no event lost since the last rescan, watch alive
    uint64_t overflow_gen GUARDED_BY(mu) = 0;
    bool rescan_queued GUARDED_BY(mu) = false;
    std::string broken_reason GUARDED_BY(mu);  // non-empty: the watch is gone for good
    std::atomic<uint64_t> events{0}, indexed{0}, dropped{0}, overflows{0}, rescans{0};
  };
  MissMode miss_mode_ = MissMode::kProbe;  // fixed after Open
  std::string miss_reason_;                // fixed after Open
  std::unique_ptr<DirWatch> watch_;        // set in Open, never null afterwards
};

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateFsAdapter(const L2CommonConfig& common, JsonFields& f,
                                                   const L2AdapterContext& context) {
  FsOptions o;
  o.type = common.type;
  o.base_path = f.RequiredString("base_path");
  o.num_workers = static_cast<int>(f.Int("num_workers", o.num_workers, 1, 256));
  o.relative_tmp_dir = f.String("relative_tmp_dir", "");
  o.use_odirect = f.Bool("use_odirect", false);
  o.read_ahead_size = static_cast<uint64_t>(f.OptionalInt("read_ahead_size", 1, int64_t{1} << 40).value_or(0));
  const double gb = f.Number("max_capacity_gb", 0, 0, 1e9);
  o.capacity_bytes = static_cast<uint64_t>(gb * static_cast<double>(1ull << 30));
  o.checksum = f.Choice("checksum", "auto", {"auto", "xattr", "sidecar", "off"});
  // "auto" | true | false (the bools of earlier versions stay valid).
  if (const nlohmann::json* v = f.Value("probe_misses")) {
    if (v->is_boolean()) {
      o.probe_misses = v->get<bool>() ? "true" : "false";
    } else if (v->is_string() && v->get_ref<const std::string&>() == "auto") {
      o.probe_misses = "auto";
    } else {
      f.Fail("probe_misses", "must be \"auto\", true or false, got " + Brief(*v));
    }
  }
  if (!o.relative_tmp_dir.empty()) {
    const std::filesystem::path p(o.relative_tmp_dir);
    bool bad = p.is_absolute();
    for (const auto& part : p) bad = bad || part == "..";
    if (bad) f.Fail("relative_tmp_dir", "must be a relative path inside base_path, got '" + o.relative_tmp_dir + "'");
  }
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  return CreateBatchedAdapter<FsAdapter, FsMeta>(o.capacity_bytes, common, context, common, o);
}

}  // namespace lmcache::internal
