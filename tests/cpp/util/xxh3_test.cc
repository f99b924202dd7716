#include "util/xxh3.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace lmcache::internal {
namespace {

std::vector<unsigned char> Pattern(size_t n) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>(((i * 31 + 7) * ((i >> 8) | 1)) & 255);
  return v;
}

// XXH3_64bits of Pattern(n)[0:len], computed with Debian's libxxhash 0.8.1
// (the reference implementation); one length per branch of the algorithm.
const std::pair<size_t, uint64_t> kVectors[] = {
    {0, 0x2D06800538D394C2ull},      {1, 0x4C5CCA45D0F4811Full},     {3, 0x15F7093B173D005Cull},
    {4, 0xDCA012F95811B6B9ull},      {8, 0xDEC6A9A43575982Eull},     {9, 0xCBE393399F17FFBDull},
    {16, 0x7E484C18D74895D0ull},     {17, 0x208BDE5EE2BED407ull},    {128, 0xF92B70EAA21A6288ull},
    {129, 0xF8F76713F2BB60FAull},    {240, 0xCCC7375172C41F03ull},   {241, 0x0B3B630948CE4A00ull},
    {1024, 0x4F725081317B8C59ull},   {1025, 0x1F9530565764AAD7ull},  {2048, 0x4A763F072EF67370ull},
    {16384, 0x0C47CFC18857A090ull},  {16385, 0xC6B85CD934CE231Cull}, {100000, 0x7A9AC16E30DF2004ull},
};

TEST(Xxh3, KnownVectors) {
  const auto data = Pattern(100000);
  for (const auto& [len, want] : kVectors) {
    EXPECT_EQ(Xxh3Digest(data.data(), len), want) << "len " << len << " kernel " << Xxh3Kernel();
    EXPECT_EQ(xxh3_testing::ScalarDigest(data.data(), len), want) << "len " << len;
    Xxh3 s;
    s.Update(data.data(), len);
    EXPECT_EQ(s.Digest(), want) << "stream, len " << len;
  }
}

TEST(Xxh3, KernelsAgreeOnEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::vector<unsigned char> buf(6000);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (size_t off = 0; off < 3; ++off) {
    for (size_t len = 0; len + off <= 5000; ++len) {
      ASSERT_EQ(Xxh3Digest(buf.data() + off, len), xxh3_testing::ScalarDigest(buf.data() + off, len)) << len;
    }
  }
}

TEST(Xxh3, StreamingEqualsOneShotForAnySplit) {
  std::mt19937_64 rng(11);
  std::vector<unsigned char> buf(300000);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (int t = 0; t < 2000; ++t) {
    const size_t len = rng() % (t < 1000 ? 3000 : buf.size());
    const size_t max_piece = t % 3 == 0 ? 7 : t % 3 == 1 ? 300 : 70000;
    Xxh3 s;
    size_t off = 0;
    while (off < len) {
      const size_t n = std::min<size_t>(len - off, rng() % max_piece);
      s.Update(buf.data() + off, n);
      off += n;
      if (t % 50 == 0) {  // a digest mid-stream does not end the stream
        ASSERT_EQ(s.Digest(), Xxh3Digest(buf.data(), off)) << "prefix " << off;
      }
    }
    ASSERT_EQ(s.Digest(), Xxh3Digest(buf.data(), len)) << "len " << len << " pieces up to " << max_piece;
  }
  Xxh3 s;
  s.Update(buf.data(), 5000);
  s.Reset();
  EXPECT_EQ(s.Digest(), Xxh3Digest(nullptr, 0));
}

// Differential test against the reference library where the system has it
// (.ci/run installs libxxhash0).
TEST(Xxh3, MatchesSystemLibxxhash) {
  void* lib = dlopen("libxxhash.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) GTEST_SKIP() << "libxxhash.so.0 not installed";
  using Fn = uint64_t (*)(const void*, size_t);
  auto ref = reinterpret_cast<Fn>(dlsym(lib, "XXH3_64bits"));
  ASSERT_NE(ref, nullptr);
  std::mt19937_64 rng(3);
  std::vector<unsigned char> buf(1 << 20);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (size_t len = 0; len < 4200; ++len) ASSERT_EQ(Xxh3Digest(buf.data() + 1, len), ref(buf.data() + 1, len)) << len;
  for (int t = 0; t < 200; ++t) {
    const size_t len = rng() % buf.size();
    ASSERT_EQ(Xxh3Digest(buf.data(), len), ref(buf.data(), len)) << len;
  }
  dlclose(lib);
}

}  // namespace
}  // namespace lmcache::internal
