// L1 index throughput and latency: reserve_write / finish_write /
// reserve_read / finish_read of 1 M distinct keys, split over 2 threads, one
// key per call (the worst case: per-call overhead dominates). Objects are
// small (256 B, 256 B alignment) so the benchmark measures the index, locks
// and allocator, not memory bandwidth.
//
// Usage: bench_index [num_keys=1000000] [threads=2]
#include <atomic>
#include <cstdlib>
#include <thread>

#include "bench_common.h"
#include "lmcache/l1_store.h"

using namespace lmcache;
using lmcache::bench::NowNs;
using lmcache::bench::Percentile;

namespace {

std::string Hash(uint64_t n) {
  std::string h(32, '\0');
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < 4; ++i) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    memcpy(&h[i * 8], &x, 8);
  }
  return h;
}

struct OpStats {
  std::vector<double> lat_ns;
  double seconds = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const uint64_t obj = 256;

  L1Options o;
  o.arena.capacity_bytes = n * obj * 2;
  o.arena.align_bytes = 256;
  o.arena.lazy = false;
  o.arena.huge_pages = true;
  auto r = L1Store::Create(o);
  if (!r.ok()) {
    fprintf(stderr, "create failed: %s\n", r.status().ToString().c_str());
    return 1;
  }
  auto store = std::move(r).value();

  std::vector<ObjectKey> keys(n);
  for (uint64_t i = 0; i < n; ++i) MakeKey(Hash(i), "bench/model", PackKvRank(1, 0, 1, 0), 0, "", &keys[i]);

  const char* names[4] = {"reserve_write", "finish_write", "reserve_read", "finish_read"};
  std::vector<std::vector<OpStats>> per_thread(threads, std::vector<OpStats>(4));
  for (int phase = 0; phase < 4; ++phase) {
    std::vector<std::thread> ts;
    std::atomic<bool> failed{false};
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t, phase] {
        OpStats& s = per_thread[t][phase];
        s.lat_ns.reserve(n / threads + 1);
        std::vector<uint64_t> size{obj};
        std::vector<ReserveOutcome> out;
        std::vector<ObjectView> views;
        int64_t start = NowNs();
        for (uint64_t i = t; i < n; i += threads) {
          std::span<const ObjectKey> k(&keys[i], 1);
          int64_t t0 = NowNs();
          switch (phase) {
            case 0:
              if (!store->ReserveWrite(k, size, 1, &out, &views).ok()) failed = true;
              break;
            case 1:
              if (!store->FinishWrite(k, 1).ok()) failed = true;
              break;
            case 2:
              if (store->ReserveReadPrefix(k, 1, &views) != 1) failed = true;
              break;
            case 3:
              if (store->FinishRead(k) != 1) failed = true;
              break;
          }
          s.lat_ns.push_back(static_cast<double>(NowNs() - t0));
        }
        s.seconds = static_cast<double>(NowNs() - start) / 1e9;
      });
    }
    for (auto& th : ts) th.join();
    if (failed) {
      fprintf(stderr, "phase %s failed\n", names[phase]);
      return 1;
    }
  }

  printf("L1 index benchmark: %llu keys, %d threads, one key per call, load avg %.2f\n",
         static_cast<unsigned long long>(n), threads, bench::LoadAvg());
  printf("%-15s %14s %10s %10s\n", "op", "ops/s", "p50 ns", "p99 ns");
  std::string json = "{\"bench\":\"index\",\"keys\":" + std::to_string(n) + ",\"threads\":" + std::to_string(threads);
  for (int phase = 0; phase < 4; ++phase) {
    std::vector<double> all;
    double max_s = 0;
    for (int t = 0; t < threads; ++t) {
      all.insert(all.end(), per_thread[t][phase].lat_ns.begin(), per_thread[t][phase].lat_ns.end());
      max_s = std::max(max_s, per_thread[t][phase].seconds);
    }
    double ops = static_cast<double>(n) / max_s;
    double p50 = Percentile(all, 50), p99 = Percentile(all, 99);
    printf("%-15s %14.0f %10.0f %10.0f\n", names[phase], ops, p50, p99);
    char buf[256];
    snprintf(buf, sizeof(buf), ",\"%s\":{\"ops_per_s\":%.0f,\"p50_ns\":%.0f,\"p99_ns\":%.0f}", names[phase], ops, p50,
             p99);
    json += buf;
  }
  json += "}";
  printf("RESULT_JSON %s\n", json.c_str());
  return 0;
}
