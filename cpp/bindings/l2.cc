// Bindings of the L2 adapters (cpp/include/lmcache/l2_adapter.h):
// create_adapter(json) and the asynchronous store / lookup-and-lock / load
// API with its three eventfds, plus the synchronous admin calls.
//
// Buffers. submit_store / submit_load take one buffer-protocol object per
// key. The adapter reads or writes that memory on its worker threads after
// submit returns, so the binding holds a buffer export (Py_buffer, which
// also keeps the exporting object alive and, for a bytearray, unresizable)
// for every buffer of a task until the task's result is handed to Python
// (pop_completed_stores / query_load_result) or the adapter is closed (Close
// completes every queued task, after which the adapter touches no view).
// Exports are created and released with the GIL held; every call into the
// adapter that may block runs with the GIL released.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common.h"
#include "lmcache/l2_adapter.h"

namespace lmcache::bindings {
namespace {

// The buffer exports of one task.
using Pins = std::vector<std::unique_ptr<py::buffer_info>>;

// An adapter owned by Python. Pins are touched only with the GIL held
// (which serializes them); the adapter itself is thread-safe.
class PyL2Adapter {
 public:
  explicit PyL2Adapter(std::unique_ptr<L2Adapter> a) : adapter_(std::move(a)) {}

  // Called by pybind11 with the GIL held: close (GIL released), then drop
  // the exports. The fds close with the adapter.
  ~PyL2Adapter() {
    if (adapter_ == nullptr) return;
    {
      py::gil_scoped_release nogil;
      adapter_->Close();
    }
    pins_.clear();
    orphans_.clear();
  }
  PyL2Adapter(const PyL2Adapter&) = delete;
  PyL2Adapter& operator=(const PyL2Adapter&) = delete;

  L2Adapter& a() { return *adapter_; }
  const L2Adapter& a() const { return *adapter_; }

  L2TaskId SubmitStore(const KeyList& keys, const py::sequence& buffers) {
    Pins pins;
    std::vector<ObjectView> views = ToViews(buffers, /*writable=*/false, &pins);
    Result<L2TaskId> r = [&] {
      py::gil_scoped_release nogil;
      return adapter_->SubmitStore(keys.keys, views);
    }();
    ThrowIfError(r.status());
    Keep(r.value(), std::move(pins));
    return r.value();
  }

  L2TaskId SubmitLoad(const KeyList& keys, const py::sequence& buffers) {
    Pins pins;
    std::vector<ObjectView> views = ToViews(buffers, /*writable=*/true, &pins);
    Result<L2TaskId> r = [&] {
      py::gil_scoped_release nogil;
      return adapter_->SubmitLoad(keys.keys, views);
    }();
    ThrowIfError(r.status());
    Keep(r.value(), std::move(pins));
    return r.value();
  }

  py::list PopCompletedStores() {
    std::vector<std::pair<L2TaskId, L2StoreResult>> done;
    {
      py::gil_scoped_release nogil;
      done = adapter_->PopCompletedStores();
    }
    py::list out;
    for (auto& [id, res] : done) {
      Release(id);
      out.append(py::make_tuple(id, res.ok, BitsToList(res.stored), res.bytes_written));
    }
    return out;
  }

  py::object QueryLoadResult(L2TaskId id) {
    std::optional<L2Bitmap> bits;
    {
      py::gil_scoped_release nogil;
      bits = adapter_->QueryLoadResult(id);
    }
    if (!bits) return py::none();
    Release(id);
    return BitsToList(*bits);
  }

  void Close() {
    {
      py::gil_scoped_release nogil;
      adapter_->Close();
    }
    // Every task is complete now and no view is touched any more.
    pins_.clear();
    orphans_.clear();
  }

  size_t pinned_tasks() const { return pins_.size(); }

  static py::list BitsToList(const L2Bitmap& bits) {
    py::list l(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) l[i] = py::bool_(bits[i]);
    return l;
  }

