// L2Adapter: one backend of the second storage tier (a directory of files,
// an in-memory mock, later remote stores), with the asynchronous, eventfd
// driven contract of LMCache 0.5.6's L2AdapterInterface (compat reference
// §14.1).
//
// Callers. Two controller threads drive an adapter: the store controller
// (SubmitStore / PopCompletedStores) and the prefetch controller
// (SubmitLookupAndLock / QueryLookupResult / SubmitUnlock / SubmitLoad /
// QueryLoadResult). Admin paths call Delete, List, Usage and ReportStatus.
//
// Asynchrony. Submit* never waits for I/O: it queues a task and returns its
// id (ids are unique per adapter across the three kinds). When a task
// completes, its result is published first and then the eventfd of its kind
// is written (the value 1; eventfd counters add up), so a poller that wakes
// on the fd always finds the result. The three fds are distinct, non-blocking
// and owned by the adapter; they stay open until the adapter is destroyed
// (Close does not close them), so a poller never sees a reused fd number.
// Draining a fd (read) is the caller's business.
//
// Buffers. SubmitStore reads and SubmitLoad writes caller memory (L1
// objects). The caller keeps every view valid, and does not touch load
// buffers, until the task's result is available; the adapter never touches
// a view after that. A load buffer whose bit is 0 has undefined content.
//
// Results. A lookup or load result is handed out exactly once
// (QueryLookupResult/QueryLoadResult return nullopt before completion and
// after the result was taken); store results are handed out by
// PopCompletedStores, each once. One bit per key, in submission order.
//
// Semantics shared by every adapter (the conformance suite checks them):
//  * first writer wins: storing a key that is already stored writes nothing
//    and reports the key as stored (its bit is 1, it adds no bytes);
//  * lookup-and-lock: a 1 bit means the object is present and protected
//    from the adapter's own eviction until SubmitUnlock (one unlock per
//    lock) or the lock TTL (300 s); Delete still removes a locked object;
//  * integrity: every object an adapter writes carries a 64-bit checksum
//    that is verified on load. A corrupt or truncated object is a 0 bit,
//    counted in L2Counters::corrupt_objects, and dropped from the adapter;
//    wrong bytes are never reported as loaded. An object of the wrong size
//    for its buffer is a 0 bit (size_mismatches) and stays stored. Objects
//    written by LMCache itself (no checksum) are served after a size check
//    (unverified_loads);
//  * usage: bytes of stored objects, in total and per cache_salt.
//
// Errors. Submit* fail (and queue nothing) with InvalidArgument when keys
// and views differ in length or a view is empty, and Unavailable after
// Close. I/O failures are per key (0 bits, counters), never thrown.
//
// Lifecycle. Create through CreateL2Adapter. Close() is idempotent: it stops
// accepting work, lets running I/O finish, completes every queued task as a
// failure (all-zero bitmap, signalled as usual) so no caller waits forever
// and every view is released, and joins the adapter's threads. The
// destructor calls Close and then closes the fds.
//
// Thread safety: thread-safe; every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmcache/clock.h"
#include "lmcache/key.h"
#include "lmcache/l1_store.h"  // ObjectView
#include "lmcache/status.h"

namespace lmcache {

using L2TaskId = uint64_t;
// One bit per key of a task, in submission order; true = success / present.
using L2Bitmap = std::vector<bool>;

struct L2StoreResult {
  bool ok = false;             // every key is stored (written now or already present)
  L2Bitmap stored;             // per key: the object is in L2 after the task
  uint64_t bytes_written = 0;  // bytes transferred by this task (present keys excluded)
};

struct L2Usage {
  uint64_t total_bytes = 0;
  uint64_t capacity_bytes = 0;  // 0: unbounded (no capacity configured)
  uint64_t objects = 0;
  std::map<std::string, uint64_t> bytes_by_salt;  // only salts with bytes > 0; "" = no salt

