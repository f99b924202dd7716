// lmcache._native: the one native module, one submodule per area.
#include "common.h"

#ifndef LMCACHE_VERSION
#define LMCACHE_VERSION "0.0.0"
#endif

PYBIND11_MODULE(_native, m) {
  namespace b = lmcache::bindings;
  m.doc() = "lmcache native core (C++): arena, allocator, L1 store, eviction, notifier";
  m.attr("__version__") = LMCACHE_VERSION;
  b::BindErrors(m);
  auto keys = m.def_submodule("keys", "ObjectKey batches");
  b::BindKeys(keys);
  auto memory = m.def_submodule("memory", "arena and allocator");
  b::BindMemory(memory);
  auto l1 = m.def_submodule("l1", "the L1 host-memory store");
  b::BindL1(l1);
  auto eviction = m.def_submodule("eviction", "eviction controller");
  b::BindEviction(eviction);
  auto notify = m.def_submodule("notify", "periodic eventfd notifier");
  b::BindNotify(notify);
  auto transfer = m.def_submodule("transfer", "paged KV <-> L1 object copies, SHM registrations, checksums");
  b::BindTransfer(transfer);
  auto hashing = m.def_submodule("hashing", "prefix-chain chunk hashing (blake3, sha256_cbor)");
  b::BindHashing(hashing);
  auto l2 = m.def_submodule("l2", "L2 adapters: create from JSON, asynchronous store/lookup/load");
  b::BindL2(l2);
  b::BindL2Python(l2);
  auto l2ctl = m.def_submodule("l2ctl", "L1 <-> L2 store and prefetch controllers");
  b::BindL2Controllers(l2ctl);
}
