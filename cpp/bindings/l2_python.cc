// PLACEHOLDER: being written.
#include "common.h"

namespace lmcache::bindings {

void BindL2Python(py::module_& /*m*/) {}

}  // namespace lmcache::bindings
