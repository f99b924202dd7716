#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lmcache/transfer.h"
#include "transfer_test_util.h"

namespace lmcache {
namespace {

// A unique segment name of this test process.
std::string UniqueName(const std::string& tag) {
  static int n = 0;
  return "/lmcache_test_" + std::to_string(getpid()) + "_" + tag + "_" + std::to_string(n++);
}

// Creates a segment of `bytes` filled by fill(i); unlinks it on destruction.
class Segment {
 public:
  Segment(std::string name, uint64_t bytes, mode_t mode = 0600) : name_(std::move(name)) {
    const int fd = shm_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR, mode);
    EXPECT_GE(fd, 0) << name_ << ": " << std::strerror(errno);
    if (fd < 0) return;
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    if (bytes > 0) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      EXPECT_NE(p, MAP_FAILED);
      auto* b = static_cast<uint8_t*>(p);
      for (uint64_t i = 0; i < bytes; ++i) b[i] = static_cast<uint8_t>(i * 7 + (i >> 9));
      munmap(p, bytes);
    }
    close(fd);
  }
  ~Segment() { shm_unlink(name_.c_str()); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

bool SegmentExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

size_t CountLines(const char* path) {
  std::ifstream f(path);
  std::string line;
  size_t n = 0;
  while (std::getline(f, line)) ++n;
  return n;
}

// Mappings of one shm segment (/dev/shm/<name>) in /proc/self/maps. Counting only these
// keeps the check exact under sanitizers, whose allocators add mappings of their own.
size_t CountMapsOf(const std::string& shm_name) {
  std::ifstream f("/proc/self/maps");
  std::string line;
  const std::string needle = "/dev/shm" + shm_name;
  size_t n = 0;
  while (std::getline(f, line)) n += line.find(needle) != std::string::npos;
  return n;
}

size_t CountFds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

TEST(ShmMappingTest, MapsTheSegmentShared) {
  Segment seg(UniqueName("map"), 1 << 16);
  const uint64_t live = ShmMapping::LiveCount();
  {
    auto m = ShmMapping::Open(seg.name(), 1 << 16);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(ShmMapping::LiveCount(), live + 1);
    EXPECT_EQ(m.value()->size(), 1u << 16);
    EXPECT_EQ(m.value()->name(), seg.name());
    EXPECT_EQ(m.value()->data()[1000], static_cast<uint8_t>(1000 * 7 + 1));
    // Writes are visible through a second mapping (MAP_SHARED), also one
    // opened by the name without '/'.
    m.value()->data()[5] = 0xAB;
    auto m2 = ShmMapping::Open(seg.name().substr(1), 4096);
    ASSERT_TRUE(m2.ok());
    EXPECT_EQ(m2.value()->data()[5], 0xAB);
    EXPECT_EQ(ShmMapping::LiveBytes() >= (1u << 16) + 4096, true);
  }
  EXPECT_EQ(ShmMapping::LiveCount(), live);
}

TEST(ShmMappingTest, ClearErrors) {
  auto missing = ShmMapping::Open(UniqueName("missing"), 4096);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);
  Segment seg(UniqueName("small"), 4096);
  auto small = ShmMapping::Open(seg.name(), 8192);
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("too small"), std::string::npos) << small.status().message();
  EXPECT_EQ(ShmMapping::Open(seg.name(), 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmMapping::Open("/a/b", 4096).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmMapping::Open("", 4096).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmMapping::Open("/", 4096).status().code(), StatusCode::kInvalidArgument);
  if (geteuid() != 0) {  // root bypasses file permissions
    Segment ro(UniqueName("ro"), 4096, 0400);
    auto denied = ShmMapping::Open(ro.name(), 4096);
    EXPECT_EQ(denied.status().code(), StatusCode::kIOError);
    EXPECT_NE(denied.status().message().find("permission"), std::string::npos) << denied.status().message();
  }
}

TEST(ShmMappingTest, NoFdOrMappingLeak) {
  Segment seg(UniqueName("leak"), 1 << 20);
  // Warm up anything that allocates lazily.
  { auto m = ShmMapping::Open(seg.name(), 1 << 20); }
  const size_t fds = CountFds();
  EXPECT_EQ(CountMapsOf(seg.name()), 0u);
  for (int i = 0; i < 50; ++i) {
    auto m = ShmMapping::Open(seg.name(), 1 << 20);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(CountMapsOf(seg.name()), 1u);
    EXPECT_EQ(CountFds(), fds);  // the fd is closed right after mmap
  }
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(ShmMapping::Open(seg.name(), 1 << 21).ok());
  EXPECT_EQ(CountMapsOf(seg.name()), 0u);
  EXPECT_EQ(CountFds(), fds);
}

TEST(UnlinkIfOwnerDeadTest, NeverUnlinksALiveProcessSegment) {
  const std::string name = "/lmcache_kv_" + std::to_string(getpid()) + "_7001";
  Segment seg(name, 4096);
  auto r = UnlinkIfOwnerDead(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value(), UnlinkOutcome::kOwnerAlive);
  EXPECT_TRUE(SegmentExists(name));
  // pid 1 is always alive.
  Segment init("/lmcache_kv_1_" + std::to_string(getpid()), 4096);
  EXPECT_EQ(UnlinkIfOwnerDead(init.name()).value(), UnlinkOutcome::kOwnerAlive);
  EXPECT_TRUE(SegmentExists(init.name()));
}

pid_t DeadPid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int st = 0;
  waitpid(child, &st, 0);  // reaped: /proc/<child> is gone
  return child;
}

