// Helpers shared by the L2 controllers: a wake-up eventfd, and poll() over a
// set of fds that drains whatever became readable.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "lmcache/status.h"

namespace lmcache::internal {

// A non-blocking eventfd owned by a controller (its loop's wake-up).
class WakeFd {
 public:
  WakeFd() = default;
  ~WakeFd() {
    if (fd_ >= 0) close(fd_);
  }
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;

  Status Open() {
    fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd_ < 0 ? Status::FromErrno("eventfd", errno) : Status::OK();
  }
  int fd() const { return fd_; }
  void Signal() const { Write(fd_); }

  static void Write(int fd) {
    const uint64_t one = 1;
    ssize_t r;
    do {
      r = write(fd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
  }

 private:
  int fd_ = -1;
};

// Wait until one of fds is readable or timeout_ms passes (-1: no timeout);
// drain every readable eventfd. Returns true if any was readable.
inline bool PollAndDrain(std::vector<pollfd>& fds, int timeout_ms) {
  for (pollfd& p : fds) p.revents = 0;
  int n;
  do {
    n = poll(fds.data(), fds.size(), timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  for (const pollfd& p : fds) {
    if ((p.revents & POLLIN) == 0) continue;
    uint64_t v;
    while (read(p.fd, &v, sizeof(v)) > 0) {
    }
  }
  return true;
}

}  // namespace lmcache::internal
