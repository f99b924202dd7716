// PeriodicNotifier: a native thread that writes to every registered eventfd
// once per interval (--periodic-notifier-interval-ms, 5 ms by default).
//
// Controller loops that poll() eventfds of L2 adapters without native
// completion callbacks register an eventfd here so they wake at least once
// per interval. Each tick writes the 8-byte value 1 to every registered fd
// (eventfd semantics: counters add up; a reader drains them with one read).
// A write that fails with EAGAIN (counter saturated) is ignored; an fd that
// fails with EBADF is dropped from the set and counted in stats.
//
// Lifecycle: construct, Start(), Register/Unregister at any time (also
// while running), Stop() (idempotent; also called by the destructor). Stop
// returns only after the thread has exited; no write happens after Stop()
// or after Unregister(fd) returns. The notifier never closes fds it was
// given: the caller owns them, registers only non-blocking eventfds (a
// blocking fd would stall the tick while the notifier holds its lock), and
// must Unregister an fd before closing it (the EBADF drop only catches fd
// numbers that were not reused yet).
//
// Stats: `ticks` counts since the last Start; `writes` and `dropped_fds` are
// lifetime totals.
//
// Thread safety: thread-safe.
#pragma once

#include <cstdint>
#include <memory>

#include "lmcache/status.h"

namespace lmcache {

struct NotifierStats {
  uint64_t ticks = 0;           // completed ticks since Start
  uint64_t writes = 0;          // successful eventfd writes
  uint64_t dropped_fds = 0;     // fds removed after EBADF
  uint64_t registered_fds = 0;  // fds registered now
  bool running = false;
};

class PeriodicNotifier {
 public:
  // REQUIRES: interval_ns > 0.
  explicit PeriodicNotifier(int64_t interval_ns);
  ~PeriodicNotifier();
  PeriodicNotifier(const PeriodicNotifier&) = delete;
  PeriodicNotifier& operator=(const PeriodicNotifier&) = delete;

  // Unavailable if already running or the thread could not be created.
  Status Start();
  void Stop();
  // InvalidArgument for fd < 0; AlreadyExists if registered.
  Status Register(int fd);
  // NotFound if not registered.
  Status Unregister(int fd);
  NotifierStats Stats() const;
  int64_t interval_ns() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmcache
