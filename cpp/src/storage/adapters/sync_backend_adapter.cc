// CreateL2AdapterOverBackend: the L2Adapter contract around a blocking,
// batch-wise L2SyncBackend (see lmcache/l2_sync_backend.h for what it adds).
//
// Tasks run on a WorkerPool; each task makes at most a few backend calls
// (one batch per phase), never holding an adapter lock across a call.

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "lmcache/l2_sync_backend.h"
#include "storage/l2_common.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

struct NoPayload {};

// A task is one BatchedL2Adapter job for the whole batch (kSlices, one
// slice): RunKeys makes the backend calls of its phases.
class SyncBackendAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<NoPayload>;

  SyncBackendAdapter(const L2CommonConfig& common, std::unique_ptr<L2SyncBackend> backend,
                     const L2SyncAdapterOptions& options, std::unique_ptr<L2Completions> completions,
                     std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions), L2Spread{L2Spread::Mode::kSlices, 1, 1}),
        options_(options),
        backend_(std::move(backend)),
        index_(std::move(index)) {}

  ~SyncBackendAdapter() override { Close(); }  // closes the backend too

  // Rebuild the index from the backend's listing (oldest first is unknown:
  // listing order), then start the workers.
  Status Open() {
    auto listed = backend_->ListAll();
    if (!listed.ok()) {
      return Status::IOError("L2 adapter '" + common_.type + "': cannot list the backend: " +
                             listed.status().message());
    }
    for (const auto& [name, size] : listed.value()) {
      ObjectKey key;
      if (!ParseObjectKey(name, &key)) {
        ++ignored_objects_;
        continue;
      }
      index_->Insert(key, size, NoPayload{}, 0);
    }
    return StartWorkers(options_.num_workers);
  }

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    if (closed()) return ClosedStatus(common_.type);
    std::vector<std::string> names;
    names.reserve(keys.size());
    for (const ObjectKey& k : keys) names.push_back(k.ToString());
    L2BackendResults res = Call("delete", names.size(), [&] { return backend_->Delete(names); });
    size_t n = 0;
    bool all_failed = !keys.empty();
    for (size_t i = 0; i < keys.size(); ++i) {
      const bool in_index = index_->Remove(keys[i]).has_value();
      if (!res[i].error) all_failed = false;
      if (res[i].ok || (in_index && !res[i].error)) ++n;
    }
    if (all_failed) return Status::IOError("L2 adapter '" + common_.type + "': delete failed for every key");
    Bump(counters_.deleted_objects, n);
    return n;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override { return index_->List(request); }
  L2Usage Usage() const override { return index_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s = BaseStatus();
    s.details = backend_->Details();
    s.details.emplace_back("num_workers", std::to_string(options_.num_workers));
    s.details.emplace_back("capacity_bytes", std::to_string(options_.capacity_bytes));
    s.details.emplace_back("stored_objects", std::to_string(index_->size()));
    s.details.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    s.details.emplace_back("ignored_objects", std::to_string(ignored_objects_));
    return s;
  }

  bool supports_corruption_injection() const override { return backend_->CanDamage(); }
  Status InjectCorruption(const ObjectKey& key) override {
    if (!backend_->CanDamage()) return L2Adapter::InjectCorruption(key);
    if (!index_->Contains(key)) return Status::NotFound("key is not stored in this L2 adapter");
    return backend_->Damage(key.ToString());
  }

 private:
  // The whole batch (one slice): the backend calls of its phases.
  void RunKeys(Batch& b, size_t begin, size_t end, int /*worker*/) override {
    const auto keys = std::span<const ObjectKey>(b.keys).subspan(begin, end - begin);
    L2Bitmap bits;
    if (b.kind == Kind::kStore) {
      L2StoreResult r = Store(keys, std::span<const ObjectView>(b.views).subspan(begin, end - begin));
      b.bytes.fetch_add(r.bytes_written);
      bits = std::move(r.stored);
    } else if (b.kind == Kind::kLookup) {
      bits = Lookup(keys);
    } else {
      bits = Load(keys, std::span<const ObjectView>(b.views).subspan(begin, end - begin));
    }
    for (size_t i = begin; i < end; ++i) b.ok[i] = bits[i - begin] ? 1 : 0;
  }

  // Running backend calls finish (the backend may need its lock released
  // while the workers are joined); queued tasks complete as failures.
  void StopWorkers(const std::function<void()>& stop) override { backend_->BlockingWait(stop); }
  void OnClose() override { backend_->Close(); }

  // One backend call with its failures normalized: always n results; a
  // failed call or a wrong-length answer marks every key as an error.
  template <class F>
  L2BackendResults Call(const char* /*what*/, size_t n, F&& f) {
    if (n == 0) return {};
    Result<L2BackendResults> r = f();
    if (r.ok() && r.value().size() == n) {
      L2BackendResults out = std::move(r).value();
      for (const auto& e : out) {
        if (e.error) Bump(counters_.io_errors);
      }
      return out;
    }
    Bump(counters_.io_errors, n);
    L2BackendResults out(n);
    for (auto& e : out) e.error = true;
    return out;
  }

  // The backend name of `key`, or "" when the name would not parse back to
  // the same key (it could not be listed or found again).
  static std::string NameOf(const ObjectKey& key) {
    std::string name = key.ToString();
    ObjectKey back;
    if (!ParseObjectKey(name, &back) || back != key) return "";
    return name;
  }

  void DropVictims(std::vector<Index::Victim>& victims) {
    if (victims.empty()) return;
    std::vector<std::string> names;
    for (const auto& v : victims) {
      names.push_back(v.key.ToString());
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.size);
    }
    Call("delete", names.size(), [&] { return backend_->Delete(names); });
    victims.clear();
  }

  L2StoreResult Store(std::span<const ObjectKey> keys, std::span<const ObjectView> views) {
    L2StoreResult r;
    r.stored.assign(keys.size(), false);
    std::unordered_map<ObjectKey, size_t, ObjectKeyHash> first;  // duplicates in the batch
    std::vector<size_t> dup_of(keys.size(), SIZE_MAX);
    std::vector<size_t> todo;
    std::vector<std::string> names;
    std::vector<ObjectView> objs;
    std::vector<uint64_t> sums;
    std::vector<Index::Victim> victims;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto [it, inserted] = first.emplace(keys[i], i);
      if (!inserted) {
        dup_of[i] = it->second;
        continue;
      }
      if (index_->Contains(keys[i])) {
        r.stored[i] = true;
        Bump(counters_.store_skipped);
        continue;
      }
      std::string name = NameOf(keys[i]);
      if (name.empty()) {
        Bump(counters_.rejected_keys);
        continue;
      }
      const Status room = index_->Reserve(views[i].size, &victims);
      DropVictims(victims);
      if (!room.ok()) continue;
      todo.push_back(i);
      names.push_back(std::move(name));
      objs.push_back(views[i]);
      sums.push_back(Xxh64Digest(views[i].data, views[i].size));
    }
    const L2BackendResults res = Call("put", todo.size(), [&] { return backend_->Put(names, objs, sums); });
    for (size_t j = 0; j < todo.size(); ++j) {
      const size_t i = todo[j];
      const uint64_t size = views[i].size;
      if (!res[j].ok) {
        index_->Unreserve(size);
        continue;
      }
      r.stored[i] = true;
      if (index_->Insert(keys[i], size, NoPayload{}, size, &victims)) {
        r.bytes_written += size;
        Bump(counters_.stored_objects);
        Bump(counters_.stored_bytes, size);
      } else {
        Bump(counters_.store_skipped);
      }
      DropVictims(victims);
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (dup_of[i] != SIZE_MAX) {
        r.stored[i] = r.stored[dup_of[i]];
        if (r.stored[i]) Bump(counters_.store_skipped);
      }
    }
    return r;  // store_failures and ok: counted and computed by the base
  }

  L2Bitmap Lookup(std::span<const ObjectKey> keys) {
    L2Bitmap bits(keys.size(), false);
    size_t hits = index_->LookupAndLock(keys, &bits);
    if (options_.probe_misses && hits < keys.size()) {
      std::vector<size_t> idx;
      std::vector<std::string> names;
      for (size_t i = 0; i < keys.size(); ++i) {
        if (bits[i]) continue;
        std::string name = NameOf(keys[i]);
        if (name.empty()) continue;
        idx.push_back(i);
        names.push_back(std::move(name));
      }
      const L2BackendResults res = Call("stat", names.size(), [&] { return backend_->Stat(names); });
      for (size_t j = 0; j < idx.size(); ++j) {
        if (!res[j].ok) continue;
        const ObjectKey& key = keys[idx[j]];
        index_->Insert(key, res[j].size, NoPayload{}, 0);  // stored by another writer
        if (index_->Lock(key)) {
          bits[idx[j]] = true;
          ++hits;
        }
      }
    }
    return bits;  // lookup_hits / lookup_misses: counted by the base
  }

  L2Bitmap Load(std::span<const ObjectKey> keys, std::span<const ObjectView> buffers) {
    L2Bitmap bits(keys.size(), false);
    std::vector<size_t> idx;
    std::vector<std::string> names;
    std::vector<ObjectView> bufs;
    std::vector<std::optional<uint64_t>> known;  // size in the index
    for (size_t i = 0; i < keys.size(); ++i) {
      auto cur = index_->Get(keys[i]);
      if (cur && cur->first != buffers[i].size) {
        Bump(counters_.size_mismatches);
        continue;
      }
      std::string name = NameOf(keys[i]);
      if (name.empty()) continue;
      idx.push_back(i);
      names.push_back(std::move(name));
      bufs.push_back(buffers[i]);
      known.push_back(cur ? std::optional<uint64_t>(cur->first) : std::nullopt);
    }
    const L2BackendResults res = Call("get", names.size(), [&] { return backend_->Get(names, bufs); });
    std::vector<std::string> corrupt;
    for (size_t j = 0; j < idx.size(); ++j) {
      const size_t i = idx[j];
      const ObjectKey& key = keys[i];
      const L2BackendResult& e = res[j];
      if (e.error) continue;
      if (!e.ok) {
        if (known[j]) index_->Remove(key);  // gone behind our back
        continue;
      }
      if (e.size != bufs[j].size) {
        if (known[j] && e.checksum) {  // the object we stored changed size: damaged
          Bump(counters_.corrupt_objects);
          index_->Remove(key);
          corrupt.push_back(names[j]);
        } else {
          Bump(counters_.size_mismatches);
          if (!known[j]) index_->Insert(key, e.size, NoPayload{}, 0);
        }
        continue;
      }
      if (e.checksum) {
        if (Xxh64Digest(bufs[j].data, bufs[j].size) != *e.checksum) {
          Bump(counters_.corrupt_objects);
          index_->Remove(key);
          corrupt.push_back(names[j]);
          continue;
        }
      } else {
        Bump(counters_.unverified_loads);
      }
      if (!known[j]) index_->Insert(key, e.size, NoPayload{}, 0);
      index_->Touch(key);
      bits[i] = true;  // loaded_objects / loaded_bytes: counted by the base
    }
    if (!corrupt.empty()) Call("delete", corrupt.size(), [&] { return backend_->Delete(corrupt); });
    return bits;
  }

  const L2SyncAdapterOptions options_;
  const std::unique_ptr<L2SyncBackend> backend_;
  const std::unique_ptr<Index> index_;
  uint64_t ignored_objects_ = 0;  // written by Open only
};

}  // namespace
}  // namespace lmcache::internal

namespace lmcache {

Result<std::unique_ptr<L2Adapter>> CreateL2AdapterOverBackend(const L2CommonConfig& common,
                                                              std::unique_ptr<L2SyncBackend> backend,
                                                              const L2SyncAdapterOptions& options,
                                                              const L2AdapterContext& context) {
  using internal::SyncBackendAdapter;
  const std::string what = "L2 adapter '" + common.type + "'";
  if (backend == nullptr) return Status::InvalidArgument(what + ": no backend");
  if (options.num_workers < 1 || options.num_workers > 256) {
    return Status::InvalidArgument(what + ": field 'num_workers' must be an integer in [1, 256], got " +
                                   std::to_string(options.num_workers));
  }
  // A failed Open destroys the adapter, which closes the backend.
  return internal::CreateBatchedAdapter<SyncBackendAdapter, internal::NoPayload>(
      options.capacity_bytes, common, context, common, std::move(backend), options);
}

}  // namespace lmcache
