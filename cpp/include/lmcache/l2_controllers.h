// The controllers that move objects between L1 and the L2 adapters (compat
// reference §14.3), and L2Tier, which owns the adapters and both controllers.
//
// StoreController (L1 -> L2, write-behind). An L1 listener queues every key
// that becomes resident through a FinishWrite* (objects admitted by the
// prefetch controller -- writer tags with kL2PrefetchTagBit -- and temporary
// objects are skipped: they came from L2). A controller thread takes up to
// max_batch_keys keys, groups them by (model_name, kv_rank), read-locks the
// L1 objects (eviction cannot free them while an adapter reads them; keys
// that left L1 meanwhile are counted and skipped), submits one store task per
// group to every adapter, waits on the adapters' store eventfds (poll; a
// PeriodicNotifier, when given, wakes the loop every interval as a safety
// net), then releases the read locks. Policy skip_l1 deletes a key from L1
// once every adapter stored it (a key read-locked by a reader then stays; it
// is counted). The queue is bounded (max_queued_keys): when L2 is slower than
// L1 the newest keys are dropped and counted, the request path never waits.
//
// PrefetchController (L2 -> L1). Submit(request) queues a grid of key rows
// (one row per (rank, object group): the chunk keys of one prefix, in
// order, and the size of each object) and returns an id at once. At most
// max_in_flight requests run at a time, the rest wait in FIFO order. A
// request: read-locks what L1 holds (`readers` locks per object); asks the
// adapters, in cascade order, to lookup-and-lock the keys still missing (a
// key found in adapter i is not asked of adapter i+1); keeps the longest
// prefix every row can serve; reserves L1 staging objects for the keys to
// load (this may evict; on NoSpace the prefix stops at the first chunk that
// did not fit); loads each key from the first adapter that has it; admits
// the loaded objects read-locked `readers` times (temporary with policy
// default, resident with retain); unlocks the keys in L2; and releases every
// L1 lock beyond the final prefix. The result is the longest prefix of
// chunks servable in EVERY row (a missing chunk breaks it); the caller then
// owns `readers` read locks on keys [0, prefix) of every row. Each L2 task
// has a timeout (task_timeout_ns): a slow or failing adapter degrades to
// misses, never to a hang. A timed-out load keeps its staging buffers until
// the adapter completes the task (the adapter may still write into them);
// a timed-out lookup unlocks its hits when it completes.
//
// Results are handed out once (Query / Wait); Cancel releases everything a
// request holds (also after it finished, if its result was not taken).
//
// Lifecycle. Create, use, Close() (idempotent; the destructor calls it).
// The controllers do not own the L1 store, the adapters or the notifier;
// those outlive them. Close waits for the L2 tasks the controller submitted
// (adapters complete every task, at the latest when they are closed);
// L2Tier::Close closes in the order that bounds that wait: stop the
// controllers, close the adapters, then collect what is left.
//
// Thread safety: thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmcache/key.h"
#include "lmcache/l1_store.h"
#include "lmcache/l2_adapter.h"
#include "lmcache/status.h"

