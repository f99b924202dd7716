// The physical limit of the fs L2 adapter's workload on this machine: buffered writes of new
// files and warm reads, with plain syscalls and nothing else (no checksum, no rename, no index).
//
//   bench_fs DIR [files=128] [file KiB=256] [reps=5] [threads=1]
//
// Each rep creates DIR/rep-<i>/, writes `files` new files of `file KiB` each (open O_CREAT|
// O_EXCL, one write() of the whole file from its own slice of a pre-faulted, page-aligned
// region, close; no fsync), timed; then reads them back warm (open, one read() into its own
// slice of another such region, close), timed. The files are left in DIR for the caller to
// remove. With threads > 1 the files are split evenly between threads, started
// together. Prints a table and one RESULT_JSON line with the median GB/s (10^9 bytes/s) of both.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"

namespace {

using lmcache::bench::Median;
using lmcache::bench::NowNs;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_fs: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

std::string FileName(const std::string& dir, int i) { return dir + "/f" + std::to_string(i) + ".data"; }

// File i is written from / read into bytes [i * size, (i + 1) * size) of the region.
void WriteRange(const std::string& dir, int from, int to, const uint8_t* region, size_t size) {
  for (int i = from; i < to; ++i) {
    const uint8_t* src = region + size * static_cast<size_t>(i);
    const std::string name = FileName(dir, i);
    const int fd = open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) Die("open " + name);
    size_t done = 0;
    while (done < size) {
      const ssize_t r = write(fd, src + done, size - done);
      if (r <= 0) Die("write " + name);
      done += static_cast<size_t>(r);
    }
    if (close(fd) != 0) Die("close " + name);
  }
}

void ReadRange(const std::string& dir, int from, int to, uint8_t* region, size_t size) {
  for (int i = from; i < to; ++i) {
    uint8_t* dst = region + size * static_cast<size_t>(i);
    const std::string name = FileName(dir, i);
    const int fd = open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open " + name);
    size_t done = 0;
    while (done < size) {
      const ssize_t r = read(fd, dst + done, size - done);
      if (r <= 0) Die("read " + name);
      done += static_cast<size_t>(r);
    }
    close(fd);
  }
}

// Runs fn(from, to, thread) over [0, files) split between `threads`; returns seconds.
template <typename Fn>
double Parallel(int files, int threads, Fn fn) {
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) {
    ts.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) {
      }
      fn(files * t / threads, files * (t + 1) / threads, t);
    });
  }
  const int64_t t0 = NowNs();
  go.store(true, std::memory_order_release);
  fn(0, files / threads, 0);
  for (auto& th : ts) th.join();
  return static_cast<double>(NowNs() - t0) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_fs DIR [files=128] [file KiB=256] [reps=5] [threads=1]\n");
    return 2;
  }
  const std::string base = argv[1];
  const int files = argc > 2 ? std::atoi(argv[2]) : 128;
  const size_t size = (argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 256) * 1024;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 5;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  if (files < 1 || size == 0 || reps < 1 || threads < 1 || threads > files) {
    std::fprintf(stderr, "bench_fs: bad arguments\n");
    return 2;
  }
  if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) Die("mkdir " + base);

  // One source and one destination region per thread, pre-faulted (no first-touch in the timing).
  const size_t total = size * static_cast<size_t>(files);
  // One object per file, as an adapter's batch has (a cache-hot 256 KiB buffer reused for every
  // file would flatter the copy), page-aligned as L1 objects are (a misaligned destination slows
  // the kernel's copy of page-cache pages down several times on this CPU).
  const size_t region = size * static_cast<size_t>(files);
  auto* src_p = static_cast<uint8_t*>(std::aligned_alloc(4096, (region + 4095) / 4096 * 4096));
  auto* dst_p = static_cast<uint8_t*>(std::aligned_alloc(4096, (region + 4095) / 4096 * 4096));
  if (src_p == nullptr || dst_p == nullptr) Die("aligned_alloc");
  std::span<uint8_t> src(src_p, region), dst(dst_p, region);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 131 + 7);
  std::memset(dst.data(), 1, dst.size());

  std::vector<double> wr, rd;
  std::printf("%-5s %12s %12s\n", "rep", "write GB/s", "read GB/s");
  for (int rep = 0; rep < reps; ++rep) {
    const std::string dir = base + "/rep-" + std::to_string(getpid()) + "-" + std::to_string(rep);
    if (mkdir(dir.c_str(), 0755) != 0) Die("mkdir " + dir);
    const double w = Parallel(files, threads, [&](int from, int to, int /*thread*/) {
      WriteRange(dir, from, to, src.data(), size);
    });
    const double r = Parallel(files, threads, [&](int from, int to, int /*thread*/) {
      ReadRange(dir, from, to, dst.data(), size);
    });
    if (std::memcmp(dst.data(), src.data(), region) != 0) {
      std::fprintf(stderr, "bench_fs: read back different bytes\n");
      return 1;
    }
    wr.push_back(static_cast<double>(total) / w / 1e9);
    rd.push_back(static_cast<double>(total) / r / 1e9);
    std::printf("%-5d %12.3f %12.3f\n", rep, wr.back(), rd.back());
  }
  // The files stay (the caller removes DIR): on ext4, creating files soon after many deletions
  // is slow (the inode allocator skips recently deleted inodes, reading inode table blocks to
  // find them), so deleting here would slow down whatever creates files next, and deleting
  // between reps would make every rep after the first measure the allocator.
  std::printf(
      "RESULT_JSON {\"bench\":\"fs\",\"files\":%d,\"file_bytes\":%zu,\"threads\":%d,\"reps\":%d,"
      "\"write_gbps\":%.4f,\"read_gbps\":%.4f,\"loadavg\":%.2f}\n",
      files, size, threads, reps, Median(wr), Median(rd), lmcache::bench::LoadAvg());
  std::free(src_p);
  std::free(dst_p);
  return 0;
}
