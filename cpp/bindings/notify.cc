#include "common.h"
#include "lmcache/notifier.h"

namespace lmcache::bindings {

void BindNotify(py::module_& m) {
  py::class_<PeriodicNotifier>(m, "PeriodicNotifier",
                               "Writes 1 to every registered eventfd each interval. Context manager or "
                               "start()/stop(). The caller owns the fds.")
      .def(py::init([](double interval_ms) {
             if (!(interval_ms > 0)) ThrowInvalid("interval_ms must be positive");
             return std::make_unique<PeriodicNotifier>(static_cast<int64_t>(interval_ms * 1e6));
           }),
           py::arg("interval_ms") = 5.0)
      .def("start", [](PeriodicNotifier& n) { ThrowIfError(n.Start()); })
      .def("stop", &PeriodicNotifier::Stop, py::call_guard<py::gil_scoped_release>())
      .def("register", [](PeriodicNotifier& n, int fd) { ThrowIfError(n.Register(fd)); }, py::arg("fd"))
      .def("unregister", [](PeriodicNotifier& n, int fd) { ThrowIfError(n.Unregister(fd)); }, py::arg("fd"))
      .def("stats",
           [](const PeriodicNotifier& n) {
             NotifierStats s = n.Stats();
             py::dict d;
             d["ticks"] = s.ticks;
             d["writes"] = s.writes;
             d["dropped_fds"] = s.dropped_fds;
             d["registered_fds"] = s.registered_fds;
             d["running"] = s.running;
             d["interval_ms"] = static_cast<double>(n.interval_ns()) / 1e6;
             return d;
           })
      .def("__enter__",
           [](PeriodicNotifier& n) -> PeriodicNotifier& {
             ThrowIfError(n.Start());
             return n;
           }, py::return_value_policy::reference)
      .def("__exit__", [](PeriodicNotifier& n, py::args) {
        py::gil_scoped_release nogil;
        n.Stop();
      });
}

}  // namespace lmcache::bindings
