// SHA-256 against the FIPS 180-4 examples and hashlib digests, both
// compression functions; the CBOR heads sha256_cbor relies on.
#include "hash/sha256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hash/cbor.h"

namespace lmcache::internal {
namespace {

std::string Hex(const uint8_t* p, size_t n) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof(b), "%02x", p[i]);
    s += b;
  }
  return s;
}

std::string Digest(const std::string& in, Sha256Impl impl) {
  uint8_t out[kSha256OutLen];
  Sha256Digest(in.data(), in.size(), out, impl);
  return Hex(out, sizeof(out));
}

class Sha256Test : public ::testing::TestWithParam<Sha256Impl> {
 protected:
  void SetUp() override {
    if (!Sha256ImplAvailable(GetParam())) GTEST_SKIP() << "implementation not supported by this CPU";
  }
};

TEST_P(Sha256Test, FipsExamples) {
  EXPECT_EQ(Digest("", GetParam()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest("abc", GetParam()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", GetParam()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Digest(std::string(1000000, 'a'), GetParam()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_P(Sha256Test, PaddingBoundaries) {
  // Input bytes i % 251; expected digests from hashlib.
  struct V {
    size_t len;
    const char* hex;
  };
  constexpr V kVectors[] = {
      {1, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},
      {55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
      {56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
      {63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
      {64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
      {65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
      {119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6"},
      {120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c"},
      {127, "92ca0fa6651ee2f97b884b7246a562fa71250fedefe5ebf270d31c546bfea976"},
      {128, "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5"},
      {1000, "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d"},
      {1056, "5db9b7d0e282ebe52b6746d9af12405df56dbf07a4eab2bba1d30cc16a3efc30"},
      {4099, "5bfe486adf0afd901e2fb5cc72f10fa382239697a82f04e2e8de9b3d789b5771"},
  };
  for (const V& v : kVectors) {
    std::string in(v.len, '\0');
    for (size_t i = 0; i < v.len; ++i) in[i] = static_cast<char>(i % 251);
    EXPECT_EQ(Digest(in, GetParam()), v.hex) << "length " << v.len;
    // The same input fed in uneven pieces.
    Sha256 h(GetParam());
    for (size_t pos = 0; pos < in.size();) {
      size_t step = std::min<size_t>(in.size() - pos, 1 + pos % 97);
      h.Update(in.data() + pos, step);
      pos += step;
    }
    uint8_t out[kSha256OutLen];
    h.Finalize(out);
    EXPECT_EQ(Hex(out, sizeof(out)), v.hex) << "length " << v.len << " (incremental)";
  }
}

INSTANTIATE_TEST_SUITE_P(Impls, Sha256Test,
                         ::testing::Values(Sha256Impl::kAuto, Sha256Impl::kPortable, Sha256Impl::kShaNi),
                         [](const ::testing::TestParamInfo<Sha256Impl>& i) {
                           switch (i.param) {
                             case Sha256Impl::kAuto:
                               return std::string("Auto");
                             case Sha256Impl::kPortable:
                               return std::string("Portable");
                             case Sha256Impl::kShaNi:
                               return std::string("ShaNi");
                           }
                           return std::string("Unknown");
                         });

TEST(Sha256ImplTest, ImplementationsAgreeOnRandomInputs) {
  if (!Sha256ImplAvailable(Sha256Impl::kShaNi)) GTEST_SKIP() << "no SHA extensions";
  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 300; ++iter) {
    std::string in(rng() % 3000, '\0');
    for (auto& c : in) c = static_cast<char>(rng());
    ASSERT_EQ(Digest(in, Sha256Impl::kPortable), Digest(in, Sha256Impl::kShaNi)) << "length " << in.size();
  }
}

TEST(CborTest, HeadsAreShortestForm) {
  // cbor2.dumps((b"ab", (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1), None), canonical=True)
  uint8_t buf[64];
  uint8_t* p = cbor::PutHead(buf, cbor::kArray, 3);
  p = cbor::PutHead(p, cbor::kByteString, 2);
  *p++ = 'a';
  *p++ = 'b';
  p = cbor::PutHead(p, cbor::kArray, 8);
  for (uint64_t v : {0ull, 23ull, 24ull, 255ull, 256ull, 65535ull, 65536ull, 4294967295ull}) {
    uint8_t* q = cbor::PutHead(p, cbor::kUnsigned, v);
    EXPECT_EQ(static_cast<size_t>(q - p), cbor::HeadLen(v)) << v;
    p = q;
  }
  *p++ = cbor::kNull;
  EXPECT_EQ(Hex(buf, static_cast<size_t>(p - buf)), "83426162880017181818ff19010019ffff1a000100001afffffffff6");
  uint8_t* q = cbor::PutHead(buf, cbor::kUnsigned, 4294967296ull);
  EXPECT_EQ(Hex(buf, static_cast<size_t>(q - buf)), "1b0000000100000000");
  q = cbor::PutHead(buf, cbor::kTextString, 1);
  EXPECT_EQ(Hex(buf, static_cast<size_t>(q - buf)), "61");
}

TEST(CborTest, BranchlessUint32MatchesPutHead) {
  std::mt19937_64 rng(3);
  std::vector<uint32_t> values = {0, 1, 23, 24, 25, 255, 256, 257, 65535, 65536, 65537, 0xFFFFFF, 0x1000000,
                                  0xFFFFFFFFu};
  for (int i = 0; i < 10000; ++i) values.push_back(static_cast<uint32_t>(rng() >> (rng() % 64)));
  for (uint32_t v : values) {
    uint8_t a[16] = {}, b[16] = {};
    uint8_t* ea = cbor::PutHead(a, cbor::kUnsigned, v);
    uint8_t* eb = cbor::PutUint32Branchless(b, v);
    ASSERT_EQ(ea - a, eb - b) << v;
    ASSERT_EQ(Hex(a, static_cast<size_t>(ea - a)), Hex(b, static_cast<size_t>(eb - b))) << v;
  }
}

TEST(CborTest, Uint32ArrayMatchesPutHead) {
  std::mt19937_64 rng(5);
  for (size_t n : {0u, 1u, 7u, 63u, 64u, 65u, 256u, 1000u}) {
    std::vector<uint32_t> v(n);
    for (auto& x : v) x = static_cast<uint32_t>(rng() >> (rng() % 64));
    std::vector<uint8_t> ref(5 * n + 8), a(5 * n + 8), b(5 * n + 8);
    uint8_t* e = ref.data();
    for (uint32_t x : v) e = cbor::PutHead(e, cbor::kUnsigned, x);
    const size_t len = static_cast<size_t>(e - ref.data());
    uint8_t* ea = cbor::PutUint32Array(a.data(), v.data(), n, /*use_avx2=*/true);
    uint8_t* eb = cbor::PutUint32Array(b.data(), v.data(), n, /*use_avx2=*/false);
    ASSERT_EQ(static_cast<size_t>(ea - a.data()), len) << n;
    ASSERT_EQ(static_cast<size_t>(eb - b.data()), len) << n;
    EXPECT_EQ(Hex(a.data(), len), Hex(ref.data(), len)) << n;
    EXPECT_EQ(Hex(b.data(), len), Hex(ref.data(), len)) << n;
  }
}

}  // namespace
}  // namespace lmcache::internal
