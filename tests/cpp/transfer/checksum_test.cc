#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lmcache/transfer.h"
#include "transfer/md5.h"
#include "transfer_test_util.h"

namespace lmcache {
namespace {

using testing::Geometry;
using testing::MakeTensor;
using testing::ReferenceChecksumBytes;
using testing::TestTensor;

KvTensorMeta Contiguous(KvDtype dt, std::vector<int64_t> shape, int64_t offset) {
  KvTensorMeta m;
  m.dtype = dt;
  m.shape = shape;
  m.storage_offset = offset;
  m.stride.resize(shape.size());
  int64_t s = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    m.stride[d] = s;
    s *= shape[d];
  }
  return m;
}

// Digests produced by LMCache 0.5.6 itself: `_compute_block_checksums` of
// lmcache/v1/multiprocess/http_apis/cache_api.py (installed 0.5.6, torch
// 2.13 CPU) over the same bytes:
//   buf[i] = (i*131 + (i>>8)*7 + 5) & 0xFF, 960 bytes
//   L0 = buf[0:384]   as bfloat16 [2,6,2,2,4]  (block axis 1)
//   L1 = buf[384:576] as float16  [6,2,8]      (MLA, block axis 0)
//   L2 = buf[576:960] as bfloat16 [2,6,2,2,4]  (HND [2,NB,NH,BS,HS], axis 1)
//   block_ids [5, 0, 3], chunk_size 2 blocks (the second chunk is partial).
TEST(ChecksumTest, MatchesLmcache056Digests) {
  std::vector<uint8_t> buf(960);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>((i * 131 + (i >> 8) * 7 + 5) & 0xFF);
  std::vector<PagedKvLayout> layers;
  for (auto [meta, fmt] : {std::pair{Contiguous(KvDtype::kBFloat16, {2, 6, 2, 2, 4}, 0), KvFormat::kTwoNbBsNhHs},
                           std::pair{Contiguous(KvDtype::kFloat16, {6, 2, 8}, 192), KvFormat::kNbBsHs},
                           std::pair{Contiguous(KvDtype::kBFloat16, {2, 6, 2, 2, 4}, 288), KvFormat::kTwoNbNhBsHs}}) {
    auto l = PagedKvLayout::FromTensor(buf.data(), buf.size(), meta, fmt);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    layers.push_back(l.value());
  }
  RegistrationOptions o;
  o.chunk_tokens = 2;
  auto reg = KvCacheRegistration::Create(layers, o);
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  const std::vector<int64_t> ids = {5, 0, 3};
  auto agg = reg.value()->ChunkChecksumsMd5(ids, 2, false);
  ASSERT_TRUE(agg.ok());
  ASSERT_EQ(agg->size(), 1u);
  ASSERT_EQ(agg.value()[0].size(), 2u);
  EXPECT_EQ(agg.value()[0][0].Hex(), "13b6a6460c2276bde38bd122a51c248a");
  EXPECT_EQ(agg.value()[0][1].Hex(), "6ee06a53ffbe0041d1727070ea27bc01");
  auto lw = reg.value()->ChunkChecksumsMd5(ids, 2, true);
  ASSERT_TRUE(lw.ok());
  ASSERT_EQ(lw->size(), 3u);
  const char* want[3][2] = {{"72d62ee22b2c56bf590fc453a9ea336c", "6610c63aeac8d37741e23969f05fb5ac"},
                            {"b4e9c73e481c603c333d39c5a29c9358", "15260d29c5785f72a6bedeb2694a8efb"},
                            {"c89e41cfbb066b5b6523af1c9124e116", "e0c7ea679c541d545df104138cc4670c"}};
  for (int l = 0; l < 3; ++l) {
    for (int c = 0; c < 2; ++c) EXPECT_EQ(lw.value()[l][c].Hex(), want[l][c]) << "layer " << l << " chunk " << c;
  }
}

// Against the element-by-element reference for every format, padded
// strides and dtypes (bf16 widening included).
TEST(ChecksumTest, MatchesReferenceByteOrder) {
  struct Case {
    KvFormat f;
    KvDtype dt;
    uint32_t kv, nh;
    std::vector<int64_t> extra;
  };
  const std::vector<Case> cases = {
      {KvFormat::kTwoNbBsNhHs, KvDtype::kFloat16, 2, 2, {}},
      {KvFormat::kTwoNbBsNhHs, KvDtype::kBFloat16, 2, 3, {0, 5, 0, 0, 0}},
      {KvFormat::kTwoNbNhBsHs, KvDtype::kBFloat16, 2, 2, {1, 0, 2, 0, 1}},
      {KvFormat::kNbTwoBsNhHs, KvDtype::kFloat32, 2, 2, {3, 0, 0, 0, 0}},
      {KvFormat::kNbTwoNhBsHs, KvDtype::kUInt8, 2, 2, {}},
      {KvFormat::kNbBsHs, KvDtype::kFloat16, 1, 1, {0, 0, 1}},
  };
  std::vector<TestTensor> ts;
  std::vector<PagedKvLayout> layers;
  uint64_t seed = 1;
  for (const Case& c : cases) {
    Geometry g;
    g.format = c.f;
    g.dtype = c.dt;
    g.kv = c.kv;
    g.nh = c.nh;
    g.nb = 10;
    g.bs = 4;
    g.hs = 6;
    ts.push_back(MakeTensor(g, seed++, c.extra, 5));
    ASSERT_NE(ts.back().layout.base, nullptr);
    layers.push_back(ts.back().layout);
  }
  RegistrationOptions o;
  o.chunk_tokens = 8;
  auto reg = KvCacheRegistration::Create(layers, o);
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  const std::vector<int64_t> ids = {9, 2, 2, 7, 0, 4, 1};
  for (uint32_t bpc : {1u, 2u, 3u, 7u, 100u}) {
    auto agg = reg.value()->ChunkChecksumsMd5(ids, bpc, false);
    auto lw = reg.value()->ChunkChecksumsMd5(ids, bpc, true);
    ASSERT_TRUE(agg.ok() && lw.ok());
    const size_t chunks = (ids.size() + bpc - 1) / bpc;
    ASSERT_EQ(agg.value()[0].size(), chunks);
    for (size_t c = 0; c < chunks; ++c) {
      const std::vector<int64_t> sel(ids.begin() + c * bpc, ids.begin() + std::min(ids.size(), (c + 1) * bpc));
      internal::Md5 all;
      for (size_t li = 0; li < layers.size(); ++li) {
        std::vector<uint8_t> bytes;
        ReferenceChecksumBytes(layers[li], sel, &bytes);
        all.Update(bytes.data(), bytes.size());
        internal::Md5 one;
        one.Update(bytes.data(), bytes.size());
        Md5Digest d;
        one.Final(d.bytes);
        EXPECT_EQ(lw.value()[li][c].Hex(), d.Hex()) << "layer " << li << " chunk " << c << " bpc " << bpc;
      }
      Md5Digest d;
      all.Final(d.bytes);
      EXPECT_EQ(agg.value()[0][c].Hex(), d.Hex()) << "chunk " << c << " bpc " << bpc;
    }
  }
}

TEST(ChecksumTest, Validation) {
  Geometry g;
  g.nb = 4;
  TestTensor t = MakeTensor(g, 1);
  RegistrationOptions o;
  o.chunk_tokens = 4;
  auto reg = KvCacheRegistration::Create({t.layout}, o);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg.value()->ChunkChecksumsMd5({}, 1, false).status().code(), StatusCode::kInvalidArgument);
  const std::vector<int64_t> ok = {0, 3};
  EXPECT_EQ(reg.value()->ChunkChecksumsMd5(ok, 0, false).status().code(), StatusCode::kInvalidArgument);
  const std::vector<int64_t> bad = {0, 4};
  EXPECT_EQ(reg.value()->ChunkChecksumsMd5(bad, 1, false).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(reg.value()->ChunkChecksumsMd5(ok, 1, false).ok());
}

}  // namespace
}  // namespace lmcache
