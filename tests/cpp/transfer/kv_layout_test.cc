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

std::string Md5Hex(const std::string& s) {
  internal::Md5 m;
  m.Update(s.data(), s.size());
  Md5Digest d;
  m.Final(d.bytes);
  return d.Hex();
}

TEST(Md5Test, Rfc1321Vectors) {
  EXPECT_EQ(Md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(Md5Hex("a"), "0cc175b9c0f1b6a831c399e269772661");
  EXPECT_EQ(Md5Hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(Md5Hex("message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
  EXPECT_EQ(Md5Hex("abcdefghijklmnopqrstuvwxyz"), "c3fcd3d76192e4007dfb496cca67e13b");
  EXPECT_EQ(Md5Hex("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
            "d174ab98d277d9f5a5611c2c9f419d9f");
  EXPECT_EQ(Md5Hex("12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
            "57edf4a22be3c955ac49da2e2107b67a");
}

TEST(Md5Test, IncrementalEqualsOneShot) {
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 7));
  const std::string want = Md5Hex(data);
  for (size_t piece : {1, 3, 63, 64, 65, 1000, 4096}) {
    internal::Md5 m;
    for (size_t off = 0; off < data.size(); off += piece) m.Update(data.data() + off, std::min(piece, data.size() - off));
    Md5Digest d;
    m.Final(d.bytes);
    EXPECT_EQ(d.Hex(), want) << "piece " << piece;
  }
}

TEST(KvDtypeTest, NamesAndSizes) {
  struct Case {
    const char* name;
    KvDtype dtype;
    uint32_t size;
  };
  for (const Case& c : {Case{"float16", KvDtype::kFloat16, 2}, Case{"torch.bfloat16", KvDtype::kBFloat16, 2},
                        Case{"float32", KvDtype::kFloat32, 4}, Case{"uint8", KvDtype::kUInt8, 1},
                        Case{"int8", KvDtype::kInt8, 1}, Case{"float8_e4m3fn", KvDtype::kFloat8E4M3, 1},
                        Case{"float64", KvDtype::kFloat64, 8}}) {
    auto r = ParseKvDtype(c.name);
    ASSERT_TRUE(r.ok()) << c.name;
    EXPECT_EQ(r.value(), c.dtype);
    EXPECT_EQ(KvDtypeSize(c.dtype), c.size);
    EXPECT_EQ(ParseKvDtype(KvDtypeName(c.dtype)).value(), c.dtype);
  }
  EXPECT_EQ(ParseKvDtype("complex64").status().code(), StatusCode::kInvalidArgument);
}

TEST(KvFormatTest, NamesRoundTrip) {
  for (KvFormat f : {KvFormat::kTwoNbBsNhHs, KvFormat::kTwoNbNhBsHs, KvFormat::kNbTwoBsNhHs, KvFormat::kNbTwoNhBsHs,
                     KvFormat::kNbBsHs}) {
    EXPECT_EQ(ParseKvFormat(KvFormatName(f)).value(), f);
  }
  EXPECT_FALSE(ParseKvFormat("NB_NL_TWO_BS_NH_HS").ok());
  EXPECT_EQ(ParseKvLayoutHint("HND").value(), KvLayoutHint::kHND);
  EXPECT_FALSE(ParseKvLayoutHint("nhd").ok());
}

KvTensorMeta Contiguous(std::vector<int64_t> shape, KvDtype dt = KvDtype::kFloat16) {
  KvTensorMeta m;
  m.dtype = dt;
  m.shape = shape;
  m.stride.resize(shape.size());
  int64_t s = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    m.stride[d] = s;
    s *= shape[d];
  }
  return m;
}

TEST(DetectKvFormatTest, Matches056Detection) {
  EXPECT_EQ(DetectKvFormat(Contiguous({2, 64, 16, 8, 128}), KvLayoutHint::kNHD).value(), KvFormat::kTwoNbBsNhHs);
  EXPECT_EQ(DetectKvFormat(Contiguous({2, 64, 8, 16, 128}), KvLayoutHint::kHND).value(), KvFormat::kTwoNbNhBsHs);
  EXPECT_EQ(DetectKvFormat(Contiguous({64, 2, 16, 8, 128}), KvLayoutHint::kNHD).value(), KvFormat::kNbTwoBsNhHs);
  EXPECT_EQ(DetectKvFormat(Contiguous({64, 2, 8, 16, 128}), KvLayoutHint::kHND).value(), KvFormat::kNbTwoNhBsHs);
  EXPECT_EQ(DetectKvFormat(Contiguous({64, 16, 576}), KvLayoutHint::kNHD).value(), KvFormat::kNbBsHs);
  // Single-plane 5-D tensor (our extension).
  EXPECT_EQ(DetectKvFormat(Contiguous({1, 64, 16, 1, 128}), KvLayoutHint::kNHD).value(), KvFormat::kTwoNbBsNhHs);
  // 2 blocks of kv 2: dim0 == 2 wins, as in 0.5.6.
  EXPECT_EQ(DetectKvFormat(Contiguous({2, 2, 16, 8, 128}), KvLayoutHint::kNHD).value(), KvFormat::kTwoNbBsNhHs);
  EXPECT_FALSE(DetectKvFormat(Contiguous({64, 16, 8, 128}), KvLayoutHint::kNHD).ok());
  EXPECT_FALSE(DetectKvFormat(Contiguous({3, 64, 16, 8, 128}), KvLayoutHint::kNHD).ok());
}

TEST(DetectKvFormatTest, PermutedViewIsSortedByStride) {
  // Physically [2, NB, NH, BS, HS] (HND) exposed as the logical NHD view
  // [2, NB, BS, NH, HS] through a permute: the stride sort recovers HND.
  const int64_t NB = 8, BS = 4, NH = 3, HS = 16;
  KvTensorMeta m;
  m.shape = {2, NB, BS, NH, HS};
  m.stride = {NB * NH * BS * HS, NH * BS * HS, HS, BS * HS, 1};
  EXPECT_EQ(DetectKvFormat(m, KvLayoutHint::kHND).value(), KvFormat::kTwoNbNhBsHs);
  std::vector<uint8_t> mem(2 * NB * BS * NH * HS * 2);
  auto l = PagedKvLayout::FromTensor(mem.data(), mem.size(), m, KvFormat::kTwoNbNhBsHs);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->block_size, BS);
  EXPECT_EQ(l->num_heads, NH);
  EXPECT_EQ(l->token_stride, HS * 2);
  EXPECT_EQ(l->head_stride, BS * HS * 2);
}

TEST(PagedKvLayoutTest, StridesOfEachFormat) {
  struct Case {
    KvFormat f;
    uint32_t kv;
  };
  for (const Case& c : {Case{KvFormat::kTwoNbBsNhHs, 2}, Case{KvFormat::kTwoNbNhBsHs, 2},
                        Case{KvFormat::kNbTwoBsNhHs, 2}, Case{KvFormat::kNbTwoNhBsHs, 2}, Case{KvFormat::kNbBsHs, 1}}) {
    Geometry g;
    g.format = c.f;
    g.kv = c.kv;
    if (c.f == KvFormat::kNbBsHs) g.nh = 1;
    auto t = MakeTensor(g, 1);
    const PagedKvLayout& l = t.layout;
    ASSERT_NE(l.base, nullptr) << KvFormatName(c.f);
    EXPECT_EQ(l.kv_size, g.kv);
    EXPECT_EQ(l.num_blocks, g.nb);
    EXPECT_EQ(l.block_size, g.bs);
    EXPECT_EQ(l.num_heads, g.nh);
    EXPECT_EQ(l.head_size, g.hs);
    EXPECT_EQ(l.elem_stride, 2);
    EXPECT_EQ(l.RowBytes(), uint64_t{g.nh} * g.hs * 2);
  }
}

TEST(PagedKvLayoutTest, BoundsAndStrideValidation) {
  const KvTensorMeta m = Contiguous({2, 4, 4, 2, 8});
  const uint64_t bytes = 2 * 4 * 4 * 2 * 8 * 2;
  std::vector<uint8_t> mem(bytes);
  EXPECT_TRUE(PagedKvLayout::FromTensor(mem.data(), bytes, m, KvFormat::kTwoNbBsNhHs).ok());
  // One byte short.
  auto r = PagedKvLayout::FromTensor(mem.data(), bytes - 1, m, KvFormat::kTwoNbBsNhHs);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("past the"), std::string::npos) << r.status().message();
  // storage_offset pushes it out.
  KvTensorMeta off = m;
  off.storage_offset = 1;
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, off, KvFormat::kTwoNbBsNhHs).ok());
  EXPECT_TRUE(PagedKvLayout::FromTensor(mem.data(), bytes + 2, off, KvFormat::kTwoNbBsNhHs).ok());
  KvTensorMeta neg = m;
  neg.storage_offset = -1;
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, neg, KvFormat::kTwoNbBsNhHs).ok());
  KvTensorMeta bad = m;
  bad.stride[2] = -16;
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, bad, KvFormat::kTwoNbBsNhHs).ok());
  bad = m;
  bad.stride[1] = 0;  // broadcast blocks
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, bad, KvFormat::kTwoNbBsNhHs).ok());
  bad = m;
  bad.stride.pop_back();
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, bad, KvFormat::kTwoNbBsNhHs).ok());
  // Wrong rank for the format; K/V axis of 3.
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, m, KvFormat::kNbBsHs).ok());
  const KvTensorMeta three = Contiguous({3, 4, 4, 2, 8});
  std::vector<uint8_t> big(bytes * 2);
  EXPECT_FALSE(PagedKvLayout::FromTensor(big.data(), big.size(), three, KvFormat::kTwoNbBsNhHs).ok());
  // A huge dim cannot overflow the extent check.
  KvTensorMeta huge = m;
  huge.shape[1] = int64_t{1} << 40;
  huge.stride[1] = int64_t{1} << 40;
  EXPECT_FALSE(PagedKvLayout::FromTensor(mem.data(), bytes, huge, KvFormat::kTwoNbBsNhHs).ok());
}

}  // namespace
}  // namespace lmcache