  // used / capacity, or -1 when unbounded (LMCache's "no eviction signal").
  double usage_fraction() const {
    return capacity_bytes == 0 ? -1.0 : static_cast<double>(total_bytes) / static_cast<double>(capacity_bytes);
  }
};

// Totals since creation.
struct L2Counters {
  uint64_t store_tasks = 0;
  uint64_t stored_objects = 0;    // written by this adapter
  uint64_t stored_bytes = 0;
  uint64_t store_skipped = 0;     // already present (first writer wins)
  uint64_t store_failures = 0;    // keys that could not be stored
  uint64_t lookup_tasks = 0;
  uint64_t lookup_hits = 0;
  uint64_t lookup_misses = 0;
  uint64_t load_tasks = 0;
  uint64_t loaded_objects = 0;
  uint64_t loaded_bytes = 0;
  uint64_t load_misses = 0;       // every 0 bit of a load, whatever the cause
  uint64_t corrupt_objects = 0;   // checksum mismatch or truncated: served as a miss, dropped
  uint64_t size_mismatches = 0;   // object size != buffer size: served as a miss, kept
  uint64_t unverified_loads = 0;  // served after a size check only (no checksum: written by LMCache)
  uint64_t io_errors = 0;
  uint64_t rejected_keys = 0;     // keys the backend cannot represent (e.g. '@' in a salt)
  uint64_t evicted_objects = 0;
  uint64_t evicted_bytes = 0;
  uint64_t deleted_objects = 0;   // by Delete
};

struct L2Status {
  bool healthy = true;
  std::string type;     // "fs", "fs_native", "mock", "fault_inject", ...
  std::string message;  // why unhealthy; empty when healthy
  uint64_t pending_tasks = 0;
  L2Counters counters;
  // Adapter-specific facts for /status (base_path, num_workers, ...).
  std::vector<std::pair<std::string, std::string>> details;
};

struct L2KeyInfo {
  ObjectKey key;
  uint64_t size = 0;
};

struct L2ListRequest {
  std::optional<std::string> model_name;  // only keys of this model
  size_t page_size = 500;                 // REQUIRES: > 0
  std::string cursor;                     // "" for the first page, then next_cursor
};

struct L2KeyPage {
  std::vector<L2KeyInfo> keys;
  std::string next_cursor;  // "" on the last page
};

// The fields every adapter JSON may carry besides its own (compat reference
// §14.2). The adapter acts on `eviction` only together with a capacity.
struct L2EvictionConfig {
  std::string eviction_policy = "LRU";  // LRU, IsolatedLRU, noop
  double trigger_watermark = 0.8;       // (0, 1]
  double eviction_ratio = 0.2;          // (0, 1]
};
struct L2CommonConfig {
  std::string type;
  std::optional<L2EvictionConfig> eviction;
  bool shared = false;           // the storage domain is shared by several servers
  bool persist_enabled = true;
};

class L2Adapter {
 public:
  virtual ~L2Adapter() = default;
  L2Adapter() = default;
  L2Adapter(const L2Adapter&) = delete;
  L2Adapter& operator=(const L2Adapter&) = delete;

  // The JSON fields common to all adapters, as parsed.
  virtual const L2CommonConfig& common_config() const = 0;

  // ---- completion fds (three distinct, non-blocking eventfds) ----
  virtual int store_event_fd() const = 0;
  virtual int lookup_event_fd() const = 0;
  virtual int load_event_fd() const = 0;

  // ---- store ----
  // Write objects[i] under keys[i]. REQUIRES: the views stay valid until the
  // task completes. Keys already stored are skipped (first writer wins).
  virtual Result<L2TaskId> SubmitStore(std::span<const ObjectKey> keys,
                                       std::span<const ObjectView> objects) = 0;
  // Every store result completed since the last call, in completion order.
  virtual std::vector<std::pair<L2TaskId, L2StoreResult>> PopCompletedStores() = 0;

  // ---- lookup and lock ----
  virtual Result<L2TaskId> SubmitLookupAndLock(std::span<const ObjectKey> keys) = 0;
  // The bitmap once the task completed; nullopt before, and after it was taken.
  virtual std::optional<L2Bitmap> QueryLookupResult(L2TaskId task) = 0;
  // Release one lock per key (fire and forget; keys without a lock are
  // ignored). Never fails.
  virtual void SubmitUnlock(std::span<const ObjectKey> keys) = 0;

