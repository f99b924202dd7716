// raw_block: the conformance suite (O_DIRECT and buffered), then its own
// cases: slot eviction, locks, oversize objects, the persisted records
// (restart after delete / eviction, damaged records and data found after a
// restart, geometry checks, reformat), aligned zero-copy I/O, field errors.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "storage/l2_conformance.h"

namespace lmcache {
namespace conformance {
namespace {

struct RawBlockTraits {
  static constexpr const char* kType = "raw_block";
  static constexpr bool kPersistent = true;
  // 128 slots of 6 MiB (the suite stores up to 5 MiB + 4 KiB and 104
  // objects at once) in a sparse file created by the adapter.
  static std::string Spec(const std::string& dir) {
    return R"({"type":"raw_block","device_path":")" + dir + R"(/dev.img","slot_bytes":6291456,)" +
           R"("capacity_bytes":)" + std::to_string(4096 + 128ull * (4096 + 6291456)) + R"(,"num_workers":3})";
  }
};

struct RawBlockBufferedTraits {
  static constexpr const char* kType = "raw_block";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"raw_block","device_path":")" + dir + R"(/dev.img","slot_bytes":6291456,"block_align":512,)" +
           R"("header_bytes":512,"use_odirect":false,"capacity_gb":0.8})";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(raw_block, L2ConformanceTest, ::testing::Types<RawBlockTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(raw_block_buffered, L2ConformanceTest, ::testing::Types<RawBlockBufferedTraits>);

// ---- adapter-specific ----

constexpr uint64_t kSlot = 64 * 1024;

std::string Detail(const L2Status& s, const std::string& name) {
  for (const auto& [k, v] : s.details) {
    if (k == name) return v;
  }
  return "<missing>";
}

// A device of exactly `slots` slots of 64 KiB (4 KiB superblock and records).
std::string SmallSpec(const std::string& path, int slots, const std::string& extra = "") {
  return R"({"type":"raw_block","device_path":")" + path + R"(","slot_bytes":65536,"capacity_bytes":)" +
         std::to_string(4096 + slots * (4096 + kSlot)) + R"(,"num_workers":2)" + extra + "}";
}

Status CreateStatus(const std::string& json) {
  auto r = CreateL2Adapter(json);
  return r.ok() ? Status::OK() : r.status();
}

TEST(RawBlock, GeometryAndStatus) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/d", 4));
  const L2Status s = a->ReportStatus();
  EXPECT_TRUE(s.healthy);
  EXPECT_EQ(Detail(s, "num_slots"), "4");
  EXPECT_EQ(Detail(s, "free_slots"), "4");
  EXPECT_EQ(Detail(s, "use_odirect"), "true");  // /tmp takes O_DIRECT
  EXPECT_EQ(Detail(s, "device_kind"), "regular file (created)");
  EXPECT_EQ(Detail(s, "formatted"), "true");
  EXPECT_EQ(a->Usage().capacity_bytes, 4 * kSlot);
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/d").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4096 + 4 * (4096 + kSlot));
}

TEST(RawBlock, EvictsLeastRecentlyUsedSlotWhenFull) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/d", 4));
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 5; ++i) data.push_back(Pattern(i, 1000 + i));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  std::vector<uint8_t> out(1000);
  ASSERT_EQ(Bits(LoadSync(a.get(), {Key(0)}, {ViewOf(out)})), "1");  // 0 is now the most recent
  ASSERT_TRUE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0), Key(1), Key(2), Key(3), Key(4)})), "10111");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(0), Key(2), Key(3), Key(4)});
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(s.counters.evicted_objects, 1u);
  EXPECT_EQ(s.counters.evicted_bytes, 1001u);
  EXPECT_EQ(Detail(s, "free_slots"), "0");
  EXPECT_EQ(a->Usage().total_bytes, 1000u + 1002 + 1003 + 1004);

  // The eviction is persistent: a restart does not bring key 1 back.
  a.reset();
  auto b = testing::MustCreate(SmallSpec(dir.path() + "/d", 4));
  EXPECT_EQ(Detail(b->ReportStatus(), "recovered_objects"), "4");
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(1), Key(4)})), "01");
  std::vector<uint8_t> out4(1004);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(4)}, {ViewOf(out4)})), "1");
  EXPECT_TRUE(out4 == data[4]);
}

