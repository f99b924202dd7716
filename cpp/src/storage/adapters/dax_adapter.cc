// PLACEHOLDER: the dax adapter is being written; until then the type is refused.
#include "storage/l2_config.h"

namespace lmcache::internal {

Result<std::unique_ptr<L2Adapter>> CreateDaxAdapter(const L2CommonConfig& /*common*/, JsonFields& /*fields*/,
                                       const L2AdapterContext& /*context*/) {
  return Status::InvalidArgument("L2 adapter type 'dax' is not available in this build");
}

}  // namespace lmcache::internal
