// L2 adapters implemented in Python (types "plugin", "s3", and any type
// registered with l2.register_python_type): a PythonBackend implements the
// core's L2SyncBackend by calling a Python object that follows the protocol
// of lmcache/l2/base.py; CreateL2AdapterOverBackend (core) adds the whole
// adapter contract (tasks, eventfds, index, locks, checksums, Close).
//
// The GIL. Backend calls come from the adapter's worker threads (and from
// whoever calls Delete / Close), never holding an adapter lock; each takes
// the GIL only around the Python call. A thread that already holds the GIL
// and closes or destroys an adapter releases it while the workers finish
// (BlockingWait), so closing from Python, or dropping the last reference,
// cannot deadlock.
//
// Interpreter shutdown. An atexit hook (registered when lmcache._native is
// imported) closes the gate: later backend calls fail at once (per-key
// failures, no Python touched), the hook waits for the calls in flight,
// calls close() on every live backend and drops the Python factories it
// holds. Python references released after the interpreter is gone are
// leaked on purpose (decref without an interpreter would crash).
//
// Errors. An exception raised by a backend method fails every key of the
// call (io_errors, one warning line on logger "lmcache.l2"); an exception
// object in a result list fails that key only. A factory's ValueError /
// TypeError / ImportError becomes InvalidArgument, anything else IOError,
// with the exception's text on one line.
#include <Python.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "lmcache/l2_adapter.h"
#include "lmcache/l2_sync_backend.h"

namespace lmcache::bindings {
namespace {

bool InterpreterAlive() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

// A Python reference that may be dropped on any thread: the deleter takes
// the GIL, or leaks the reference once the interpreter is going away.
using PyRef = std::shared_ptr<py::object>;
PyRef Hold(py::object o) {
  return PyRef(new py::object(std::move(o)), [](py::object* p) {
    if (InterpreterAlive()) {
      py::gil_scoped_acquire gil;
      delete p;
    } else {
      (void)p->release();
      delete p;
    }
  });
}

// Admission to Python: closed by the atexit hook; counts calls in flight.
class Gate {
 public:
  bool Enter() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    ++in_flight_;
    return true;
  }
  void Leave() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--in_flight_ == 0) cv_.notify_all();
  }
  // Close, then wait (at most `limit`) for the calls in flight. REQUIRES:
  // the caller does not hold the GIL.
  bool CloseAndDrain(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    closed_ = true;
    return cv_.wait_for(lock, limit, [this] { return in_flight_ == 0; });
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int in_flight_ = 0;
};

Gate& TheGate() {
  static Gate* g = new Gate();  // used by threads until exit: never destroyed
  return *g;
}