TEST(RawBlock, StoreFailsWhenEverySlotIsLocked) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/d", 2));
  auto x = Pattern(1, 500), y = Pattern(2, 500), z = Pattern(3, 500);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1), Key(2)}, {ViewOf(x), ViewOf(y)}).ok);
  ASSERT_EQ(Bits(LookupSync(a.get(), {Key(1), Key(2)})), "11");
  const L2StoreResult r = StoreSync(a.get(), {Key(3)}, {ViewOf(z)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(Bits(r.stored), "0");
  EXPECT_EQ(a->ReportStatus().counters.store_failures, 1u);
  a->SubmitUnlock(std::vector<ObjectKey>{Key(1)});
  EXPECT_TRUE(StoreSync(a.get(), {Key(3)}, {ViewOf(z)}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(1), Key(2), Key(3)})), "011");
}

TEST(RawBlock, ObjectsLargerThanASlotAreRefused) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/d", 2));
  auto big = Pattern(1, kSlot + 1), fits = Pattern(2, kSlot);
  const L2StoreResult r = StoreSync(a.get(), {Key(1), Key(2)}, {ViewOf(big), ViewOf(fits)});
  EXPECT_EQ(Bits(r.stored), "01");
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(Detail(s, "oversize_refused"), "1");
  EXPECT_EQ(s.counters.store_failures, 1u);
  std::vector<uint8_t> out(kSlot);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(2)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == fits);
}

TEST(RawBlock, AlignedBuffersGoStraightToTheDevice) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/d", 4));
  void* in = nullptr;
  void* out = nullptr;
  ASSERT_EQ(posix_memalign(&in, 4096, kSlot), 0);
  ASSERT_EQ(posix_memalign(&out, 4096, kSlot), 0);
  auto pattern = Pattern(7, kSlot);
  std::memcpy(in, pattern.data(), kSlot);
  const ObjectView vin{static_cast<uint8_t*>(in), kSlot}, vout{static_cast<uint8_t*>(out), kSlot};
  EXPECT_TRUE(StoreSync(a.get(), {Key(7)}, {vin}).ok);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(7)}, {vout})), "1");
  EXPECT_EQ(std::memcmp(out, pattern.data(), kSlot), 0);
  free(in);
  free(out);
}

TEST(RawBlock, DeletedObjectsStayDeletedAfterRestart) {
  TempDir dir;
  const std::string path = dir.path() + "/d";
  auto x = Pattern(1, 3000), y = Pattern(2, 4000), z = Pattern(3, 5000);
  {
    auto a = testing::MustCreate(SmallSpec(path, 4));
    ASSERT_TRUE(StoreSync(a.get(), {Key(1), Key(2, "s"), Key(3)}, {ViewOf(x), ViewOf(y), ViewOf(z)}).ok);
    ASSERT_EQ(a->Delete(std::vector<ObjectKey>{Key(1)}).value(), 1u);
  }
  auto b = testing::MustCreate(SmallSpec(path, 4));
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(1), Key(2, "s"), Key(3)})), "011");
  b->SubmitUnlock(std::vector<ObjectKey>{Key(2, "s"), Key(3)});
  const L2Usage u = b->Usage();
  EXPECT_EQ(u.total_bytes, 9000u);
  EXPECT_EQ(u.bytes_by_salt, (std::map<std::string, uint64_t>{{"", 5000}, {"s", 4000}}));
  EXPECT_EQ(Detail(b->ReportStatus(), "free_slots"), "2");
  // New stores after the restart use fresh sequence numbers and free slots.
  ASSERT_TRUE(StoreSync(b.get(), {Key(1)}, {ViewOf(x)}).ok);
  b.reset();
  auto c = testing::MustCreate(SmallSpec(path, 4));
  std::vector<uint8_t> o1(3000), o2(4000), o3(5000);
  EXPECT_EQ(Bits(LoadSync(c.get(), {Key(1), Key(2, "s"), Key(3)}, {ViewOf(o1), ViewOf(o2), ViewOf(o3)})), "111");
  EXPECT_TRUE(o1 == x && o2 == y && o3 == z);
}

// Byte offsets in a SmallSpec device: records from 4096, data after them.
uint64_t RecordOffset(int slot) { return 4096 + static_cast<uint64_t>(slot) * 4096; }

void FlipByteInFile(const std::string& path, uint64_t off) {
  const int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(pread(fd, &b, 1, static_cast<off_t>(off)), 1);
  b ^= 0x5A;
  ASSERT_EQ(pwrite(fd, &b, 1, static_cast<off_t>(off)), 1);
  close(fd);
}

