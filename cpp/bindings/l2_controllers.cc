// Bindings of L2Tier (lmcache._native.l2ctl): the L2 adapters of a server,
// created from their JSON specs, and the store / prefetch controllers over
// one L1Store. Python passes keys and policies; L2 bytes never reach it.
#include <optional>
#include <string>

#include "common.h"
#include "lmcache/l1_store.h"
#include "lmcache/l2_controllers.h"
#include "lmcache/notifier.h"

namespace lmcache::bindings {
namespace {

// Keeps the L1 store (and the notifier, if any) alive as long as the tier.
struct TierHolder {
  std::shared_ptr<L1Store> store;
  py::object notifier;  // PeriodicNotifier or None
  std::shared_ptr<L2Tier> tier;  // shared: a call in flight keeps it alive across close()

  std::shared_ptr<L2Tier> get() const {
    if (!tier) throw StatusError(Status::Unavailable("the L2 tier is closed"));
    return tier;
  }
  void Close() {
    std::shared_ptr<L2Tier> t = std::move(tier);
    if (!t) return;
    py::gil_scoped_release nogil;
    t->Close();
  }
};

int64_t SecondsToNsChecked(double seconds, const char* what) {
  if (!(seconds >= 0) || seconds > 1e9) ThrowInvalid(std::string(what) + " must be a non-negative number of seconds");
  return static_cast<int64_t>(seconds * 1e9);
}

py::object ResultDict(const std::optional<PrefetchResult>& r) {
  if (!r.has_value()) return py::none();
  py::dict d;
  d["prefix_chunks"] = r->prefix_chunks;
  d["l1_hit_chunks"] = r->l1_hit_chunks;
  d["l2_hit_chunks"] = r->l2_hit_chunks;
  d["loaded_bytes"] = r->loaded_bytes;
  d["degraded"] = r->degraded;
  return d;
}

py::dict StoreStatsDict(const StoreControllerStats& s, const StoreControllerOptions& o) {
  py::dict d;
  d["policy"] = L2StorePolicyName(o.policy);
  d["queued_keys"] = s.queued_keys;
  d["dropped_keys"] = s.dropped_keys;
  d["skipped_keys"] = s.skipped_keys;
  d["submitted_keys"] = s.submitted_keys;
  d["stored_keys"] = s.stored_keys;
  d["failed_keys"] = s.failed_keys;
  d["stored_bytes"] = s.stored_bytes;
  d["batches"] = s.batches;
  d["submit_errors"] = s.submit_errors;
  d["l1_deleted_keys"] = s.l1_deleted_keys;
  d["l1_delete_skipped"] = s.l1_delete_skipped;
  d["queue_depth"] = s.queue_depth;
  d["max_queued_keys"] = o.max_queued_keys;
  d["in_flight_batches"] = s.in_flight_batches;
  d["running"] = s.running;
  return d;
}

py::dict PrefetchStatsDict(const PrefetchControllerStats& s, const PrefetchControllerOptions& o) {
  py::dict d;
  d["policy"] = L2PrefetchPolicyName(o.policy);
  d["max_in_flight"] = o.max_in_flight;
  d["task_timeout_seconds"] = static_cast<double>(o.task_timeout_ns) / 1e9;
  d["submitted"] = s.submitted;
  d["completed"] = s.completed;
  d["cancelled"] = s.cancelled;
  d["prefix_chunks"] = s.prefix_chunks;
  d["l1_hit_chunks"] = s.l1_hit_chunks;
  d["l2_hit_chunks"] = s.l2_hit_chunks;
  d["l2_lookup_keys"] = s.l2_lookup_keys;
  d["l2_hit_keys"] = s.l2_hit_keys;
  d["loaded_keys"] = s.loaded_keys;
  d["loaded_bytes"] = s.loaded_bytes;
  d["lookup_failures"] = s.lookup_failures;
  d["load_failures"] = s.load_failures;
  d["timeouts"] = s.timeouts;
  d["no_space"] = s.no_space;
  d["queued"] = s.queued;
  d["in_flight"] = s.in_flight;
  d["max_in_flight_seen"] = s.max_in_flight_seen;
  d["results_pending"] = s.results_pending;
  d["orphaned_tasks"] = s.orphaned_tasks;
  d["running"] = s.running;
  return d;
}

py::dict AdapterDict(const L2Status& st, const L2Usage& u) {
  py::dict d;
  d["type"] = st.type;
  d["healthy"] = st.healthy;
  d["message"] = st.message;
  d["pending_tasks"] = st.pending_tasks;
  const L2Counters& c = st.counters;
  py::dict counters;
  counters["store_tasks"] = c.store_tasks;
  counters["stored_objects"] = c.stored_objects;
  counters["stored_bytes"] = c.stored_bytes;
  counters["store_skipped"] = c.store_skipped;
  counters["store_failures"] = c.store_failures;
  counters["lookup_tasks"] = c.lookup_tasks;
  counters["lookup_hits"] = c.lookup_hits;
  counters["lookup_misses"] = c.lookup_misses;
  counters["load_tasks"] = c.load_tasks;
  counters["loaded_objects"] = c.loaded_objects;
  counters["loaded_bytes"] = c.loaded_bytes;
  counters["load_misses"] = c.load_misses;
  counters["corrupt_objects"] = c.corrupt_objects;
  counters["size_mismatches"] = c.size_mismatches;
  counters["unverified_loads"] = c.unverified_loads;
  counters["io_errors"] = c.io_errors;
  counters["rejected_keys"] = c.rejected_keys;
  counters["evicted_objects"] = c.evicted_objects;
  counters["evicted_bytes"] = c.evicted_bytes;
  counters["deleted_objects"] = c.deleted_objects;
  d["counters"] = counters;
  py::dict details;
  for (const auto& [k, v] : st.details) details[py::str(k)] = v;
  d["details"] = details;
  py::dict usage;
  usage["total_bytes"] = u.total_bytes;
  usage["capacity_bytes"] = u.capacity_bytes;
  usage["objects"] = u.objects;
  usage["usage_fraction"] = u.usage_fraction();
  py::dict salts;
  for (const auto& [salt, bytes] : u.bytes_by_salt) salts[py::str(salt)] = bytes;
  usage["bytes_by_salt"] = salts;
  d["usage"] = usage;
  return d;
}

}  // namespace

void BindL2Controllers(py::module_& m) {
  m.attr("STORE_POLICIES") = py::make_tuple("default", "skip_l1");
  m.attr("PREFETCH_POLICIES") = py::make_tuple("default", "retain");
  m.attr("PREFETCH_TAG_BIT") = py::int_(kL2PrefetchTagBit);

  py::class_<TierHolder>(m, "L2Tier", R"doc(
The L2 adapters of one server (created from --l2-adapter JSON specs, in
cascade order) and the store / prefetch controllers over an L1Store (see
cpp/include/lmcache/l2_controllers.h). Blocking calls release the GIL.
Call close() before the L1 store goes away (or use it as a context manager).)doc")
      .def(py::init([](std::shared_ptr<L1Store> store, const std::vector<std::string>& specs,
                       const std::string& store_policy, const std::string& prefetch_policy, size_t max_in_flight,
                       double task_timeout_seconds, size_t max_queued_keys, size_t max_batch_keys,
                       py::object notifier) {
             if (!store) ThrowInvalid("store must not be None");
             L2TierOptions o;
             Result<L2StorePolicy> sp = ParseL2StorePolicy(store_policy);
             ThrowIfError(sp.status());
             Result<L2PrefetchPolicy> pp = ParseL2PrefetchPolicy(prefetch_policy);
             ThrowIfError(pp.status());
             o.store.policy = sp.value();
             o.store.max_queued_keys = max_queued_keys;
             o.store.max_batch_keys = max_batch_keys;
             o.prefetch.policy = pp.value();
             o.prefetch.max_in_flight = max_in_flight;
             o.prefetch.task_timeout_ns = SecondsToNsChecked(task_timeout_seconds, "task_timeout_seconds");
             if (!notifier.is_none()) {
               auto* n = notifier.cast<PeriodicNotifier*>();
               o.store.notifier = n;
               o.prefetch.notifier = n;
             }
             Result<std::unique_ptr<L2Tier>> r = [&] {
               py::gil_scoped_release nogil;
               return L2Tier::Create(store.get(), specs, o);
             }();
             ThrowIfError(r.status());
             return std::make_unique<TierHolder>(
                 TierHolder{std::move(store), std::move(notifier), std::shared_ptr<L2Tier>(std::move(r).value())});
           }),
           py::arg("store"), py::arg("specs"), py::arg("store_policy") = "default",
           py::arg("prefetch_policy") = "default", py::arg("max_in_flight") = 8,
           py::arg("task_timeout_seconds") = 10.0, py::arg("max_queued_keys") = 1 << 16,
           py::arg("max_batch_keys") = 256, py::arg("notifier") = py::none())
      .def_property_readonly("num_adapters", [](TierHolder& h) { return h.get()->num_adapters(); })
      .def_property_readonly("closed", [](const TierHolder& h) { return !h.tier; })
      .def(
          "prefetch",
          [](TierHolder& h, const std::vector<std::pair<const KeyList*, uint64_t>>& rows, uint32_t readers,
             bool retain) {
            PrefetchRequest req;
            req.readers = readers;
            req.retain = retain;
            for (const auto& [keys, size] : rows) {
              if (keys == nullptr) ThrowInvalid("a prefetch row needs a KeyList");
              req.rows.push_back(PrefetchRow{keys->keys, size});
            }
            std::shared_ptr<L2Tier> t = h.get();
            Result<PrefetchId> id = [&] {
              py::gil_scoped_release nogil;
              return t->prefetch().Submit(std::move(req));
            }();
            ThrowIfError(id.status());
            return id.value();
          },
          py::arg("rows"), py::arg("readers") = 1, py::arg("retain") = false,
          "Submit a prefetch: rows of (KeyList, object_bytes), one per (rank, object group). Returns its id. "
          "retain: loaded objects stay resident (warming) whatever the prefetch policy.")
      .def(
          "query",
          [](TierHolder& h, PrefetchId id) {
            std::shared_ptr<L2Tier> t = h.get();
            Result<std::optional<PrefetchResult>> r = [&] {
              py::gil_scoped_release nogil;
              return t->prefetch().Query(id);
            }();
            ThrowIfError(r.status());
            return ResultDict(r.value());
          },
          py::arg("id"), "The result dict once finished (handed out once), None while running; NotFoundError after.")
      .def(
          "wait",
          [](TierHolder& h, PrefetchId id, double timeout_seconds) {
            const int64_t ns = SecondsToNsChecked(timeout_seconds, "timeout_seconds");
            std::shared_ptr<L2Tier> t = h.get();
            Result<std::optional<PrefetchResult>> r = [&] {
              py::gil_scoped_release nogil;
              return t->prefetch().Wait(id, ns);
            }();
            ThrowIfError(r.status());
            return ResultDict(r.value());
          },
          py::arg("id"), py::arg("timeout_seconds"), "As query, blocking up to timeout_seconds (GIL released).")
      .def(
          "cancel",
          [](TierHolder& h, PrefetchId id) {
            std::shared_ptr<L2Tier> t = h.get();
            Status s = [&] {
              py::gil_scoped_release nogil;
              return t->prefetch().Cancel(id);
            }();
            ThrowIfError(s);
          },
          py::arg("id"), "Drop a prefetch and release every lock it holds (NotFoundError if unknown or collected).")
      .def(
          "flush",
          [](TierHolder& h, double timeout_seconds) {
            const int64_t ns = SecondsToNsChecked(timeout_seconds, "timeout_seconds");
            std::shared_ptr<L2Tier> t = h.get();
            py::gil_scoped_release nogil;
            return t->store().Flush(ns);
          },
          py::arg("timeout_seconds"), "Wait until the write-behind queue is empty and nothing is in flight.")
      .def("store_stats",
           [](TierHolder& h) {
             std::shared_ptr<L2Tier> t = h.get();
             return StoreStatsDict(t->store().Stats(), t->store().options());
           })
      .def("prefetch_stats",
           [](TierHolder& h) {
             std::shared_ptr<L2Tier> t = h.get();
             return PrefetchStatsDict(t->prefetch().Stats(), t->prefetch().options());
           })
      .def("adapters_status",
           [](TierHolder& h) {
             std::shared_ptr<L2Tier> t = h.get();
             std::vector<std::pair<L2Status, L2Usage>> out;
             std::vector<bool> shared;
             {
               py::gil_scoped_release nogil;
               for (size_t i = 0; i < t->num_adapters(); ++i) {
                 out.emplace_back(t->adapter(i).ReportStatus(), t->adapter(i).Usage());
                 shared.push_back(t->adapter(i).common_config().shared);
               }
             }
             py::list l;
             for (size_t i = 0; i < out.size(); ++i) {
               py::dict d = AdapterDict(out[i].first, out[i].second);
               d["shared"] = static_cast<bool>(shared[i]);
               l.append(std::move(d));
             }
             return l;
           },
           "Per adapter, in cascade order: type, health, counters, details and usage.")
      .def("clear_adapters",
           [](TierHolder& h) {
             std::shared_ptr<L2Tier> t = h.get();
             Result<uint64_t> r = [&] {
               py::gil_scoped_release nogil;
               return t->ClearAdapters();
             }();
             ThrowIfError(r.status());
             return r.value();
           },
           "Delete every object of every adapter; returns how many.")
      .def(
          "list_objects",
          [](TierHolder& h, size_t adapter, std::optional<std::string> model_name, size_t page_size,
             const std::string& cursor) {
            std::shared_ptr<L2Tier> t = h.get();
            if (adapter >= t->num_adapters()) {
              ThrowInvalid("adapter " + std::to_string(adapter) + " does not exist (" +
                           std::to_string(t->num_adapters()) + " adapters)");
            }
            if (page_size == 0) ThrowInvalid("page_size must be positive");
            L2ListRequest req;
            req.model_name = std::move(model_name);
            req.page_size = page_size;
            req.cursor = cursor;
            Result<L2KeyPage> page = [&] {
              py::gil_scoped_release nogil;
              return t->adapter(adapter).List(req);
            }();
            ThrowIfError(page.status());
            py::list entries;
            for (const L2KeyInfo& k : page.value().keys) {
              py::dict e;
              const std::string_view hash = k.key.chunk_hash_bytes();
              e["chunk_hash_hex"] = py::bytes(hash.data(), hash.size()).attr("hex")();
              e["model_name"] = k.key.model_name.str();
              e["kv_rank"] = k.key.kv_rank;
              e["object_group_id"] = k.key.object_group_id;
              e["cache_salt"] = k.key.cache_salt.str();
              e["size"] = k.size;
              entries.append(std::move(e));
            }
            return py::make_tuple(std::move(entries), page.value().next_cursor);
          },
          py::arg("adapter"), py::arg("model_name") = py::none(), py::arg("page_size") = 500,
          py::arg("cursor") = "",
          "One page of one adapter's objects: ([{chunk_hash_hex, model_name, kv_rank, object_group_id, "
          "cache_salt, size}], next_cursor); next_cursor is '' on the last page.")
      .def(
          "delete_objects",
          [](TierHolder& h, const KeyList& keys, std::optional<size_t> adapter) {
            std::shared_ptr<L2Tier> t = h.get();
            if (adapter.has_value() && *adapter >= t->num_adapters()) {
              ThrowInvalid("adapter " + std::to_string(*adapter) + " does not exist (" +
                           std::to_string(t->num_adapters()) + " adapters)");
            }
            uint64_t deleted = 0;
            Status first_error;
            {
              py::gil_scoped_release nogil;
              for (size_t i = 0; i < t->num_adapters(); ++i) {
                if (adapter.has_value() && i != *adapter) continue;
                Result<size_t> r = t->adapter(i).Delete(keys.keys);
                if (r.ok()) {
                  deleted += r.value();
                } else if (first_error.ok()) {
                  first_error = r.status();
                }
              }
            }
            if (deleted == 0) ThrowIfError(first_error);
            return deleted;
          },
          py::arg("keys"), py::arg("adapter") = py::none(),
          "Delete keys from one adapter (or every adapter): the number of objects removed.")
      .def("close", &TierHolder::Close,
           "Stop both controllers and close the adapters (idempotent).")
      .def("__enter__", [](TierHolder& h) -> TierHolder& { return h; }, py::return_value_policy::reference)
      .def("__exit__", [](TierHolder& h, py::args) { h.Close(); });
}

}  // namespace lmcache::bindings
