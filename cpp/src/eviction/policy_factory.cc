// CreateEvictionPolicy: the name -> policy factory of lmcache/eviction_policy.h.

#include <memory>
#include <string>
#include <string_view>

#include "eviction/policies.h"
#include "lmcache/eviction_policy.h"

namespace lmcache {
namespace internal {

std::unique_ptr<EvictionPolicy> NewEvictionPolicyOrNull(std::string_view name) {
  if (name == "LRU") return std::make_unique<LruPolicy>();
  if (name == "IsolatedLRU") return std::make_unique<IsolatedLruPolicy>();
  if (name == "noop") return std::make_unique<NoopPolicy>();
  return nullptr;
}

}  // namespace internal

Result<std::unique_ptr<EvictionPolicy>> CreateEvictionPolicy(std::string_view name) {
  std::unique_ptr<EvictionPolicy> policy = internal::NewEvictionPolicyOrNull(name);
  if (policy != nullptr) return policy;
  std::string msg = "unknown eviction policy '";
  msg += name;
  msg += "' (choose from ";
  bool first = true;
  for (std::string_view n : internal::kEvictionPolicyNames) {
    if (!first) msg += ", ";
    msg += n;
    first = false;
  }
  msg += ")";
  return Status::InvalidArgument(std::move(msg));
}

}  // namespace lmcache
