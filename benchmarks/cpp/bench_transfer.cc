// bench_transfer: can lmcache_driven STORE / RETRIEVE copy at memcpy speed?
//
// A worker's paged KV cache lives in one POSIX SHM segment (pre-faulted):
// 32 layers of [2, NB, 16, 8, 128] float16 (NB = 256 by default, 16 MiB a
// layer). One request is 2 chunks of 256 tokens = 32 random blocks = 64 MiB
// (two 32 MiB L1 objects, the compat reference's standard request). Cases,
// interleaved in every repetition so machine noise hits all alike:
//   memcpy        glibc memcpy of 64 MiB between two pre-faulted anonymous
//                 buffers (the floor of architecture.md §3);
//   memcpy_shm    memcpy of 64 MiB from the SHM mapping into the two objects;
//   gather_T      KvCacheRegistration::Gather of the request into two
//                 pre-faulted L1 objects, T copy threads;
//   scatter_T     Scatter of the two objects into 32 other random blocks;
//   store_T       StoreChunks through an L1Store (reserve + gather +
//                 publish), the objects deleted again between repetitions;
//   retrieve_T    RetrieveChunks (read-lock + scatter + release);
//   *_hnd_1       gather/scatter of the same bytes read as the HND layout
//                 [2, NB, NH, BS, HS] (vLLM's CPU backend): 256-byte runs.
// Reports GB/s (1e9 bytes/s, bytes copied once) median/min/max, each case's
// ratio to memcpy, the load average, a table and one RESULT_JSON line.
//
// Usage: bench_transfer [reps (default 15)] [num_blocks (default 256)]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "lmcache/l1_store.h"
#include "lmcache/transfer.h"

namespace {

using lmcache::bench::LoadAvg;
using lmcache::bench::NowNs;
using lmcache::bench::Percentile;

constexpr int64_t kLayers = 32, kBs = 16, kNh = 8, kHs = 128, kChunkTokens = 256, kChunks = 2;
constexpr uint64_t kMiB = 1ull << 20;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_transfer: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Check(lmcache::Result<T> r, const char* what) {
  if (!r.ok()) Die(std::string(what) + ": " + r.status().ToString());
  return std::move(r).value();
}

void Check(const lmcache::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

uint8_t* MapAnon(uint64_t len, uint8_t fill) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die("mmap");
  madvise(p, len, MADV_HUGEPAGE);
  std::memset(p, fill, len);
  return static_cast<uint8_t*>(p);
}

volatile uint8_t g_sink;

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
  const int64_t nb = argc > 2 ? std::atoll(argv[2]) : 256;
  const int64_t bpc = kChunkTokens / kBs;
  if (reps < 1 || nb < 2 * kChunks * bpc) Die("usage: bench_transfer [reps>=1] [num_blocks>=64]");
  const int64_t layer_elems = 2 * nb * kBs * kNh * kHs;
  const uint64_t seg_bytes = static_cast<uint64_t>(kLayers * layer_elems * 2);
  const uint64_t request_bytes = static_cast<uint64_t>(kChunks * kChunkTokens * kLayers * 2 * kNh * kHs * 2);

