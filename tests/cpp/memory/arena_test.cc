#include "lmcache/arena.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace lmcache {
namespace internal {
// Defined in arena.cc: the fallback used where MADV_POPULATE_WRITE is missing.
void PrefaultByTouch(uint8_t* p, uint64_t len);
}  // namespace internal

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

// Number of resident pages in [p, p + len) (p page-aligned).
uint64_t ResidentPages(const uint8_t* p, uint64_t len) {
  const uint64_t pages = (len + kPage - 1) / kPage;
  std::vector<unsigned char> vec(pages);
  if (mincore(const_cast<uint8_t*>(p), len, vec.data()) != 0) return UINT64_MAX;
  uint64_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

uint64_t Pages(uint64_t len) { return (len + kPage - 1) / kPage; }

// Records every Register/Unregister; can be told to fail the n-th Register.
class FakeRegistrar : public MemoryRegistrar {
 public:
  using Range = std::pair<uintptr_t, uint64_t>;

  Status Register(void* addr, uint64_t len) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_at_ >= 0 && register_calls_++ == fail_at_) {
      return Status::Unavailable("fake registrar refuses");
    }
    registered_.emplace_back(reinterpret_cast<uintptr_t>(addr), len);
    return Status::OK();
  }
  void Unregister(void* addr, uint64_t len) override {
    std::lock_guard<std::mutex> lock(mu_);
    const Range r(reinterpret_cast<uintptr_t>(addr), len);
    auto it = std::find(registered_.begin(), registered_.end(), r);
    if (it == registered_.end()) {
      bogus_unregisters_++;
    } else {
      registered_.erase(it);
    }
    unregistered_.push_back(r);
  }

  void FailAtRegisterCall(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_at_ = n;
    register_calls_ = 0;
  }
  std::vector<Range> registered() {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_;
  }
  std::vector<Range> unregistered() {
    std::lock_guard<std::mutex> lock(mu_);
    return unregistered_;
  }
  int bogus_unregisters() {
    std::lock_guard<std::mutex> lock(mu_);
    return bogus_unregisters_;
  }
  // Sum of registered lengths; checks the ranges tile [base, base + total).
  uint64_t CoveredFrom(const uint8_t* base) {
    std::vector<Range> r = registered();
    std::sort(r.begin(), r.end());
    uintptr_t pos = reinterpret_cast<uintptr_t>(base);
    for (const Range& x : r) {
      if (x.first != pos) return UINT64_MAX;
      pos += x.second;
    }
    return pos - reinterpret_cast<uintptr_t>(base);
  }

 private:
  std::mutex mu_;
  std::vector<Range> registered_;
  std::vector<Range> unregistered_;
  int fail_at_ = -1;
  int register_calls_ = 0;
  int bogus_unregisters_ = 0;
};

TEST(ArenaTest, EagerIsUsableAndFaultedInFull) {
  ArenaOptions o;
  o.capacity_bytes = 8 * kMiB + 100;
  o.lazy = false;
  auto r = Arena::Create(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Arena& a = *r.value();
  EXPECT_EQ(a.capacity(), 8 * kMiB + 4096);  // rounded up to align
  EXPECT_EQ(a.align(), 4096u);
  EXPECT_FALSE(a.lazy());
  EXPECT_FALSE(a.file_backed());
  EXPECT_EQ(a.usable_bytes(), a.capacity());
  EXPECT_EQ(a.prefaulted_bytes(), a.capacity());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.base()) % (2 * kMiB), 0u);
  EXPECT_EQ(ResidentPages(a.base(), a.capacity()), Pages(a.capacity()));
  std::memset(a.base(), 0xab, a.capacity());
  EXPECT_EQ(a.base()[a.capacity() - 1], 0xab);
  EXPECT_EQ(a.PrefaultUpTo(UINT64_MAX), a.capacity());
  auto g = a.Grow(1);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kNoSpace);
}

