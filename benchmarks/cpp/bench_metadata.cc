// Host-memory metadata per resident L1 object: heap bytes in use (mallinfo2)
// after admitting N objects, minus before, divided by N. Covers the index
// entry, the hash-table buckets, the allocator's block descriptor and the
// eviction hook (intrusive: no extra allocation). The objects' own bytes live
// in the arena (mmap, not heap) and are not counted.
//
// Usage: bench_metadata [num_objects=1000000] [policy=LRU]
#include <malloc.h>

#include <cstdlib>

#include "bench_common.h"
#include "lmcache/l1_store.h"

using namespace lmcache;

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const std::string policy = argc > 2 ? argv[2] : "LRU";
  const uint64_t obj = 4096;

  L1Options o;
  o.arena.capacity_bytes = n * obj;
  o.arena.lazy = true;               // nothing is touched: the arena costs no RSS
  o.prefault_window_bytes = 0;
  o.eviction_policy = policy;
  auto r = L1Store::Create(o);
  if (!r.ok()) {
    fprintf(stderr, "create failed: %s\n", r.status().ToString().c_str());
    return 1;
  }
  auto store = std::move(r).value();

  const size_t batch = 1024;
  std::vector<ObjectKey> keys(batch);
  std::vector<uint64_t> sizes(batch, obj);
  std::vector<ReserveOutcome> out;
  std::vector<ObjectView> views;
  // Warm the symbol table and the first allocations before measuring.
  Symbol::Intern("bench/model");
  malloc_trim(0);
  const size_t before = mallinfo2().uordblks;
  for (uint64_t base = 0; base < n; base += batch) {
    size_t m = std::min<uint64_t>(batch, n - base);
    for (size_t i = 0; i < m; ++i) {
      std::string h(32, '\0');
      uint64_t x = (base + i) * 0x9E3779B97F4A7C15ull + 7;
      memcpy(&h[0], &x, 8);
      MakeKey(h, "bench/model", PackKvRank(1, 0, 1, 0), 0, "", &keys[i]);
    }
    std::span<const ObjectKey> k(keys.data(), m);
    if (!store->ReserveWrite(k, std::span<const uint64_t>(sizes.data(), m), 1, &out, &views).ok() ||
        !store->FinishWrite(k, 1).ok()) {
      fprintf(stderr, "store failed at %llu\n", static_cast<unsigned long long>(base));
      return 1;
    }
  }
  const size_t after = mallinfo2().uordblks;
  const double per = static_cast<double>(after - before) / static_cast<double>(n);
  printf("L1 metadata: %llu resident objects, policy %s: %.1f heap bytes per object (target <= 256)\n",
         static_cast<unsigned long long>(store->Stats().resident_objects), policy.c_str(), per);
  printf("RESULT_JSON {\"bench\":\"metadata\",\"objects\":%llu,\"policy\":\"%s\",\"bytes_per_object\":%.1f}\n",
         static_cast<unsigned long long>(n), policy.c_str(), per);
  return 0;
}