  // ---- the worker's KV cache: one SHM segment, unlinked once mapped ----
  const std::string name = "/lmcache_bench_transfer_" + std::to_string(getpid());
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) Die("shm_open " + name);
  if (ftruncate(fd, static_cast<off_t>(seg_bytes)) != 0) {
    shm_unlink(name.c_str());
    Die("ftruncate");
  }
  close(fd);
  std::vector<lmcache::KvTensorHandle> handles(kLayers);
  for (int64_t l = 0; l < kLayers; ++l) {
    auto& h = handles[l];
    h.shm_name = name;
    h.nbytes = seg_bytes;
    h.meta.dtype = lmcache::KvDtype::kFloat16;
    h.meta.shape = {2, nb, kBs, kNh, kHs};
    h.meta.stride = {nb * kBs * kNh * kHs, kBs * kNh * kHs, kNh * kHs, kHs, 1};
    h.meta.storage_offset = l * layer_elems;
  }
  lmcache::RegistrationOptions opts;
  opts.chunk_tokens = kChunkTokens;
  auto reg_result = lmcache::KvCacheRegistration::Open(handles, opts);
  shm_unlink(name.c_str());  // the mapping keeps the memory; nothing leaks on exit
  auto reg = Check(std::move(reg_result), "KvCacheRegistration::Open");
  // The same bytes read as the HND layout [2, NB, NH, BS, HS] (vLLM's CPU
  // attention backend): 256-byte head rows instead of 32 KiB block runs.
  std::vector<lmcache::PagedKvLayout> hnd_layers;
  for (int64_t l = 0; l < kLayers; ++l) {
    lmcache::KvTensorMeta m;
    m.dtype = lmcache::KvDtype::kFloat16;
    m.shape = {2, nb, kNh, kBs, kHs};
    m.stride = {nb * kBs * kNh * kHs, kBs * kNh * kHs, kBs * kHs, kHs, 1};
    hnd_layers.push_back(Check(lmcache::PagedKvLayout::FromTensor(reg->layer(l).base, layer_elems * 2, m,
                                                                  lmcache::KvFormat::kTwoNbNhBsHs),
                               "HND layout"));
  }
  auto hnd = Check(lmcache::KvCacheRegistration::Create(hnd_layers, opts), "HND registration");
  const uint64_t obj_bytes = reg->ObjectBytes(0);
  // Pre-fault the KV pages (first touch of /dev/shm costs ~0.6 s/GiB).
  for (int64_t l = 0; l < kLayers; ++l) {
    std::memset(reg->layer(l).base, static_cast<int>(l), static_cast<size_t>(layer_elems * 2));
  }

  // ---- L1: an eager (pre-faulted) arena; two raw objects kept reserved ----
  lmcache::L1Options l1o;
  l1o.arena.capacity_bytes = 8 * obj_bytes;
  l1o.arena.lazy = false;
  l1o.prefault_window_bytes = 0;
  auto store = Check(lmcache::L1Store::Create(l1o), "L1Store::Create");
  std::vector<lmcache::ObjectKey> raw_keys(kChunks), keys(kChunks);
  std::mt19937_64 rng(12345);
  auto fake_hash = [&](uint64_t n) {
    std::string h(32, '\0');
    for (int i = 0; i < 4; ++i) {
      const uint64_t x = (n + 1) * 0x9E3779B97F4A7C15ull * (i + 1);
      std::memcpy(&h[i * 8], &x, 8);
    }
    return h;
  };
  for (int c = 0; c < kChunks; ++c) {
    lmcache::MakeKey(fake_hash(1000 + c), "bench/model", lmcache::PackKvRank(1, 0, 1, 0), 0, "", &raw_keys[c]);
    lmcache::MakeKey(fake_hash(c), "bench/model", lmcache::PackKvRank(1, 0, 1, 0), 0, "", &keys[c]);
  }
  std::vector<lmcache::ReserveOutcome> outcomes;
  std::vector<lmcache::ObjectView> objs;
  Check(store->ReserveWrite(raw_keys, std::vector<uint64_t>(kChunks, obj_bytes), 99, &outcomes, &objs), "reserve");
  for (const auto& v : objs) std::memset(v.data, 1, v.size);

  uint8_t* a = MapAnon(request_bytes, 1);
  uint8_t* b = MapAnon(request_bytes, 2);

  std::vector<int64_t> all(nb);
  std::iota(all.begin(), all.end(), 0);
  auto random_blocks = [&] {
    std::shuffle(all.begin(), all.end(), rng);
    return std::vector<int64_t>(all.begin(), all.begin() + kChunks * bpc);
  };

  lmcache::CopyPool pool1(1), pool2(2);
  std::map<std::string, std::vector<double>> secs;
  auto timed = [&](const std::string& label, auto&& fn) {
    const int64_t t0 = NowNs();
    fn();
    secs[label].push_back((NowNs() - t0) / 1e9);
  };
  const int warmup = 2;
  for (int rep = 0; rep < warmup + reps; ++rep) {
    if (rep == warmup) secs.clear();
    const std::vector<int64_t> from = random_blocks(), to = random_blocks();
    const std::span<const int64_t> fs[1] = {from}, ts[1] = {to};
    timed("gather_hnd_1", [&] { Check(hnd->Gather(0, fs, objs, &pool1), "gather hnd"); });
    timed("scatter_hnd_1", [&] { Check(hnd->Scatter(0, ts, objs, 0, &pool1), "scatter hnd"); });
    timed("memcpy", [&] { std::memcpy(b, a, request_bytes); });
    g_sink = b[rep % request_bytes];
    timed("memcpy_shm", [&] {
      for (int c = 0; c < kChunks; ++c) std::memcpy(objs[c].data, reg->layer(0).base + c * obj_bytes, obj_bytes);
    });
    for (lmcache::CopyPool* pool : {&pool1, &pool2}) {
      const std::string t = std::to_string(pool->threads());
      timed("gather_" + t, [&] { Check(reg->Gather(0, fs, objs, pool), "gather"); });
      timed("scatter_" + t, [&] { Check(reg->Scatter(0, ts, objs, 0, pool), "scatter"); });
      timed("store_" + t, [&] {
        auto r = Check(lmcache::StoreChunks(*store, *reg, 0, keys, fs, 1, pool), "store");
        if (r.written != kChunks) Die("store wrote " + std::to_string(r.written));
      });
      timed("retrieve_" + t, [&] {
        if (Check(lmcache::RetrieveChunks(*store, *reg, 0, keys, ts, 0, false, pool), "retrieve") != kChunks) {
          Die("retrieve missed");
        }
      });
      store->Delete(keys, /*force=*/false);
    }
  }

  const double floor_med = Percentile(secs["memcpy"], 50);
  const std::vector<std::string> order = {"memcpy",   "memcpy_shm", "gather_1",     "scatter_1",
                                          "store_1",  "retrieve_1", "gather_2",     "scatter_2",
                                          "store_2",  "retrieve_2", "gather_hnd_1", "scatter_hnd_1"};
  const double load = LoadAvg();
  std::printf("bench_transfer: %d reps, request %.0f MiB (2 chunks x %.0f MiB), KV %.0f MiB in SHM, load %.2f\n", reps,
              request_bytes / double(kMiB), obj_bytes / double(kMiB), seg_bytes / double(kMiB), load);
  std::printf("%-14s %10s %10s %10s %12s %14s\n", "case", "GB/s med", "GB/s min", "GB/s max", "ms med", "vs memcpy");
  std::string json = "{\"bench\":\"transfer\",\"reps\":" + std::to_string(reps) +
                     ",\"request_bytes\":" + std::to_string(request_bytes) + ",\"loadavg\":" + std::to_string(load) +
                     ",\"cases\":{";
  bool first = true;
  for (const std::string& c : order) {
    const auto& v = secs[c];
    const double med = Percentile(v, 50), lo = *std::min_element(v.begin(), v.end()),
                 hi = *std::max_element(v.begin(), v.end());
    const double gbps = request_bytes / med / 1e9;
    const double ratio = floor_med / med;  // 1.0 = memcpy speed; 0.67 = 1.5x slower
    std::printf("%-14s %10.2f %10.2f %10.2f %12.2f %13.2fx\n", c.c_str(), gbps, request_bytes / hi / 1e9,
                request_bytes / lo / 1e9, med * 1e3, ratio);
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%s\"%s\":{\"gbps_median\":%.3f,\"gbps_min\":%.3f,\"gbps_max\":%.3f,"
                  "\"ms_median\":%.3f,\"speed_vs_memcpy\":%.3f}",
                  first ? "" : ",", c.c_str(), gbps, request_bytes / hi / 1e9, request_bytes / lo / 1e9, med * 1e3,
                  ratio);
    json += buf;
    first = false;
  }
  json += "}}";
  std::printf("RESULT_JSON %s\n", json.c_str());
  store->AbortWrite(raw_keys, 99);
  munmap(a, request_bytes);
  munmap(b, request_bytes);
  reg->Close();
  return 0;
}