TEST(ArenaTest, LazyStartsUnfaultedAndPrefaultsMonotonically) {
  for (bool huge : {true, false}) {
    ArenaOptions o;
    o.capacity_bytes = 256 * kMiB;
    o.initial_bytes = 10 * kMiB + 1;
    o.huge_pages = huge;
    auto r = Arena::Create(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Arena& a = *r.value();
    EXPECT_TRUE(a.lazy());
    EXPECT_EQ(a.capacity(), 256 * kMiB);
    EXPECT_EQ(a.usable_bytes(), 10 * kMiB + 4096);
    EXPECT_EQ(a.prefaulted_bytes(), 0u);
    EXPECT_EQ(ResidentPages(a.base(), a.capacity()), 0u);

    EXPECT_EQ(a.PrefaultUpTo(3 * kMiB), 3 * kMiB);
    EXPECT_EQ(a.prefaulted_bytes(), 3 * kMiB);
    EXPECT_EQ(ResidentPages(a.base(), 3 * kMiB), Pages(3 * kMiB));
    EXPECT_EQ(a.PrefaultUpTo(kMiB), 3 * kMiB);  // monotonic
    EXPECT_EQ(a.PrefaultUpTo(UINT64_MAX), a.usable_bytes());  // capped at usable
    EXPECT_EQ(ResidentPages(a.base(), a.usable_bytes()), Pages(a.usable_bytes()));
    if (!huge) {
      // Nothing beyond the usable prefix was touched (THP may round up to 2 MiB).
      EXPECT_EQ(ResidentPages(a.base() + a.usable_bytes(), a.capacity() - a.usable_bytes()), 0u);
    }
    std::memset(a.base(), 1, a.usable_bytes());
  }
}

TEST(ArenaTest, InitialBytesDefaultsAndCaps) {
  ArenaOptions o;
  o.capacity_bytes = 4 * kMiB;
  auto r = Arena::Create(o);  // initial 0 = capacity
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->usable_bytes(), 4 * kMiB);
  EXPECT_EQ(r.value()->prefaulted_bytes(), 0u);
  o.initial_bytes = 64 * kMiB;  // more than capacity
  r = Arena::Create(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->usable_bytes(), 4 * kMiB);
  EXPECT_EQ(r.value()->Grow(1).status().code(), StatusCode::kNoSpace);
}

TEST(ArenaTest, GrowByStepsUpToCapacity) {
  FakeRegistrar reg;
  {
    ArenaOptions o;
    o.capacity_bytes = 300 * kMiB;
    o.initial_bytes = 10 * kMiB;
    auto r = Arena::Create(o, &reg);
    ASSERT_TRUE(r.ok());
    Arena& a = *r.value();
    EXPECT_EQ(reg.CoveredFrom(a.base()), 10 * kMiB);
    // Step is max(initial, 64 MiB) = 64 MiB.
    auto g = a.Grow(1);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g.value(), 74 * kMiB);
    EXPECT_EQ(a.usable_bytes(), 74 * kMiB);
    g = a.Grow(65 * kMiB);  // rounded up to two steps
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g.value(), 202 * kMiB);
    EXPECT_EQ(reg.CoveredFrom(a.base()), 202 * kMiB);
    EXPECT_EQ(reg.registered().size(), 4u);  // one per piece
    g = a.Grow(0);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g.value(), 266 * kMiB);
    g = a.Grow(1);  // capped at capacity
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g.value(), 300 * kMiB);
    g = a.Grow(1);
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), StatusCode::kNoSpace);
    EXPECT_EQ(a.usable_bytes(), a.capacity());
    EXPECT_EQ(reg.CoveredFrom(a.base()), 300 * kMiB);
    EXPECT_EQ(a.prefaulted_bytes(), 0u);  // Grow does not fault
  }
  EXPECT_TRUE(reg.registered().empty()) << "destructor must unregister every range";
  EXPECT_EQ(reg.bogus_unregisters(), 0);
  EXPECT_EQ(reg.unregistered().size(), 6u);
}

TEST(ArenaTest, GrowStepIsInitialWhenLarge) {
  FakeRegistrar reg;
  {
    ArenaOptions o;
    o.capacity_bytes = 1000 * kMiB;
    o.initial_bytes = 100 * kMiB;
    o.align_bytes = 2 * kMiB;
    auto r = Arena::Create(o, &reg);
    ASSERT_TRUE(r.ok());
    Arena& a = *r.value();
    EXPECT_EQ(a.Grow(1).value(), 200 * kMiB);
    EXPECT_EQ(a.Grow(250 * kMiB).value(), 500 * kMiB);
  }
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_EQ(reg.bogus_unregisters(), 0);
}

TEST(ArenaTest, EagerRegistersOnce) {
  FakeRegistrar reg;
  {
    ArenaOptions o;
    o.capacity_bytes = 4 * kMiB;
    o.lazy = false;
    auto r = Arena::Create(o, &reg);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(reg.registered().size(), 1u);
    EXPECT_EQ(reg.registered()[0],
              FakeRegistrar::Range(reinterpret_cast<uintptr_t>(r.value()->base()), 4 * kMiB));
  }
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_EQ(reg.bogus_unregisters(), 0);
}

