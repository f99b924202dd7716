#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "lmcache/l1_store.h"
#include "lmcache/transfer.h"
#include "test_util.h"
#include "transfer_test_util.h"

namespace lmcache {
namespace {

using testing::Geometry;
using testing::Key;
using testing::MakeTensor;
using testing::SameBlock;
using testing::TestTensor;

constexpr uint64_t kMiB = 1ull << 20;

class L1TransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Geometry g;
    g.nb = 32;
    g.bs = 4;
    g.nh = 2;
    g.hs = 16;
    for (int i = 0; i < 3; ++i) {
      src_.push_back(MakeTensor(g, 10 + i));
      dst_.push_back(MakeTensor(g, 20 + i, {0, 0, 0, 0, 0}, 7));
    }
    RegistrationOptions o;
    o.chunk_tokens = 8;
    src_reg_ = Make(src_, o);
    dst_reg_ = Make(dst_, o);
    store_ = MakeStore(4 * kMiB);
  }

  static std::shared_ptr<KvCacheRegistration> Make(const std::vector<TestTensor>& ts, const RegistrationOptions& o) {
    std::vector<PagedKvLayout> ls;
    for (const auto& t : ts) ls.push_back(t.layout);
    auto r = KvCacheRegistration::Create(ls, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.value();
  }

  std::unique_ptr<L1Store> MakeStore(uint64_t capacity) {
    L1Options o;
    o.arena.capacity_bytes = capacity;
    o.arena.lazy = false;
    o.arena.huge_pages = false;
    o.num_shards = 4;
    o.prefault_window_bytes = 0;
    auto r = L1Store::Create(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }

  static std::vector<ObjectKey> Keys(uint64_t first, size_t n) {
    std::vector<ObjectKey> k;
    for (size_t i = 0; i < n; ++i) k.push_back(Key(first + i));
    return k;
  }

  std::vector<TestTensor> src_, dst_;
  std::shared_ptr<KvCacheRegistration> src_reg_, dst_reg_;
  std::unique_ptr<L1Store> store_;
};

using Lists = std::vector<std::vector<int64_t>>;
std::vector<std::span<const int64_t>> Spans(const Lists& l) {
  return std::vector<std::span<const int64_t>>(l.begin(), l.end());
}

TEST_F(L1TransferTest, StoreThenRetrieveIntoOtherBlocks) {
  const auto keys = Keys(1, 3);
  const Lists from = {{4, 9, 1, 30, 17, 2}};
  const Lists to = {{0, 5, 6, 7, 31, 12}};
  CopyPool pool(2);
  auto st = StoreChunks(*store_, *src_reg_, 0, keys, Spans(from), /*tag=*/1, &pool);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->written, 3u);
  EXPECT_EQ(st->already_resident, 0u);
  for (const auto& k : keys) EXPECT_TRUE(store_->Contains(k));
  EXPECT_EQ(store_->Stats().staging_objects, 0u);
  // The objects hold the documented format.
  std::vector<ObjectView> views;
  ASSERT_EQ(store_->ReserveReadPrefix(keys, 1, &views), 3u);
  for (uint32_t c = 0; c < 3; ++c) {
    ASSERT_EQ(views[c].size, src_reg_->ObjectBytes(0));
    EXPECT_EQ(std::vector<uint8_t>(views[c].data, views[c].data + views[c].size),
              testing::ReferenceObject(*src_reg_, 0, from, c));
  }
  store_->FinishRead(keys);

  auto rt = RetrieveChunks(*store_, *dst_reg_, 0, keys, Spans(to), 0, false, &pool);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_EQ(rt.value(), 3u);
  for (size_t li = 0; li < 3; ++li) {
    for (size_t i = 0; i < from[0].size(); ++i) {
      EXPECT_TRUE(SameBlock(src_reg_->layer(li), from[0][i], dst_reg_->layer(li), to[0][i]));
    }
  }
  EXPECT_EQ(store_->Stats().read_locked_objects, 0u);

  // Storing again copies nothing.
  auto again = StoreChunks(*store_, *src_reg_, 0, keys, Spans(from), 2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->written, 0u);
  EXPECT_EQ(again->already_resident, 3u);
}

TEST_F(L1TransferTest, RetrieveStopsAtTheFirstMissingKeyAndConsumesLookupLocks) {
  const auto keys = Keys(100, 3);
  const Lists from = {{0, 1, 2, 3, 4, 5}};
  ASSERT_TRUE(StoreChunks(*store_, *src_reg_, 0, keys, Spans(from), 1).ok());
  ASSERT_EQ(store_->Delete(std::span<const ObjectKey>(&keys[1], 1), false), 1u);
  // A LOOKUP read-locked the prefix (here: chunk 0).
  std::vector<ObjectView> lookup_views;
  ASSERT_EQ(store_->ReserveReadPrefix(keys, 1, &lookup_views), 1u);
  EXPECT_EQ(store_->Stats().read_locked_objects, 1u);
  auto rt = RetrieveChunks(*store_, *dst_reg_, 0, keys, Spans({{10, 11, 12, 13, 14, 15}}), 0,
                           /*consume_lookup_locks=*/true);
  ASSERT_TRUE(rt.ok());
  EXPECT_EQ(rt.value(), 1u);
  EXPECT_EQ(store_->Stats().read_locked_objects, 0u);
  for (size_t li = 0; li < 3; ++li) {
    EXPECT_TRUE(SameBlock(src_reg_->layer(li), 0, dst_reg_->layer(li), 10));
    EXPECT_TRUE(SameBlock(src_reg_->layer(li), 1, dst_reg_->layer(li), 11));
    EXPECT_FALSE(SameBlock(src_reg_->layer(li), 2, dst_reg_->layer(li), 12));
  }
}

TEST_F(L1TransferTest, RetrieveHonoursSkip) {
  const auto keys = Keys(200, 2);
  ASSERT_TRUE(StoreChunks(*store_, *src_reg_, 0, keys, Spans({{0, 1, 2, 3}}), 1).ok());
  auto rt = RetrieveChunks(*store_, *dst_reg_, 0, keys, Spans({{20, 21, 22, 23}}), /*skip=*/12, false);
  ASSERT_TRUE(rt.ok());
  EXPECT_EQ(rt.value(), 2u);
  for (size_t li = 0; li < 3; ++li) {
    EXPECT_FALSE(SameBlock(src_reg_->layer(li), 0, dst_reg_->layer(li), 20));
    EXPECT_FALSE(SameBlock(src_reg_->layer(li), 2, dst_reg_->layer(li), 22));
    EXPECT_TRUE(SameBlock(src_reg_->layer(li), 3, dst_reg_->layer(li), 23));
  }
}

TEST_F(L1TransferTest, BadBlockIdsReserveNothing) {
  const auto keys = Keys(300, 2);
  auto st = StoreChunks(*store_, *src_reg_, 0, keys, Spans({{0, 1, 2, 99}}), 1);
  EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  st = StoreChunks(*store_, *src_reg_, 0, keys, Spans({{0, 1, 2}}), 1);
  EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  const L1Stats s = store_->Stats();
  EXPECT_EQ(s.staging_objects, 0u);
  EXPECT_EQ(s.resident_objects, 0u);
  EXPECT_EQ(s.used_bytes, 0u);
  ASSERT_TRUE(StoreChunks(*store_, *src_reg_, 0, keys, Spans({{0, 1, 2, 3}}), 1).ok());
  auto rt = RetrieveChunks(*store_, *dst_reg_, 0, keys, Spans({{0, 1, 2, 32}}), 0, false);
  EXPECT_EQ(rt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Stats().read_locked_objects, 0u);
}

TEST_F(L1TransferTest, FullL1IsNoSpaceAndNothingIsReserved) {
  store_ = MakeStore(64 * 1024);  // fits fewer objects than the request has chunks
  const uint64_t obj = src_reg_->ObjectBytes(0);
  const size_t n = static_cast<size_t>(64 * 1024 / obj) + 2;
  const auto keys = Keys(400, n);
  Lists ids(1);
  for (size_t i = 0; i < n * 2; ++i) ids[0].push_back(static_cast<int64_t>(i % 32));
  auto st = StoreChunks(*store_, *src_reg_, 0, keys, Spans(ids), 1);
  EXPECT_EQ(st.status().code(), StatusCode::kNoSpace);
  EXPECT_EQ(store_->Stats().staging_objects, 0u);
}

TEST_F(L1TransferTest, ClosedRegistrationAbortsTheReservation) {
  const auto keys = Keys(500, 2);
  src_reg_->Close();
  auto st = StoreChunks(*store_, *src_reg_, 0, keys, Spans({{0, 1, 2, 3}}), 1);
  EXPECT_EQ(st.status().code(), StatusCode::kUnavailable);
  const L1Stats s = store_->Stats();
  EXPECT_EQ(s.staging_objects, 0u);
  EXPECT_EQ(s.resident_objects, 0u);
}

}  // namespace
}  // namespace lmcache