class GateTicket {
 public:
  GateTicket() : ok_(TheGate().Enter()) {}
  ~GateTicket() {
    if (ok_) TheGate().Leave();
  }
  GateTicket(const GateTicket&) = delete;
  GateTicket& operator=(const GateTicket&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_;
};

// "TypeName: message" on one line. REQUIRES: the GIL.
std::string OneLine(const py::error_already_set& e) {
  std::string type = "Exception", msg;
  try {
    type = py::str(e.type().attr("__name__")).cast<std::string>();
    msg = py::str(e.value()).cast<std::string>();
  } catch (...) {
    msg = e.what();
  }
  std::string s = msg.empty() ? type : type + ": " + msg;
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

std::string OneLine(const py::handle& exc) {
  std::string s = py::str(py::type::of(exc).attr("__name__")).cast<std::string>();
  const std::string msg = py::str(exc).cast<std::string>();
  if (!msg.empty()) s += ": " + msg;
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// REQUIRES: the GIL. Never throws.
void LogWarning(const std::string& line) {
  try {
    py::module_::import("logging").attr("getLogger")("lmcache.l2").attr("warning")(line);
  } catch (py::error_already_set& e) {
    e.restore();
    PyErr_Clear();
  }
}

// The Python-side state of one backend; the atexit hook reaches live ones
// through weak references.
struct BackendState {
  std::string type;
  PyRef obj;
  std::mutex mu;
  bool closed = false;  // GUARDED_BY(mu)

  // Call obj.close() once. REQUIRES: the GIL.
  void CloseOnce() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (closed) return;
      closed = true;
    }
    try {
      if (py::hasattr(*obj, "close")) obj->attr("close")();
    } catch (py::error_already_set& e) {
      LogWarning("L2 adapter '" + type + "': backend close() raised " + OneLine(e));
    }
  }
};

std::mutex g_live_mu;
std::vector<std::weak_ptr<BackendState>>& LiveBackends() {
  static auto* v = new std::vector<std::weak_ptr<BackendState>>();
  return *v;
}

void Track(const std::shared_ptr<BackendState>& s) {
  std::lock_guard<std::mutex> lock(g_live_mu);
  auto& v = LiveBackends();
  v.erase(std::remove_if(v.begin(), v.end(), [](const auto& w) { return w.expired(); }), v.end());
  v.push_back(s);
}

// Memoryviews over caller memory, released after the call so a backend
// that kept one cannot touch the memory later. REQUIRES: the GIL.
class Views {
 public:
  Views(std::span<const ObjectView> objs, bool writable) {
    for (const ObjectView& o : objs) {
      PyObject* mv = PyMemoryView_FromMemory(reinterpret_cast<char*>(o.data), static_cast<Py_ssize_t>(o.size),
                                             writable ? PyBUF_WRITE : PyBUF_READ);
      if (mv == nullptr) throw py::error_already_set();
      list_.append(py::reinterpret_steal<py::object>(mv));
    }
  }
  ~Views() {
    for (py::handle v : list_) {
      try {
        v.attr("release")();
      } catch (py::error_already_set& e) {  // BufferError: an export is still alive
        LogWarning("an L2 backend kept a buffer view past its call: " + OneLine(e));
      }
    }
  }
  const py::list& list() const { return list_; }

 private:
  py::list list_;
};

class PythonBackend final : public L2SyncBackend {
 public:
  PythonBackend(std::shared_ptr<BackendState> state, std::vector<std::pair<std::string, std::string>> details)
      : state_(std::move(state)), details_(std::move(details)) {}

  ~PythonBackend() override { Close(); }

  Result<L2BackendResults> Put(std::span<const std::string> names, std::span<const ObjectView> objects,
                               std::span<const uint64_t> checksums) override {
    return Batch("put", names.size(), [&](py::object& b) {
      Views views(objects, false);
      py::list sums;
      for (uint64_t c : checksums) sums.append(py::int_(c));
      return std::make_pair(b.attr("put")(NameList(names), views.list(), sums), Kind::kBool);
    });
  }

  Result<L2BackendResults> Stat(std::span<const std::string> names) override {
    return Batch("stat", names.size(),
                 [&](py::object& b) { return std::make_pair(b.attr("stat")(NameList(names)), Kind::kSize); });
  }

  Result<L2BackendResults> Get(std::span<const std::string> names, std::span<const ObjectView> buffers) override {
    return Batch("get", names.size(), [&](py::object& b) {
      Views views(buffers, true);
      return std::make_pair(b.attr("get")(NameList(names), views.list()), Kind::kSizeAndChecksum);
    });
  }

  Result<L2BackendResults> Delete(std::span<const std::string> names) override {
    return Batch("delete", names.size(),
                 [&](py::object& b) { return std::make_pair(b.attr("delete")(NameList(names)), Kind::kBool); });
  }

