// The single translation point from C++ Status codes to lmcache.errors.
#include "common.h"

namespace lmcache::bindings {

void BindErrors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      py::module_ errors = py::module_::import("lmcache.errors");
      py::dict table = errors.attr("CODE_TO_ERROR");
      py::str code(std::string(StatusCodeName(e.status.code())));
      py::object cls = table.contains(code) ? py::object(table[code]) : py::object(errors.attr("LMCacheError"));
      PyErr_SetObject(cls.ptr(), py::str(e.status.message()).ptr());
    }
  });
  // Exposed for tests of the translation itself.
  m.def(
      "_raise_status",
      [](const std::string& code, const std::string& message) {
        static const StatusCode kCodes[] = {
            StatusCode::kNotFound,   StatusCode::kNoSpace,   StatusCode::kIOError,
            StatusCode::kInvalidArgument, StatusCode::kUnavailable, StatusCode::kCorruption,
            StatusCode::kTimeout,    StatusCode::kAlreadyExists, StatusCode::kBusy};
        for (StatusCode c : kCodes) {
          if (StatusCodeName(c) == code) throw StatusError(Status(c, message));
        }
        ThrowInvalid("unknown status code '" + code + "'");
      },
      py::arg("code"), py::arg("message"));
}

}  // namespace lmcache::bindings
