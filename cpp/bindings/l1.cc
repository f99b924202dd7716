// Bindings of L1Store. Every call converts its arguments with the GIL held,
// releases the GIL for the native work (including all byte copies), and
// builds Python results afterwards.
#include <cstring>
#include <optional>
#include <string>

#include "common.h"
#include "lmcache/l1_store.h"

namespace lmcache::bindings {
namespace {

using StorePtr = std::shared_ptr<L1Store>;

// A view of one L1 object that keeps the store alive; exposes the buffer
// protocol, so memoryview(buf) / numpy.frombuffer(buf) work without a copy.
struct ObjectBuffer {
  StorePtr store;
  uint8_t* data;
  uint64_t size;
  bool readonly;
};

py::object ToBuffer(const StorePtr& store, const ObjectView& v, bool readonly) {
  if (v.data == nullptr) return py::none();
  return py::memoryview(py::cast(ObjectBuffer{store, v.data, v.size, readonly}));
}

py::list ToBuffers(const StorePtr& store, const std::vector<ObjectView>& views, bool readonly) {
  py::list out;
  for (const ObjectView& v : views) out.append(ToBuffer(store, v, readonly));
  return out;
}

std::vector<uint64_t> SizesFor(const KeyList& keys, py::object sizes) {
  std::vector<uint64_t> out;
  if (py::isinstance<py::int_>(sizes)) {
    int64_t s = sizes.cast<int64_t>();
    if (s <= 0) ThrowInvalid("object size must be positive");
    out.assign(keys.keys.size(), static_cast<uint64_t>(s));
  } else {
    for (py::handle h : sizes) {
      int64_t s = h.cast<int64_t>();
      if (s <= 0) ThrowInvalid("object size must be positive");
      out.push_back(static_cast<uint64_t>(s));
    }
    if (out.size() != keys.keys.size()) ThrowInvalid("sizes and keys differ in length");
  }
  return out;
}

void CheckReaders(int readers) {
  if (readers < 1 || readers > 128) ThrowInvalid("readers must be in 1..128");
}

py::dict StatsDict(const L1Stats& s) {
  py::dict d;
  d["capacity_bytes"] = s.capacity_bytes;
  d["usable_bytes"] = s.usable_bytes;
  d["prefaulted_bytes"] = s.prefaulted_bytes;
  d["used_bytes"] = s.used_bytes;
  d["resident_objects"] = s.resident_objects;
  d["temporary_objects"] = s.temporary_objects;
  d["staging_objects"] = s.staging_objects;
  d["staging_bytes"] = s.staging_bytes;
  d["doomed_objects"] = s.doomed_objects;
  d["read_locked_objects"] = s.read_locked_objects;
  d["write_locked_objects"] = s.write_locked_objects;
  d["evicted_objects"] = s.evicted_objects;
  d["evicted_bytes"] = s.evicted_bytes;
  d["allocation_failures"] = s.allocation_failures;
  d["largest_free_block"] = s.largest_free_block;
  d["high_water_mark"] = s.high_water_mark;
  d["write_ttl_seconds"] = s.write_ttl_seconds;
  d["read_ttl_seconds"] = s.read_ttl_seconds;
  return d;
}

}  // namespace

void BindL1(py::module_& m) {
  py::class_<ObjectBuffer>(m, "ObjectBuffer", py::buffer_protocol(),
                           "Zero-copy view of one L1 object (keeps the store alive).")
      .def_buffer([](ObjectBuffer& b) {
        return py::buffer_info(b.data, 1, py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.size)}, {1}, b.readonly);
      });

  py::class_<L1Store, StorePtr>(m, "L1Store", R"doc(
The L1 host-memory tier (see cpp/include/lmcache/l1_store.h for the contract).

Keys are KeyList batches from lmcache._native.keys.make_keys. Thread-safe;
every method releases the GIL while it works.)doc")
      .def(py::init([](uint64_t capacity_bytes, uint64_t align_bytes, bool lazy, uint64_t initial_bytes,
                       const std::string& devdax_path, bool huge_pages, double write_ttl_seconds,
                       double read_ttl_seconds, const std::string& eviction_policy, uint32_t num_shards,
                       uint64_t prefault_window_bytes, const std::string& shm_name) {
             L1Options o;
             o.arena.capacity_bytes = capacity_bytes;
             o.arena.align_bytes = align_bytes;
             o.arena.lazy = lazy;
             o.arena.initial_bytes = initial_bytes;
             o.arena.devdax_path = devdax_path;
             o.arena.huge_pages = huge_pages;
             o.write_ttl_seconds = write_ttl_seconds;
             o.read_ttl_seconds = read_ttl_seconds;
             o.eviction_policy = eviction_policy;
             o.num_shards = num_shards;
             o.prefault_window_bytes = prefault_window_bytes;
             o.arena.shm_name = shm_name;
             Result<std::unique_ptr<L1Store>> r = [&] {
               py::gil_scoped_release nogil;
               return L1Store::Create(o);
             }();
             ThrowIfError(r.status());
             return StorePtr(std::move(r).value());
           }),
           py::arg("capacity_bytes"), py::arg("align_bytes") = 4096, py::arg("lazy") = true,
           py::arg("initial_bytes") = 0, py::arg("devdax_path") = "", py::arg("huge_pages") = true,
           py::arg("write_ttl_seconds") = 600.0, py::arg("read_ttl_seconds") = 300.0,
           py::arg("eviction_policy") = "LRU", py::arg("num_shards") = 64,
           py::arg("prefault_window_bytes") = uint64_t{64} << 20, py::arg("shm_name") = "")
      .def(
          "reserve_write",
          [](const StorePtr& s, const KeyList& keys, py::object sizes, uint64_t tag) {
            std::vector<uint64_t> sz = SizesFor(keys, sizes);
            std::vector<ReserveOutcome> outcomes;
            std::vector<ObjectView> views;
            Status st;
            {
              py::gil_scoped_release nogil;
              st = s->ReserveWrite(keys.keys, sz, tag, &outcomes, &views);
            }
            ThrowIfError(st);
            return ToBuffers(s, views, /*readonly=*/false);
          },
          py::arg("keys"), py::arg("sizes"), py::arg("tag"),
          "Reserve staging objects; returns one writable buffer per key (None: already resident). "
          "Raises NoSpaceError when they cannot fit even after eviction.")
      .def(
          "finish_write",
          [](const StorePtr& s, const KeyList& keys, uint64_t tag) {
            Status st;
            {
              py::gil_scoped_release nogil;
              st = s->FinishWrite(keys.keys, tag);
            }
            ThrowIfError(st);
          },
          py::arg("keys"), py::arg("tag"))
      .def(
          "finish_write_and_reserve_read",
          [](const StorePtr& s, const KeyList& keys, uint64_t tag, int readers, bool temporary) {
            CheckReaders(readers);
            std::vector<ObjectView> views;
            Status st;
            {
              py::gil_scoped_release nogil;
              st = s->FinishWriteAndReserveRead(keys.keys, tag, static_cast<uint32_t>(readers), temporary, &views);
            }
            ThrowIfError(st);
            return ToBuffers(s, views, /*readonly=*/true);
          },
          py::arg("keys"), py::arg("tag"), py::arg("readers") = 1, py::arg("temporary") = false)
      .def(
          "abort_write",
          [](const StorePtr& s, const KeyList& keys, uint64_t tag) {
            py::gil_scoped_release nogil;
            s->AbortWrite(keys.keys, tag);
          },
          py::arg("keys"), py::arg("tag"))
      .def(
          "reserve_read_prefix",
          [](const StorePtr& s, const KeyList& keys, int readers) {
            CheckReaders(readers);
            std::vector<ObjectView> views;
            {
              py::gil_scoped_release nogil;
              s->ReserveReadPrefix(keys.keys, static_cast<uint32_t>(readers), &views);
            }
            return ToBuffers(s, views, /*readonly=*/true);
          },
          py::arg("keys"), py::arg("readers") = 1,
          "Read-lock the longest visible prefix; returns one read-only buffer per locked key.")
      .def(
          "reserve_read",
          [](const StorePtr& s, const KeyList& keys, int readers) {
            CheckReaders(readers);
            std::vector<bool> hits;
            std::vector<ObjectView> views;
            {
              py::gil_scoped_release nogil;
              s->ReserveRead(keys.keys, static_cast<uint32_t>(readers), &hits, &views);
            }
            return ToBuffers(s, views, /*readonly=*/true);
          },
          py::arg("keys"), py::arg("readers") = 1)
      .def(
          "finish_read",
          [](const StorePtr& s, const KeyList& keys) {
            py::gil_scoped_release nogil;
            return s->FinishRead(keys.keys);
          },
          py::arg("keys"))
      .def(
          "put",
          [](const StorePtr& s, const KeyList& keys, py::buffer data, uint64_t tag) {
            py::buffer_info info = data.request();
            const size_t n = keys.keys.size();
            const uint64_t total = static_cast<uint64_t>(info.size * info.itemsize);
            if (n == 0) return 0;
            if (total == 0 || total % n != 0) ThrowInvalid("data length must be a positive multiple of len(keys)");
            const uint64_t each = total / n;
            const auto* src = static_cast<const uint8_t*>(info.ptr);
            std::vector<ReserveOutcome> outcomes;
            std::vector<ObjectView> views;
            Status st;
            size_t written = 0;
            {
              py::gil_scoped_release nogil;
              std::vector<uint64_t> sizes(n, each);
              st = s->ReserveWrite(keys.keys, sizes, tag, &outcomes, &views);
              if (st.ok()) {
                std::vector<ObjectKey> reserved;
                for (size_t i = 0; i < n; ++i) {
                  if (outcomes[i] != ReserveOutcome::kReserved) continue;
                  std::memcpy(views[i].data, src + i * each, each);
                  reserved.push_back(keys.keys[i]);
                }
                written = reserved.size();
                if (!reserved.empty()) st = s->FinishWrite(reserved, tag);
              }
            }
            ThrowIfError(st);
            return static_cast<int>(written);
          },
          py::arg("keys"), py::arg("data"), py::arg("tag") = 0,
          "Store len(keys) equal-size objects cut from one contiguous buffer (copy in C++, GIL released). "
          "Returns how many were written (the rest were already resident).")
      .def(
          "get_prefix",
          [](const StorePtr& s, const KeyList& keys, py::buffer out) {
            py::buffer_info info = out.request(/*writable=*/true);
            const uint64_t cap = static_cast<uint64_t>(info.size * info.itemsize);
            auto* dst = static_cast<uint8_t*>(info.ptr);
            size_t hits = 0;
            bool overflow = false;
            {
              py::gil_scoped_release nogil;
              std::vector<ObjectView> views;
              hits = s->ReserveReadPrefix(keys.keys, 1, &views);
              uint64_t off = 0;
              for (size_t i = 0; i < hits; ++i) {
                if (off + views[i].size > cap) {
                  overflow = true;
                  break;
                }
                std::memcpy(dst + off, views[i].data, views[i].size);
                off += views[i].size;
              }
              s->FinishRead(std::span<const ObjectKey>(keys.keys.data(), hits));
            }
            if (overflow) ThrowInvalid("output buffer too small for the stored prefix");
            return hits;
          },
          py::arg("keys"), py::arg("out"),
          "Copy the longest stored prefix, object after object, into `out`; returns the number of objects.")
      .def(
          "contains",
          [](const StorePtr& s, const KeyList& keys, size_t i) {
            if (i >= keys.keys.size()) throw py::index_error("key index out of range");
            return s->Contains(keys.keys[i]);
          },
          py::arg("keys"), py::arg("index") = 0)
      .def(
          "prefix_hits",
          [](const StorePtr& s, const KeyList& keys) {
            py::gil_scoped_release nogil;
            return s->PrefixHits(keys.keys);
          },
          py::arg("keys"))
      .def(
          "touch",
          [](const StorePtr& s, const KeyList& keys) {
            py::gil_scoped_release nogil;
            s->Touch(keys.keys);
          },
          py::arg("keys"))
      .def(
          "delete",
          [](const StorePtr& s, const KeyList& keys, bool force) {
            py::gil_scoped_release nogil;
            return s->Delete(keys.keys, force);
          },
          py::arg("keys"), py::arg("force") = false)
      .def(
          "clear",
          [](const StorePtr& s, bool force) {
            py::gil_scoped_release nogil;
            return s->Clear(force);
          },
          py::arg("force") = false)
      .def(
          "evict_bytes",
          [](const StorePtr& s, uint64_t n) {
            py::gil_scoped_release nogil;
            return s->EvictBytes(n);
          },
          py::arg("target_bytes"))
      .def("sweep_expired",
           [](const StorePtr& s) {
             py::gil_scoped_release nogil;
             return s->SweepExpired();
           })
      .def_property_readonly(
          "shm_name", [](const StorePtr& s) { return s->arena().shm_name(); },
          "Name of the POSIX SHM segment holding L1 (no leading '/'); '' when L1 is not in SHM.")
      .def(
          "unlink_shm", [](const StorePtr& s) { return s->UnlinkShm(); },
          "Remove the SHM segment's name now (mappings stay valid); True when this call removed it.")
      .def(
          "offsets",
          [](const StorePtr& s, const py::sequence& buffers) {
            std::vector<std::pair<const void*, uint64_t>> ranges;
            std::vector<bool> present;
            for (py::handle h : buffers) {
              if (h.is_none()) {
                present.push_back(false);
                ranges.emplace_back(nullptr, 0);
                continue;
              }
              py::buffer_info info = py::reinterpret_borrow<py::buffer>(h).request();
              present.push_back(true);
              ranges.emplace_back(info.ptr, static_cast<uint64_t>(info.size * info.itemsize));
            }
            py::list out;
            for (size_t i = 0; i < ranges.size(); ++i) {
              if (!present[i]) {
                out.append(py::none());
                continue;
              }
              Result<uint64_t> off = s->arena().OffsetOf(ranges[i].first, ranges[i].second);
              if (!off.ok()) ThrowInvalid("buffer " + std::to_string(i) + " is not an object of this L1 store");
              out.append(off.value());
            }
            return out;
          },
          py::arg("buffers"),
          "Byte offset from the arena base (the SHM segment for engine_driven) of each object buffer "
          "returned by reserve_write / reserve_read*; None stays None.")
      .def(
          "list_objects",
          [](const StorePtr& s, std::optional<std::string> model_name, int64_t page_size, const std::string& cursor) {
            if (page_size <= 0) ThrowInvalid("page_size must be positive");
            L1ListRequest req;
            req.model_name = std::move(model_name);
            req.page_size = static_cast<size_t>(page_size);
            req.cursor = cursor;
            Result<L1ObjectPage> page = [&] {
              py::gil_scoped_release nogil;
              return s->ListObjects(req);
            }();
            ThrowIfError(page.status());
            py::list entries;
            for (const L1ObjectInfo& o : page.value().objects) {
              py::dict e;
              const std::string_view hash = o.key.chunk_hash_bytes();
              e["chunk_hash_hex"] = py::bytes(hash.data(), hash.size()).attr("hex")();
              e["model_name"] = o.key.model_name.str();
              e["kv_rank"] = o.key.kv_rank;
              e["object_group_id"] = o.key.object_group_id;
              e["cache_salt"] = o.key.cache_salt.str();
              e["size"] = o.size;
              e["allocated_bytes"] = o.allocated_bytes;
              e["state"] = o.temporary ? "temporary" : "resident";
              e["read_locks"] = o.read_locks;
              entries.append(std::move(e));
            }
            return py::make_tuple(std::move(entries), page.value().next_cursor);
          },
          py::arg("model_name") = py::none(), py::arg("page_size") = 500, py::arg("cursor") = "",
          "One page of a listing pass over the visible objects: ([{chunk_hash_hex, model_name, kv_rank, "
          "object_group_id, cache_salt, size, allocated_bytes, state, read_locks}], next_cursor); "
          "next_cursor is '' when the pass is complete (a page may be short before that).")
      .def("stats", [](const StorePtr& s) { return StatsDict(s->Stats()); })
      .def("usage_by_salt",
           [](const StorePtr& s) {
             SaltUsage u;
             {
               py::gil_scoped_release nogil;
               u = s->UsageBySalt();
             }
             py::dict d;
             for (const auto& [salt, bytes] : u) d[py::str(salt.str())] = bytes;
             return d;
           })
      .def_property_readonly("eviction_policy",
                             [](const StorePtr& s) { return std::string(s->policy()->name()); })
      .def_property_readonly("supports_quotas", [](const StorePtr& s) { return s->policy()->supports_quotas(); })
      .def(
          "set_quota",
          [](const StorePtr& s, const std::string& salt, uint64_t limit_bytes) {
            ThrowIfError(s->policy()->SetQuota(Symbol::Intern(salt), limit_bytes));
          },
          py::arg("cache_salt"), py::arg("limit_bytes"))
      .def(
          "remove_quota",
          [](const StorePtr& s, const std::string& salt) {
            ThrowIfError(s->policy()->RemoveQuota(Symbol::Intern(salt)));
          },
          py::arg("cache_salt"))
      .def("quotas", [](const StorePtr& s) { return s->policy()->Quotas(); });
}

}  // namespace lmcache::bindings