  Result<std::vector<std::pair<std::string, uint64_t>>> ListAll() override {
    GateTicket ticket;
    if (!ticket.ok()) return ShuttingDown();
    py::gil_scoped_acquire gil;
    std::vector<std::pair<std::string, uint64_t>> out;
    try {
      py::object it = state_->obj->attr("list_objects")();
      for (py::handle e : it) {
        auto t = py::reinterpret_borrow<py::tuple>(e);
        if (t.size() != 2) throw py::type_error("list_objects() must yield (name, size) pairs");
        out.emplace_back(t[0].cast<std::string>(), t[1].cast<uint64_t>());
      }
    } catch (py::error_already_set& e) {
      return Status::IOError("list_objects() raised " + OneLine(e));
    } catch (const py::cast_error& e) {
      return Status::IOError(std::string("list_objects() yielded a bad entry: ") + e.what());
    }
    return out;
  }

  void Close() override {
    if (!InterpreterAlive()) return;
    GateTicket ticket;  // after the atexit hook, it closed the backend already
    if (!ticket.ok()) return;
    py::gil_scoped_acquire gil;
    state_->CloseOnce();
  }

  void BlockingWait(const std::function<void()>& wait) override {
    if (InterpreterAlive() && PyGILState_Check()) {
      py::gil_scoped_release release;
      wait();
    } else {
      wait();
    }
  }

  std::vector<std::pair<std::string, std::string>> Details() const override { return details_; }

 private:
  enum class Kind { kBool, kSize, kSizeAndChecksum };

  static Status ShuttingDown() { return Status::Unavailable("the Python interpreter is shutting down"); }

  static py::list NameList(std::span<const std::string> names) {
    py::list l;
    for (const std::string& n : names) l.append(py::str(n));
    return l;
  }

  // Run `f` (which calls the backend and says how to read its answer) with
  // the GIL; convert the answer to one result per key.
  template <class F>
  Result<L2BackendResults> Batch(const char* method, size_t n, F&& f) {
    GateTicket ticket;
    if (!ticket.ok()) return ShuttingDown();
    py::gil_scoped_acquire gil;
    const std::string where = "L2 adapter '" + state_->type + "': backend " + method + "()";
    try {
      auto [answer, kind] = f(*state_->obj);
      if (!py::isinstance<py::sequence>(answer) || static_cast<size_t>(py::len(answer)) != n) {
        const std::string msg = where + " must return a list of " + std::to_string(n) + " results";
        LogWarning(msg);
        return Status::IOError(msg);
      }
      py::sequence seq = py::reinterpret_borrow<py::sequence>(answer);
      L2BackendResults out(n);
      size_t errors = 0;
      std::string first_error;
      for (size_t i = 0; i < n; ++i) {
        py::object e = seq[i];
        std::string bad;
        if (py::isinstance(e, py::handle(PyExc_BaseException))) {
          bad = OneLine(e);
        } else if (!Read(e, kind, &out[i])) {
          bad = "bad result " + py::repr(e).cast<std::string>();
        }
        if (!bad.empty()) {
          out[i] = L2BackendResult{};
          out[i].error = true;
          if (errors++ == 0) first_error = bad;
        }
      }
      if (errors > 0) {
        LogWarning(where + " failed for " + std::to_string(errors) + " of " + std::to_string(n) +
                   " keys, first: " + first_error);
      }
      return out;
    } catch (py::error_already_set& e) {
      const std::string msg = where + " raised " + OneLine(e);
      LogWarning(msg);
      return Status::IOError(msg);
    } catch (const py::cast_error& e) {
      const std::string msg = where + ": " + e.what();
      LogWarning(msg);
      return Status::IOError(msg);
    }
  }

  static bool IsInt(const py::handle& h) { return PyLong_Check(h.ptr()) && !PyBool_Check(h.ptr()); }

