// Object checksums, as an L2 store computes them and a load verifies them:
// XXH3-64 (AVX2 kernel where the CPU has it, and the portable kernel),
// XXH64 (what fs wrote before), for a 256 KiB object (the `bench l2` object,
// cache-resident after the read that precedes it) and a 64 MiB one (from
// DRAM). The physical limit is a read-only pass over the same bytes (a sum
// of 64-bit words the compiler vectorizes): a checksum cannot beat reading
// its input once. Median GB/s of many repetitions, one core.
//
// Usage: bench_checksum [seconds_per_row=0.5]
#include <cstdlib>
#include <random>
#include <vector>

#include "bench_common.h"
#include "util/xxh3.h"
#include "util/xxhash64.h"

using namespace lmcache;

namespace {

__attribute__((noinline)) uint64_t ReadPass(const uint64_t* p, size_t words) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i + 4 <= words; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 ^ s1 ^ s2 ^ s3;
}

template <typename Fn>
double MedianGbps(size_t bytes, double seconds, Fn&& fn) {
  for (int i = 0; i < 3; ++i) fn();  // warm up (and page in)
  std::vector<double> gbps;
  const int64_t end = bench::NowNs() + static_cast<int64_t>(seconds * 1e9);
  while (bench::NowNs() < end || gbps.size() < 5) {
    const int64_t t0 = bench::NowNs();
    fn();
    gbps.push_back(static_cast<double>(bytes) / static_cast<double>(bench::NowNs() - t0));
  }
  return bench::Median(gbps);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  std::mt19937_64 rng(5);
  std::vector<uint64_t> words((64u << 20) / 8);
  for (auto& w : words) w = rng();
  const auto* bytes = reinterpret_cast<const unsigned char*>(words.data());
  volatile uint64_t sink = 0;

  std::printf("# bench_checksum: median GB/s on one core (load %.2f); XXH3 kernel: %s\n", bench::LoadAvg(),
              internal::Xxh3Kernel());
  std::printf("%-10s %14s %14s %14s %14s %16s\n", "object", "read-limit", "xxh3", "xxh3-scalar", "xxh64",
              "xxh3/limit");
  for (size_t size : {size_t{256} << 10, size_t{64} << 20}) {
    const double limit = MedianGbps(size, seconds, [&] { sink = sink + ReadPass(words.data(), size / 8); });
    const double x3 = MedianGbps(size, seconds, [&] { sink = sink + internal::Xxh3Digest(bytes, size); });
    const double x3s =
        MedianGbps(size, seconds, [&] { sink = sink + internal::xxh3_testing::ScalarDigest(bytes, size); });
    const double x64 = MedianGbps(size, seconds, [&] { sink = sink + internal::Xxh64Digest(bytes, size); });
    std::printf("%-10s %14.2f %14.2f %14.2f %14.2f %16.2f\n", size == (256u << 10) ? "256KiB" : "64MiB", limit,
                x3, x3s, x64, x3 / limit);
  }
  return 0;
}
