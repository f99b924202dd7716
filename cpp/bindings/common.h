// Shared declarations of the pybind11 glue. No logic lives in bindings: they
// convert arguments, release the GIL around the native call, and convert
// results. Errors cross into Python only through ThrowIfError (errors.cc).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "lmcache/key.h"
#include "lmcache/status.h"

namespace lmcache::bindings {

namespace py = pybind11;

// Thrown by ThrowIfError; translated to lmcache.errors.<Class> once.
struct StatusError : std::exception {
  explicit StatusError(Status s) : status(std::move(s)) {}
  const char* what() const noexcept override { return status.message().c_str(); }
  Status status;
};

inline void ThrowIfError(const Status& s) {
  if (!s.ok()) throw StatusError(s);
}
[[noreturn]] inline void ThrowInvalid(std::string msg) { throw StatusError(Status::InvalidArgument(std::move(msg))); }

// A batch of keys built once in C++ (make_keys) and passed to every call, so
// Python never loops over keys.
struct KeyList {
  std::vector<ObjectKey> keys;
};

void BindErrors(py::module_& m);
void BindKeys(py::module_& m);
void BindMemory(py::module_& m);
void BindL1(py::module_& m);
void BindL2(py::module_& m);             // l2.cc: adapters (create, submit, query)
void BindL2Python(py::module_& m);       // l2_python.cc: adapters implemented in Python (plugin, s3)
void BindL2Controllers(py::module_& m);  // l2_controllers.cc: store / prefetch controllers
void BindEviction(py::module_& m);
void BindNotify(py::module_& m);
void BindTransfer(py::module_& m);
void BindHashing(py::module_& m);

}  // namespace lmcache::bindings