  // ---- load ----
  // Read keys[i] into buffers[i]; a bit is 1 only when the whole object,
  // of exactly buffers[i].size bytes, was read and verified.
  virtual Result<L2TaskId> SubmitLoad(std::span<const ObjectKey> keys,
                                      std::span<const ObjectView> buffers) = 0;
  virtual std::optional<L2Bitmap> QueryLoadResult(L2TaskId task) = 0;

  // ---- administration (synchronous) ----
  // Remove objects (locked ones too). Returns how many existed and were
  // removed; IOError only when nothing could be attempted.
  virtual Result<size_t> Delete(std::span<const ObjectKey> keys) = 0;
  // One page of stored keys, ordered by their fs file stem (ObjectKey::ToString),
  // optionally of one model. InvalidArgument for page_size 0 or a bad cursor.
  virtual Result<L2KeyPage> List(const L2ListRequest& request) const = 0;
  virtual L2Usage Usage() const = 0;
  virtual L2Status ReportStatus() const = 0;
  virtual void Close() = 0;

  // ---- test seam (fault_inject) ----
  // Damage the stored bytes of `key` without updating its checksum, so the
  // next load must detect it. NotFound if not stored; InvalidArgument for
  // adapters that cannot (supports_corruption_injection() is false).
  virtual bool supports_corruption_injection() const { return false; }
  virtual Status InjectCorruption(const ObjectKey& /*key*/) {
    return Status::InvalidArgument("this L2 adapter cannot inject corruption");
  }
};

// Where an adapter gets the process facilities it needs.
struct L2AdapterContext {
  Clock* clock = nullptr;  // lock TTLs; null: Clock::Default()
};

// Build an adapter from its JSON spec (one --l2-adapter value), e.g.
//   {"type":"fs_native","base_path":"/data/l2","num_workers":4}
// InvalidArgument with a one-line message for malformed JSON, a missing or
// unknown "type" ("unknown L2 adapter type 'x' (choose from ...)"), an
// unknown field, or a field of the wrong type or range (the message names
// the field); IOError when the backend cannot be opened (e.g. base_path is
// not writable).
Result<std::unique_ptr<L2Adapter>> CreateL2Adapter(const std::string& json,
                                                   const L2AdapterContext& context = {});

// The registered type names (built-in and run-time registered), sorted.
std::vector<std::string> L2AdapterTypes();

// ---- run-time registration (adapters implemented outside the core) ----
//
// A factory for a type registered at run time. CreateL2Adapter parses and
// validates the common fields first (type, eviction, shared,
// persist_enabled; `serde` is refused) and passes them as `common`;
// `fields_json` is the spec as a JSON object without those fields. The
// factory validates its own fields and returns InvalidArgument with a
// one-line message naming the field ("L2 adapter 's3': field 'bucket' ..."),
// IOError when the backend cannot be opened.
//
// The factory may be called from any thread, concurrently, and must not call
// RegisterL2AdapterType / UnregisterL2AdapterType itself. A copy of it may
// be destroyed on any thread, after it was unregistered too.
using L2AdapterFactoryFn = std::function<Result<std::unique_ptr<L2Adapter>>(
    const L2CommonConfig& common, const std::string& fields_json, const L2AdapterContext& context)>;

// Make `name` creatable through CreateL2Adapter (and as fault_inject's
// "inner"). InvalidArgument for an empty name or a null fn; AlreadyExists
// for a built-in type or a name already registered. Types that LMCache
// registers but the core lacks ("plugin", "s3", ...) may be registered.
// Thread-safe.
Status RegisterL2AdapterType(const std::string& name, L2AdapterFactoryFn fn);

// Remove a run-time registered type (adapters already created are not
// affected). NotFound if `name` is not run-time registered (built-in types
// cannot be removed). Thread-safe.
Status UnregisterL2AdapterType(const std::string& name);

}  // namespace lmcache