  // REQUIRES: the GIL.
  static bool Read(const py::handle& e, Kind kind, L2BackendResult* r) {
    switch (kind) {
      case Kind::kBool:
        if (!PyBool_Check(e.ptr())) return false;
        r->ok = e.cast<bool>();
        return true;
      case Kind::kSize:
        if (e.is_none()) return true;
        if (!IsInt(e) || e.cast<py::int_>() < py::int_(0)) return false;
        r->ok = true;
        r->size = e.cast<uint64_t>();
        return true;
      case Kind::kSizeAndChecksum: {
        if (e.is_none()) return true;
        if (!py::isinstance<py::tuple>(e)) return false;
        auto t = py::reinterpret_borrow<py::tuple>(e);
        if (t.size() != 2 || !IsInt(t[0]) || t[0].cast<py::int_>() < py::int_(0)) return false;
        if (!t[1].is_none() && !IsInt(t[1])) return false;
        r->ok = true;
        r->size = t[0].cast<uint64_t>();
        if (!t[1].is_none()) r->checksum = t[1].cast<uint64_t>();
        return true;
      }
    }
    return false;
  }

  std::shared_ptr<BackendState> state_;
  const std::vector<std::pair<std::string, std::string>> details_;
};

// Where a type's factory comes from: a registered callable, or a module
// attribute imported on first use (the built-in "plugin" and "s3").
struct FactorySource {
  PyRef callable;  // or
  std::string module, attr;
};

// A factory's exception as a Status. REQUIRES: the GIL.
Status FactoryError(const std::string& what, const py::error_already_set& e) {
  std::string msg;
  try {
    msg = py::str(e.value()).cast<std::string>();
  } catch (...) {
  }
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  if (e.matches(PyExc_ValueError) || e.matches(PyExc_TypeError) || e.matches(PyExc_ImportError)) {
    return Status::InvalidArgument(what + ": " + msg);
  }
  if (e.matches(PyExc_OSError)) return Status::IOError(what + ": " + msg);
  return Status::IOError(what + ": " + OneLine(e));
}

Result<std::unique_ptr<L2Adapter>> CreatePythonAdapter(const FactorySource& source, const L2CommonConfig& common,
                                                        const std::string& fields_json,
                                                        const L2AdapterContext& context) {
  const std::string what = "L2 adapter '" + common.type + "'";
  GateTicket ticket;
  if (!ticket.ok()) return Status::Unavailable(what + ": the Python interpreter is shutting down");
  std::unique_ptr<L2SyncBackend> backend;
  L2SyncAdapterOptions options;
  {
    py::gil_scoped_acquire gil;
    try {
      py::object fields = py::module_::import("json").attr("loads")(fields_json);
      py::object factory = source.callable ? *source.callable
                                           : py::module_::import(source.module.c_str()).attr(source.attr.c_str());
      py::object handle = factory(fields);
      py::object obj = handle.attr("backend");
      for (const char* m : {"put", "stat", "get", "delete", "list_objects"}) {
        if (!py::hasattr(obj, m) || !PyCallable_Check(obj.attr(m).ptr())) {
          return Status::InvalidArgument(what + ": the backend " + py::repr(py::type::of(obj)).cast<std::string>() +
                                         " has no method " + m + "() (see lmcache.l2.base.L2Backend)");
        }
      }
      options.num_workers = handle.attr("num_workers").cast<int>();
      options.capacity_bytes = handle.attr("capacity_bytes").cast<uint64_t>();
      options.probe_misses = handle.attr("probe_misses").cast<bool>();
      std::vector<std::pair<std::string, std::string>> details;
      for (auto item : handle.attr("details").cast<py::dict>()) {
        details.emplace_back(py::str(item.first).cast<std::string>(), py::str(item.second).cast<std::string>());
      }
      auto state = std::make_shared<BackendState>();
      state->type = common.type;
      state->obj = Hold(obj);
      Track(state);
      backend = std::make_unique<PythonBackend>(std::move(state), std::move(details));
    } catch (py::error_already_set& e) {
      return FactoryError(what, e);
    } catch (const py::cast_error& e) {
      return Status::InvalidArgument(what + ": the factory returned a bad BackendHandle: " + e.what());
    }
  }
  // Without the GIL: creation lists the backend (which takes the GIL itself).
  return CreateL2AdapterOverBackend(common, std::move(backend), options, context);
}

Status RegisterSource(const std::string& name, FactorySource source) {
  auto src = std::make_shared<FactorySource>(std::move(source));
  return RegisterL2AdapterType(
      name, [src](const L2CommonConfig& common, const std::string& fields_json, const L2AdapterContext& context) {
        return CreatePythonAdapter(*src, common, fields_json, context);
      });
}

std::mutex g_types_mu;
std::vector<std::string>& PythonTypes() {  // registered with a callable
  static auto* v = new std::vector<std::string>();
  return *v;
}

// The atexit hook. REQUIRES: the GIL.
void Shutdown() {
  bool drained;
  {
    py::gil_scoped_release release;
    drained = TheGate().CloseAndDrain(std::chrono::seconds(30));
  }
  if (!drained) LogWarning("L2 Python adapters: backend calls still running at exit after 30 s");
  std::vector<std::shared_ptr<BackendState>> live;
  {
    std::lock_guard<std::mutex> lock(g_live_mu);
    for (auto& w : LiveBackends()) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    LiveBackends().clear();
  }
  for (auto& s : live) s->CloseOnce();
  live.clear();
  std::vector<std::string> types;
  {
    std::lock_guard<std::mutex> lock(g_types_mu);
    types.swap(PythonTypes());
  }
  for (const std::string& t : types) (void)UnregisterL2AdapterType(t);  // drops the callables, GIL held
}

}  // namespace

