// L2Tier: the adapters of one server and the two controllers over them. See
// lmcache/l2_controllers.h.
#include <utility>

#include "lmcache/l2_controllers.h"

namespace lmcache {

struct L2Tier::Impl {
  std::vector<std::unique_ptr<L2Adapter>> adapters;
  std::unique_ptr<StoreController> store;
  std::unique_ptr<PrefetchController> prefetch;
  bool closed = false;
};

L2Tier::L2Tier() : impl_(std::make_unique<Impl>()) {}

L2Tier::~L2Tier() { Close(); }

Result<std::unique_ptr<L2Tier>> L2Tier::Create(L1Store* l1, const std::vector<std::string>& specs,
                                               const L2TierOptions& options) {
  if (specs.empty()) return Status::InvalidArgument("no L2 adapter specs");
  std::unique_ptr<L2Tier> tier(new L2Tier());
  Impl& d = *tier->impl_;
  for (size_t i = 0; i < specs.size(); ++i) {
    Result<std::unique_ptr<L2Adapter>> a = CreateL2Adapter(specs[i], options.adapter_context);
    if (!a.ok()) {
      return Status(a.status().code(), "L2 adapter #" + std::to_string(i + 1) + ": " + a.status().message());
    }
    d.adapters.push_back(std::move(a).value());
  }
  std::vector<L2Adapter*> raw;
  for (auto& a : d.adapters) raw.push_back(a.get());
  Result<std::unique_ptr<PrefetchController>> p = PrefetchController::Create(l1, raw, options.prefetch);
  if (!p.ok()) return p.status();
  d.prefetch = std::move(p).value();
  Result<std::unique_ptr<StoreController>> s = StoreController::Create(l1, raw, options.store);
  if (!s.ok()) return s.status();
  d.store = std::move(s).value();
  return tier;
}

StoreController& L2Tier::store() { return *impl_->store; }
PrefetchController& L2Tier::prefetch() { return *impl_->prefetch; }
size_t L2Tier::num_adapters() const { return impl_->adapters.size(); }
L2Adapter& L2Tier::adapter(size_t i) { return *impl_->adapters.at(i); }

Result<uint64_t> L2Tier::ClearAdapters() {
  uint64_t deleted = 0;
  Status first_error;
  bool any_listed = false;
  for (auto& a : impl_->adapters) {
    L2ListRequest req;
    req.page_size = 1000;
    for (;;) {
      Result<L2KeyPage> page = a->List(req);
      if (!page.ok()) {
        if (first_error.ok()) first_error = page.status();
        break;
      }
      any_listed = true;
      std::vector<ObjectKey> keys;
      for (const L2KeyInfo& k : page.value().keys) keys.push_back(k.key);
      if (!keys.empty()) {
        Result<size_t> n = a->Delete(keys);
        if (n.ok()) {
          deleted += n.value();
        } else if (first_error.ok()) {
          first_error = n.status();
        }
      }
      // Deleting shifts nothing for a stem-ordered cursor: continue after the last key.
      if (page.value().next_cursor.empty()) break;
      req.cursor = page.value().next_cursor;
    }
  }
  if (!any_listed && !first_error.ok()) return first_error;
  return deleted;
}

void L2Tier::Close() {
  Impl& d = *impl_;
  if (d.closed) return;
  d.closed = true;
  // Stop taking work; running prefetches give up waiting on L2 (their tasks become orphans).
  if (d.prefetch) d.prefetch->BeginClose();
  // Close the adapters: running I/O finishes, queued tasks complete as failures, so
  // the controllers' remaining waits are short.
  for (auto& a : d.adapters) a->Close();
  if (d.store) d.store->Close();
  if (d.prefetch) d.prefetch->FinishClose();
  d.store.reset();
  d.prefetch.reset();
}

}  // namespace lmcache
