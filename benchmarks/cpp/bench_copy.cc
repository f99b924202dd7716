// bench_copy: can a put into L1 run at memcpy speed?
//
// Measures, interleaved in one run (so machine noise hits all cases alike):
//   memcpy      glibc memcpy of one object (32 MiB unless given) between two
//               pre-faulted buffers: the physical limit of a single-threaded
//               copy here;
//   arena       the L1 put path: Allocator::Allocate(object) in a lazy arena
//               kept pre-faulted ahead of the high-water mark (as the L1
//               prefault thread does), memcpy source -> object; objects are
//               churned (a random live object is freed per put) so freed
//               blocks get reused;
//   arena_cold  the same copy into never-touched arena memory (no prefault):
//               what the prefault machinery saves.
// Reports GB/s (1e9 bytes/s) median/min/max per case and arena/memcpy.
//
// Usage: bench_copy [reps (default 40)] [object MiB (default 32)]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lmcache/allocator.h"
#include "lmcache/arena.h"

namespace {

using lmcache::Allocation;
using lmcache::Allocator;
using lmcache::Arena;
using lmcache::ArenaOptions;

constexpr uint64_t kMiB = 1ull << 20;
uint64_t g_object = 32 * kMiB;  // object size; argv[2] in MiB
constexpr int kLiveObjects = 8;                // occupancy during the churn
constexpr uint64_t kPrefaultWindow = 256 * kMiB;  // the L1 default
constexpr int kWarmup = 5;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint8_t* MapFaulted(uint64_t len, uint8_t fill) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  madvise(p, len, MADV_HUGEPAGE);
  std::memset(p, fill, len);
  return static_cast<uint8_t*>(p);
}

struct Summary {
  double median = 0, min = 0, max = 0;
};

Summary Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Summary s;
  s.min = v.front();
  s.max = v.back();
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return s;
}

double Gbps(uint64_t bytes, double seconds) { return bytes / seconds / 1e9; }