TEST(RawBlock, DamagedRecordsAndDataAreCaughtAfterRestart) {
  TempDir dir;
  const std::string path = dir.path() + "/d";
  auto x = Pattern(1, 3000), y = Pattern(2, 4000), z = Pattern(3, 5000);
  {
    auto a = testing::MustCreate(SmallSpec(path, 4));
    // One task per key, so slot i holds key i+1 (the free list hands out slot 0 first).
    ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(x)}).ok);
    ASSERT_TRUE(StoreSync(a.get(), {Key(2)}, {ViewOf(y)}).ok);
    ASSERT_TRUE(StoreSync(a.get(), {Key(3)}, {ViewOf(z)}).ok);
  }
  const uint64_t data_offset = 4096 + 4 * 4096;
  FlipByteInFile(path, RecordOffset(0) + 60);                 // the key bytes of slot 0's record
  FlipByteInFile(path, data_offset + 1 * kSlot + 2000);       // the data of slot 1
  auto b = testing::MustCreate(SmallSpec(path, 4));
  const L2Status s = b->ReportStatus();
  EXPECT_EQ(Detail(s, "recovered_objects"), "2");
  EXPECT_EQ(Detail(s, "dropped_records"), "1");
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(1), Key(2), Key(3)})), "011");
  b->SubmitUnlock(std::vector<ObjectKey>{Key(2), Key(3)});
  std::vector<uint8_t> o2(4000), o3(5000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(2), Key(3)}, {ViewOf(o2), ViewOf(o3)})), "01");
  EXPECT_TRUE(o3 == z);
  EXPECT_EQ(b->ReportStatus().counters.corrupt_objects, 1u);
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(2)})), "0");  // dropped
  EXPECT_EQ(Detail(b->ReportStatus(), "free_slots"), "3");
}

TEST(RawBlock, GeometryMismatchIsRefusedUnlessReformatting) {
  TempDir dir;
  const std::string path = dir.path() + "/d";
  auto x = Pattern(1, 3000);
  {
    auto a = testing::MustCreate(SmallSpec(path, 4));
    ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(x)}).ok);
  }
  const std::string other_slots = R"({"type":"raw_block","device_path":")" + path +
                                  R"(","slot_bytes":32768,"capacity_bytes":)" +
                                  std::to_string(4096 + 4 * (4096 + kSlot)) + "}";
  const Status st = CreateStatus(other_slots);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("slot_bytes 65536"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("load_checkpoint_on_init"), std::string::npos) << st.message();

  auto b = testing::MustCreate(SmallSpec(path, 4, R"(,"load_checkpoint_on_init":false)"));
  EXPECT_EQ(Detail(b->ReportStatus(), "formatted"), "true");
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(1)})), "0");
  b.reset();
  // The old records belong to the old format: not found again later either.
  auto c = testing::MustCreate(SmallSpec(path, 4));
  EXPECT_EQ(Bits(LookupSync(c.get(), {Key(1)})), "0");
  EXPECT_EQ(Detail(c->ReportStatus(), "formatted"), "false");
}

TEST(RawBlock, UsesAnExistingFileAndExtendsItToTheCapacity) {
  TempDir dir;
  const std::string path = dir.path() + "/pre";
  {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 4096 + 3 * (4096 + kSlot)), 0);
    close(fd);
  }
  auto a = testing::MustCreate(R"({"type":"raw_block","device_path":")" + path + R"(","slot_bytes":65536})");
  EXPECT_EQ(Detail(a->ReportStatus(), "num_slots"), "3");
  EXPECT_EQ(Detail(a->ReportStatus(), "device_kind"), "regular file");
  a.reset();
  auto b = testing::MustCreate(R"({"type":"raw_block","device_path":")" + path +
                               R"(","slot_bytes":65536,"load_checkpoint_on_init":false,"capacity_bytes":)" +
                               std::to_string(4096 + 5 * (4096 + kSlot)) + "}");
  EXPECT_EQ(Detail(b->ReportStatus(), "num_slots"), "5");
}

TEST(RawBlock, FieldErrorsAreOneLineAndNameTheField) {
  TempDir dir;
  const std::string p = dir.path() + "/d";
  auto expect = [&](const std::string& json, const std::string& needle) {
    const Status s = CreateStatus(json);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << json << " -> " << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  };
  expect(R"({"type":"raw_block"})", "device_path");
  expect(R"({"type":"raw_block","device_path":")" + p + R"("})", "capacity_bytes or capacity_gb");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"slot_bytes":5000})", "slot_bytes");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"block_align":3000})", "block_align");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"header_bytes":6144})", "header_bytes");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"capacity_bytes":4096})", "capacity_gb");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"io_engine":"io_uring"})", "io_engine");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_bytes":65536,"slot_bytes":65536})",
         "too small");
  expect(R"({"type":"raw_block","device_path":")" + dir.path() + R"(","capacity_gb":1})", "neither");
  expect(R"({"type":"raw_block","device_path":")" + p + R"(","capacity_gb":1,"meta_total_bytes":4096})",
         "meta_total_bytes");
}

}  // namespace
}  // namespace conformance
}  // namespace lmcache