TEST(ArenaTest, RegistrarFailures) {
  FakeRegistrar reg;
  ArenaOptions o;
  o.capacity_bytes = 512 * kMiB;
  o.initial_bytes = 4 * kMiB;
  reg.FailAtRegisterCall(0);
  auto r = Arena::Create(o, &reg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_TRUE(reg.unregistered().empty());

  reg.FailAtRegisterCall(-1);
  {
    auto r2 = Arena::Create(o, &reg);
    ASSERT_TRUE(r2.ok());
    Arena& a = *r2.value();
    reg.FailAtRegisterCall(2);  // a three-piece Grow fails at its third piece
    auto g = a.Grow(129 * kMiB);
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(a.usable_bytes(), 4 * kMiB);
    EXPECT_EQ(reg.CoveredFrom(a.base()), 4 * kMiB);  // rolled back
    reg.FailAtRegisterCall(-1);
    EXPECT_EQ(a.Grow(129 * kMiB).value(), 196 * kMiB);
  }
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_EQ(reg.bogus_unregisters(), 0);
}

TEST(ArenaTest, BadOptions) {
  ArenaOptions o;
  o.capacity_bytes = 0;
  auto r = Arena::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("capacity_bytes"), std::string::npos);

  for (uint64_t align : std::vector<uint64_t>{0, 3, 32, 4097, 6144}) {
    o.capacity_bytes = kMiB;
    o.align_bytes = align;
    r = Arena::Create(o);
    ASSERT_FALSE(r.ok()) << align;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("align_bytes"), std::string::npos);
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
  o.align_bytes = 64;  // smallest legal alignment
  r = Arena::Create(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->align(), 64u);

  o.capacity_bytes = UINT64_MAX - 10;
  r = Arena::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

class TempFile {
 public:
  TempFile() {
    path_ = ::testing::TempDir() + "lmcache_arena_test_XXXXXX";
    const int fd = mkstemp(path_.data());
    EXPECT_GE(fd, 0);
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  uint64_t size() const {
    struct stat st;
    return stat(path_.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : UINT64_MAX;
  }

 private:
  std::string path_;
};

TEST(ArenaTest, FileBacked) {
  TempFile file;
  // Pre-existing content must survive Create's prefault.
  {
    const int fd = open(file.path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const char msg[] = "hello, arena";
    ASSERT_EQ(pwrite(fd, msg, sizeof(msg), 5000), static_cast<ssize_t>(sizeof(msg)));
    close(fd);
  }
  FakeRegistrar reg;
  {
    ArenaOptions o;
    o.capacity_bytes = 4 * kMiB;
    o.lazy = true;  // ignored: file-backed arenas are eager
    o.devdax_path = file.path();
    auto r = Arena::Create(o, &reg);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Arena& a = *r.value();
    EXPECT_TRUE(a.file_backed());
    EXPECT_FALSE(a.lazy());
    EXPECT_EQ(file.size(), 4 * kMiB);  // extended with ftruncate
    EXPECT_EQ(a.usable_bytes(), 4 * kMiB);
    EXPECT_EQ(a.prefaulted_bytes(), 4 * kMiB);
    EXPECT_EQ(reg.CoveredFrom(a.base()), 4 * kMiB);
    EXPECT_STREQ(reinterpret_cast<const char*>(a.base() + 5000), "hello, arena");
    for (uint64_t i = 0; i < 4 * kMiB; i += 4096) a.base()[i] = static_cast<uint8_t>(i >> 12);
    a.base()[4 * kMiB - 1] = 0x5a;

    // A second, independent mapping of the file sees the writes.
    const int fd = open(file.path().c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    void* m = mmap(nullptr, 4 * kMiB, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT_NE(m, MAP_FAILED);
    const uint8_t* view = static_cast<const uint8_t*>(m);
    for (uint64_t i = 0; i < 4 * kMiB; i += 4096) {
      ASSERT_EQ(view[i], static_cast<uint8_t>(i >> 12)) << i;
    }
    EXPECT_EQ(view[4 * kMiB - 1], 0x5a);
    munmap(m, 4 * kMiB);
    close(fd);
    EXPECT_EQ(a.Grow(1).status().code(), StatusCode::kNoSpace);
  }
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_EQ(reg.bogus_unregisters(), 0);

  // A file longer than the capacity is mapped, not truncated.
  ArenaOptions o;
  o.capacity_bytes = kMiB;
  o.devdax_path = file.path();
  auto r = Arena::Create(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(file.size(), 4 * kMiB);
  EXPECT_EQ(r.value()->base()[0], 0);
  EXPECT_EQ(r.value()->base()[4096], 1);
}

TEST(ArenaTest, FileBackedErrors) {
  ArenaOptions o;
  o.capacity_bytes = kMiB;
  o.devdax_path = ::testing::TempDir() + "lmcache_arena_test_does_not_exist";
  auto r = Arena::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("devdax_path"), std::string::npos);

  // A FIFO opens O_RDWR but is neither a file nor a device.
  const std::string fifo = ::testing::TempDir() + "lmcache_arena_test_fifo_" +
                           std::to_string(getpid());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  o.devdax_path = fifo;
  r = Arena::Create(o);
  unlink(fifo.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(ArenaTest, TouchFallbackKeepsContents) {
  ArenaOptions o;
  o.capacity_bytes = 8 * kMiB;
  o.huge_pages = false;
  auto r = Arena::Create(o);
  ASSERT_TRUE(r.ok());
  uint8_t* base = r.value()->base();
  base[0] = 7;
  base[3 * kPage + 1] = 9;
  internal::PrefaultByTouch(base, 4 * kMiB);
  EXPECT_EQ(ResidentPages(base, 4 * kMiB), Pages(4 * kMiB));
  EXPECT_EQ(ResidentPages(base + 4 * kMiB, 4 * kMiB), 0u);
  EXPECT_EQ(base[0], 7);
  EXPECT_EQ(base[3 * kPage + 1], 9);
  EXPECT_EQ(base[kPage], 0);
}

TEST(ArenaTest, ConcurrentGrowAndPrefault) {
  FakeRegistrar reg;
  {
    ArenaOptions o;
    o.capacity_bytes = 1024 * kMiB;
    o.initial_bytes = 2 * kMiB;
    auto r = Arena::Create(o, &reg);
    ASSERT_TRUE(r.ok());
    Arena& a = *r.value();
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&a, &failed, t] {
        uint64_t last_usable = 0;
        uint64_t last_faulted = 0;
        while (a.usable_bytes() < a.capacity()) {
          if (t % 2 == 0) {
            auto g = a.Grow(kMiB);
            if (!g.ok() && g.status().code() != StatusCode::kNoSpace) failed = true;
          } else {
            // Keep a small window faulted, like the L1 prefault thread.
            const uint64_t f = a.PrefaultUpTo(a.prefaulted_bytes() + 4 * kMiB);
            if (f < last_faulted || f > a.usable_bytes()) failed = true;
            last_faulted = f;
          }
          const uint64_t u = a.usable_bytes();
          if (u < last_usable || a.prefaulted_bytes() > u) failed = true;
          last_usable = u;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_FALSE(failed.load());
    EXPECT_EQ(a.usable_bytes(), a.capacity());
    EXPECT_EQ(reg.CoveredFrom(a.base()), a.capacity());
  }
  EXPECT_TRUE(reg.registered().empty());
  EXPECT_EQ(reg.bogus_unregisters(), 0);
}


// ---- SHM-backed arenas (the engine_driven pool) ----

// A name unique to this process and call; removed on destruction if still there.
class ShmName {
 public:
  ShmName() {
    static std::atomic<int> n{0};
    bare_ = "lmcache_arena_test_" + std::to_string(getpid()) + "_" + std::to_string(n++);
  }
  ~ShmName() { shm_unlink(("/" + bare_).c_str()); }
  const std::string& bare() const { return bare_; }
  std::string slashed() const { return "/" + bare_; }
  bool exists() const {
    struct stat st;
    return stat(("/dev/shm/" + bare_).c_str(), &st) == 0;
  }
  // (size, allocated bytes) of the segment, or (UINT64_MAX, UINT64_MAX).
  std::pair<uint64_t, uint64_t> usage() const {
    struct stat st;
    if (stat(("/dev/shm/" + bare_).c_str(), &st) != 0) return {UINT64_MAX, UINT64_MAX};
    return {static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_blocks) * 512};
  }

 private:
  std::string bare_;
};

TEST(ArenaTest, ShmLazyIsSharedAndUnlinked) {
  ShmName name;
  {
    ArenaOptions o;
    o.capacity_bytes = 8 * kMiB;
    o.initial_bytes = 2 * kMiB;
    o.shm_name = name.slashed();  // a leading '/' is accepted and dropped
    auto r = Arena::Create(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Arena& a = *r.value();
    EXPECT_TRUE(a.shm_backed());
    EXPECT_FALSE(a.file_backed());
    EXPECT_TRUE(a.lazy());
    EXPECT_EQ(a.shm_name(), name.bare());
    EXPECT_EQ(a.usable_bytes(), 2 * kMiB);
    EXPECT_EQ(a.prefaulted_bytes(), 0u);
    ASSERT_TRUE(name.exists());
    EXPECT_EQ(name.usage().first, 8 * kMiB);   // sized to the capacity
    EXPECT_EQ(name.usage().second, 0u);        // nothing materialized yet

    // A second process-like mapping (what a worker does) sees our writes and we see its.
    const int fd = shm_open(name.slashed().c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    void* m = mmap(nullptr, 8 * kMiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_NE(m, MAP_FAILED);
    uint8_t* peer = static_cast<uint8_t*>(m);
    a.base()[12345] = 0x42;
    peer[6 * kMiB + 7] = 0x17;
    EXPECT_EQ(peer[12345], 0x42);
    EXPECT_EQ(a.base()[6 * kMiB + 7], 0x17);

    EXPECT_EQ(a.PrefaultUpTo(2 * kMiB), 2 * kMiB);
    EXPECT_GE(name.usage().second, 2 * kMiB);
    EXPECT_LT(name.usage().second, 8 * kMiB);  // the rest stays lazy

    // Offsets of object ranges relative to the base (= offsets in the segment).
    auto off = a.OffsetOf(a.base() + 4096, 100);
    ASSERT_TRUE(off.ok());
    EXPECT_EQ(off.value(), 4096u);
    EXPECT_EQ(a.OffsetOf(a.base(), a.capacity()).value(), 0u);
    EXPECT_EQ(a.OffsetOf(a.base() + a.capacity() - 10, 11).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(a.OffsetOf(a.base() - 1, 1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(a.OffsetOf(peer, 1).status().code(), StatusCode::kInvalidArgument);

    // Unlink early (server shutdown): both mappings stay valid, new opens fail.
    EXPECT_TRUE(a.UnlinkShm());
    EXPECT_FALSE(a.UnlinkShm());
    EXPECT_FALSE(name.exists());
    EXPECT_EQ(a.shm_name(), name.bare());
    a.base()[100] = 0x99;
    EXPECT_EQ(peer[100], 0x99);
    munmap(m, 8 * kMiB);
  }
  EXPECT_FALSE(name.exists());

  // The destructor unlinks when nobody did before.
  {
    ArenaOptions o;
    o.capacity_bytes = kMiB;
    o.shm_name = name.bare();
    auto r = Arena::Create(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(name.exists());
  }
  EXPECT_FALSE(name.exists());
}

TEST(ArenaTest, ShmEagerIsAllocatedAndFaulted) {
  ShmName name;
  {
    ArenaOptions o;
    o.capacity_bytes = 4 * kMiB;
    o.lazy = false;
    o.shm_name = name.bare();
    auto r = Arena::Create(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Arena& a = *r.value();
    EXPECT_FALSE(a.lazy());
    EXPECT_EQ(a.usable_bytes(), 4 * kMiB);
    EXPECT_EQ(a.prefaulted_bytes(), 4 * kMiB);
    EXPECT_EQ(name.usage().second, 4 * kMiB);
    EXPECT_EQ(ResidentPages(a.base(), 4 * kMiB), Pages(4 * kMiB));
  }
  EXPECT_FALSE(name.exists());
}

TEST(ArenaTest, ShmNameCollisionNeverTouchesTheOtherSegment) {
  ShmName name;
  const int fd = shm_open(name.slashed().c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  ASSERT_EQ(pwrite(fd, "mine", 4, 0), 4);
  close(fd);

  ArenaOptions o;
  o.capacity_bytes = kMiB;
  o.shm_name = name.bare();
  auto r = Arena::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(r.status().message().find(name.slashed()), std::string::npos);
  ASSERT_TRUE(name.exists());
  EXPECT_EQ(name.usage().first, 4096u);  // neither resized nor unlinked
}

TEST(ArenaTest, ShmBadOptions) {
  ShmName name;
  ArenaOptions o;
  o.capacity_bytes = kMiB;
  for (const std::string& bad : std::vector<std::string>{"/", "a/b", "..", std::string(256, 'x')}) {
    o.shm_name = bad;
    auto r = Arena::Create(o);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("shm_name"), std::string::npos);
  }
  TempFile file;
  o.shm_name = name.bare();
  o.devdax_path = file.path();
  auto r = Arena::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(name.exists());
}

TEST(ArenaTest, OffsetOfAnonymousArena) {
  ArenaOptions o;
  o.capacity_bytes = kMiB;
  auto r = Arena::Create(o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value()->shm_backed());
  EXPECT_EQ(r.value()->shm_name(), "");
  EXPECT_FALSE(r.value()->UnlinkShm());
  EXPECT_EQ(r.value()->OffsetOf(r.value()->base() + 64, 64).value(), 64u);
}

}  // namespace
}  // namespace lmcache
