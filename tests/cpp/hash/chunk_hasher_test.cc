// Prefix-chain chunk hashing: the compat reference's test vectors, resuming
// from a cached prefix, partial tails, token range checks.
#include "lmcache/chunk_hasher.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace lmcache {
namespace {

std::string Hex(const ChunkHash& h) {
  std::string s;
  char b[3];
  for (uint8_t c : h) {
    std::snprintf(b, sizeof(b), "%02x", c);
    s += b;
  }
  return s;
}

std::vector<uint32_t> Iota(size_t n) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

// Tokens spread over the whole uint32 range (every CBOR integer width).
std::vector<uint32_t> Spread(size_t n) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint32_t>((i * 2654435761ull) % (1ull << 32));
  return v;
}

std::vector<ChunkHash> Hashes(HashAlgorithm a, std::span<const uint32_t> t, size_t c,
                              std::span<const uint8_t> prefix = {}) {
  std::vector<ChunkHash> out;
  Status s = ChunkHashes(a, t, c, prefix, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(ChunkHasherTest, NoneHashes) {
  EXPECT_EQ(Hex(NoneHash(HashAlgorithm::kBlake3)),
            "7e3eff9ef7613a50340eb12677ee03b83ac759fcba9bb32705f07248d56d473b");
  // sha256(cbor2.dumps((0, (0,), None), canonical=True))
  EXPECT_EQ(Hex(NoneHash(HashAlgorithm::kSha256Cbor)),
            "d01eddc504e77448195ff488ddf8bfb601ebd9c229db2d8e38cb08cdc3d3c8a1");
  // vLLM init_none_hash with PYTHONHASHSEED=0: sha256_cbor("0") = sha256(b"\x61\x30")
  EXPECT_EQ(Hex(SeededNoneHash(HashAlgorithm::kSha256Cbor, "0")),
            "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e");
  EXPECT_EQ(Hex(SeededNoneHash(HashAlgorithm::kSha256Cbor, "")),
            "8d33f520a3c4cef80d2453aef81b612bfe1cb44c8b2025630ad38662763f13d3");
  EXPECT_EQ(SeededNoneHash(HashAlgorithm::kBlake3, "0"), NoneHash(HashAlgorithm::kBlake3));
}

TEST(ChunkHasherTest, Blake3CompatVectors) {
  auto t = Iota(512);
  auto h = Hashes(HashAlgorithm::kBlake3, t, 256);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(Hex(h[0]), "084547b6c40ed5b05ba8cd0305db5bf74d5617673948d9ed193ab7d6cbc484d4");
  EXPECT_EQ(Hex(h[1]), "e5ffee45c2b9db326814c9692dc594369887ba3b0df5761817820b60f864c8e0");
  auto s = Hashes(HashAlgorithm::kBlake3, Spread(512), 256);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(Hex(s[0]), "e77d0c7108c1b6c8b3921cbc67e935a8455303ab321a867a104e269d6d6566f7");
  EXPECT_EQ(Hex(s[1]), "257cb07b72d7e5fdb961fb6cb205f355fc78a9cf2836f83a81348ac65464e580");
}

TEST(ChunkHasherTest, Sha256CborVectors) {
  // From vLLM's sha256_cbor (cbor2 + hashlib) chained from NoneHash.
  auto h = Hashes(HashAlgorithm::kSha256Cbor, Iota(512), 256);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(Hex(h[0]), "b0132f46964931ab608cc8c285fe9532034c701c9f2bb68eaab3ee0dcd08841a");
  EXPECT_EQ(Hex(h[1]), "334d7ee027da021f3ed0f93c3343550187dbb82d500b44ca8ebccebe52cdb0ff");
  auto s = Hashes(HashAlgorithm::kSha256Cbor, Spread(512), 256);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(Hex(s[0]), "39c5d6e198bcc9bee9b55e802a8172a1efbc3ea7fe63ac965e06c3ddc539ed14");
  EXPECT_EQ(Hex(s[1]), "3a0cbdb11574bae4ee61a5338999ad2b1ca04df115aaa7fe9937f155dead6ad6");
}

class ChunkHasherAlgoTest : public ::testing::TestWithParam<HashAlgorithm> {};

TEST_P(ChunkHasherAlgoTest, ResumeFromPrefixEqualsFullChain) {
  const auto t = Spread(256 * 10 + 17);
  const auto full = Hashes(GetParam(), t, 256);
  ASSERT_EQ(full.size(), 10u);
  for (size_t k = 1; k < 10; ++k) {
    std::span<const uint32_t> rest(t.data() + k * 256, t.size() - k * 256);
    auto tail = Hashes(GetParam(), rest, 256, full[k - 1]);
    ASSERT_EQ(tail.size(), 10 - k);
    for (size_t i = 0; i < tail.size(); ++i) EXPECT_EQ(tail[i], full[k + i]) << "k=" << k << " i=" << i;
  }
  // An explicit NONE_HASH prefix is the default.
  const ChunkHash none = NoneHash(GetParam());
  EXPECT_EQ(Hashes(GetParam(), t, 256, none), full);
}

TEST_P(ChunkHasherAlgoTest, PartialTailIgnoredAndPrefixProperty) {
  auto t = Spread(1000);  // 3 full chunks of 256, 232 tokens of tail
  auto a = Hashes(GetParam(), t, 256);
  ASSERT_EQ(a.size(), 3u);
  t[999] ^= 1;  // the tail is not hashed
  EXPECT_EQ(Hashes(GetParam(), t, 256), a);
  t[700] ^= 1;  // chunk 2 changes: only h_2 changes
  auto b = Hashes(GetParam(), t, 256);
  EXPECT_EQ(b[0], a[0]);
  EXPECT_EQ(b[1], a[1]);
  EXPECT_NE(b[2], a[2]);
  EXPECT_TRUE(Hashes(GetParam(), std::span<const uint32_t>(t.data(), 255), 256).empty());
  EXPECT_TRUE(Hashes(GetParam(), std::span<const uint32_t>(), 256).empty());
}

TEST_P(ChunkHasherAlgoTest, OtherChunkSizes) {
  auto t = Spread(100);
  for (size_t c : {1u, 3u, 16u, 23u, 24u, 100u}) {
    auto h = Hashes(GetParam(), t, c);
    EXPECT_EQ(h.size(), 100 / c);
    // The chain of chunk size c over the first k*c tokens is a prefix.
    auto shorter = Hashes(GetParam(), std::span<const uint32_t>(t.data(), (100 / c) * c - 1), c);
    ASSERT_EQ(shorter.size() + 1, h.size());
    for (size_t i = 0; i < shorter.size(); ++i) EXPECT_EQ(shorter[i], h[i]);
  }
}

TEST_P(ChunkHasherAlgoTest, TokenTypesAgreeAndAreRangeChecked) {
  const auto u32 = Spread(600);
  const auto ref = Hashes(GetParam(), u32, 256);
  std::vector<int64_t> i64(u32.begin(), u32.end());
  std::vector<uint64_t> u64(u32.begin(), u32.end());
  std::vector<int32_t> i32(600);
  for (size_t i = 0; i < 600; ++i) i32[i] = static_cast<int32_t>(i * 7);
  std::vector<uint32_t> u32b(i32.begin(), i32.end());
  std::vector<ChunkHash> out;
  ASSERT_TRUE(ChunkHashes(GetParam(), std::span<const int64_t>(i64), 256, {}, &out).ok());
  EXPECT_EQ(out, ref);
  ASSERT_TRUE(ChunkHashes(GetParam(), std::span<const uint64_t>(u64), 256, {}, &out).ok());
  EXPECT_EQ(out, ref);
  ASSERT_TRUE(ChunkHashes(GetParam(), std::span<const int32_t>(i32), 256, {}, &out).ok());
  EXPECT_EQ(out, Hashes(GetParam(), u32b, 256));

  i64[300] = -1;
  Status s = ChunkHashes(GetParam(), std::span<const int64_t>(i64), 256, {}, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("index 300"), std::string::npos) << s.message();
  EXPECT_TRUE(out.empty());
  i64[300] = int64_t{1} << 32;
  EXPECT_EQ(ChunkHashes(GetParam(), std::span<const int64_t>(i64), 256, {}, &out).code(),
            StatusCode::kInvalidArgument);
  i64[300] = 0xFFFFFFFFll;  // the largest token id is fine
  EXPECT_TRUE(ChunkHashes(GetParam(), std::span<const int64_t>(i64), 256, {}, &out).ok());
  i64[599] = -5;  // in the tail: not read
  EXPECT_TRUE(ChunkHashes(GetParam(), std::span<const int64_t>(i64), 256, {}, &out).ok());
  u64[0] = uint64_t{1} << 40;
  EXPECT_EQ(ChunkHashes(GetParam(), std::span<const uint64_t>(u64), 256, {}, &out).code(),
            StatusCode::kInvalidArgument);
  i32[5] = -3;
  EXPECT_EQ(ChunkHashes(GetParam(), std::span<const int32_t>(i32), 256, {}, &out).code(),
            StatusCode::kInvalidArgument);
}

TEST_P(ChunkHasherAlgoTest, InvalidArguments) {
  auto t = Iota(512);
  std::vector<ChunkHash> out(3);
  EXPECT_EQ(ChunkHashes(GetParam(), std::span<const uint32_t>(t), 0, {}, &out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(out.empty());
  std::vector<uint8_t> short_prefix(31);
  EXPECT_EQ(ChunkHashes(GetParam(), std::span<const uint32_t>(t), 256, short_prefix, &out).code(),
            StatusCode::kInvalidArgument);
}

TEST_P(ChunkHasherAlgoTest, ConcurrentCallsAgree) {
  const auto t = Spread(256 * 32);
  const auto ref = Hashes(GetParam(), t, 256);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);  // not vector<bool>: its bits share words
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      bool good = true;
      for (int r = 0; r < 20; ++r) {
        std::vector<ChunkHash> out;
        good = good && ChunkHashes(GetParam(), std::span<const uint32_t>(t), 256, {}, &out).ok() && out == ref;
      }
      ok[i] = good ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ok[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ChunkHasherAlgoTest,
                         ::testing::Values(HashAlgorithm::kBlake3, HashAlgorithm::kSha256Cbor),
                         [](const ::testing::TestParamInfo<HashAlgorithm>& i) {
                           return std::string(i.param == HashAlgorithm::kBlake3 ? "Blake3" : "Sha256Cbor");
                         });

TEST(ChunkHasherTest, AlgorithmNames) {
  HashAlgorithm a = HashAlgorithm::kSha256Cbor;
  ASSERT_TRUE(ParseHashAlgorithm("blake3", &a).ok());
  EXPECT_EQ(a, HashAlgorithm::kBlake3);
  ASSERT_TRUE(ParseHashAlgorithm("sha256_cbor", &a).ok());
  EXPECT_EQ(a, HashAlgorithm::kSha256Cbor);
  EXPECT_EQ(HashAlgorithmName(HashAlgorithm::kBlake3), "blake3");
  EXPECT_EQ(HashAlgorithmName(HashAlgorithm::kSha256Cbor), "sha256_cbor");
  EXPECT_EQ(ParseHashAlgorithm("builtin", &a).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHashAlgorithm("md5", &a).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHashAlgorithm("", &a).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lmcache