namespace lmcache {

class PeriodicNotifier;

// Writer tags with this bit are the prefetch controller's; other writers of
// an L1 store with a StoreController must not use them (their objects would
// not be written back).
inline constexpr WriterTag kL2PrefetchTagBit = WriterTag{1} << 63;

enum class L2StorePolicy : uint8_t { kDefault, kSkipL1 };
enum class L2PrefetchPolicy : uint8_t { kDefault, kRetain };

// "default" | "skip_l1"; InvalidArgument otherwise.
Result<L2StorePolicy> ParseL2StorePolicy(std::string_view name);
// "default" | "retain"; InvalidArgument otherwise.
Result<L2PrefetchPolicy> ParseL2PrefetchPolicy(std::string_view name);
const char* L2StorePolicyName(L2StorePolicy p);
const char* L2PrefetchPolicyName(L2PrefetchPolicy p);

// ---------------------------------------------------------------- store

struct StoreControllerOptions {
  L2StorePolicy policy = L2StorePolicy::kDefault;
  size_t max_queued_keys = 1 << 16;  // REQUIRES: > 0
  size_t max_batch_keys = 256;       // REQUIRES: > 0
  size_t max_in_flight_batches = 8;  // REQUIRES: > 0; groups submitted and not yet completed
  PeriodicNotifier* notifier = nullptr;  // optional safety-net wake-ups
};

// Totals since creation unless marked "now". Per-adapter counts add up over
// adapters (a key stored by two adapters counts twice in stored_keys).
struct StoreControllerStats {
  uint64_t queued_keys = 0;           // accepted into the queue
  uint64_t dropped_keys = 0;          // refused: queue full, or closing
  uint64_t skipped_keys = 0;          // left L1 before their turn
  uint64_t submitted_keys = 0;        // key x adapter
  uint64_t stored_keys = 0;           // key x adapter, stored (or already there)
  uint64_t failed_keys = 0;           // key x adapter, not stored
  uint64_t stored_bytes = 0;          // bytes the adapters wrote
  uint64_t batches = 0;               // store tasks submitted (group x adapter)
  uint64_t submit_errors = 0;         // SubmitStore refused a task
  uint64_t l1_deleted_keys = 0;       // skip_l1: deleted from L1 after L2 stored them
  uint64_t l1_delete_skipped = 0;     // skip_l1: stayed in L1 (read-locked, or not stored everywhere)
  uint64_t queue_depth = 0;           // now
  uint64_t in_flight_batches = 0;     // now
  bool running = false;
};

class StoreController {
 public:
  // InvalidArgument for a null store, no adapters, a null adapter or zero
  // limits; Unavailable if the thread cannot start.
  static Result<std::unique_ptr<StoreController>> Create(L1Store* l1, std::vector<L2Adapter*> adapters,
                                                         const StoreControllerOptions& options);
  ~StoreController();
  StoreController(const StoreController&) = delete;
  StoreController& operator=(const StoreController&) = delete;

  // Wait until the queue is empty and no batch is in flight; false on
  // timeout. (Keys admitted meanwhile are waited for too.)
  bool Flush(int64_t timeout_ns);
  // Stop listening, drop what is queued (counted), wait for the batches in
  // flight, release their locks, join the thread. Idempotent.
  void Close();
  StoreControllerStats Stats() const;
  const StoreControllerOptions& options() const;

 private:
  StoreController();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- prefetch

struct PrefetchRow {
  std::vector<ObjectKey> keys;  // chunk keys of the prefix, in order
  uint64_t object_bytes = 0;    // size of every object of the row (for L1 staging)
};

struct PrefetchRequest {
  std::vector<PrefetchRow> rows;
  uint32_t readers = 1;  // read locks per object; REQUIRES: 1..128
  // Admit loaded objects as resident (kept after their readers) even under
  // policy default: warming L1 ahead of requests (POST /cache/prefetches).
  bool retain = false;
};

struct PrefetchResult {
  size_t prefix_chunks = 0;  // the caller owns `readers` locks on keys [0, prefix) of each row
  size_t l1_hit_chunks = 0;  // chunks of the prefix every row found in L1
  size_t l2_hit_chunks = 0;  // chunks of the prefix loaded from L2 in at least one row
  uint64_t loaded_bytes = 0;  // bytes loaded from L2 by this request
  bool degraded = false;      // an L2 failure, timeout or NoSpace cut the prefix short
};

using PrefetchId = uint64_t;

struct PrefetchControllerOptions {
  L2PrefetchPolicy policy = L2PrefetchPolicy::kDefault;
  // Requests running at once (1..65536); one worker thread each, at most
  // kMaxPrefetchThreads threads (a larger value runs that many at once).
  size_t max_in_flight = 8;
  int64_t task_timeout_ns = 10'000'000'000;  // per L2 lookup/load task; REQUIRES: > 0
  size_t max_queued_requests = 1 << 16;      // Submit answers Unavailable beyond this
  PeriodicNotifier* notifier = nullptr;
};
inline constexpr size_t kMaxPrefetchThreads = 64;

struct PrefetchControllerStats {
  uint64_t submitted = 0;
  uint64_t completed = 0;          // requests that finished (results published)
  uint64_t cancelled = 0;
  uint64_t l1_hit_chunks = 0;      // sums of the results' fields
  uint64_t l2_hit_chunks = 0;
  uint64_t prefix_chunks = 0;
  uint64_t l2_lookup_keys = 0;     // keys asked of adapters (per adapter)
  uint64_t l2_hit_keys = 0;        // of those, found
  uint64_t loaded_keys = 0;
  uint64_t loaded_bytes = 0;
  uint64_t lookup_failures = 0;    // lookup tasks refused, failed or timed out
  uint64_t load_failures = 0;      // keys whose load failed (0 bit, refused or timed out)
  uint64_t timeouts = 0;           // L2 tasks that timed out
  uint64_t no_space = 0;           // requests cut short because L1 had no room
  uint64_t queued = 0;             // now: waiting for a worker
  uint64_t in_flight = 0;          // now: running
  uint64_t max_in_flight_seen = 0;
  uint64_t results_pending = 0;    // now: finished, not taken yet
  uint64_t orphaned_tasks = 0;     // now: timed-out L2 tasks not completed yet
  bool running = false;
};

class PrefetchController {
 public:
  static Result<std::unique_ptr<PrefetchController>> Create(L1Store* l1, std::vector<L2Adapter*> adapters,
                                                            const PrefetchControllerOptions& options);
  ~PrefetchController();
  PrefetchController(const PrefetchController&) = delete;
  PrefetchController& operator=(const PrefetchController&) = delete;

