// Bindings of the transfer module (cpp/include/lmcache/transfer.h): KV cache
// registrations over a worker's SHM segments, gather/scatter, the
// /cache/checksums digests, and STORE/RETRIEVE against an L1Store. Arguments
// are converted with the GIL held; every mapping, copy and hash runs with
// the GIL released.
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "lmcache/l1_store.h"
#include "lmcache/transfer.h"

namespace lmcache::bindings {
namespace {

using RegPtr = std::shared_ptr<KvCacheRegistration>;
using StorePtr = std::shared_ptr<L1Store>;
using GroupLists = std::optional<std::vector<std::vector<uint32_t>>>;

template <typename T>
T Get(const py::handle& obj, const char* key, bool is_dict, size_t pos, std::optional<T> fallback = std::nullopt) {
  py::object v;
  if (is_dict) {
    py::dict d = py::reinterpret_borrow<py::dict>(obj);
    if (!d.contains(key)) {
      if (fallback) return *fallback;
      ThrowInvalid(std::string("KV tensor descriptor lacks '") + key + "'");
    }
    v = d[key];
  } else {
    py::sequence s = py::reinterpret_borrow<py::sequence>(obj);
    if (pos >= s.size()) {
      if (fallback) return *fallback;
      ThrowInvalid(std::string("KV tensor descriptor tuple lacks '") + key + "'");
    }
    v = s[pos];
  }
  try {
    return v.cast<T>();
  } catch (const py::cast_error&) {
    ThrowInvalid(std::string("KV tensor descriptor field '") + key + "' has the wrong type");
  }
}

// A descriptor is a dict {shm_name, nbytes, dtype, shape, stride,
// storage_offset=0} or a tuple in that order.
KvTensorHandle ToHandle(const py::handle& obj) {
  const bool is_dict = py::isinstance<py::dict>(obj);
  if (!is_dict && (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))) {
    ThrowInvalid("a KV tensor descriptor must be a dict or a tuple");
  }
  KvTensorHandle h;
  h.shm_name = Get<std::string>(obj, "shm_name", is_dict, 0);
  const int64_t nbytes = Get<int64_t>(obj, "nbytes", is_dict, 1);
  if (nbytes <= 0) ThrowInvalid("KV tensor descriptor nbytes must be positive");
  h.nbytes = static_cast<uint64_t>(nbytes);
  const Result<KvDtype> dt = ParseKvDtype(Get<std::string>(obj, "dtype", is_dict, 2));
  ThrowIfError(dt.status());
  h.meta.dtype = dt.value();
  h.meta.shape = Get<std::vector<int64_t>>(obj, "shape", is_dict, 3);
  h.meta.stride = Get<std::vector<int64_t>>(obj, "stride", is_dict, 4);
  h.meta.storage_offset = Get<int64_t>(obj, "storage_offset", is_dict, 5, int64_t{0});
  return h;
}

// One list per kernel group; a flat list of ints is accepted for a
// registration with a single kernel group.
std::vector<std::vector<int64_t>> ToBlockLists(const py::handle& obj) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj)) {
    ThrowInvalid("block_ids must be a sequence of per-kernel-group sequences of ints");
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  std::vector<std::vector<int64_t>> out;
  try {
    if (seq.size() > 0 && py::isinstance<py::int_>(seq[0])) {
      out.push_back(seq.cast<std::vector<int64_t>>());
    } else {
      for (py::handle h : seq) out.push_back(h.cast<std::vector<int64_t>>());
    }
  } catch (const py::cast_error&) {
    ThrowInvalid("block_ids must hold ints");
  }
  return out;
}

std::vector<std::span<const int64_t>> Spans(const std::vector<std::vector<int64_t>>& lists) {
  return std::vector<std::span<const int64_t>>(lists.begin(), lists.end());
}

// Buffers of the objects (kept in `infos` until the GIL is held again).
std::vector<ObjectView> ToViews(const py::sequence& bufs, bool writable, std::vector<py::buffer_info>* infos) {
  std::vector<ObjectView> views;
  for (py::handle h : bufs) {
    if (h.is_none()) {
      views.push_back({});
      continue;
    }
    infos->push_back(py::reinterpret_borrow<py::buffer>(h).request(writable));
    const py::buffer_info& i = infos->back();
    py::ssize_t expect = i.itemsize;
    for (py::ssize_t d = i.ndim - 1; d >= 0; --d) {
      if (i.shape[d] > 1 && i.strides[d] != expect) ThrowInvalid("object buffers must be C-contiguous");
      expect *= i.shape[d];
    }
    views.push_back({static_cast<uint8_t*>(i.ptr), static_cast<uint64_t>(i.size * i.itemsize)});
  }
  return views;
}

