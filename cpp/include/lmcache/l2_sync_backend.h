// L2SyncBackend: a blocking, batch-wise object store (put / stat / get /
// delete / list by name), and CreateL2AdapterOverBackend, which turns one
// into a full L2Adapter. This is how adapters written in other languages
// (Python: the "plugin" and "s3" types, cpp/bindings/l2_python.cc) or simple
// embedder stores get the whole adapter contract of lmcache/l2_adapter.h
// without reimplementing it.
//
// What the adapter adds around the backend:
//  * asynchrony: task ids, `num_workers` threads that run the backend calls,
//    the three eventfds, results handed out once;
//  * an in-memory index rebuilt from ListAll() at creation: first writer
//    wins, usage per cache_salt, listing, client-side lock refcounts with the
//    300 s TTL, capacity eviction (the victims are deleted from the backend);
//    lookup misses are probed with Stat (objects other writers stored);
//  * integrity: an XXH64 of every object is computed before Put and handed
//    to the backend, which stores it with the object and returns it from Get;
//    the adapter verifies the bytes it received. A mismatch is a 0 bit,
//    `corrupt_objects`, and the object is deleted from the backend. Objects
//    without a stored checksum (written by someone else) are served after a
//    size check (`unverified_loads`);
//  * errors: a failed call (non-OK Status) fails every key of the call, a
//    per-key `error` fails that key; both count `io_errors`, neither throws;
//  * Close: queued tasks complete as failures, the workers are joined, then
//    the backend's Close() runs once.
//
// Object names are ObjectKey::ToString() (the fs file stem); ListAll()
// returns them back and the adapter parses them (ParseObjectKey), ignoring
// names that do not parse. Keys whose name does not parse back to the same
// key ('@' in a salt) are refused per key (`rejected_keys`).
//
// Thread safety of the backend: each method may be called from up to
// `num_workers` worker threads at once, plus the threads that call the
// adapter's Delete (synchronous) and Close. The adapter never holds one of its
// own locks while it calls the backend, so a backend may serialize on a lock
// of its own (Python's GIL); it must then implement BlockingWait so the
// adapter can wait for its workers without holding that lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmcache/l1_store.h"  // ObjectView
#include "lmcache/l2_adapter.h"
#include "lmcache/status.h"

namespace lmcache {

// One key's outcome of a backend call.
struct L2BackendResult {
  bool ok = false;     // Put: stored (or already there); Stat/Get: present; Delete: existed
  bool error = false;  // the backend failed for this key (ok is false); counted in io_errors
  uint64_t size = 0;   // Stat/Get: the stored object's size in bytes
  // Get: the checksum stored with the object (what Put was given); nullopt
  // when the object has none (written by another program).
  std::optional<uint64_t> checksum;
};

using L2BackendResults = std::vector<L2BackendResult>;

class L2SyncBackend {
 public:
  virtual ~L2SyncBackend() = default;

  // Every batch call returns one result per name, in order, or a non-OK
  // Status when the call failed as a whole (every key then fails). A result
  // vector of the wrong length counts as a failed call.

  // Store objects[i] with checksums[i] under names[i]. A name that is already
  // stored keeps its object (first writer wins) and is reported ok.
  virtual Result<L2BackendResults> Put(std::span<const std::string> names, std::span<const ObjectView> objects,
                                       std::span<const uint64_t> checksums) = 0;
  // Presence and size.
  virtual Result<L2BackendResults> Stat(std::span<const std::string> names) = 0;
  // Read names[i] into buffers[i] when the object has exactly buffers[i].size
  // bytes; otherwise leave the buffer alone and report the size.
  virtual Result<L2BackendResults> Get(std::span<const std::string> names, std::span<const ObjectView> buffers) = 0;
  virtual Result<L2BackendResults> Delete(std::span<const std::string> names) = 0;
  // Every stored object: (name, size). Called once, at creation.
  virtual Result<std::vector<std::pair<std::string, uint64_t>>> ListAll() = 0;
  // Called once, after the workers stopped.
  virtual void Close() = 0;

  // Run `wait` (which blocks until worker threads finish their backend
  // calls). A backend that serializes its calls on a lock the waiting thread
  // may hold releases it around `wait`.
  virtual void BlockingWait(const std::function<void()>& wait) { wait(); }

  // Facts for ReportStatus details (bucket, endpoint, ...).
  virtual std::vector<std::pair<std::string, std::string>> Details() const { return {}; }

  // Test seam for L2Adapter::InjectCorruption: change the stored bytes of
  // `name` but keep its checksum.
  virtual bool CanDamage() const { return false; }
  virtual Status Damage(const std::string& /*name*/) {
    return Status::InvalidArgument("this L2 backend cannot inject corruption");
  }
};

struct L2SyncAdapterOptions {
  int num_workers = 1;          // [1, 256] threads calling the backend
  uint64_t capacity_bytes = 0;  // 0: unbounded
  bool probe_misses = true;     // lookup misses ask the backend (Stat)
};

// The adapter reports `common.type` as its type. InvalidArgument for bad
// options, IOError when ListAll fails (the backend is not reachable).
Result<std::unique_ptr<L2Adapter>> CreateL2AdapterOverBackend(const L2CommonConfig& common,
                                                              std::unique_ptr<L2SyncBackend> backend,
                                                              const L2SyncAdapterOptions& options,
                                                              const L2AdapterContext& context = {});

}  // namespace lmcache
