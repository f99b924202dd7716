// PLACEHOLDER: being written.
#include "common.h"

namespace lmcache::bindings {

void BindL2(py::module_& /*m*/) {}

}  // namespace lmcache::bindings
