// Prefix hash of a 32k-token prompt (128 chunks of 256 tokens), as a LOOKUP
// or STORE hashes it: median and p90 microseconds over many repetitions, per
// algorithm and token width, against the Python floor measured on the
// reference machine (shared/reference/machine-facts.md §3.4: 284 µs blake3
// through its Python binding with int32 tokens; 184 µs hashlib sha256).
// Also the raw one-chunk cost of each compression function.
//
// Usage: bench_hash [reps=2000]
#include <cstdlib>
#include <random>

#include "bench_common.h"
#include "hash/blake3.h"
#include "hash/sha256.h"
#include "lmcache/chunk_hasher.h"

using namespace lmcache;

namespace {

constexpr size_t kChunk = 256;
constexpr size_t kTokens = 32768;

template <typename Fn>
std::vector<double> TimeUs(int reps, Fn&& fn) {
  for (int i = 0; i < reps / 20 + 1; ++i) fn();  // warm up
  std::vector<double> us;
  us.reserve(reps);
  for (int i = 0; i < reps; ++i) {
    int64_t t0 = bench::NowNs();
    fn();
    us.push_back(static_cast<double>(bench::NowNs() - t0) / 1e3);
  }
  return us;
}

struct Row {
  std::string name;
  double median_us;
  double p90_us;
  double floor_us;  // 0: no reference
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 2000;
  // Token ids of a Llama-3-sized vocabulary (CBOR widths 1, 2 and 4 bytes).
  std::mt19937_64 rng(1);
  std::vector<uint32_t> u32(kTokens);
  for (auto& t : u32) t = static_cast<uint32_t>(rng() % 128256);
  std::vector<int64_t> i64(u32.begin(), u32.end());
  std::vector<ChunkHash> out;
  volatile uint8_t sink = 0;

  std::vector<Row> rows;
  auto prompt = [&](const char* name, HashAlgorithm a, auto tokens, double floor_us) {
    auto us = TimeUs(reps, [&] {
      Status s = ChunkHashes(a, tokens, kChunk, {}, &out);
      if (!s.ok() || out.size() != kTokens / kChunk) std::abort();
      sink = sink + out.back()[0];
    });
    rows.push_back({name, bench::Median(us), bench::Percentile(us, 90), floor_us});
  };
  prompt("blake3 uint32 tokens", HashAlgorithm::kBlake3, std::span<const uint32_t>(u32), 284);
  prompt("blake3 int64 tokens", HashAlgorithm::kBlake3, std::span<const int64_t>(i64), 441);
  prompt("sha256_cbor uint32 tokens", HashAlgorithm::kSha256Cbor, std::span<const uint32_t>(u32), 184);
  prompt("sha256_cbor int64 tokens", HashAlgorithm::kSha256Cbor, std::span<const int64_t>(i64), 184);

  // One chunk's input (32-byte prefix + 256 big-endian uint32 = 1056 bytes),
  // 128 times: the compression functions alone.
  std::vector<uint8_t> chunk(kChunkHashLen + 4 * kChunk, 0x5a);
  auto raw = [&](const char* name, auto fn) {
    auto us = TimeUs(reps, [&] {
      uint8_t d[32] = {};
      for (size_t i = 0; i < kTokens / kChunk; ++i) {
        chunk[0] = d[0];
        fn(chunk.data(), chunk.size(), d);
      }
      sink = sink + d[0];
    });
    rows.push_back({name, bench::Median(us), bench::Percentile(us, 90), 0});
  };
  using internal::Blake3Impl;
  using internal::Sha256Impl;
  raw("raw blake3 portable x128", [](const uint8_t* p, size_t n, uint8_t* d) {
    internal::Blake3(p, n, d, Blake3Impl::kPortable);
  });
  if (internal::Blake3ImplAvailable(Blake3Impl::kSse41)) {
    raw("raw blake3 sse4.1 x128", [](const uint8_t* p, size_t n, uint8_t* d) {
      internal::Blake3(p, n, d, Blake3Impl::kSse41);
    });
  }
  raw("raw sha256 portable x128", [](const uint8_t* p, size_t n, uint8_t* d) {
    internal::Sha256Digest(p, n, d, Sha256Impl::kPortable);
  });
  if (internal::Sha256ImplAvailable(Sha256Impl::kShaNi)) {
    raw("raw sha256 sha-ni x128", [](const uint8_t* p, size_t n, uint8_t* d) {
      internal::Sha256Digest(p, n, d, Sha256Impl::kShaNi);
    });
  }

  printf("prefix hash of a %zu-token prompt (%zu chunks of %zu), %d reps, load %.2f\n", kTokens, kTokens / kChunk,
         kChunk, reps, bench::LoadAvg());
  printf("%-28s %10s %10s %12s %8s\n", "case", "median us", "p90 us", "floor us", "speedup");
  for (const Row& r : rows) {
    if (r.floor_us > 0) {
      printf("%-28s %10.1f %10.1f %12.0f %7.2fx\n", r.name.c_str(), r.median_us, r.p90_us, r.floor_us,
             r.floor_us / r.median_us);
    } else {
      printf("%-28s %10.1f %10.1f %12s %8s\n", r.name.c_str(), r.median_us, r.p90_us, "-", "-");
    }
  }
  printf("RESULT_JSON {\"bench\":\"hash\",\"tokens\":%zu,\"chunk_size\":%zu,\"reps\":%d", kTokens, kChunk, reps);
  const char* keys[] = {"blake3_u32_us", "blake3_i64_us", "sha256_cbor_u32_us", "sha256_cbor_i64_us"};
  for (size_t i = 0; i < 4; ++i) printf(",\"%s\":%.1f", keys[i], rows[i].median_us);
  printf(",\"floor_blake3_us\":284,\"floor_sha256_us\":184}\n");
  return sink == 0x42 ? 0 : 0;
}