py::dict Describe(const KvCacheRegistration& r) {
  py::dict d;
  d["chunk_tokens"] = r.chunk_tokens();
  py::list layers;
  for (size_t i = 0; i < r.num_layers(); ++i) {
    const PagedKvLayout& l = r.layer(i);
    py::dict ld;
    ld["format"] = std::string(KvFormatName(l.format));
    ld["dtype"] = std::string(KvDtypeName(l.dtype));
    ld["kv_size"] = l.kv_size;
    ld["num_blocks"] = l.num_blocks;
    ld["block_size"] = l.block_size;
    ld["num_heads"] = l.num_heads;
    ld["head_size"] = l.head_size;
    layers.append(ld);
  }
  d["layers"] = layers;
  py::list kgs;
  for (const KernelGroupInfo& kg : r.kernel_groups()) {
    py::dict k;
    k["layers"] = kg.layers;
    k["dtype"] = std::string(KvDtypeName(kg.dtype));
    k["kv_size"] = kg.kv_size;
    k["num_heads"] = kg.num_heads;
    k["head_size"] = kg.head_size;
    k["block_size"] = kg.block_size;
    k["num_blocks"] = kg.num_blocks;
    k["blocks_per_chunk"] = kg.blocks_per_chunk;
    k["region_bytes"] = kg.region_bytes;
    kgs.append(k);
  }
  d["kernel_groups"] = kgs;
  py::list ogs;
  for (const ObjectGroupInfo& og : r.object_groups()) {
    py::dict o;
    o["kernel_groups"] = og.kernel_groups;
    o["region_offsets"] = og.region_offsets;
    o["object_bytes"] = og.object_bytes;
    ogs.append(o);
  }
  d["object_groups"] = ogs;
  return d;
}

std::string OutcomeName(UnlinkOutcome o) {
  switch (o) {
    case UnlinkOutcome::kUnlinked: return "unlinked";
    case UnlinkOutcome::kOwnerAlive: return "owner_alive";
    case UnlinkOutcome::kNotFound: return "not_found";
  }
  return "unknown";
}

}  // namespace