TEST(UnlinkIfOwnerDeadTest, UnlinksADeadProcessSegment) {
  const pid_t dead = DeadPid();
  const std::string name = "/lmcache_kv_" + std::to_string(dead) + "_0";
  Segment seg(name, 4096);
  ASSERT_TRUE(SegmentExists(name));
  auto r = UnlinkIfOwnerDead(name.substr(1));  // without the '/'
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value(), UnlinkOutcome::kUnlinked);
  EXPECT_FALSE(SegmentExists(name));
  EXPECT_EQ(UnlinkIfOwnerDead(name).value(), UnlinkOutcome::kNotFound);
}

TEST(UnlinkIfOwnerDeadTest, RejectsOtherNames) {
  for (const char* n : {"/lmcache_kv_", "/lmcache_kv_12", "/lmcache_kv_x_1", "/lmcache_l1_pool_1_2", "/other_12_3",
                        "/lmcache_kv_0_1", "/lmcache_kv_-5_1", "/lmcache_kv_12345678901_1", ""}) {
    EXPECT_EQ(UnlinkIfOwnerDead(n).status().code(), StatusCode::kInvalidArgument) << n;
  }
  // Another prefix works the same way.
  const pid_t dead = DeadPid();
  Segment seg("/lmcache_l1_pool_" + std::to_string(dead) + "_a", 4096);
  EXPECT_EQ(UnlinkIfOwnerDead(seg.name(), "lmcache_l1_pool_").value(), UnlinkOutcome::kUnlinked);
}

TEST(UnlinkStaleSegmentsTest, RemovesOnlyDeadOwners) {
  const std::string prefix = "lmcache_sweeptest" + std::to_string(getpid()) + "x";
  const pid_t dead = DeadPid();
  Segment live("/" + prefix + std::to_string(getpid()) + "_1", 4096);
  Segment gone("/" + prefix + std::to_string(dead) + "_1", 4096);
  Segment gone2("/" + prefix + std::to_string(dead) + "_2", 4096);
  Segment odd("/" + prefix + "notapid", 4096);
  auto r = UnlinkStaleSegments(prefix);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().size(), 2u);
  EXPECT_TRUE(SegmentExists(live.name()));
  EXPECT_TRUE(SegmentExists(odd.name()));
  EXPECT_FALSE(SegmentExists(gone.name()));
  EXPECT_FALSE(SegmentExists(gone2.name()));
  EXPECT_FALSE(UnlinkStaleSegments("").ok());
  EXPECT_FALSE(UnlinkStaleSegments(prefix, "/nonexistent-dir").ok());
}

