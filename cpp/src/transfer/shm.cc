// ShmMapping and the dead-owner unlink helpers (compat §9.2, §20 items 2-3).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "lmcache/transfer.h"

namespace lmcache {
namespace {

std::atomic<uint64_t> g_live_count{0};
std::atomic<uint64_t> g_live_bytes{0};

// "/x" for "x" or "/x"; empty for an invalid POSIX SHM name.
std::string NormalizeName(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty() || name.size() > 250 || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos || name == "." || name == "..") {
    return {};
  }
  std::string out = "/";
  out.append(name);
  return out;
}

// The pid in "<prefix><pid>_<rest>" (name without '/'), or -1.
long ParseOwnerPid(std::string_view bare, std::string_view prefix) {
  if (prefix.empty() || bare.substr(0, prefix.size()) != prefix) return -1;
  bare.remove_prefix(prefix.size());
  long pid = 0;
  size_t i = 0;
  for (; i < bare.size() && bare[i] >= '0' && bare[i] <= '9'; ++i) {
    if (i >= 9) return -1;  // pid_max is at most 4194304 (7 digits)
    pid = pid * 10 + (bare[i] - '0');
  }
  if (i == 0 || i >= bare.size() || bare[i] != '_' || pid <= 0) return -1;
  return pid;
}

bool ProcessExists(long pid) {
  struct stat st;
  const std::string path = "/proc/" + std::to_string(pid);
  if (stat(path.c_str(), &st) == 0) return true;
  // Only a definite "no such entry" counts as dead; any other error (EACCES,
  // a missing /proc) errs on the side of keeping the segment.
  return errno != ENOENT;
}

}  // namespace

ShmMapping::ShmMapping(std::string name, uint8_t* data, uint64_t size)
    : name_(std::move(name)), data_(data), size_(size) {
  g_live_count.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(size, std::memory_order_relaxed);
}

ShmMapping::~ShmMapping() {
  munmap(data_, size_);
  g_live_count.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(size_, std::memory_order_relaxed);
}

uint64_t ShmMapping::LiveCount() { return g_live_count.load(std::memory_order_relaxed); }
uint64_t ShmMapping::LiveBytes() { return g_live_bytes.load(std::memory_order_relaxed); }

Result<std::unique_ptr<ShmMapping>> ShmMapping::Open(std::string_view name, uint64_t nbytes) {
  const std::string full = NormalizeName(name);
  if (full.empty()) return Status::InvalidArgument("invalid SHM segment name '" + std::string(name) + "'");
  if (nbytes == 0) return Status::InvalidArgument("SHM segment " + full + ": nbytes must be positive");
  const int fd = shm_open(full.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return Status::NotFound("SHM segment " + full + " does not exist");
    if (e == EACCES || e == EPERM) return Status::FromErrno("SHM segment " + full + ": permission denied opening it", e);
    return Status::FromErrno("shm_open(" + full + ")", e);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return Status::FromErrno("fstat(" + full + ")", e);
  }
  if (static_cast<uint64_t>(st.st_size) < nbytes) {
    close(fd);
    return Status::InvalidArgument("SHM segment " + full + " is too small: " + std::to_string(st.st_size) +
                                   " bytes, the handle says " + std::to_string(nbytes));
  }
  void* p = mmap(nullptr, nbytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    if (e == EACCES || e == EPERM) return Status::FromErrno("mmap(" + full + "): permission denied", e);
    return Status::FromErrno("mmap(" + full + ", " + std::to_string(nbytes) + " bytes)", e);
  }
  return std::unique_ptr<ShmMapping>(new ShmMapping(full, static_cast<uint8_t*>(p), nbytes));
}

Result<UnlinkOutcome> UnlinkIfOwnerDead(std::string_view name, std::string_view prefix) {
  const std::string full = NormalizeName(name);
  const long pid = full.empty() ? -1 : ParseOwnerPid(std::string_view(full).substr(1), prefix);
  if (pid < 0) {
    return Status::InvalidArgument("SHM name '" + std::string(name) + "' is not of the form " + std::string(prefix) +
                                   "<pid>_<n>");
  }
  if (ProcessExists(pid)) return UnlinkOutcome::kOwnerAlive;
  if (shm_unlink(full.c_str()) != 0) {
    const int e = errno;
    if (e == ENOENT) return UnlinkOutcome::kNotFound;
    return Status::FromErrno("shm_unlink(" + full + ")", e);
  }
  return UnlinkOutcome::kUnlinked;
}

Result<std::vector<std::string>> UnlinkStaleSegments(std::string_view prefix, const std::string& shm_dir) {
  if (prefix.empty()) return Status::InvalidArgument("UnlinkStaleSegments needs a non-empty prefix");
  DIR* dir = opendir(shm_dir.c_str());
  if (dir == nullptr) return Status::FromErrno("opendir(" + shm_dir + ")", errno);
  std::vector<std::string> candidates;
  while (dirent* ent = readdir(dir)) {
    std::string_view n(ent->d_name);
    if (n.substr(0, prefix.size()) == prefix) candidates.emplace_back(n);
  }
  closedir(dir);
  std::vector<std::string> removed;
  for (const std::string& n : candidates) {
    Result<UnlinkOutcome> r = UnlinkIfOwnerDead(n, prefix);
    if (r.ok() && r.value() == UnlinkOutcome::kUnlinked) removed.push_back("/" + n);
  }
  return removed;
}

}  // namespace lmcache