 private:
  static std::vector<ObjectView> ToViews(const py::sequence& bufs, bool writable, Pins* pins) {
    if (py::isinstance<py::str>(bufs) || py::isinstance<py::bytes>(bufs) || PyObject_CheckBuffer(bufs.ptr())) {
      ThrowInvalid("buffers must be a sequence of buffers (one per key), not a single buffer");
    }
    std::vector<ObjectView> views;
    const size_t n = bufs.size();
    views.reserve(n);
    pins->reserve(n);
    for (size_t i = 0; i < n; ++i) {
      py::object h = bufs[i];
      if (!PyObject_CheckBuffer(h.ptr())) {
        ThrowInvalid("buffer " + std::to_string(i) + " does not support the buffer protocol (got " +
                     std::string(py::str(py::type::handle_of(h).attr("__name__"))) + ")");
      }
      auto info = std::make_unique<py::buffer_info>();
      Py_buffer* view = new Py_buffer();
      const int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
      if (PyObject_GetBuffer(h.ptr(), view, flags) != 0) {
        delete view;
        PyErr_Clear();
        ThrowInvalid("buffer " + std::to_string(i) +
                     (writable ? " is not writable (load buffers must be writable)" : " cannot be exported"));
      }
      *info = py::buffer_info(view, /*ownview=*/true);
      py::ssize_t expect = info->itemsize;
      for (py::ssize_t d = info->ndim - 1; d >= 0; --d) {
        if (info->shape[static_cast<size_t>(d)] > 1 && info->strides[static_cast<size_t>(d)] != expect) {
          ThrowInvalid("buffer " + std::to_string(i) + " is not C-contiguous");
        }
        expect *= info->shape[static_cast<size_t>(d)];
      }
      views.push_back({static_cast<uint8_t*>(info->ptr), static_cast<uint64_t>(info->size * info->itemsize)});
      pins->push_back(std::move(info));
    }
    return views;
  }

  // A result may have been handed out by another thread while this one
  // was submitting with the GIL released: then the id is an orphan and
  // its exports can go at once.
  void Keep(L2TaskId id, Pins pins) {
    if (orphans_.erase(id) > 0) return;
    if (!pins.empty()) pins_.emplace(id, std::move(pins));
  }

  void Release(L2TaskId id) {
    if (pins_.erase(id) == 0) orphans_.insert(id);
  }