// Defeats dead-store elimination of the copies.
volatile uint8_t g_sink;

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(20, std::atoi(argv[1])) : 40;
  if (argc > 2) {
    g_object = std::clamp<uint64_t>(std::strtoull(argv[2], nullptr, 10), 1, 96) * kMiB;
  }

  uint8_t* src = MapFaulted(g_object, 0x5a);
  uint8_t* dst = MapFaulted(g_object, 0);

  // Warm arena: lazy, 1 GiB capacity, 256 MiB initially usable.
  ArenaOptions warm_opts;
  warm_opts.capacity_bytes = 1024 * kMiB;
  warm_opts.initial_bytes = 256 * kMiB;
  warm_opts.lazy = true;
  auto warm_or = Arena::Create(warm_opts);
  if (!warm_or.ok()) {
    std::fprintf(stderr, "arena: %s\n", warm_or.status().ToString().c_str());
    return 1;
  }
  Arena& arena = *warm_or.value();
  Allocator alloc(arena.usable_bytes(), arena.align());

  // Cold arena: big enough for every cold rep to land on fresh memory.
  ArenaOptions cold_opts;
  cold_opts.capacity_bytes = (reps + kWarmup + 1) * g_object;
  cold_opts.lazy = true;
  auto cold_or = Arena::Create(cold_opts);
  if (!cold_or.ok()) {
    std::fprintf(stderr, "cold arena: %s\n", cold_or.status().ToString().c_str());
    return 1;
  }
  Arena& cold = *cold_or.value();
  uint64_t cold_next = 0;

  std::mt19937 rng(1234);
  std::vector<Allocation> live;
  // The put path: allocate (growing the arena if needed), prefault ahead
  // (off the timed path, as the background thread would), copy.
  auto put = [&](double* seconds) {
    if (live.size() >= kLiveObjects) {
      const size_t k = rng() % live.size();
      alloc.Free(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
    const double t0 = NowSeconds();
    Allocation a = alloc.Allocate(g_object);
    if (!a.valid()) {
      std::fprintf(stderr, "allocation failed\n");
      std::exit(1);
    }
    std::memcpy(arena.base() + a.offset, src, g_object);
    const double t1 = NowSeconds();
    g_sink = arena.base()[a.offset + g_object - 1];
    live.push_back(a);
    *seconds = t1 - t0;
    // Background work, untimed: keep the window ahead of the high-water mark.
    const uint64_t hwm = alloc.Stats().high_water_mark;
    while (arena.usable_bytes() < std::min(arena.capacity(), hwm + kPrefaultWindow)) {
      auto g = arena.Grow(0);
      if (!g.ok()) break;
      alloc.Extend(g.value());
    }
    arena.PrefaultUpTo(hwm + kPrefaultWindow);
  };
  arena.PrefaultUpTo(kPrefaultWindow);

  std::vector<double> memcpy_gbps, arena_gbps, cold_gbps;
  for (int i = 0; i < kWarmup + reps; ++i) {
    const double t0 = NowSeconds();
    std::memcpy(dst, src, g_object);
    const double t1 = NowSeconds();
    g_sink = dst[g_object - 1];

    double put_s = 0;
    put(&put_s);

    uint8_t* fresh = cold.base() + cold_next;
    cold_next += g_object;
    const double t2 = NowSeconds();
    std::memcpy(fresh, src, g_object);
    const double t3 = NowSeconds();
    g_sink = fresh[g_object - 1];

    if (i >= kWarmup) {
      memcpy_gbps.push_back(Gbps(g_object, t1 - t0));
      arena_gbps.push_back(Gbps(g_object, put_s));
      cold_gbps.push_back(Gbps(g_object, t3 - t2));
    }
  }

  const Summary m = Summarize(memcpy_gbps);
  const Summary a = Summarize(arena_gbps);
  const Summary c = Summarize(cold_gbps);
  const double ratio = a.median / m.median;
  const auto st = alloc.Stats();

  std::printf("bench_copy: %llu MiB objects, %d reps after %d warm-up, GB/s = 1e9 B/s\n",
              static_cast<unsigned long long>(g_object / kMiB), reps, kWarmup);
  std::printf("%-34s %8s %8s %8s\n", "case", "median", "min", "max");
  std::printf("%-34s %8.2f %8.2f %8.2f\n", "memcpy (pre-faulted buffers)", m.median, m.min, m.max);
  std::printf("%-34s %8.2f %8.2f %8.2f\n", "arena put (alloc + memcpy)", a.median, a.min, a.max);
  std::printf("%-34s %8.2f %8.2f %8.2f\n", "arena cold (first touch)", c.median, c.min, c.max);
  std::printf("arena/memcpy median ratio: %.3f (target >= 0.8)\n", ratio);
  std::printf("arena: usable %llu MiB, prefaulted %llu MiB, high-water %llu MiB, live %llu\n",
              static_cast<unsigned long long>(arena.usable_bytes() / kMiB),
              static_cast<unsigned long long>(arena.prefaulted_bytes() / kMiB),
              static_cast<unsigned long long>(st.high_water_mark / kMiB),
              static_cast<unsigned long long>(st.num_allocations));
  std::printf(
      "RESULT_JSON {\"bench\":\"copy\",\"object_bytes\":%llu,\"reps\":%d,"
      "\"memcpy_gbps\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},"
      "\"arena_gbps\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},"
      "\"arena_cold_gbps\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},"
      "\"ratio_arena_memcpy\":%.4f,\"high_water_mark\":%llu,\"prefaulted_bytes\":%llu}\n",
      static_cast<unsigned long long>(g_object), reps, m.median, m.min, m.max, a.median, a.min,
      a.max, c.median, c.min, c.max, ratio, static_cast<unsigned long long>(st.high_water_mark),
      static_cast<unsigned long long>(arena.prefaulted_bytes()));
  munmap(src, g_object);
  munmap(dst, g_object);
  return 0;
}
