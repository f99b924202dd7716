// lmcache._native.hashing: prefix-chain chunk hashes (lmcache/chunk_hasher.h).
//
// Tokens come as a buffer of 32- or 64-bit integers (numpy arrays,
// array.array, memoryview: read in place, no copy unless strided) or as any
// other iterable of ints (a list is converted here, in C++). Only the tokens
// from chunk `start_chunk` up to the last full chunk are read. Hashing runs
// with the GIL released.
#include <Python.h>

#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "lmcache/chunk_hasher.h"

namespace lmcache::bindings {
namespace {

HashAlgorithm ParseAlgorithm(const std::string& name) {
  HashAlgorithm a;
  ThrowIfError(ParseHashAlgorithm(name, &a));
  return a;
}

py::list ToList(const std::vector<ChunkHash>& hashes) {
  py::list out(hashes.size());
  for (size_t i = 0; i < hashes.size(); ++i) {
    out[i] = py::bytes(reinterpret_cast<const char*>(hashes[i].data()), hashes[i].size());
  }
  return out;
}

// Runs ChunkHashes on tokens[first, first + count) of a contiguous or strided
// buffer of T, without the GIL.
template <typename T>
std::vector<ChunkHash> HashBuffer(HashAlgorithm a, const py::buffer_info& info, size_t first, size_t count,
                                  size_t chunk_size, std::span<const uint8_t> prefix) {
  std::vector<ChunkHash> out;
  Status s;
  {
    py::gil_scoped_release release;
    const auto* base = static_cast<const uint8_t*>(info.ptr);
    const py::ssize_t stride = info.strides.empty() ? static_cast<py::ssize_t>(sizeof(T)) : info.strides[0];
    if (stride == static_cast<py::ssize_t>(sizeof(T))) {
      s = ChunkHashes(a, std::span<const T>(reinterpret_cast<const T*>(base) + first, count), chunk_size, prefix,
                      &out);
    } else {  // a strided view (e.g. a numpy slice with a step): gather first
      std::vector<T> tmp(count);
      for (size_t i = 0; i < count; ++i) {
        std::memcpy(&tmp[i], base + static_cast<py::ssize_t>(first + i) * stride, sizeof(T));
      }
      s = ChunkHashes(a, std::span<const T>(tmp), chunk_size, prefix, &out);
    }
  }
  ThrowIfError(s);
  return out;
}

// Converts items [first, first + count) of a list or tuple to uint32.
std::vector<uint32_t> ConvertSequence(PyObject* seq, size_t first, size_t count) {
  std::vector<uint32_t> v(count);
  PyObject** items = PySequence_Fast_ITEMS(seq);
  for (size_t i = 0; i < count; ++i) {
    PyObject* item = items[first + i];
    int overflow = 0;
    long long x;
    if (PyLong_Check(item)) {
      x = PyLong_AsLongLongAndOverflow(item, &overflow);
    } else {  // numpy integer scalars and other __index__ types
      PyObject* index = PyNumber_Index(item);
      if (index == nullptr) {
        PyErr_Clear();
        ThrowInvalid("token ids must be integers, got " + std::string(Py_TYPE(item)->tp_name) + " at index " +
                     std::to_string(first + i));
      }
      x = PyLong_AsLongLongAndOverflow(index, &overflow);
      Py_DECREF(index);
    }
    if (x == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || x < 0 || x > static_cast<long long>(std::numeric_limits<uint32_t>::max())) {
      ThrowInvalid("token id " + py::repr(item).cast<std::string>() + " at index " + std::to_string(first + i) +
                   " does not fit in uint32 (0..4294967295)");
    }
    v[i] = static_cast<uint32_t>(x);
  }
  return v;
}

// The element type of a 1-D integer buffer: 's' or 'u' and its size, or throws.
std::pair<char, size_t> BufferIntType(const py::buffer_info& info) {
  if (info.ndim != 1) ThrowInvalid("token buffer must be one-dimensional, got " + std::to_string(info.ndim) + "-D");
  std::string f = info.format;
  if (!f.empty() && (f[0] == '@' || f[0] == '=' || f[0] == '<' || f[0] == '>' || f[0] == '!')) {
    const bool big = f[0] == '>' || f[0] == '!';
    if (big != (std::endian::native == std::endian::big)) ThrowInvalid("token buffer must be in native byte order");
    f = f.substr(1);
  }
  const size_t size = static_cast<size_t>(info.itemsize);
  if (f.size() == 1 && std::strchr("bhilqn", f[0]) != nullptr && (size == 4 || size == 8)) return {'s', size};
  if (f.size() == 1 && std::strchr("BHILQN", f[0]) != nullptr && (size == 4 || size == 8)) return {'u', size};
  ThrowInvalid("token buffer must hold 32- or 64-bit integers, got format '" + info.format + "' of " +
               std::to_string(size) + " bytes");
}

py::list ChunkHashesPy(py::handle tokens, int64_t chunk_size, const std::string& algorithm, py::object prefix,
                       int64_t start_chunk) {
  const HashAlgorithm a = ParseAlgorithm(algorithm);
  if (chunk_size <= 0) ThrowInvalid("chunk_size must be positive, got " + std::to_string(chunk_size));
  if (start_chunk < 0) ThrowInvalid("start_chunk must be >= 0, got " + std::to_string(start_chunk));
  if (start_chunk > 0 && prefix.is_none()) {
    ThrowInvalid("start_chunk > 0 needs prefix, the hash of chunk start_chunk - 1");
  }
  std::string prefix_bytes;
  if (!prefix.is_none()) {
    if (!py::isinstance<py::bytes>(prefix)) ThrowInvalid("prefix must be bytes or None");
    prefix_bytes = prefix.cast<std::string>();
    if (prefix_bytes.size() != kChunkHashLen) {
      ThrowInvalid("prefix must be " + std::to_string(kChunkHashLen) + " bytes, got " +
                   std::to_string(prefix_bytes.size()));
    }
  }
  const std::span<const uint8_t> pre(reinterpret_cast<const uint8_t*>(prefix_bytes.data()), prefix_bytes.size());
  const size_t c = static_cast<size_t>(chunk_size);
  const size_t start = static_cast<size_t>(start_chunk);
  // Tokens [start * c, num_chunks * c): the full chunks from start_chunk on.
  auto range = [&](size_t n, size_t* first, size_t* count) {
    const size_t num_chunks = n / c;
    *first = start < num_chunks ? start * c : 0;
    *count = start < num_chunks ? (num_chunks - start) * c : 0;
  };

  if (PyObject_CheckBuffer(tokens.ptr()) && !PyBytes_Check(tokens.ptr()) && !PyByteArray_Check(tokens.ptr())) {
    py::buffer buf = py::reinterpret_borrow<py::buffer>(tokens);
    py::buffer_info info = buf.request();
    const auto [kind, size] = BufferIntType(info);
    size_t first, count;
    range(static_cast<size_t>(info.shape[0]), &first, &count);
    std::vector<ChunkHash> out;
    if (kind == 's' && size == 4) out = HashBuffer<int32_t>(a, info, first, count, c, pre);
    if (kind == 'u' && size == 4) out = HashBuffer<uint32_t>(a, info, first, count, c, pre);
    if (kind == 's' && size == 8) out = HashBuffer<int64_t>(a, info, first, count, c, pre);
    if (kind == 'u' && size == 8) out = HashBuffer<uint64_t>(a, info, first, count, c, pre);
    return ToList(out);
  }
  if (PyBytes_Check(tokens.ptr()) || PyByteArray_Check(tokens.ptr()) || PyUnicode_Check(tokens.ptr())) {
    ThrowInvalid("tokens must be integers, not " + std::string(Py_TYPE(tokens.ptr())->tp_name));
  }
  // Lists, tuples, and any other iterable (made a list by PySequence_Fast).
  PyObject* seq = PySequence_Fast(tokens.ptr(), "tokens must be an iterable of ints or an integer buffer");
  if (seq == nullptr) {
    PyErr_Clear();
    ThrowInvalid("tokens must be an iterable of ints or a buffer of 32/64-bit integers, not " +
                 std::string(Py_TYPE(tokens.ptr())->tp_name));
  }
  py::object hold = py::reinterpret_steal<py::object>(seq);
  size_t first, count;
  range(static_cast<size_t>(PySequence_Fast_GET_SIZE(seq)), &first, &count);
  std::vector<uint32_t> v = ConvertSequence(seq, first, count);
  std::vector<ChunkHash> out;
  Status s;
  {
    py::gil_scoped_release release;
    s = ChunkHashes(a, std::span<const uint32_t>(v), c, pre, &out);
  }
  ThrowIfError(s);
  return ToList(out);
}

}  // namespace

void BindHashing(py::module_& m) {
  m.attr("ALGORITHMS") = py::make_tuple("blake3", "sha256_cbor");
  m.attr("HASH_LEN") = kChunkHashLen;
  m.def("chunk_hashes", &ChunkHashesPy, py::arg("tokens"), py::arg("chunk_size"), py::arg("algorithm") = "blake3",
        py::arg("prefix") = py::none(), py::arg("start_chunk") = 0,
        "Prefix-chain hashes of the full chunks of `tokens` from chunk `start_chunk` on, chained from `prefix`: "
        "the hash of chunk start_chunk - 1, or with start_chunk 0 the chain seed (None: the algorithm's "
        "NONE_HASH). Tokens before start_chunk and in the partial tail are not read. Raises InvalidArgumentError for a token outside uint32, chunk_size <= 0, "
        "a prefix that is not 32 bytes, or an unknown algorithm.");
  m.def(
      "none_hash",
      [](const std::string& algorithm, std::optional<std::string> seed) {
        const HashAlgorithm a = ParseAlgorithm(algorithm);
        const ChunkHash h = seed ? SeededNoneHash(a, *seed) : NoneHash(a);
        return py::bytes(reinterpret_cast<const char*>(h.data()), h.size());
      },
      py::arg("algorithm"), py::arg("seed") = py::none(),
      "The chain seed h_{-1}: NONE_HASH, or with `seed` (the PYTHONHASHSEED value) vLLM's init_none_hash "
      "value, sha256_cbor(seed), for sha256_cbor.");
}

}  // namespace lmcache::bindings