  std::unique_ptr<L2Adapter> adapter_;
  std::unordered_map<L2TaskId, Pins> pins_;  // GIL-guarded
  std::unordered_set<L2TaskId> orphans_;     // GIL-guarded
};

using AdapterPtr = std::unique_ptr<PyL2Adapter>;

// Waits for `fd` to become readable and drains it; the GIL is released
// while waiting. Ctrl-C (a Python signal handler raising) interrupts it.
bool WaitFd(int fd, double timeout_s) {
  if (std::isnan(timeout_s)) ThrowInvalid("timeout_s must be a number");
  const bool forever = timeout_s < 0 || std::isinf(timeout_s);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(forever ? 0.0 : timeout_s));
  for (;;) {
    int ms = -1;
    if (!forever) {
      const auto left = deadline - std::chrono::steady_clock::now();
      const double left_ms = std::chrono::duration<double, std::milli>(left).count();
      ms = left_ms <= 0 ? 0 : static_cast<int>(std::min(std::ceil(left_ms), 2.0e9));
    }
    int r = 0;
    int err = 0;
    uint64_t value = 0;
    {
      py::gil_scoped_release nogil;
      pollfd p{fd, POLLIN, 0};
      r = poll(&p, 1, ms);
      err = errno;
      if (r > 0 && (p.revents & POLLIN) != 0) {
        // Non-blocking eventfd: EAGAIN means another waiter drained it first.
        if (read(fd, &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) r = 0;
      } else if (r > 0) {
        err = EBADF;
        r = -1;
      }
    }
    if (r > 0) return true;
    if (r < 0 && err != EINTR) throw StatusError(Status::FromErrno("wait_fd: poll", err));
    if (r < 0) {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      continue;
    }
    if (!forever && std::chrono::steady_clock::now() >= deadline) return false;
  }
}

py::dict UsageDict(const L2Usage& u) {
  py::dict d;
  d["total_bytes"] = u.total_bytes;
  d["capacity_bytes"] = u.capacity_bytes;
  d["objects"] = u.objects;
  py::dict salts;
  for (const auto& [salt, bytes] : u.bytes_by_salt) salts[py::str(salt)] = bytes;
  d["bytes_by_salt"] = salts;
  return d;
}

py::dict CountersDict(const L2Counters& c) {
  py::dict d;
#define LMCACHE_L2_PY_COUNTER(name) d[#name] = c.name;
  LMCACHE_L2_PY_COUNTER(store_tasks)
  LMCACHE_L2_PY_COUNTER(stored_objects)
  LMCACHE_L2_PY_COUNTER(stored_bytes)
  LMCACHE_L2_PY_COUNTER(store_skipped)
  LMCACHE_L2_PY_COUNTER(store_failures)
  LMCACHE_L2_PY_COUNTER(lookup_tasks)
  LMCACHE_L2_PY_COUNTER(lookup_hits)
  LMCACHE_L2_PY_COUNTER(lookup_misses)
  LMCACHE_L2_PY_COUNTER(load_tasks)
  LMCACHE_L2_PY_COUNTER(loaded_objects)
  LMCACHE_L2_PY_COUNTER(loaded_bytes)
  LMCACHE_L2_PY_COUNTER(load_misses)
  LMCACHE_L2_PY_COUNTER(corrupt_objects)
  LMCACHE_L2_PY_COUNTER(size_mismatches)
  LMCACHE_L2_PY_COUNTER(unverified_loads)
  LMCACHE_L2_PY_COUNTER(io_errors)
  LMCACHE_L2_PY_COUNTER(rejected_keys)
  LMCACHE_L2_PY_COUNTER(evicted_objects)
  LMCACHE_L2_PY_COUNTER(evicted_bytes)
  LMCACHE_L2_PY_COUNTER(deleted_objects)
#undef LMCACHE_L2_PY_COUNTER
  return d;
}

py::dict StatusDict(const L2Status& s) {
  py::dict d;
  d["healthy"] = s.healthy;
  d["type"] = s.type;
  d["message"] = s.message;
  d["pending_tasks"] = s.pending_tasks;
  d["counters"] = CountersDict(s.counters);
  py::dict details;
  for (const auto& [k, v] : s.details) details[py::str(k)] = v;
  d["details"] = details;
  return d;
}

}  // namespace

void BindL2(py::module_& m) {
  py::class_<PyL2Adapter>(m, "Adapter", R"doc(
One L2 adapter (see cpp/include/lmcache/l2_adapter.h for the contract).

Create it with create_adapter(json). submit_* queue a task and return its id;
when it completes, the eventfd of its kind fires (wait_fd) and the result is
handed out once (pop_completed_stores, query_lookup_result, query_load_result).
Buffers given to submit_store/submit_load are kept alive by the adapter until
the task's result has been handed out or the adapter is closed. Thread-safe;
every call that may block releases the GIL.)doc")
      .def_property_readonly("type", [](const PyL2Adapter& a) { return a.a().common_config().type; })
      .def_property_readonly("store_event_fd", [](const PyL2Adapter& a) { return a.a().store_event_fd(); })
      .def_property_readonly("lookup_event_fd", [](const PyL2Adapter& a) { return a.a().lookup_event_fd(); })
      .def_property_readonly("load_event_fd", [](const PyL2Adapter& a) { return a.a().load_event_fd(); })
      .def("submit_store", &PyL2Adapter::SubmitStore, py::arg("keys"), py::arg("buffers"),
           "Write buffers[i] under keys[i]; returns the task id. Buffers: C-contiguous buffer-protocol "
           "objects, kept alive until the result is popped.")
      .def("pop_completed_stores", &PyL2Adapter::PopCompletedStores,
           "Every store completed since the last call: [(task_id, ok, stored bits, bytes_written)].")
      .def(
          "submit_lookup_and_lock",
          [](PyL2Adapter& a, const KeyList& keys) {
            Result<L2TaskId> r = [&] {
              py::gil_scoped_release nogil;
              return a.a().SubmitLookupAndLock(keys.keys);
            }();
            ThrowIfError(r.status());
            return r.value();
          },
          py::arg("keys"))
      .def(
          "query_lookup_result",
          [](PyL2Adapter& a, L2TaskId task) -> py::object {
            std::optional<L2Bitmap> bits;
            {
              py::gil_scoped_release nogil;
              bits = a.a().QueryLookupResult(task);
            }
            if (!bits) return py::none();
            return PyL2Adapter::BitsToList(*bits);
          },
          py::arg("task_id"), "The per-key hit bits once the task completed; None before, and after it was taken.")
      .def(
          "submit_unlock",
          [](PyL2Adapter& a, const KeyList& keys) {
            py::gil_scoped_release nogil;
            a.a().SubmitUnlock(keys.keys);
          },
          py::arg("keys"))
      .def("submit_load", &PyL2Adapter::SubmitLoad, py::arg("keys"), py::arg("buffers"),
           "Read keys[i] into buffers[i] (writable, C-contiguous, exactly the object's size); returns the task id.")
      .def("query_load_result", &PyL2Adapter::QueryLoadResult, py::arg("task_id"),
           "The per-key loaded bits once the task completed; None before, and after it was taken.")
      .def(
          "wait_fd",
          [](PyL2Adapter& a, int fd, double timeout_s) {
            const L2Adapter& ad = a.a();
            if (fd != ad.store_event_fd() && fd != ad.lookup_event_fd() && fd != ad.load_event_fd()) {
              ThrowInvalid("wait_fd: fd " + std::to_string(fd) + " is not an event fd of this adapter");
            }
            return WaitFd(fd, timeout_s);
          },
          py::arg("fd"), py::arg("timeout_s"),
          "Wait (GIL released) until the eventfd fires, and drain it. True if it fired, False on timeout; "
          "a negative timeout waits forever.")
      .def(
          "delete",
          [](PyL2Adapter& a, const KeyList& keys) {
            Result<size_t> r = [&] {
              py::gil_scoped_release nogil;
              return a.a().Delete(keys.keys);
            }();
            ThrowIfError(r.status());
            return r.value();
          },
          py::arg("keys"), "Remove objects (locked ones too); returns how many existed.")
      .def(
          "list_keys",
          [](PyL2Adapter& a, std::optional<std::string> model_name, int64_t page_size, const std::string& cursor) {
            if (page_size <= 0) ThrowInvalid("page_size must be positive, got " + std::to_string(page_size));
            L2ListRequest req;
            req.model_name = std::move(model_name);
            req.page_size = static_cast<size_t>(page_size);
            req.cursor = cursor;
            Result<L2KeyPage> r = [&] {
              py::gil_scoped_release nogil;
              return a.a().List(req);
            }();
            ThrowIfError(r.status());
            py::list keys;
            for (const L2KeyInfo& k : r.value().keys) keys.append(py::make_tuple(k.key.ToString(), k.size));
            return py::make_tuple(keys, r.value().next_cursor);
          },
          py::arg("model_name") = py::none(), py::arg("page_size") = 500, py::arg("cursor") = "",
          "One page of stored keys: ([(file stem, size)], next_cursor); next_cursor is '' on the last page.")
      .def("usage",
           [](PyL2Adapter& a) {
             L2Usage u;
             {
               py::gil_scoped_release nogil;
               u = a.a().Usage();
             }
             return UsageDict(u);
           })
      .def("status",
           [](PyL2Adapter& a) {
             L2Status s;
             {
               py::gil_scoped_release nogil;
               s = a.a().ReportStatus();
             }
             return StatusDict(s);
           })
      .def("close", &PyL2Adapter::Close, "Idempotent: finish running I/O, fail queued tasks, release buffers.")
      .def_property_readonly("_pinned_tasks", &PyL2Adapter::pinned_tasks,
                             "Tasks whose buffers are still held (for tests).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyL2Adapter& a, const py::args&) { a.Close(); });

  m.def(
      "create_adapter",
      [](const std::string& spec_json) {
        Result<std::unique_ptr<L2Adapter>> r = [&] {
          py::gil_scoped_release nogil;
          return CreateL2Adapter(spec_json);
        }();
        ThrowIfError(r.status());
        return std::make_unique<PyL2Adapter>(std::move(r).value());
      },
      py::arg("spec_json"),
      "Build an adapter from one --l2-adapter JSON spec, e.g. '{\"type\":\"fs_native\",\"base_path\":\"/tmp/l2\"}'. "
      "InvalidArgumentError (bad JSON, unknown type or field) or StorageIOError (backend cannot be opened).");

  m.def("adapter_types", &L2AdapterTypes, "The registered adapter type names, sorted.");
}

}  // namespace lmcache::bindings