  // Queue a request. InvalidArgument for readers outside 1..128, a row with
  // keys and object_bytes 0, or a key that appears twice; Unavailable after
  // Close or when max_queued_requests are waiting.
  Result<PrefetchId> Submit(PrefetchRequest request);
  // The result once finished (handed out once; the caller then owns the
  // prefix's locks); nullopt while running. NotFound for an unknown id, one
  // whose result was taken, or a cancelled one.
  Result<std::optional<PrefetchResult>> Query(PrefetchId id);
  // As Query, waiting up to timeout_ns for the request to finish.
  Result<std::optional<PrefetchResult>> Wait(PrefetchId id, int64_t timeout_ns);
  // Drop the request and release everything it holds or will hold. NotFound
  // as in Query.
  Status Cancel(PrefetchId id);
  // Stop: cancel what is queued or finished-but-untaken, let running
  // requests stop at their next step, wait for the L2 tasks submitted, join
  // the threads. Idempotent.
  void Close();
  PrefetchControllerStats Stats() const;
  const PrefetchControllerOptions& options() const;

  // For L2Tier::Close: the first half of Close (no more work, running
  // requests give up waiting on L2 and finish), and the second (collect the
  // L2 tasks still out, join).
  void BeginClose();
  void FinishClose();

 private:
  PrefetchController();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- tier

struct L2TierOptions {
  StoreControllerOptions store;
  PrefetchControllerOptions prefetch;
  L2AdapterContext adapter_context;
};

// The adapters (created from their JSON specs, in cascade order) and the two
// controllers over one L1 store.
class L2Tier {
 public:
  // InvalidArgument/IOError from an adapter spec, prefixed "L2 adapter #i: "
  // (1-based); InvalidArgument for an empty spec list.
  static Result<std::unique_ptr<L2Tier>> Create(L1Store* l1, const std::vector<std::string>& specs,
                                                const L2TierOptions& options);
  ~L2Tier();
  L2Tier(const L2Tier&) = delete;
  L2Tier& operator=(const L2Tier&) = delete;

  StoreController& store();
  PrefetchController& prefetch();
  size_t num_adapters() const;
  L2Adapter& adapter(size_t i);  // REQUIRES: i < num_adapters()
  // Delete every key every adapter lists (locked ones too). Returns objects
  // deleted; the first adapter error if nothing could be listed.
  Result<uint64_t> ClearAdapters();
  // Stop both controllers, close the adapters, collect the tasks left.
  // Idempotent; the destructor calls it.
  void Close();

 private:
  L2Tier();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmcache
