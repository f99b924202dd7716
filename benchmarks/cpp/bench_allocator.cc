// bench_allocator: speed and fragmentation of lmcache::Allocator.
//
// (1) Throughput, single thread, 256 KiB objects, 4 KiB alignment, a 64 GiB
//     logical region (the allocator is metadata only):
//       pair      Allocate + Free of one object (split + merge each time);
//       churn     1024 live objects, free a random one + allocate one (the
//                 exact-reuse path a KV cache runs at steady state).
//     Million pairs/s, median of 5 runs.
// (2) Fragmentation: a region of N = 4096 chunks of 2 MiB (8 GiB logical),
//     filled to 90% occupancy, then 1 M allocation attempts keeping
//     occupancy near 90% (free a random live object whenever at or above the
//     target, otherwise allocate). Sizes:
//       mixed     80% full 2 MiB chunks, 20% partial chunks of 1 B..2 MiB;
//       fixed     2 MiB only (failures must be 0).
//     Reports free bytes, the largest allocatable block, largest/free, the
//     failed allocations, free-block count and high-water mark.
//
// Usage: bench_allocator [churn_ops (default 1000000)]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "lmcache/allocator.h"

namespace {

using lmcache::Allocation;
using lmcache::Allocator;
using lmcache::AllocatorStats;

constexpr uint64_t kKiB = 1ull << 10;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

volatile uint64_t g_sink;

// M pairs/s of Allocate+Free on an otherwise empty allocator.
double PairRate(uint64_t pairs) {
  Allocator alloc(64 * kGiB, 4096);
  uint64_t sum = 0;
  const double t0 = NowSeconds();
  for (uint64_t i = 0; i < pairs; ++i) {
    Allocation a = alloc.Allocate(256 * kKiB);
    sum += a.offset;
    alloc.Free(a);
  }
  const double t1 = NowSeconds();
  g_sink = sum;
  return pairs / (t1 - t0) / 1e6;
}

// M pairs/s of free-random + allocate with 1024 live objects.
double ChurnRate(uint64_t pairs) {
  Allocator alloc(64 * kGiB, 4096);
  std::vector<Allocation> live;
  for (int i = 0; i < 1024; ++i) live.push_back(alloc.Allocate(256 * kKiB));
  // Pre-draw the victims so the RNG stays out of the timed loop.
  std::mt19937 rng(5);
  std::vector<uint16_t> victims(1 << 16);
  for (auto& v : victims) v = static_cast<uint16_t>(rng() % 1024);
  const double t0 = NowSeconds();
  for (uint64_t i = 0; i < pairs; ++i) {
    Allocation& slot = live[victims[i & 0xffff]];
    alloc.Free(slot);
    slot = alloc.Allocate(256 * kKiB);
  }
  const double t1 = NowSeconds();
  g_sink = alloc.Stats().high_water_mark;
  for (const Allocation& a : live) alloc.Free(a);
  return pairs / (t1 - t0) / 1e6;
}

struct FragResult {
  uint64_t region = 0;
  uint64_t attempts = 0;
  uint64_t failures = 0;
  uint64_t failures_below_free = 0;  // failed although free_bytes >= request
  double occupancy = 0;
  AllocatorStats stats;
  double seconds = 0;
};

FragResult Fragmentation(bool mixed, uint64_t ops, uint32_t seed) {
  constexpr uint64_t kChunk = 2 * kMiB;
  constexpr uint64_t kChunks = 4096;
  constexpr double kTarget = 0.90;
  FragResult r;
  r.region = kChunks * kChunk;
  Allocator alloc(r.region, 4096);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> partial(1, kChunk);
  auto next_size = [&]() -> uint64_t {
    return (mixed && rng() % 5 == 0) ? partial(rng) : kChunk;
  };
  std::vector<Allocation> live;
  uint64_t used = 0;
  const uint64_t target = static_cast<uint64_t>(kTarget * r.region);
  // Fill.
  while (used < target) {
    Allocation a = alloc.Allocate(next_size());
    if (!a.valid()) break;
    used += a.size;
    live.push_back(a);
  }
  // Churn: 'ops' allocation attempts.
  const double t0 = NowSeconds();
  while (r.attempts < ops) {
    if (used >= target && !live.empty()) {
      const size_t k = rng() % live.size();
      used -= live[k].size;
      alloc.Free(live[k]);
      live[k] = live.back();
      live.pop_back();
      continue;
    }
    const uint64_t bytes = next_size();
    ++r.attempts;
    Allocation a = alloc.Allocate(bytes);
    if (!a.valid()) {
      ++r.failures;
      if (r.region - used >= alloc.RoundUp(bytes)) ++r.failures_below_free;
      // Make room like an evicting cache would: drop a random object.
      const size_t k = rng() % live.size();
      used -= live[k].size;
      alloc.Free(live[k]);
      live[k] = live.back();
      live.pop_back();
      continue;
    }
    used += a.size;
    live.push_back(a);
  }
  r.seconds = NowSeconds() - t0;
  r.stats = alloc.Stats();
  r.occupancy = static_cast<double>(r.stats.used_bytes) / r.region;
  for (const Allocation& a : live) alloc.Free(a);
  const AllocatorStats empty = alloc.Stats();
  if (empty.num_free_blocks != 1 || empty.largest_free_block != r.region) {
    std::fprintf(stderr, "allocator did not return to one free block\n");
    std::exit(1);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t ops = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  constexpr uint64_t kPairs = 4000000;
  constexpr int kRuns = 5;

  PairRate(kPairs / 4);  // warm-up
  std::vector<double> pair_rates, churn_rates;
  for (int i = 0; i < kRuns; ++i) {
    pair_rates.push_back(PairRate(kPairs));
    churn_rates.push_back(ChurnRate(kPairs));
  }
  const double pair_med = Median(pair_rates);
  const double churn_med = Median(churn_rates);
  const auto [pmin, pmax] = std::minmax_element(pair_rates.begin(), pair_rates.end());
  const auto [cmin, cmax] = std::minmax_element(churn_rates.begin(), churn_rates.end());

  const FragResult mixed = Fragmentation(true, ops, 77);
  const FragResult fixed = Fragmentation(false, ops, 78);

  std::printf("bench_allocator\n");
  std::printf("(1) throughput, 256 KiB objects, 4 KiB align, 64 GiB region, median of %d\n",
              kRuns);
  std::printf("%-36s %10s %8s %8s\n", "case", "M pairs/s", "min", "max");
  std::printf("%-36s %10.2f %8.2f %8.2f\n", "alloc+free (split+merge)", pair_med, *pmin, *pmax);
  std::printf("%-36s %10.2f %8.2f %8.2f\n", "free+alloc, 1024 live (reuse)", churn_med, *cmin,
              *cmax);
  std::printf("(2) fragmentation: 4096 x 2 MiB region, ~90%% occupancy, %llu attempts\n",
              static_cast<unsigned long long>(ops));
  std::printf("%-8s %10s %12s %12s %8s %9s %9s %8s %9s %8s\n", "sizes", "occupancy",
              "free MiB", "largest MiB", "lg/free", "failures", "fail<free", "blocks",
              "hwm MiB", "Mops/s");
  for (const FragResult* f : {&mixed, &fixed}) {
    std::printf("%-8s %10.3f %12.1f %12.1f %8.3f %9llu %9llu %8llu %9.1f %8.2f\n",
                f == &mixed ? "mixed" : "fixed", f->occupancy,
                f->stats.free_bytes / double(kMiB), f->stats.largest_free_block / double(kMiB),
                f->stats.free_bytes ? double(f->stats.largest_free_block) / f->stats.free_bytes : 0,
                static_cast<unsigned long long>(f->failures),
                static_cast<unsigned long long>(f->failures_below_free),
                static_cast<unsigned long long>(f->stats.num_free_blocks),
                f->stats.high_water_mark / double(kMiB), f->attempts / f->seconds / 1e6);
  }
  const bool fixed_ok = fixed.failures == 0;
  std::printf("fixed-size failures: %llu (%s)\n",
              static_cast<unsigned long long>(fixed.failures), fixed_ok ? "ok" : "FAIL");

  auto frag_json = [](const FragResult& f) {
    static char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "{\"region_bytes\":%llu,\"attempts\":%llu,\"occupancy\":%.4f,"
                  "\"free_bytes\":%llu,\"largest_free_block\":%llu,\"largest_over_free\":%.4f,"
                  "\"failures\":%llu,\"failures_with_enough_free_bytes\":%llu,"
                  "\"num_free_blocks\":%llu,\"high_water_mark\":%llu,\"mops_per_s\":%.3f}",
                  static_cast<unsigned long long>(f.region),
                  static_cast<unsigned long long>(f.attempts), f.occupancy,
                  static_cast<unsigned long long>(f.stats.free_bytes),
                  static_cast<unsigned long long>(f.stats.largest_free_block),
                  f.stats.free_bytes ? double(f.stats.largest_free_block) / f.stats.free_bytes : 0,
                  static_cast<unsigned long long>(f.failures),
                  static_cast<unsigned long long>(f.failures_below_free),
                  static_cast<unsigned long long>(f.stats.num_free_blocks),
                  static_cast<unsigned long long>(f.stats.high_water_mark),
                  f.attempts / f.seconds / 1e6);
    return std::string(buf);
  };
  std::printf(
      "RESULT_JSON {\"bench\":\"allocator\",\"pair_mpairs_per_s\":{\"median\":%.3f,\"min\":%.3f,"
      "\"max\":%.3f},\"churn_mpairs_per_s\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},"
      "\"frag_mixed\":%s,\"frag_fixed\":%s}\n",
      pair_med, *pmin, *pmax, churn_med, *cmin, *cmax, frag_json(mixed).c_str(),
      frag_json(fixed).c_str());
  return fixed_ok ? 0 : 1;
}
