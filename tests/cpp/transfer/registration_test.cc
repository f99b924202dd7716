#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lmcache/transfer.h"
#include "transfer_test_util.h"

namespace lmcache {
namespace {

using testing::Geometry;
using testing::MakeTensor;
using testing::ReferenceObject;
using testing::SameBlock;
using testing::TestTensor;

using Lists = std::vector<std::vector<int64_t>>;

std::vector<std::span<const int64_t>> Spans(const Lists& l) {
  return std::vector<std::span<const int64_t>>(l.begin(), l.end());
}

// Several layers of one geometry (each its own buffer) + a registration.
struct Model {
  std::vector<TestTensor> tensors;
  std::shared_ptr<KvCacheRegistration> reg;
};

Model MakeModel(const std::vector<std::pair<Geometry, int>>& groups, uint32_t chunk_tokens, uint64_t seed,
                std::vector<int64_t> extra = {}, RegistrationOptions opts = {}) {
  Model m;
  std::vector<PagedKvLayout> layouts;
  for (const auto& [g, count] : groups) {
    for (int i = 0; i < count; ++i) {
      m.tensors.push_back(MakeTensor(g, seed++, extra, /*storage_offset=*/i * 3));
      EXPECT_NE(m.tensors.back().layout.base, nullptr);
      layouts.push_back(m.tensors.back().layout);
    }
  }
  opts.chunk_tokens = chunk_tokens;
  auto r = KvCacheRegistration::Create(layouts, opts);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok()) m.reg = r.value();
  return m;
}

// Random distinct block ids, `count` per kernel group.
Lists RandomBlocks(const KvCacheRegistration& reg, uint32_t chunks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Lists out;
  for (const KernelGroupInfo& kg : reg.kernel_groups()) {
    std::vector<int64_t> all(kg.num_blocks);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    all.resize(uint64_t{kg.blocks_per_chunk} * chunks);
    out.push_back(all);
  }
  return out;
}

void ExpectGatherMatchesReference(Model& m, uint32_t chunks, uint64_t seed, CopyPool* pool = nullptr) {
  const KvCacheRegistration& reg = *m.reg;
  for (uint32_t og = 0; og < reg.object_groups().size(); ++og) {
    const Lists ids = RandomBlocks(reg, chunks, seed + og);
    std::vector<std::vector<uint8_t>> objs(chunks, std::vector<uint8_t>(reg.ObjectBytes(og), 0xEE));
    std::vector<ObjectView> views;
    for (auto& o : objs) views.push_back({o.data(), o.size()});
    const auto spans = Spans(ids);
    ASSERT_TRUE(reg.Gather(og, spans, views, pool).ok());
    for (uint32_t c = 0; c < chunks; ++c) {
      EXPECT_EQ(objs[c], ReferenceObject(reg, og, ids, c)) << "object group " << og << " chunk " << c;
    }
  }
}

struct FormatCase {
  KvFormat format;
  KvDtype dtype;
  uint32_t kv, nh;
};

class GatherFormatTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(GatherFormatTest, GatherMatchesObjectFormat) {
  const FormatCase c = GetParam();
  Geometry g;
  g.format = c.format;
  g.dtype = c.dtype;
  g.kv = c.kv;
  g.nh = c.nh;
  g.nb = 16;
  g.bs = 4;
  g.hs = 8;
  Model m = MakeModel({{g, 3}}, /*chunk_tokens=*/8, 42);
  ASSERT_TRUE(m.reg);
  EXPECT_EQ(m.reg->ObjectBytes(0), uint64_t{c.kv} * 3 * 8 * c.nh * 8 * KvDtypeSize(c.dtype));
  ExpectGatherMatchesReference(m, 3, 7);
}

TEST_P(GatherFormatTest, PaddedStridesStillMatch) {
  const FormatCase c = GetParam();
  Geometry g;
  g.format = c.format;
  g.dtype = c.dtype;
  g.kv = c.kv;
  g.nh = c.nh;
  g.nb = 12;
  g.bs = 4;
  g.hs = 6;
  // Pad every dim (innermost: elements two apart), then only the outer ones.
  for (std::vector<int64_t> extra : {std::vector<int64_t>{3, 5, 1, 2, 1}, std::vector<int64_t>{7, 0, 0, 0, 0},
                                     std::vector<int64_t>{0, 3, 0, 0, 0}, std::vector<int64_t>{0, 0, 2, 0, 0}}) {
    if (c.format == KvFormat::kNbBsHs) extra.resize(3);
    Model m = MakeModel({{g, 2}}, 8, 99, extra);
    ASSERT_TRUE(m.reg);
    ExpectGatherMatchesReference(m, 2, 3);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, GatherFormatTest,
    ::testing::Values(FormatCase{KvFormat::kTwoNbBsNhHs, KvDtype::kFloat16, 2, 2},
                      FormatCase{KvFormat::kTwoNbBsNhHs, KvDtype::kUInt8, 2, 3},
                      FormatCase{KvFormat::kTwoNbBsNhHs, KvDtype::kFloat32, 2, 1},
                      FormatCase{KvFormat::kTwoNbBsNhHs, KvDtype::kBFloat16, 1, 2},
                      FormatCase{KvFormat::kTwoNbNhBsHs, KvDtype::kFloat16, 2, 4},
                      FormatCase{KvFormat::kNbTwoBsNhHs, KvDtype::kFloat32, 2, 2},
                      FormatCase{KvFormat::kNbTwoNhBsHs, KvDtype::kInt8, 2, 2},
                      FormatCase{KvFormat::kNbBsHs, KvDtype::kFloat16, 1, 1},
                      FormatCase{KvFormat::kNbBsHs, KvDtype::kUInt8, 1, 1},
                      FormatCase{KvFormat::kNbBsHs, KvDtype::kFloat64, 1, 1}));

TEST(RegistrationTest, SeveralGroupsAutoGroupedIntoOneObject) {
  // The bench spec "(1,NB,BS,1,HS):float16:2;(2,NB,BS,NH,HS):float16:3" plus
  // a bf16 group: three kernel groups, one object per chunk (0.5.6 default).
  Geometry mla;
  mla.format = KvFormat::kNbBsHs;
  mla.kv = 1;
  mla.nh = 1;
  mla.hs = 16;
  mla.nb = 10;
  Geometry std_;
  std_.nb = 10;
  Geometry bf = std_;
  bf.dtype = KvDtype::kBFloat16;
  bf.nh = 1;
  Model m = MakeModel({{mla, 2}, {std_, 3}, {bf, 1}}, 8, 5);
  ASSERT_TRUE(m.reg);
  const auto& kgs = m.reg->kernel_groups();
  ASSERT_EQ(kgs.size(), 3u);
  EXPECT_EQ(kgs[0].layers, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(kgs[1].layers, (std::vector<uint32_t>{2, 3, 4}));
  EXPECT_EQ(kgs[2].layers, (std::vector<uint32_t>{5}));
  ASSERT_EQ(m.reg->object_groups().size(), 1u);
  const uint64_t r0 = 1ull * 2 * 8 * 16 * 2, r1 = 2ull * 3 * 8 * 2 * 8 * 2, r2 = 2ull * 1 * 8 * 1 * 8 * 2;
  EXPECT_EQ(m.reg->object_groups()[0].region_offsets, (std::vector<uint64_t>{0, r0, r0 + r1}));
  EXPECT_EQ(m.reg->ObjectBytes(0), r0 + r1 + r2);
  ExpectGatherMatchesReference(m, 2, 11);
}

TEST(RegistrationTest, ExplicitKernelAndObjectGroups) {
  Geometry g;
  g.nb = 9;
  Geometry g2 = g;
  g2.bs = 2;  // another engine group with a smaller block size
  RegistrationOptions o;
  o.kernel_groups = {{0, 2}, {1}, {3}};
  o.object_groups = {{2, 0}, {1}};
  Model m = MakeModel({{g, 3}, {g2, 1}}, 4, 17, {}, o);
  ASSERT_TRUE(m.reg);
  EXPECT_EQ(m.reg->kernel_groups()[2].blocks_per_chunk, 2u);
  EXPECT_EQ(m.reg->object_groups()[0].kernel_groups, (std::vector<uint32_t>{2, 0}));
  ExpectGatherMatchesReference(m, 2, 23);
}

TEST(RegistrationTest, InvalidGroups) {
  Geometry g;
  Geometry other = g;
  other.hs = 16;
  std::vector<TestTensor> ts = {MakeTensor(g, 1), MakeTensor(g, 2), MakeTensor(other, 3)};
  std::vector<PagedKvLayout> ls = {ts[0].layout, ts[1].layout, ts[2].layout};
  auto make = [&](RegistrationOptions o) { return KvCacheRegistration::Create(ls, o).status(); };
  RegistrationOptions o;
  o.chunk_tokens = 8;
  EXPECT_TRUE(make(o).ok());
  o.kernel_groups = {{0, 1, 2}};  // mixed geometry
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.kernel_groups = {{0, 1}, {1, 2}};  // layer in two groups
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.kernel_groups = {{0, 1}, {5}};  // no such layer
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.kernel_groups = {{0, 1}, {2}};
  o.object_groups = {{0}};  // kernel group 1 in no object group
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.object_groups = {{0, 1}, {1}};
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.object_groups = {};
  o.chunk_tokens = 6;  // not a multiple of block size 4
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  o.chunk_tokens = 0;
  EXPECT_EQ(make(o).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(KvCacheRegistration::Create({}, RegistrationOptions{}).ok());
}

// Gather from one set of blocks, scatter into another (of a second model
// with other strides), and the destination blocks hold the same elements.
TEST(RegistrationTest, GatherScatterRoundTripIntoOtherBlocks) {
  for (KvFormat dst_format : {KvFormat::kTwoNbBsNhHs, KvFormat::kTwoNbNhBsHs, KvFormat::kNbTwoBsNhHs}) {
    Geometry g;
    g.nb = 32;
    g.bs = 8;
    g.nh = 2;
    g.hs = 16;
    Geometry gd = g;
    gd.format = dst_format;
    Model src = MakeModel({{g, 4}}, 16, 1);
    Model dst = MakeModel({{gd, 4}}, 16, 1000, {0, 3, 1, 0, 0});
    ASSERT_TRUE(src.reg && dst.reg);
    const uint32_t chunks = 3;
    const Lists from = RandomBlocks(*src.reg, chunks, 5);
    const Lists to = RandomBlocks(*dst.reg, chunks, 6);
    std::vector<std::vector<uint8_t>> objs(chunks, std::vector<uint8_t>(src.reg->ObjectBytes(0)));
    std::vector<ObjectView> views;
    for (auto& o : objs) views.push_back({o.data(), o.size()});
    const auto fs = Spans(from), ts = Spans(to);
    ASSERT_TRUE(src.reg->Gather(0, fs, views).ok());
    ASSERT_TRUE(dst.reg->Scatter(0, ts, views).ok());
    for (size_t li = 0; li < 4; ++li) {
      for (size_t i = 0; i < from[0].size(); ++i) {
        EXPECT_TRUE(SameBlock(src.reg->layer(li), from[0][i], dst.reg->layer(li), to[0][i]))
            << KvFormatName(dst_format) << " layer " << li << " block " << i;
      }
    }
    // Gathering the destination gives identical objects.
    std::vector<std::vector<uint8_t>> again(chunks, std::vector<uint8_t>(src.reg->ObjectBytes(0)));
    std::vector<ObjectView> again_views;
    for (auto& o : again) again_views.push_back({o.data(), o.size()});
    ASSERT_TRUE(dst.reg->Gather(0, ts, again_views).ok());
    EXPECT_EQ(again, objs);
  }
}

TEST(RegistrationTest, ScatterSkipsLeadingTokens) {
  Geometry g;
  g.nb = 16;
  g.bs = 4;
  Model src = MakeModel({{g, 2}}, 8, 1);
  Model dst = MakeModel({{g, 2}}, 8, 500);
  const uint32_t chunks = 2;
  const Lists ids = {{0, 1, 2, 3}};
  const Lists to = {{8, 9, 10, 11}};
  std::vector<std::vector<uint8_t>> objs(chunks, std::vector<uint8_t>(src.reg->ObjectBytes(0)));
  std::vector<ObjectView> views;
  for (auto& o : objs) views.push_back({o.data(), o.size()});
  ASSERT_TRUE(src.reg->Gather(0, Spans(ids), views).ok());
  // Skip 10 tokens: blocks 8, 9 untouched, block 10 from token 2 on.
  std::vector<std::vector<uint8_t>> before;
  for (const auto& t : dst.tensors) before.push_back(t.mem);
  ASSERT_TRUE(dst.reg->Scatter(0, Spans(to), views, /*skip_first_n_tokens=*/10).ok());
  for (size_t li = 0; li < 2; ++li) {
    const PagedKvLayout& d = dst.reg->layer(li);
    const PagedKvLayout& s = src.reg->layer(li);
    // Untouched blocks keep their old bytes.
    for (int64_t b : {8, 9}) {
      const uint8_t* p = testing::ElemPtr(d, 0, b, 0, 0, 0);
      const size_t off = static_cast<size_t>(p - dst.tensors[li].mem.data());
      EXPECT_EQ(0, std::memcmp(p, before[li].data() + off, d.RowBytes() * d.block_size));
      EXPECT_FALSE(SameBlock(s, b - 8, d, b));
    }
    EXPECT_FALSE(SameBlock(s, 2, d, 10, 0));
    EXPECT_TRUE(SameBlock(s, 2, d, 10, 2));
    EXPECT_TRUE(SameBlock(s, 3, d, 11));
  }
  // A skip past the batch writes nothing.
  for (size_t li = 0; li < 2; ++li) before[li] = dst.tensors[li].mem;
  ASSERT_TRUE(dst.reg->Scatter(0, Spans(to), views, 1000).ok());
  for (size_t li = 0; li < 2; ++li) EXPECT_EQ(before[li], dst.tensors[li].mem);
}

TEST(RegistrationTest, NullViewsAreSkipped) {
  Geometry g;
  Model m = MakeModel({{g, 2}}, 8, 3);
  const Lists ids = RandomBlocks(*m.reg, 3, 1);
  std::vector<uint8_t> obj(m.reg->ObjectBytes(0), 0);
  std::vector<ObjectView> views = {{}, {obj.data(), obj.size()}, {}};
  ASSERT_TRUE(m.reg->Gather(0, Spans(ids), views).ok());
  EXPECT_EQ(obj, ReferenceObject(*m.reg, 0, ids, 1));
}

TEST(RegistrationTest, ThreadPoolGivesIdenticalResults) {
  Geometry g;
  g.nb = 64;
  Geometry mla;
  mla.format = KvFormat::kNbBsHs;
  mla.kv = 1;
  mla.nh = 1;
  mla.nb = 64;
  Model m = MakeModel({{g, 5}, {mla, 3}}, 16, 8);
  for (uint32_t threads : {1u, 2u, 3u, 8u}) {
    CopyPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int rep = 0; rep < 3; ++rep) ExpectGatherMatchesReference(m, 4, 100 + rep, &pool);
  }
}

TEST(CopyPoolTest, RunsEveryIndexOnceAndToleratesConcurrentCallers) {
  CopyPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        std::vector<std::atomic<int>> hits(257);
        pool.ParallelFor(hits.size(), [&](size_t i) { hits[i].fetch_add(1); });
        for (auto& h : hits) {
          if (h.load() != 1) failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
  pool.ParallelFor(0, [](size_t) { FAIL(); });
}

TEST(RegistrationTest, BlockIdAndViewValidation) {
  Geometry g;
  g.nb = 8;
  Model m = MakeModel({{g, 2}}, 8, 3);  // 2 blocks per chunk
  std::vector<uint8_t> obj(m.reg->ObjectBytes(0));
  std::vector<ObjectView> one = {{obj.data(), obj.size()}};
  auto gather = [&](const Lists& ids, std::span<const ObjectView> v, uint32_t og = 0) {
    return m.reg->Gather(og, Spans(ids), v).code();
  };
  EXPECT_EQ(gather({{0, 1}}, one), StatusCode::kOk);
  EXPECT_EQ(gather({{0, 1, 5, 6}}, one), StatusCode::kOk);  // longer lists are fine
  EXPECT_EQ(gather({{0}}, one), StatusCode::kInvalidArgument);
  EXPECT_EQ(gather({{0, 8}}, one), StatusCode::kInvalidArgument);
  EXPECT_EQ(gather({{-1, 0}}, one), StatusCode::kInvalidArgument);
  EXPECT_EQ(gather({{0, 1}, {0, 1}}, one), StatusCode::kInvalidArgument);
  EXPECT_EQ(gather({}, one), StatusCode::kInvalidArgument);
  EXPECT_EQ(gather({{0, 1}}, one, 1), StatusCode::kInvalidArgument);
  std::vector<ObjectView> small = {{obj.data(), obj.size() - 1}};
  EXPECT_EQ(gather({{0, 1}}, small), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.reg->Scatter(0, Spans({{0, 9}}), one).code(), StatusCode::kInvalidArgument);
  // An empty batch is fine.
  EXPECT_EQ(gather({{}}, {}), StatusCode::kOk);
}

TEST(RegistrationTest, CloseWaitsForCallsAndThenRefuses) {
  Geometry g;
  g.nb = 64;
  g.hs = 64;
  Model m = MakeModel({{g, 8}}, 64, 3);
  const Lists ids = RandomBlocks(*m.reg, 4, 1);
  std::vector<std::vector<uint8_t>> objs(4, std::vector<uint8_t>(m.reg->ObjectBytes(0)));
  std::vector<ObjectView> views;
  for (auto& o : objs) views.push_back({o.data(), o.size()});
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, refused{0};
  std::thread worker([&] {
    while (!stop.load()) {
      Status s = m.reg->Gather(0, Spans(ids), views);
      if (s.ok()) {
        ok.fetch_add(1);
      } else {
        EXPECT_EQ(s.code(), StatusCode::kUnavailable);
        refused.fetch_add(1);
      }
    }
  });
  while (ok.load() < 3) std::this_thread::yield();
  m.reg->Close();
  EXPECT_TRUE(m.reg->closed());
  const int ok_at_close = ok.load();
  while (refused.load() < 3) std::this_thread::yield();
  stop = true;
  worker.join();
  EXPECT_LE(ok.load(), ok_at_close + 1);
  EXPECT_EQ(m.reg->Gather(0, Spans(ids), views).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(m.reg->ChunkChecksumsMd5(ids[0], 4, false).ok());
  m.reg->Close();  // idempotent
}

}  // namespace
}  // namespace lmcache
