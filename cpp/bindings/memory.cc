// Bindings of the allocator (for tests, tools and benchmarks; the L1 store
// owns its own arena and allocator).
#include "common.h"
#include "lmcache/allocator.h"

namespace lmcache::bindings {

void BindMemory(py::module_& m) {
  py::class_<Allocation>(m, "Allocation")
      .def_readonly("offset", &Allocation::offset)
      .def_readonly("size", &Allocation::size)
      .def("__repr__", [](const Allocation& a) {
        return "Allocation(offset=" + std::to_string(a.offset) + ", size=" + std::to_string(a.size) + ")";
      });

  py::class_<Allocator>(m, "Allocator", "TLSF allocator over an abstract region (metadata only).")
      .def(py::init([](uint64_t region_bytes, uint64_t align) {
             if (align == 0 || (align & (align - 1)) != 0) ThrowInvalid("align must be a power of two");
             if (region_bytes % align != 0) ThrowInvalid("region_bytes must be a multiple of align");
             return std::make_unique<Allocator>(region_bytes, align);
           }),
           py::arg("region_bytes"), py::arg("align") = 4096)
      .def(
          "allocate",
          [](Allocator& a, uint64_t bytes) -> py::object {
            Allocation r = a.Allocate(bytes);
            if (!r.valid()) return py::none();
            return py::cast(r);
          },
          py::arg("bytes"), "An Allocation, or None when nothing fits.")
      .def("free", [](Allocator& a, const Allocation& x) {
        if (!x.valid()) ThrowInvalid("not a live allocation");
        a.Free(x);
      })
      .def("stats", [](const Allocator& a) {
        AllocatorStats s = a.Stats();
        py::dict d;
        d["region_bytes"] = s.region_bytes;
        d["used_bytes"] = s.used_bytes;
        d["free_bytes"] = s.free_bytes;
        d["largest_free_block"] = s.largest_free_block;
        d["high_water_mark"] = s.high_water_mark;
        d["num_allocations"] = s.num_allocations;
        d["num_free_blocks"] = s.num_free_blocks;
        return d;
      });
}

}  // namespace lmcache::bindings