void BindL2Python(py::module_& m) {
  // Built-in Python types; a second copy of the module (another build loaded
  // in the same process) finds them registered and leaves them.
  (void)RegisterSource("plugin", FactorySource{nullptr, "lmcache.l2.plugin", "create_backend"});
  (void)RegisterSource("s3", FactorySource{nullptr, "lmcache.l2.s3", "create_backend"});

  m.def(
      "register_python_type",
      [](const std::string& name, py::object factory) {
        if (!PyCallable_Check(factory.ptr())) ThrowInvalid("factory must be callable");
        if (TheGate().closed()) throw StatusError(Status::Unavailable("the Python interpreter is shutting down"));
        ThrowIfError(RegisterSource(name, FactorySource{Hold(std::move(factory)), "", ""}));
        std::lock_guard<std::mutex> lock(g_types_mu);
        PythonTypes().push_back(name);
      },
      py::arg("name"), py::arg("factory"),
      "Make L2 adapter type `name` creatable: factory(fields: dict) -> lmcache.l2.base.BackendHandle. "
      "InvalidArgumentError / AlreadyExistsError (built-in or taken name).");
  m.def(
      "unregister_python_type",
      [](const std::string& name) {
        {
          std::lock_guard<std::mutex> lock(g_types_mu);
          auto& v = PythonTypes();
          auto it = std::find(v.begin(), v.end(), name);
          if (it == v.end()) throw StatusError(Status::NotFound("L2 adapter type '" + name + "' was not registered by register_python_type"));
          v.erase(it);
        }
        ThrowIfError(UnregisterL2AdapterType(name));
      },
      py::arg("name"), "Remove a type added by register_python_type (adapters already created keep working).");
  m.def(
      "live_python_backends",
      [] {
        std::lock_guard<std::mutex> lock(g_live_mu);
        size_t n = 0;
        for (auto& w : LiveBackends()) n += w.expired() ? 0 : 1;
        return n;
      },
      "How many Python-implemented backends are alive (held by an adapter).");
  m.def("_shutdown_python_adapters", &Shutdown,
        "The atexit hook: fail further backend calls, wait for running ones, close every backend.");
  py::module_::import("atexit").attr("register")(m.attr("_shutdown_python_adapters"));
}

}  // namespace lmcache::bindings
