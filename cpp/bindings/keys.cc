#include "common.h"

namespace lmcache::bindings {

void BindKeys(py::module_& m) {
  py::class_<KeyList>(m, "KeyList",
                      "An immutable batch of ObjectKeys living in C++. Build it with make_keys().")
      .def("__len__", [](const KeyList& k) { return k.keys.size(); })
      .def(
          "__getitem__",
          [](const KeyList& k, py::ssize_t i) {
            if (i < 0) i += static_cast<py::ssize_t>(k.keys.size());
            if (i < 0 || static_cast<size_t>(i) >= k.keys.size()) throw py::index_error("key index out of range");
            const ObjectKey& key = k.keys[static_cast<size_t>(i)];
            return py::make_tuple(py::bytes(std::string(key.chunk_hash_bytes())), key.model_name.str(), key.kv_rank,
                                  key.object_group_id, key.cache_salt.str());
          },
          "(chunk_hash, model_name, kv_rank, object_group_id, cache_salt)")
      .def(
          "to_string", [](const KeyList& k, size_t i) {
            if (i >= k.keys.size()) throw py::index_error("key index out of range");
            return k.keys[i].ToString();
          },
          "LMCache fs file stem of key i")
      .def(
          "slice",
          [](const KeyList& k, size_t start, size_t stop) {
            stop = std::min(stop, k.keys.size());
            start = std::min(start, stop);
            return KeyList{std::vector<ObjectKey>(k.keys.begin() + static_cast<ptrdiff_t>(start),
                                                  k.keys.begin() + static_cast<ptrdiff_t>(stop))};
          },
          py::arg("start"), py::arg("stop"));

  m.def(
      "make_keys",
      [](py::object hashes, const std::string& model_name, int64_t kv_rank, int64_t object_group_id,
         const std::string& cache_salt) {
        std::vector<std::string> hs;
        if (py::isinstance<py::bytes>(hashes)) {
          ThrowInvalid("hashes must be a sequence of bytes objects, not one bytes object");
        }
        for (py::handle h : hashes) {
          if (!py::isinstance<py::bytes>(h)) ThrowInvalid("every chunk hash must be bytes");
          hs.push_back(h.cast<std::string>());
        }
        if (kv_rank < INT32_MIN || kv_rank > UINT32_MAX) ThrowInvalid("kv_rank out of 32-bit range");
        if (object_group_id < 0 || object_group_id > INT32_MAX) ThrowInvalid("object_group_id out of range");
        KeyList out;
        out.keys.reserve(hs.size());
        for (const std::string& h : hs) {
          ObjectKey k;
          if (!MakeKey(h, model_name, static_cast<int32_t>(static_cast<uint32_t>(kv_rank)),
                       static_cast<int32_t>(object_group_id), cache_salt, &k)) {
            ThrowInvalid("chunk hash longer than 32 bytes");
          }
          out.keys.push_back(k);
        }
        return out;
      },
      py::arg("hashes"), py::arg("model_name"), py::arg("kv_rank"), py::arg("object_group_id") = 0,
      py::arg("cache_salt") = "",
      "Build a KeyList: one key per chunk hash, all sharing model, rank, group and salt.");

  m.def(
      "pack_kv_rank",
      [](int world_size, int global_rank, int local_world_size, int local_rank) {
        for (int v : {world_size, global_rank, local_world_size, local_rank}) {
          if (v < 0 || v > 255) ThrowInvalid("kv_rank fields must be in 0..255");
        }
        return static_cast<uint32_t>(PackKvRank(world_size, global_rank, local_world_size, local_rank));
      },
      py::arg("world_size"), py::arg("global_rank"), py::arg("local_world_size"), py::arg("local_rank"));
}

}  // namespace lmcache::bindings