void BindTransfer(py::module_& m) {
  py::class_<CopyPool, std::shared_ptr<CopyPool>>(m, "CopyPool",
                                                 "Persistent copy threads shared by gather/scatter calls.")
      .def(py::init([](int threads) {
             if (threads < 1 || threads > 64) ThrowInvalid("threads must be in 1..64");
             return std::make_shared<CopyPool>(static_cast<uint32_t>(threads));
           }),
           py::arg("threads") = 1)
      .def_property_readonly("threads", &CopyPool::threads);

  py::class_<KvCacheRegistration, RegPtr>(m, "KvCacheRegistration", R"doc(
The KV cache of one registered worker, mapped from its POSIX SHM segments.

Objects of object group g are `object_bytes(g)` bytes: per kernel group a
[kv_size][layers][chunk_tokens][heads*head_size] region (see
cpp/include/lmcache/transfer.h). block_ids arguments hold one list of block
ids per kernel group (a flat list is accepted when there is one). close()
unmaps synchronously (waiting for calls in flight).)doc")
      .def_static(
          "open",
          [](const py::sequence& tensors, int64_t chunk_tokens, const std::string& kv_layout,
             const GroupLists& kernel_groups, const GroupLists& object_groups) {
            if (chunk_tokens <= 0 || chunk_tokens > UINT32_MAX) ThrowInvalid("chunk_tokens must be positive");
            RegistrationOptions o;
            o.chunk_tokens = static_cast<uint32_t>(chunk_tokens);
            Result<KvLayoutHint> hint = ParseKvLayoutHint(kv_layout);
            ThrowIfError(hint.status());
            o.layout_hint = hint.value();
            if (kernel_groups) o.kernel_groups = *kernel_groups;
            if (object_groups) o.object_groups = *object_groups;
            std::vector<KvTensorHandle> handles;
            for (py::handle t : tensors) handles.push_back(ToHandle(t));
            Result<RegPtr> r = Status::OK();
            {
              py::gil_scoped_release nogil;
              r = KvCacheRegistration::Open(handles, o);
            }
            ThrowIfError(r.status());
            return r.value();
          },
          py::arg("tensors"), py::arg("chunk_tokens"), py::arg("kv_layout") = "NHD",
          py::arg("kernel_groups") = py::none(), py::arg("object_groups") = py::none(),
          "Map the segments of `tensors` (dicts {shm_name, nbytes, dtype, shape, stride, storage_offset} or "
          "tuples in that order; one per layer, several may share a segment). kv_layout ('NHD'/'HND') resolves "
          "5-D layouts as LMCache 0.5.6 does (0.5.6 on CPU assumes 'HND' when the client sent no hint).")
      .def_property_readonly("chunk_tokens", &KvCacheRegistration::chunk_tokens)
      .def_property_readonly("num_layers", &KvCacheRegistration::num_layers)
      .def_property_readonly("num_kernel_groups", [](const RegPtr& r) { return r->kernel_groups().size(); })
      .def_property_readonly("num_object_groups", [](const RegPtr& r) { return r->object_groups().size(); })
      .def_property_readonly("closed", &KvCacheRegistration::closed)
      .def_property_readonly("mapped_bytes", &KvCacheRegistration::mapped_bytes)
      .def_property_readonly("populated_bytes", &KvCacheRegistration::populated_bytes,
                             "bytes of the mappings whose page tables the background populate has filled")
      .def_property_readonly("shm_names", &KvCacheRegistration::shm_names)
      .def(
          "object_bytes",
          [](const RegPtr& r, uint32_t g) {
            if (g >= r->object_groups().size()) ThrowInvalid("no such object group");
            return r->ObjectBytes(g);
          },
          py::arg("object_group") = 0)
      .def("describe", [](const RegPtr& r) { return Describe(*r); }, "Layers, kernel groups and object groups.")
      .def(
          "gather",
          [](const RegPtr& r, const py::object& block_ids, const py::sequence& out, uint32_t object_group,
             const std::shared_ptr<CopyPool>& pool) {
            const auto lists = ToBlockLists(block_ids);
            std::vector<py::buffer_info> infos;
            const std::vector<ObjectView> views = ToViews(out, /*writable=*/true, &infos);
            Status st;
            {
              py::gil_scoped_release nogil;
              st = r->Gather(object_group, Spans(lists), views, pool.get());
            }
            ThrowIfError(st);
          },
          py::arg("block_ids"), py::arg("out"), py::arg("object_group") = 0, py::arg("pool") = nullptr,
          "Copy chunk i of the paged KV into out[i] (a writable buffer of object_bytes; None skips it).")
      .def(
          "scatter",
          [](const RegPtr& r, const py::object& block_ids, const py::sequence& src, uint32_t object_group,
             uint64_t skip_first_n_tokens, const std::shared_ptr<CopyPool>& pool) {
            const auto lists = ToBlockLists(block_ids);
            std::vector<py::buffer_info> infos;
            const std::vector<ObjectView> views = ToViews(src, /*writable=*/false, &infos);
            Status st;
            {
              py::gil_scoped_release nogil;
              st = r->Scatter(object_group, Spans(lists), views, skip_first_n_tokens, pool.get());
            }
            ThrowIfError(st);
          },
          py::arg("block_ids"), py::arg("src"), py::arg("object_group") = 0, py::arg("skip_first_n_tokens") = 0,
          py::arg("pool") = nullptr, "Copy src[i] into chunk i's blocks, leaving the first skip tokens untouched.")
      .def(
          "checksums",
          [](const RegPtr& r, const std::vector<int64_t>& block_ids, int64_t blocks_per_chunk,
             bool layerwise) -> py::object {
            if (blocks_per_chunk <= 0 || blocks_per_chunk > UINT32_MAX) ThrowInvalid("chunk_size must be positive");
            Result<std::vector<std::vector<Md5Digest>>> res = Status::OK();
            {
              py::gil_scoped_release nogil;
              res = r->ChunkChecksumsMd5(block_ids, static_cast<uint32_t>(blocks_per_chunk), layerwise);
            }
            ThrowIfError(res.status());
            py::list outer;
            for (const auto& row : res.value()) {
              py::list inner;
              for (const Md5Digest& d : row) inner.append(d.Hex());
              outer.append(inner);
            }
            if (layerwise) return outer;
            return outer[0];
          },
          py::arg("block_ids"), py::arg("blocks_per_chunk"), py::arg("layerwise") = false,
          "MD5 hex digests of POST /cache/checksums (LMCache 0.5.6): one per chunk of blocks_per_chunk "
          "blocks over every layer, or [layer][chunk] when layerwise.")
      .def("close",
           [](const RegPtr& r) {
             py::gil_scoped_release nogil;
             r->Close();
           })
      .def("__enter__", [](const RegPtr& r) { return r; })
      .def("__exit__", [](const RegPtr& r, const py::args&) {
        py::gil_scoped_release nogil;
        r->Close();
      });

  m.def(
      "store_chunks",
      [](const StorePtr& store, const RegPtr& reg, const KeyList& keys, const py::object& block_ids,
         uint32_t object_group, uint64_t tag, const std::shared_ptr<CopyPool>& pool) {
        const auto lists = ToBlockLists(block_ids);
        Result<StoreChunksResult> r = Status::OK();
        {
          py::gil_scoped_release nogil;
          r = StoreChunks(*store, *reg, object_group, keys.keys, Spans(lists), tag, pool.get());
        }
        ThrowIfError(r.status());
        return py::make_tuple(r.value().written, r.value().already_resident);
      },
      py::arg("store"), py::arg("registration"), py::arg("keys"), py::arg("block_ids"), py::arg("object_group") = 0,
      py::arg("tag") = 0, py::arg("pool") = nullptr,
      "STORE: reserve one L1 object per key, gather chunk i into keys[i]'s object, publish them; returns "
      "(written, already_resident). Raises NoSpaceError (nothing reserved) when L1 cannot fit them.");
  m.def(
      "retrieve_chunks",
      [](const StorePtr& store, const RegPtr& reg, const KeyList& keys, const py::object& block_ids,
         uint32_t object_group, uint64_t skip_first_n_tokens, bool consume_lookup_locks,
         const std::shared_ptr<CopyPool>& pool) {
        const auto lists = ToBlockLists(block_ids);
        Result<size_t> r = Status::OK();
        {
          py::gil_scoped_release nogil;
          r = RetrieveChunks(*store, *reg, object_group, keys.keys, Spans(lists), skip_first_n_tokens,
                             consume_lookup_locks, pool.get());
        }
        ThrowIfError(r.status());
        return r.value();
      },
      py::arg("store"), py::arg("registration"), py::arg("keys"), py::arg("block_ids"), py::arg("object_group") = 0,
      py::arg("skip_first_n_tokens") = 0, py::arg("consume_lookup_locks") = false, py::arg("pool") = nullptr,
      "RETRIEVE: scatter the longest stored prefix of keys into the paged KV; returns how many chunks were "
      "written. consume_lookup_locks also releases the read lock LOOKUP took on each of them.");
  m.def(
      "detect_kv_format",
      [](const std::vector<int64_t>& shape, const std::vector<int64_t>& stride, const std::string& kv_layout) {
        Result<KvLayoutHint> hint = ParseKvLayoutHint(kv_layout);
        ThrowIfError(hint.status());
        KvTensorMeta meta;
        meta.shape = shape;
        meta.stride = stride;
        Result<KvFormat> f = DetectKvFormat(meta, hint.value());
        ThrowIfError(f.status());
        return std::string(KvFormatName(f.value()));
      },
      py::arg("shape"), py::arg("stride"), py::arg("kv_layout") = "NHD",
      "LMCache 0.5.6's name of the layout of one layer tensor (e.g. 'NL_X_TWO_NB_BS_NH_HS').");
  m.def(
      "unlink_if_owner_dead",
      [](const std::string& name, const std::string& prefix) {
        Result<UnlinkOutcome> r = UnlinkOutcome::kNotFound;
        {
          py::gil_scoped_release nogil;
          r = UnlinkIfOwnerDead(name, prefix);
        }
        ThrowIfError(r.status());
        return OutcomeName(r.value());
      },
      py::arg("name"), py::arg("prefix") = "lmcache_kv_",
      "Unlink SHM segment <prefix><pid>_* only if <pid> is dead: 'unlinked', 'owner_alive' or 'not_found'.");
  m.def(
      "unlink_stale_segments",
      [](const std::string& prefix, const std::string& shm_dir) {
        Result<std::vector<std::string>> r = Status::OK();
        {
          py::gil_scoped_release nogil;
          r = UnlinkStaleSegments(prefix, shm_dir);
        }
        ThrowIfError(r.status());
        return r.value();
      },
      py::arg("prefix") = "lmcache_kv_", py::arg("shm_dir") = "/dev/shm",
      "Startup sweep: unlink every <prefix><pid>_* segment of a dead pid; returns their names.");
  m.def(
      "live_mappings", [] { return py::make_tuple(ShmMapping::LiveCount(), ShmMapping::LiveBytes()); },
      "(count, bytes) of KV SHM mappings alive in this process.");
}

}  // namespace lmcache::bindings
