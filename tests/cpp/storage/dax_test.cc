// dax: the conformance suite on a file mapping (msync at close, and after
// every store), then its own cases: file creation and sizing, restart,
// eviction, a damaged record, field errors. A real /dev/dax device is not
// available on the test machines; the device path differs only in how the
// mapping is sized (see docs/l2.md).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "storage/l2_conformance.h"

namespace lmcache {
namespace conformance {
namespace {

struct DaxTraits {
  static constexpr const char* kType = "dax";
  static constexpr bool kPersistent = true;
  // 0.75 GiB mapping of 6 MiB slots: 127 slots (the suite needs up to 104).
  static std::string Spec(const std::string& dir) {
    return R"({"type":"dax","device_path":")" + dir + R"(/dax.img","max_dax_size_gb":0.75,"slot_bytes":6291456})";
  }
};

struct DaxMsyncStoreTraits {
  static constexpr const char* kType = "dax";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"dax","device_path":")" + dir +
           R"(/dax.img","max_dax_size_gb":0.75,"slot_bytes":6291456,"msync":"store","num_workers":2})";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(dax, L2ConformanceTest, ::testing::Types<DaxTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(dax_msync_store, L2ConformanceTest, ::testing::Types<DaxMsyncStoreTraits>);

constexpr uint64_t kSlot = 64 * 1024;

std::string Detail(const L2Status& s, const std::string& name) {
  for (const auto& [k, v] : s.details) {
    if (k == name) return v;
  }
  return "<missing>";
}

// A mapping of `mib` MiB with 64 KiB slots.
std::string SmallSpec(const std::string& path, double mib, const std::string& extra = "") {
  return R"({"type":"dax","device_path":")" + path + R"(","slot_bytes":65536,"max_dax_size_gb":)" +
         std::to_string(mib / 1024.0) + extra + "}";
}

Status CreateStatus(const std::string& json) {
  auto r = CreateL2Adapter(json);
  return r.ok() ? Status::OK() : r.status();
}

TEST(Dax, CreatesAndSizesTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/m";
  auto a = testing::MustCreate(SmallSpec(path, 1));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(Detail(s, "device_kind"), "regular file (created)");
  EXPECT_EQ(Detail(s, "mapped_bytes"), std::to_string(1 << 20));
  EXPECT_EQ(Detail(s, "msync"), "close");
  // 4 KiB superblock + 512 B records, data at a page boundary: 15 slots of 64 KiB.
  EXPECT_EQ(Detail(s, "num_slots"), "15");
  a.reset();
  // An existing file: its size is the default mapping size.
  auto b = testing::MustCreate(R"({"type":"dax","device_path":")" + path + R"(","slot_bytes":65536})");
  EXPECT_EQ(Detail(b->ReportStatus(), "num_slots"), "15");
  EXPECT_EQ(Detail(b->ReportStatus(), "device_kind"), "regular file");
}

TEST(Dax, RestartFindsObjectsAndEvictionPersists) {
  TempDir dir;
  const std::string path = dir.path() + "/m";
  const std::string spec = SmallSpec(path, 0.25);  // 3 slots
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 4; ++i) data.push_back(Pattern(i, 20000 + i));
  {
    auto a = testing::MustCreate(spec);
    ASSERT_EQ(Detail(a->ReportStatus(), "num_slots"), "3");
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i, "salt")}, {ViewOf(data[i])}).ok);
    EXPECT_EQ(a->ReportStatus().counters.evicted_objects, 1u);
  }
  auto b = testing::MustCreate(spec);
  EXPECT_EQ(Detail(b->ReportStatus(), "recovered_objects"), "3");
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(0, "salt"), Key(1, "salt"), Key(2, "salt"), Key(3, "salt")})), "0111");
  EXPECT_EQ(b->Usage().bytes_by_salt.at("salt"), 20001u + 20002 + 20003);
  std::vector<uint8_t> out(20003);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(3, "salt")}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == data[3]);
  EXPECT_EQ(b->ReportStatus().counters.unverified_loads, 0u);
}

TEST(Dax, DamagedRecordIsDroppedAtStartUp) {
  TempDir dir;
  const std::string path = dir.path() + "/m";
  auto x = Pattern(1, 1000), y = Pattern(2, 2000);
  {
    auto a = testing::MustCreate(SmallSpec(path, 1));
    ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(x)}).ok);
    ASSERT_TRUE(StoreSync(a.get(), {Key(2)}, {ViewOf(y)}).ok);
  }
  {
    const int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    const off_t at = 4096 + 24;  // slot 0's record: its size field
    ASSERT_EQ(pread(fd, &b, 1, at), 1);
    b ^= 1;
    ASSERT_EQ(pwrite(fd, &b, 1, at), 1);
    close(fd);
  }
  auto a = testing::MustCreate(SmallSpec(path, 1));
  EXPECT_EQ(Detail(a->ReportStatus(), "dropped_records"), "1");
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(1), Key(2)})), "01");
}

TEST(Dax, OversizeObjectsAreRefused) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/m", 1));
  auto big = Pattern(1, kSlot + 1);
  EXPECT_EQ(Bits(StoreSync(a.get(), {Key(1)}, {ViewOf(big)}).stored), "0");
  EXPECT_EQ(Detail(a->ReportStatus(), "oversize_refused"), "1");
}

TEST(Dax, FieldErrorsAreOneLineAndNameTheField) {
  TempDir dir;
  const std::string p = dir.path() + "/m";
  auto expect = [&](const std::string& json, const std::string& needle) {
    const Status s = CreateStatus(json);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << json << " -> " << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  };
  expect(R"({"type":"dax"})", "device_path");
  expect(R"({"type":"dax","device_path":")" + p + R"("})", "max_dax_size_gb");
  expect(R"({"type":"dax","device_path":")" + p + R"(","max_dax_size_gb":0.01,"slot_bytes":1000})", "slot_bytes");
  expect(R"({"type":"dax","device_path":")" + p + R"(","max_dax_size_gb":0.01,"msync":"sometimes"})", "msync");
  expect(R"({"type":"dax","device_path":")" + p + R"(","max_dax_size_gb":0.01,"devices":[]})", "devices");
  expect(R"({"type":"dax","device_path":")" + p + R"(","max_dax_size_gb":0.00005,"slot_bytes":65536})", "too small");
  expect(R"({"type":"dax","device_path":")" + dir.path() + R"(","max_dax_size_gb":0.01})", "neither");
}

TEST(Dax, LMCacheWorkerFieldsAreAccepted) {
  TempDir dir;
  auto a = testing::MustCreate(SmallSpec(dir.path() + "/m", 1, R"(,"num_store_workers":2,"num_load_workers":3,"num_lookup_workers":1)"));
  EXPECT_EQ(Detail(a->ReportStatus(), "num_workers"), "5");
}

}  // namespace
}  // namespace conformance
}  // namespace lmcache