// Two layers in one segment (one storage, two views), as a 0.5.6 client
// registers views of one storage: one mapping, unmapped by Close.
TEST(KvCacheRegistrationShmTest, OpenSharesOneMappingPerSegment) {
  const int64_t NB = 8, BS = 4, NH = 2, HS = 8;
  const int64_t layer_elems = 2 * NB * BS * NH * HS;
  const uint64_t bytes = 2 * layer_elems * 2 + 4096;
  Segment seg(UniqueName("kv"), bytes);
  Segment mla_seg(UniqueName("mla"), NB * BS * 64 * 1);
  const uint64_t live = ShmMapping::LiveCount();
  const size_t maps = CountLines("/proc/self/maps");
  std::vector<KvTensorHandle> handles(3);
  for (int i = 0; i < 2; ++i) {
    handles[i].shm_name = seg.name();
    handles[i].nbytes = bytes;
    handles[i].meta.dtype = KvDtype::kFloat16;
    handles[i].meta.shape = {2, NB, BS, NH, HS};
    handles[i].meta.stride = {NB * BS * NH * HS, BS * NH * HS, NH * HS, HS, 1};
    handles[i].meta.storage_offset = i * layer_elems;
  }
  handles[2].shm_name = mla_seg.name().substr(1);
  handles[2].nbytes = NB * BS * 64;
  handles[2].meta.dtype = KvDtype::kUInt8;
  handles[2].meta.shape = {NB, BS, 64};
  handles[2].meta.stride = {BS * 64, 64, 1};
  RegistrationOptions o;
  o.chunk_tokens = 8;
  // No populate thread: glibc keeps a finished thread's stack mapped for reuse,
  // which would show up in the /proc/self/maps count below.
  o.populate_in_background = false;
  auto r = KvCacheRegistration::Open(handles, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto reg = r.value();
  EXPECT_EQ(ShmMapping::LiveCount(), live + 2);
  EXPECT_EQ(reg->mapped_bytes(), bytes + NB * BS * 64);
  EXPECT_EQ(reg->shm_names().size(), 2u);
  EXPECT_EQ(reg->kernel_groups().size(), 2u);
  EXPECT_EQ(reg->layer(1).base - reg->layer(0).base, layer_elems * 2);
  // Gather the segment's bytes and compare with the reference.
  const std::vector<std::vector<int64_t>> ids = {{3, 1, 4, 0}, {7, 2, 5, 6}};
  std::vector<std::span<const int64_t>> spans(ids.begin(), ids.end());
  std::vector<std::vector<uint8_t>> objs(2, std::vector<uint8_t>(reg->ObjectBytes(0)));
  std::vector<ObjectView> views = {{objs[0].data(), objs[0].size()}, {objs[1].data(), objs[1].size()}};
  ASSERT_TRUE(reg->Gather(0, spans, views).ok());
  EXPECT_EQ(objs[0], testing::ReferenceObject(*reg, 0, ids, 0));
  EXPECT_EQ(objs[1], testing::ReferenceObject(*reg, 0, ids, 1));
  reg->Close();
  EXPECT_EQ(ShmMapping::LiveCount(), live);
  EXPECT_EQ(reg->mapped_bytes(), 0u);
  EXPECT_EQ(CountLines("/proc/self/maps"), maps);
  reg.reset();
  EXPECT_EQ(ShmMapping::LiveCount(), live);
}

// Open() fills the page tables of the segments in the background; Close()
// stops that thread before unmapping, also in the middle of a large segment.
TEST(KvCacheRegistrationShmTest, BackgroundPopulateFinishesAndCloseStopsIt) {
  auto handle_for = [](const Segment& seg, int64_t nb) {
    KvTensorHandle h;
    h.shm_name = seg.name();
    h.nbytes = static_cast<uint64_t>(2 * nb * 16 * 8 * 128 * 2);
    h.meta.dtype = KvDtype::kFloat16;
    h.meta.shape = {2, nb, 16, 8, 128};
    h.meta.stride = {nb * 16 * 8 * 128, 16 * 8 * 128, 8 * 128, 128, 1};
    return h;
  };
  RegistrationOptions o;
  o.chunk_tokens = 16;
  {
    const int64_t nb = 64;  // 8 MiB
    Segment seg(UniqueName("pop"), 2 * nb * 16 * 8 * 128 * 2);
    auto r = KvCacheRegistration::Open({handle_for(seg, nb)}, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto reg = r.value();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (reg->populated_bytes() < reg->mapped_bytes() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(reg->populated_bytes(), reg->mapped_bytes());
    reg->Close();
  }
  {
    const int64_t nb = 768;  // 96 MiB: two populate steps; Close right away
    Segment seg(UniqueName("popbig"), 2 * nb * 16 * 8 * 128 * 2);
    const uint64_t live = ShmMapping::LiveCount();
    auto r = KvCacheRegistration::Open({handle_for(seg, nb)}, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto reg = r.value();
    const uint64_t mapped = reg->mapped_bytes();  // 0 once closed
    const auto t0 = std::chrono::steady_clock::now();
    reg->Close();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_LE(reg->populated_bytes(), mapped);
    const uint64_t after_close = reg->populated_bytes();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(reg->populated_bytes(), after_close);  // the thread is gone
    EXPECT_EQ(ShmMapping::LiveCount(), live);
  }
  {
    o.populate_in_background = false;
    const int64_t nb = 16;
    Segment seg(UniqueName("nopop"), 2 * nb * 16 * 8 * 128 * 2);
    auto r = KvCacheRegistration::Open({handle_for(seg, nb)}, o);
    ASSERT_TRUE(r.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(r.value()->populated_bytes(), 0u);
  }
}

TEST(KvCacheRegistrationShmTest, OpenErrorsNameTheLayerAndLeakNothing) {
  Segment seg(UniqueName("err"), 4096);
  const uint64_t live = ShmMapping::LiveCount();
  KvTensorHandle ok;
  ok.shm_name = seg.name();
  ok.nbytes = 4096;
  ok.meta.dtype = KvDtype::kFloat16;
  ok.meta.shape = {2, 4, 4, 2, 8};
  ok.meta.stride = {256, 64, 16, 8, 1};
  RegistrationOptions o;
  o.chunk_tokens = 4;
  EXPECT_TRUE(KvCacheRegistration::Open({ok}, o).ok());
  KvTensorHandle missing = ok;
  missing.shm_name = UniqueName("nope");
  auto r = KvCacheRegistration::Open({ok, missing}, o);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("layer 1"), std::string::npos) << r.status().message();
  KvTensorHandle outside = ok;
  outside.meta.storage_offset = 1600;  // the 1 KiB tensor then ends at 4224 > 4096
  r = KvCacheRegistration::Open({ok, outside}, o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  KvTensorHandle other_size = ok;
  other_size.nbytes = 2048;
  EXPECT_EQ(KvCacheRegistration::Open({ok, other_size}, o).status().code(), StatusCode::kInvalidArgument);
  KvTensorHandle bad_shape = ok;
  bad_shape.meta.shape = {4, 4, 2, 8};
  bad_shape.meta.stride = {64, 16, 8, 1};
  EXPECT_EQ(KvCacheRegistration::Open({bad_shape}, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmMapping::LiveCount(), live);
}

}  // namespace
}  // namespace lmcache
