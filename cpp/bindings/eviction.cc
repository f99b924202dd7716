#include "common.h"
#include "lmcache/eviction_controller.h"

namespace lmcache::bindings {

namespace {
// Keeps the store alive as long as the controller.
struct ControllerHolder {
  std::shared_ptr<L1Store> store;
  std::unique_ptr<EvictionController> controller;
};
}  // namespace

void BindEviction(py::module_& m) {
  m.attr("POLICIES") = py::make_tuple("LRU", "IsolatedLRU", "noop");
  py::class_<ControllerHolder>(m, "EvictionController",
                               "Background thread keeping L1 under its watermark. Use as a context manager "
                               "or call start()/stop().")
      .def(py::init([](std::shared_ptr<L1Store> store, double trigger_watermark, double eviction_ratio,
                       double interval_seconds) {
             if (!store) ThrowInvalid("store must not be None");
             if (!(interval_seconds > 0)) ThrowInvalid("interval_seconds must be positive");
             EvictionControllerOptions o;
             o.trigger_watermark = trigger_watermark;
             o.eviction_ratio = eviction_ratio;
             o.interval_ns = SecondsToNs(interval_seconds);
             Result<std::unique_ptr<EvictionController>> r = EvictionController::Create(store.get(), o);
             ThrowIfError(r.status());
             return ControllerHolder{std::move(store), std::move(r).value()};
           }),
           py::arg("store"), py::arg("trigger_watermark") = 0.8, py::arg("eviction_ratio") = 0.2,
           py::arg("interval_seconds") = 1.0)
      .def("start", [](ControllerHolder& h) { ThrowIfError(h.controller->Start()); })
      .def("stop",
           [](ControllerHolder& h) {
             py::gil_scoped_release nogil;
             h.controller->Stop();
           })
      .def("run_once",
           [](ControllerHolder& h) {
             py::gil_scoped_release nogil;
             h.controller->RunOnce();
           })
      .def_property_readonly("healthy", [](const ControllerHolder& h) { return h.controller->healthy(); })
      .def("stats",
           [](const ControllerHolder& h) {
             EvictionControllerStats s = h.controller->Stats();
             py::dict d;
             d["ticks"] = s.ticks;
             d["evictions_triggered"] = s.evictions_triggered;
             d["evicted_bytes"] = s.evicted_bytes;
             d["quota_evicted_bytes"] = s.quota_evicted_bytes;
             d["swept"] = s.swept;
             d["failed_ticks"] = s.failed_ticks;
             d["thread_alive"] = s.thread_alive;
             d["healthy"] = s.healthy;
             d["last_error"] = s.last_error;
             d["trigger_watermark"] = h.controller->options().trigger_watermark;
             d["eviction_ratio"] = h.controller->options().eviction_ratio;
             d["eviction_policy"] = std::string(h.store->policy()->name());
             return d;
           })
      .def("__enter__",
           [](ControllerHolder& h) -> ControllerHolder& {
             ThrowIfError(h.controller->Start());
             return h;
           }, py::return_value_policy::reference)
      .def("__exit__", [](ControllerHolder& h, py::args) {
        py::gil_scoped_release nogil;
        h.controller->Stop();
      });
}

}  // namespace lmcache::bindings
