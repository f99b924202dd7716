// fs / fs_native specifics: LMCache 0.5.6 file names and content, temp +
// rename, checksums beside the bytes (xattr or sidecar), files written by
// LMCache (no checksum), corruption and truncation, capacity eviction,
// O_DIRECT, start-up scan. The shared contract is in l2_conformance_test.cc.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_test_util.h"
#include "util/xxh3.h"
#include "util/xxhash64.h"

namespace lmcache {
namespace {

namespace fs = std::filesystem;
using testing::Bits;
using testing::Key;
using testing::LoadSync;
using testing::LookupSync;
using testing::MustCreate;
using testing::Pattern;
using testing::StoreSync;
using testing::TempDir;
using testing::ViewOf;

std::string Spec(const std::string& dir, const std::string& extra = "", const std::string& type = "fs") {
  return R"({"type":")" + type + R"(","base_path":")" + dir + "\"" + (extra.empty() ? "" : "," + extra) + "}";
}

std::string Detail(const L2Status& s, const std::string& name) {
  for (const auto& [k, v] : s.details) {
    if (k == name) return v;
  }
  return "<missing>";
}

std::set<std::string> Files(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A key with a known 32-byte digest 00 01 .. 1f.
ObjectKey KnownKey(std::string_view model, std::string_view salt, int32_t group = 0) {
  std::string digest(32, '\0');
  for (int i = 0; i < 32; ++i) digest[i] = static_cast<char>(i);
  ObjectKey k;
  EXPECT_TRUE(MakeKey(digest, model, PackKvRank(1, 0, 1, 0), group, salt, &k));
  return k;
}
constexpr const char* kKnownHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

// ---- XXH64 and key <-> file name ----

TEST(Xxh64, KnownVectors) {
  using internal::Xxh64Digest;
  EXPECT_EQ(Xxh64Digest("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Xxh64Digest("a", 1), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(Xxh64Digest("abc", 3), 0x44BC2CF5AD770999ull);
  const std::string s = "Nobody inspects the spammish repetition";
  EXPECT_EQ(Xxh64Digest(s.data(), s.size()), 0xFBCEA83C8A378BF1ull);
}

TEST(Xxh64, StreamingMatchesOneShot) {
  const auto data = Pattern(9, 10000);
  for (size_t step : {1, 3, 31, 32, 33, 1000, 4096}) {
    internal::Xxh64 h(42);
    for (size_t off = 0; off < data.size(); off += step) h.Update(data.data() + off, std::min(step, data.size() - off));
    EXPECT_EQ(h.Digest(), internal::Xxh64Digest(data.data(), data.size(), 42)) << "step " << step;
  }
}

TEST(FsFileName, MatchesLMCache) {
  EXPECT_EQ(KnownKey("org/model", "").ToString(), std::string("org-SEP-model@0x01000100@0@") + kKnownHex);
  EXPECT_EQ(KnownKey("m", "tenant-1", 10).ToString(), std::string("m@0x01000100@a@") + kKnownHex + "@tenant-1");
}

TEST(FsFileName, ParsesBack) {
  for (const ObjectKey& k : {KnownKey("org/model", ""), KnownKey("a/b/c", "salt", 255), Key(7, "x"), Key(8)}) {
    ObjectKey back;
    ASSERT_TRUE(ParseObjectKey(k.ToString(), &back)) << k.ToString();
    EXPECT_TRUE(back == k) << k.ToString();
  }
  ObjectKey k;
  // Upper-case hex, rank without 0x (the native connector's key strings).
  ASSERT_TRUE(ParseObjectKey("M@01000100@0@ABCD", &k));
  EXPECT_EQ(k.kv_rank, 0x01000100);
  EXPECT_EQ(k.ChunkHashHex(), "abcd");
  for (const char* bad : {"", "a@0x1@0", "a@0x1@0@ab@s@t", "a@zz@0@ab", "a@0x1@0@abc", "a@0x1@0@ab@",
                          "a@0x1@g@ab", "a@0x123456789@0@ab"}) {
    EXPECT_FALSE(ParseObjectKey(bad, &k)) << bad;
  }
  std::string long_hash(66, 'a');
  EXPECT_FALSE(ParseObjectKey("a@0x1@0@" + long_hash, &k));
}

// ---- on-disk layout ----

TEST(FsAdapter, WritesLMCacheNamesAndRawContent) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d0 = Pattern(1, 12345), d1 = Pattern(2, 4096);
  ASSERT_TRUE(StoreSync(a.get(), {KnownKey("org/model", ""), KnownKey("org/model", "tenant")},
                        {ViewOf(d0), ViewOf(d1)})
                  .ok);
  const std::string n0 = std::string("org-SEP-model@0x01000100@0@") + kKnownHex + ".data";
  const std::string n1 = std::string("org-SEP-model@0x01000100@0@") + kKnownHex + "@tenant.data";
  EXPECT_EQ(Files(dir.path()), (std::set<std::string>{n0, n1}));  // no temp files left
  EXPECT_TRUE(ReadFile(dir.path() + "/" + n0) == d0);
  EXPECT_TRUE(ReadFile(dir.path() + "/" + n1) == d1);
  // The checksum lives beside the bytes, in an xattr: the standard XXH3-64.
  char v[80] = {};
  const ssize_t n = getxattr((dir.path() + "/" + n0).c_str(), "user.lmcache.checksum", v, sizeof(v));
  ASSERT_GT(n, 0) << "xattrs unsupported on /tmp?";
  char want[80];
  std::snprintf(want, sizeof(want), "xxh3:%016" PRIx64 ":12345", internal::Xxh3Digest(d0.data(), d0.size()));
  EXPECT_EQ(std::string(v, static_cast<size_t>(n)), want);
  EXPECT_LT(getxattr((dir.path() + "/" + n0).c_str(), "user.lmcache.xxh64", v, sizeof(v)), 0);
  EXPECT_EQ(Detail(a->ReportStatus(), "checksum"), "xattr");
}

TEST(FsAdapter, RelativeTmpDirIsUsedAndLeftEmpty) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("relative_tmp_dir":"staging/tmp")", "fs_native"));
  auto d = Pattern(3, 100000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(3)}, {ViewOf(d)}).ok);
  EXPECT_TRUE(fs::is_directory(dir.path() + "/staging/tmp"));
  EXPECT_TRUE(fs::is_empty(dir.path() + "/staging/tmp"));
  EXPECT_EQ(Files(dir.path()), (std::set<std::string>{"staging", Key(3).ToString() + ".data"}));
}

TEST(FsAdapter, ConcurrentWritersOfOneKeyLeaveOneFile) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("num_workers":4)"));
  auto b = MustCreate(Spec(dir.path(), R"("num_workers":4)"));  // a second "process" on the same dir
  auto d = Pattern(4, 1 << 20);
  std::atomic<int> bad{0};
  testing::StoreWaiter wa(a.get()), wb(b.get());  // shared: PopCompletedStores hands out every task
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      L2Adapter* x = t % 2 ? a.get() : b.get();
      testing::StoreWaiter& w = t % 2 ? wa : wb;
      const std::vector<ObjectKey> keys = {Key(4), Key(4)};
      const std::vector<ObjectView> views = {ViewOf(d), ViewOf(d)};
      for (int round = 0; round < 5; ++round) {
        auto id = x->SubmitStore(keys, views);
        auto r = id.ok() ? w.Wait(id.value()) : std::nullopt;
        if (!r || !r->ok) ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(Files(dir.path()), (std::set<std::string>{Key(4).ToString() + ".data"}));
  const uint64_t written = a->ReportStatus().counters.stored_objects + b->ReportStatus().counters.stored_objects;
  EXPECT_EQ(written, 1u);  // exactly one writer won
  std::vector<uint8_t> out(1 << 20);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(4)}, {ViewOf(out)})), "1");
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(4)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
}

// ---- files written by LMCache (no checksum) ----

TEST(FsAdapter, ServesLMCacheFilesAfterASizeCheck) {
  TempDir dir;
  auto d = Pattern(5, 65536);
  WriteFile(dir.path() + "/" + Key(5).ToString() + ".data", d);   // as LMCache writes it
  WriteFile(dir.path() + "/" + Key(6).ToString() + ".data", Pattern(6, 1000));
  // fs_native with O_DIRECT pads to 4 KiB: accepted, the first bytes are the object.
  auto padded = Pattern(7, 5000);
  padded.resize(8192, 0);
  WriteFile(dir.path() + "/" + Key(7).ToString() + ".data", padded);
  WriteFile(dir.path() + "/README.txt", {1, 2, 3});
  WriteFile(dir.path() + "/not-a-key.data", {1, 2, 3});

  auto a = MustCreate(Spec(dir.path(), "", "fs_native"));
  EXPECT_EQ(Detail(a->ReportStatus(), "scanned_files"), "3");
  EXPECT_EQ(Detail(a->ReportStatus(), "ignored_files"), "2");
  EXPECT_EQ(a->Usage().total_bytes, 65536u + 1000u + 8192u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(5), Key(6), Key(7), Key(8)})), "1110");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(5), Key(6), Key(7)});

  std::vector<uint8_t> out5(65536), out6_short(999), out7(5000), out7_bad(4000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(5), Key(6), Key(7), Key(7)},
                          {ViewOf(out5), ViewOf(out6_short), ViewOf(out7), ViewOf(out7_bad)})),
            "1010");
  EXPECT_TRUE(out5 == d);
  EXPECT_TRUE(std::equal(out7.begin(), out7.end(), padded.begin()));
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 2u);
  EXPECT_EQ(c.size_mismatches, 2u);
  EXPECT_EQ(c.corrupt_objects, 0u);
  // LMCache files are never deleted for a size mismatch.
  EXPECT_TRUE(fs::exists(dir.path() + "/" + Key(6).ToString() + ".data"));
}

TEST(FsAdapter, FindsFilesOtherProcessesWriteWhileRunning) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(9, 3000);
  WriteFile(dir.path() + "/" + Key(9).ToString() + ".data", d);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(9), Key(10)})), "10");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(9)});
  // A store of a key some other process already wrote is a skip.
  auto other = Pattern(99, 3000);
  WriteFile(dir.path() + "/" + Key(11).ToString() + ".data", d);
  const L2StoreResult r = StoreSync(a.get(), {Key(11)}, {ViewOf(other)});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.bytes_written, 0u);
  std::vector<uint8_t> out(3000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(11)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);

  auto no_probe = MustCreate(Spec(dir.path(), R"("probe_misses":false)"));
  WriteFile(dir.path() + "/" + Key(12).ToString() + ".data", d);
  EXPECT_EQ(Bits(LookupSync(no_probe.get(), {Key(9), Key(12)})), "10");  // index only
  no_probe->SubmitUnlock(std::vector<ObjectKey>{Key(9)});
}

// ---- integrity ----

class FsIntegrityTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string SpecFor(const std::string& dir) { return Spec(dir, R"("checksum":")" + GetParam() + "\""); }
};

TEST_P(FsIntegrityTest, FlippedByteIsCorruptionAndTheFileIsDropped) {
  TempDir dir;
  auto a = MustCreate(SpecFor(dir.path()));
  auto d = Pattern(20, 200000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(20)}, {ViewOf(d)}).ok);
  const std::string path = dir.path() + "/" + Key(20).ToString() + ".data";
  {
    // Bit rot: the same inode, one byte changed, mtime kept.
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    ASSERT_EQ(pread(fd, &b, 1, 123456), 1);
    b ^= 1;
    ASSERT_EQ(pwrite(fd, &b, 1, 123456), 1);
    close(fd);
    const timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
  std::vector<uint8_t> out(200000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(20)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(a->Usage().objects, 0u);
}

TEST_P(FsIntegrityTest, TruncatedFileIsCorruption) {
  TempDir dir;
  auto a = MustCreate(SpecFor(dir.path()));
  auto d = Pattern(21, 50000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(21)}, {ViewOf(d)}).ok);
  const std::string path = dir.path() + "/" + Key(21).ToString() + ".data";
  ASSERT_EQ(truncate(path.c_str(), 40000), 0);
  std::vector<uint8_t> out(50000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(21)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
  EXPECT_FALSE(fs::exists(path));
}

TEST_P(FsIntegrityTest, CorruptionIsDetectedAfterARestart) {
  TempDir dir;
  auto d = Pattern(22, 70000);
  {
    auto a = MustCreate(SpecFor(dir.path()));
    ASSERT_TRUE(StoreSync(a.get(), {Key(22), Key(23)}, {ViewOf(d), ViewOf(d)}).ok);
    ASSERT_TRUE(a->InjectCorruption(Key(22)).ok());
  }
  auto b = MustCreate(SpecFor(dir.path()));
  std::vector<uint8_t> out(70000), out2(70000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(22), Key(23)}, {ViewOf(out), ViewOf(out2)})), "01");
  EXPECT_TRUE(out2 == d);
  const L2Counters c = b->ReportStatus().counters;
  EXPECT_EQ(c.corrupt_objects, 1u);
  EXPECT_EQ(c.unverified_loads, 0u);
}

INSTANTIATE_TEST_SUITE_P(Checksums, FsIntegrityTest, ::testing::Values("xattr", "sidecar"));

// Two servers share a directory in sidecar mode: a file one writes after
// the other started is verified by the other too (its record is read from
// the log's new lines on the first load), so damage is caught, not served.
TEST(FsAdapter, SidecarRecordsOfOtherWritersAreUsedWithoutARestart) {
  for (const char* probe : {"\"auto\"", "true"}) {
    SCOPED_TRACE(probe);
    TempDir dir;
    const std::string extra = std::string(R"("checksum":"sidecar","probe_misses":)") + probe;
    auto a = MustCreate(Spec(dir.path(), extra));
    auto b = MustCreate(Spec(dir.path(), extra));  // started before b's writes
    auto d = Pattern(29, 4000), e = Pattern(30, 4000);
    ASSERT_TRUE(StoreSync(b.get(), {Key(29), Key(30)}, {ViewOf(d), ViewOf(e)}).ok);
    EXPECT_EQ(Bits(LookupSync(a.get(), {Key(29), Key(30)})), "11");
    a->SubmitUnlock(std::vector<ObjectKey>{Key(29), Key(30)});
    std::vector<uint8_t> o1(4000), o2(4000);
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(29)}, {ViewOf(o1)})), "1");
    EXPECT_TRUE(o1 == d);
    EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 0u);
    // Damage after b wrote it: a must not hand out the wrong bytes.
    ASSERT_TRUE(b->InjectCorruption(Key(30)).ok());
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(30)}, {ViewOf(o2)})), "0");
    const L2Counters c = a->ReportStatus().counters;
    EXPECT_EQ(c.corrupt_objects, 1u);
    EXPECT_EQ(c.unverified_loads, 0u);
    // A file with no record at all (LMCache's) is still served after the size check.
    WriteFile(dir.path() + "/" + Key(31).ToString() + ".data", d);  // written and closed in place
    EXPECT_EQ(Bits(LookupSync(a.get(), {Key(31)})), "1");
    a->SubmitUnlock(std::vector<ObjectKey>{Key(31)});
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(31)}, {ViewOf(o1)})), "1");
    EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 1u);
  }
}

TEST(FsAdapter, SidecarKeepsFilesFreeOfXattrs) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("checksum":"sidecar")"));
  auto d = Pattern(24, 1000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(24)}, {ViewOf(d)}).ok);
  const std::string path = dir.path() + "/" + Key(24).ToString() + ".data";
  char v[80];
  EXPECT_LT(getxattr(path.c_str(), "user.lmcache.checksum", v, sizeof(v)), 0);
  EXPECT_TRUE(ReadFile(path) == d);
  const auto log = ReadFile(dir.path() + "/.lmcache-checksums");
  const std::string text(log.begin(), log.end());
  char head[40];
  std::snprintf(head, sizeof(head), "xxh3:%016" PRIx64 " 1000 ", internal::Xxh3Digest(d.data(), d.size()));
  EXPECT_EQ(text.rfind(head, 0), 0u) << text;
  EXPECT_NE(text.find(Key(24).ToString() + ".data\n"), std::string::npos) << text;
  EXPECT_EQ(Detail(a->ReportStatus(), "checksum"), "sidecar");
}

// Directories written by earlier builds (XXH64 in `user.lmcache.xxh64`, or
// sidecar lines without an algorithm) are still verified: a good file loads,
// a corrupt one is quarantined, and nothing is served unverified.
TEST(FsAdapter, ReadsAndVerifiesXxh64ChecksumsOfEarlierBuilds) {
  TempDir dir;
  auto good = Pattern(26, 5000), bad = Pattern(27, 5000);
  const std::string pg = dir.path() + "/" + Key(26).ToString() + ".data";
  const std::string pb = dir.path() + "/" + Key(27).ToString() + ".data";
  WriteFile(pg, good);
  auto flipped = bad;
  flipped[1234] ^= 1;
  WriteFile(pb, flipped);
  char v[80];
  std::snprintf(v, sizeof(v), "xxh64:%016" PRIx64 ":5000", internal::Xxh64Digest(good.data(), good.size()));
  ASSERT_EQ(setxattr(pg.c_str(), "user.lmcache.xxh64", v, std::strlen(v), 0), 0);
  std::snprintf(v, sizeof(v), "xxh64:%016" PRIx64 ":5000", internal::Xxh64Digest(bad.data(), bad.size()));
  ASSERT_EQ(setxattr(pb.c_str(), "user.lmcache.xxh64", v, std::strlen(v), 0), 0);
  {
    auto a = MustCreate(Spec(dir.path()));  // found by the start-up scan
    std::vector<uint8_t> o1(5000), o2(5000);
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(26), Key(27)}, {ViewOf(o1), ViewOf(o2)})), "10");
    EXPECT_TRUE(o1 == good);
    const L2Counters c = a->ReportStatus().counters;
    EXPECT_EQ(c.corrupt_objects, 1u);
    EXPECT_EQ(c.unverified_loads, 0u);
  }
  // The same through a sidecar line of an earlier build (bare hex digits).
  TempDir dir2;
  const std::string ps = dir2.path() + "/" + Key(28).ToString() + ".data";
  WriteFile(ps, good);
  struct stat st;
  ASSERT_EQ(stat(ps.c_str(), &st), 0);
  char line[160];
  std::snprintf(line, sizeof(line), "%016" PRIx64 " 5000 %" PRIu64 " 0 %s\n",
                internal::Xxh64Digest(good.data(), good.size()), static_cast<uint64_t>(st.st_ino),
                (Key(28).ToString() + ".data").c_str());
  const std::string text(line);
  WriteFile(dir2.path() + "/.lmcache-checksums", std::vector<uint8_t>(text.begin(), text.end()));
  auto b = MustCreate(Spec(dir2.path(), R"("checksum":"sidecar")"));
  std::vector<uint8_t> o3(5000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(28)}, {ViewOf(o3)})), "1");
  EXPECT_TRUE(o3 == good);
  EXPECT_EQ(b->ReportStatus().counters.unverified_loads, 0u);
  // A wrong legacy sum is caught too.
  ASSERT_TRUE(b->InjectCorruption(Key(28)).ok());
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(28)}, {ViewOf(o3)})), "0");
  EXPECT_EQ(b->ReportStatus().counters.corrupt_objects, 1u);
}

TEST(FsAdapter, ChecksumOffServesUnverified) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("checksum":"off")"));
  auto d = Pattern(25, 1000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(25)}, {ViewOf(d)}).ok);
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(25)}, {ViewOf(out)})), "1");
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 1u);
}

TEST(FsAdapter, ReplacedFileIsTakenAsItIsNow) {
  // LMCache replacing a file (new inode, no checksum) is not corruption.
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(26, 1000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(26)}, {ViewOf(d)}).ok);
  const std::string path = dir.path() + "/" + Key(26).ToString() + ".data";
  const std::string tmp = dir.path() + "/other.tmp";
  WriteFile(tmp, d);
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(26)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 1u);
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 0u);
}

TEST(FsAdapter, FileDeletedBehindOurBackIsAMiss) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(27, 1000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(27)}, {ViewOf(d)}).ok);
  ASSERT_TRUE(fs::remove(dir.path() + "/" + Key(27).ToString() + ".data"));
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(27)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->Usage().objects, 0u);
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 0u);
}

// ---- keys that cannot be file names ----

TEST(FsAdapter, RejectsKeysThatCannotBeFileNames) {
  TempDir dir;
  const std::string sub = dir.path() + "/l2";
  auto a = MustCreate(Spec(sub));
  auto d = Pattern(28, 100);
  const ObjectKey slash = Key(28, "../../escape");
  const ObjectKey at = Key(29, "a@b");
  const ObjectKey at_model = Key(30, "", "m@x");
  const ObjectKey long_salt = Key(31, std::string(300, 's'));
  const L2StoreResult r = StoreSync(a.get(), {slash, at, at_model, long_salt, Key(32)},
                                    {ViewOf(d), ViewOf(d), ViewOf(d), ViewOf(d), ViewOf(d)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(Bits(r.stored), "00001");
  EXPECT_EQ(a->ReportStatus().counters.rejected_keys, 4u);
  EXPECT_EQ(Files(dir.path()), (std::set<std::string>{"l2"}));
}

// ---- capacity ----

TEST(FsAdapter, MaxCapacityEvictsLeastRecentlyUsedUnlockedFiles) {
  TempDir dir;
  // 1 MiB capacity, 256 KiB objects: four fit.
  auto a = MustCreate(Spec(dir.path(), R"("max_capacity_gb":0.0009765625)"));
  EXPECT_EQ(a->Usage().capacity_bytes, 1u << 20);
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 8; ++i) data.push_back(Pattern(i, 256 * 1024));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  // Lock key 0 and touch key 1 (a load), so key 2 is the LRU victim, then key 3.
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0)})), "1");
  std::vector<uint8_t> out(256 * 1024);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
  ASSERT_TRUE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  ASSERT_TRUE(StoreSync(a.get(), {Key(5)}, {ViewOf(data[5])}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0), Key(1), Key(2), Key(3), Key(4), Key(5)})), "110011");
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Key(2).ToString() + ".data"));
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Key(3).ToString() + ".data"));
  const L2Usage u = a->Usage();
  EXPECT_EQ(u.total_bytes, 1u << 20);
  EXPECT_DOUBLE_EQ(u.usage_fraction(), 1.0);
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.evicted_objects, 2u);
  EXPECT_EQ(c.evicted_bytes, 512u * 1024);
  a->SubmitUnlock(std::vector<ObjectKey>{Key(0), Key(0), Key(1), Key(4), Key(5)});

  // Larger than the capacity: refused, nothing evicted.
  std::vector<uint8_t> huge((1u << 20) + 1);
  const L2StoreResult r = StoreSync(a.get(), {Key(7)}, {ViewOf(huge)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(a->Usage().objects, 4u);
}

TEST(FsAdapter, EverythingLockedMeansTheStoreFails) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("max_capacity_gb":0.0009765625)"));
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 5; ++i) data.push_back(Pattern(i, 256 * 1024));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0), Key(1), Key(2), Key(3)})), "1111");
  EXPECT_FALSE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  a->SubmitUnlock(std::vector<ObjectKey>{Key(2)});
  EXPECT_TRUE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(2)})), "0");
}

TEST(FsAdapter, ExpiredLocksDoNotPinFilesForever) {
  TempDir dir;
  ManualClock clock;
  L2AdapterContext ctx;
  ctx.clock = &clock;
  auto r = CreateL2Adapter(Spec(dir.path(), R"("max_capacity_gb":0.0009765625)"), ctx);
  ASSERT_TRUE(r.ok());
  auto a = std::move(r).value();
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 5; ++i) data.push_back(Pattern(i, 256 * 1024));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0), Key(1), Key(2), Key(3)})), "1111");  // never unlocked
  EXPECT_FALSE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  clock.AdvanceSeconds(301);
  EXPECT_TRUE(StoreSync(a.get(), {Key(4)}, {ViewOf(data[4])}).ok);
}

TEST(FsAdapter, EvictionBlockEvictsAtTheWatermark) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("max_capacity_gb":0.0009765625,)"
                                       R"("eviction":{"eviction_policy":"LRU","trigger_watermark":0.5,"eviction_ratio":0.5})"));
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 3; ++i) data.push_back(Pattern(i, 256 * 1024));
  ASSERT_TRUE(StoreSync(a.get(), {Key(0)}, {ViewOf(data[0])}).ok);
  EXPECT_EQ(a->Usage().objects, 1u);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(data[1])}).ok);  // 512 KiB >= 0.5 x 1 MiB: evict 256 KiB
  EXPECT_EQ(a->Usage().objects, 1u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(0), Key(1)})), "01");
}

TEST(FsAdapter, RestartRebuildsTheIndexInModificationOrder) {
  TempDir dir;
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 5; ++i) data.push_back(Pattern(i, 256 * 1024));
  {
    auto a = MustCreate(Spec(dir.path()));
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  }
  // Make key 3 the oldest file.
  const std::string p3 = dir.path() + "/" + Key(3).ToString() + ".data";
  const timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, p3.c_str(), old, 0), 0);
  auto b = MustCreate(Spec(dir.path(), R"("max_capacity_gb":0.0009765625)"));
  ASSERT_TRUE(StoreSync(b.get(), {Key(4)}, {ViewOf(data[4])}).ok);
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(0), Key(1), Key(2), Key(3), Key(4)})), "11101");
}

TEST(FsAdapter, StaleTempFilesAreRemovedAtStartUp) {
  TempDir dir;
  const std::string stale = dir.path() + "/.lmcache-1234-0.tmp";
  const std::string fresh = dir.path() + "/.lmcache-1234-1.tmp";
  const std::string foreign = dir.path() + "/x.tmp";  // LMCache's own temp names are not ours to remove
  for (const auto& p : {stale, fresh, foreign}) WriteFile(p, {1});
  const timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, stale.c_str(), old, 0), 0);
  ASSERT_EQ(utimensat(AT_FDCWD, foreign.c_str(), old, 0), 0);
  auto a = MustCreate(Spec(dir.path()));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(fresh));
  EXPECT_TRUE(fs::exists(foreign));
}

// ---- I/O options ----

TEST(FsAdapter, ODirectRoundTripsAlignedAndUnalignedBuffers) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("use_odirect":true,"num_workers":2)", "fs_native"));
  const std::string mode = Detail(a->ReportStatus(), "use_odirect");
  EXPECT_TRUE(mode == "true" || mode.find("unsupported") != std::string::npos) << mode;
  // Aligned, page-multiple buffer (read/written in place) and odd ones (bounce buffer).
  void* mem = nullptr;
  ASSERT_EQ(posix_memalign(&mem, 4096, 3 << 20), 0);
  auto* aligned = static_cast<uint8_t*>(mem);
  for (size_t i = 0; i < (3u << 20); ++i) aligned[i] = testing::PatternByte(77, i);
  std::vector<uint8_t> odd_backing(10001 + 1);
  for (size_t i = 0; i < 10001; ++i) odd_backing[i + 1] = testing::PatternByte(78, i);
  std::vector<uint8_t> big = Pattern(79, (9u << 20) + 5);  // several 4 MiB chunks, unaligned tail
  ASSERT_TRUE(StoreSync(a.get(), {Key(1), Key(2), Key(3)},
                        {ObjectView{aligned, 3u << 20}, ObjectView{odd_backing.data() + 1, 10001}, ViewOf(big)})
                  .ok);
  EXPECT_EQ(fs::file_size(dir.path() + "/" + Key(2).ToString() + ".data"), 10001u);  // exact, not padded
  EXPECT_EQ(fs::file_size(dir.path() + "/" + Key(3).ToString() + ".data"), (9u << 20) + 5);

  void* mem2 = nullptr;
  ASSERT_EQ(posix_memalign(&mem2, 4096, 3 << 20), 0);
  auto* aligned_out = static_cast<uint8_t*>(mem2);
  std::vector<uint8_t> odd_out(10001 + 3), big_out(big.size());
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1), Key(2), Key(3)},
                          {ObjectView{aligned_out, 3u << 20}, ObjectView{odd_out.data() + 3, 10001}, ViewOf(big_out)})),
            "111");
  EXPECT_EQ(std::memcmp(aligned_out, aligned, 3u << 20), 0);
  EXPECT_EQ(std::memcmp(odd_out.data() + 3, odd_backing.data() + 1, 10001), 0);
  EXPECT_TRUE(big_out == big);
  std::free(mem);
  std::free(mem2);
  // Readable without O_DIRECT too (the files are plain LMCache files).
  auto b = MustCreate(Spec(dir.path()));
  std::vector<uint8_t> again(10001);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(2)}, {ViewOf(again)})), "1");
  EXPECT_EQ(std::memcmp(again.data(), odd_backing.data() + 1, 10001), 0);
}

TEST(FsAdapter, ReadAheadRoundTrips) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("read_ahead_size":4096)", "fs_native"));
  auto d = Pattern(80, (2u << 20) + 333);
  ASSERT_TRUE(StoreSync(a.get(), {Key(80)}, {ViewOf(d)}).ok);
  std::vector<uint8_t> out(d.size());
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(80)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  EXPECT_EQ(Detail(a->ReportStatus(), "read_ahead_size"), "4096");
}

TEST(FsAdapter, UnhealthyWhenTheDirectoryDisappears) {
  TempDir dir;
  const std::string sub = dir.path() + "/l2";
  auto a = MustCreate(Spec(sub));
  EXPECT_TRUE(a->ReportStatus().healthy);
  fs::remove_all(sub);
  const L2Status s = a->ReportStatus();
  EXPECT_FALSE(s.healthy);
  EXPECT_NE(s.message.find("removed"), std::string::npos) << s.message;
}

// ---- other writers: probe_misses and the inotify watch ----

// A file written the way LMCache 0.5.6 writes it: "<stem>.tmp" (or the
// same name in relative_tmp_dir), then rename() over "<stem>.data".
void WriteLikeLMCache(const std::string& dir, const ObjectKey& key, const std::vector<uint8_t>& d,
                      const std::string& tmp_dir = "") {
  const std::string final_path = dir + "/" + key.ToString() + ".data";
  const std::string tmp =
      tmp_dir.empty() ? dir + "/" + key.ToString() + ".tmp" : tmp_dir + "/" + key.ToString() + ".data";
  WriteFile(tmp, d);
  ASSERT_EQ(rename(tmp.c_str(), final_path.c_str()), 0);
}

uint64_t DetailU64(const L2Status& s, const std::string& name) {
  const std::string v = Detail(s, name);
  return v == "<missing>" ? ~uint64_t{0} : std::stoull(v);
}

TEST(FsMissDetection, ProbeMissesParsesAutoTrueFalse) {
  TempDir dir;
  auto def = MustCreate(Spec(dir.path()));
  EXPECT_EQ(Detail(def->ReportStatus(), "probe_misses"), "auto");
  EXPECT_EQ(Detail(def->ReportStatus(), "miss_detection"), "inotify")  // /tmp is local
      << Detail(def->ReportStatus(), "miss_detection_reason");
  auto au = MustCreate(Spec(dir.path(), R"("probe_misses":"auto")", "fs_native"));
  EXPECT_EQ(Detail(au->ReportStatus(), "miss_detection"), "inotify");
  auto yes = MustCreate(Spec(dir.path(), R"("probe_misses":true)"));
  EXPECT_EQ(Detail(yes->ReportStatus(), "probe_misses"), "true");
  EXPECT_EQ(Detail(yes->ReportStatus(), "miss_detection"), "probe");
  EXPECT_EQ(Detail(yes->ReportStatus(), "inotify_events"), "<missing>");
  auto no = MustCreate(Spec(dir.path(), R"("probe_misses":false)"));
  EXPECT_EQ(Detail(no->ReportStatus(), "miss_detection"), "off");
  for (const char* bad : {R"("probe_misses":"maybe")", R"("probe_misses":1)", R"("probe_misses":"true")",
                          R"("probe_misses":[])"}) {
    auto r = CreateL2Adapter(Spec(dir.path(), bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    const std::string m = r.status().message();
    EXPECT_NE(m.find("field 'probe_misses' must be \"auto\", true or false, got "), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(FsMissDetection, FilesOtherWritersRenameInAreFoundByTheNextLookup) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("relative_tmp_dir":"tmp")"));
  auto b = MustCreate(Spec(dir.path(), "", "fs_native"));  // another server on the same directory
  ASSERT_EQ(Detail(a->ReportStatus(), "miss_detection"), "inotify");
  auto d = Pattern(60, 5000);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(60), Key(61), Key(62), Key(63)})), "0000");
  // Each write completes before the lookup starts: no delay, no retry.
  ASSERT_TRUE(StoreSync(b.get(), {Key(60)}, {ViewOf(d)}).ok);
  WriteLikeLMCache(dir.path(), Key(61), d);                        // 0.5.6 fs: <stem>.tmp + rename
  WriteLikeLMCache(dir.path(), Key(62), d, dir.path() + "/tmp");   // 0.5.6 relative_tmp_dir
  WriteFile(dir.path() + "/" + Key(63).ToString() + ".data", d);   // a direct write, closed
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(60), Key(61), Key(62), Key(63), Key(64)})), "11110");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(60), Key(61), Key(62), Key(63)});
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(DetailU64(s, "inotify_indexed"), 4u);
  EXPECT_EQ(DetailU64(s, "inotify_overflows"), 0u);
  EXPECT_EQ(a->Usage().objects, 4u);
  // b's file keeps its checksum: a load through a verifies it.
  std::vector<uint8_t> out(5000), out2(5000);  // one buffer per key: two workers write them at once
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(60), Key(61)}, {ViewOf(out), ViewOf(out2)})), "11");
  EXPECT_TRUE(out == d);
  EXPECT_TRUE(out2 == d);
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 1u);  // only the LMCache-written one
  // Temp names, foreign names and directories are not indexed.
  WriteFile(dir.path() + "/" + Key(65).ToString() + ".tmp", d);
  WriteFile(dir.path() + "/notes.data", d);
  fs::create_directory(dir.path() + "/" + Key(66).ToString() + ".data");
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(65), Key(66)})), "00");
  EXPECT_EQ(a->Usage().objects, 4u);
}

TEST(FsMissDetection, FilesOtherWritersDeleteOrMoveAwayAreMisses) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto b = MustCreate(Spec(dir.path()));
  auto d = Pattern(70, 3000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(70), Key(71), Key(72)}, {ViewOf(d), ViewOf(d), ViewOf(d)}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(70), Key(71), Key(72)})), "111");  // locked
  a->SubmitUnlock(std::vector<ObjectKey>{Key(70), Key(71), Key(72)});
  ASSERT_EQ(b->Delete(std::vector<ObjectKey>{Key(70)}).value(), 1u);                     // another server
  ASSERT_TRUE(fs::remove(dir.path() + "/" + Key(71).ToString() + ".data"));              // a plain unlink
  TempDir elsewhere;
  fs::rename(dir.path() + "/" + Key(72).ToString() + ".data", elsewhere.path() + "/moved.data");  // moved away
  // The events are applied before the usage is read.
  EXPECT_EQ(a->Usage().objects, 0u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(70), Key(71), Key(72), Key(73)})), "0000");
  EXPECT_EQ(DetailU64(a->ReportStatus(), "inotify_dropped"), 3u);
  // No window either when every key of the lookup is still in the index:
  // the deletes queued before the lookup are applied before it answers.
  ASSERT_TRUE(StoreSync(a.get(), {Key(75), Key(76)}, {ViewOf(d), ViewOf(d)}).ok);
  ASSERT_EQ(b->Delete(std::vector<ObjectKey>{Key(75)}).value(), 1u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(75), Key(76)})), "01");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(76)});
  ASSERT_TRUE(fs::remove(dir.path() + "/" + Key(76).ToString() + ".data"));
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(76)})), "0");
  // A key deleted by another process and stored again is written, not skipped as present.
  ASSERT_TRUE(StoreSync(b.get(), {Key(74)}, {ViewOf(d)}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(74)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(74)});
  ASSERT_TRUE(fs::remove(dir.path() + "/" + Key(74).ToString() + ".data"));
  const L2StoreResult r = StoreSync(a.get(), {Key(74)}, {ViewOf(d)});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.bytes_written, 3000u);
  EXPECT_TRUE(fs::exists(dir.path() + "/" + Key(74).ToString() + ".data"));
}

TEST(FsMissDetection, StaleDeleteEventsKeepAFileStoredAgain) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto b = MustCreate(Spec(dir.path()));
  auto d = Pattern(75, 2000);
  ASSERT_TRUE(StoreSync(b.get(), {Key(75)}, {ViewOf(d)}).ok);
  // a sees no event until it drains: delete and store again in b first.
  ASSERT_EQ(b->Delete(std::vector<ObjectKey>{Key(75)}).value(), 1u);
  ASSERT_TRUE(StoreSync(b.get(), {Key(75)}, {ViewOf(d)}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(75)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(75)});
  EXPECT_EQ(a->Usage().objects, 1u);
  // Replaced (rename over it) after a indexed it: a delete-less replacement keeps one entry.
  WriteLikeLMCache(dir.path(), Key(75), d);
  EXPECT_EQ(a->Usage().objects, 1u);
  std::vector<uint8_t> out(2000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(75)}, {ViewOf(out)})), "1");
}

TEST(FsMissDetection, HalfWrittenFileIsNotAHitUntilClosed) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(80, 8192);
  const std::string path = dir.path() + "/" + Key(80).ToString() + ".data";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, d.data(), 4096), 4096);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(80)})), "0");
  EXPECT_EQ(a->Usage().objects, 0u);
  ASSERT_EQ(write(fd, d.data() + 4096, 4096), 4096);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(80)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(80)});
  std::vector<uint8_t> out(8192);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(80)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  // For contrast: probing (probe_misses true) takes any file it finds.
  auto p = MustCreate(Spec(dir.path(), R"("probe_misses":true)"));
  const std::string path2 = dir.path() + "/" + Key(81).ToString() + ".data";
  const int fd2 = open(path2.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  ASSERT_GE(fd2, 0);
  EXPECT_EQ(Bits(LookupSync(p.get(), {Key(81)})), "1");
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(81)})), "0");
  close(fd2);
}

TEST(FsMissDetection, HardLinkOfAFinishedFileIsFound) {
  // Where RENAME_NOREPLACE is missing our writers link() the finished temp
  // file into place: only IN_CREATE names it; its xattr says it is complete.
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(82, 6000);
  const std::string tmp = dir.path() + "/.lmcache-test.tmp";
  WriteFile(tmp, d);
  char v[80];
  std::snprintf(v, sizeof(v), "xxh3:%016" PRIx64 ":6000", internal::Xxh3Digest(d.data(), d.size()));
  ASSERT_EQ(setxattr(tmp.c_str(), "user.lmcache.checksum", v, std::strlen(v), 0), 0);
  const std::string path = dir.path() + "/" + Key(82).ToString() + ".data";
  // Drain the temp file's events first, so the link's IN_CREATE is alone.
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(82)})), "0");
  ASSERT_EQ(link(tmp.c_str(), path.c_str()), 0);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(82)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(82)});
  ASSERT_EQ(unlink(tmp.c_str()), 0);
  std::vector<uint8_t> out(6000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(82)}, {ViewOf(out)})), "1");
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 0u);  // verified with the xattr
}

uint64_t MaxQueuedEvents() {
  std::ifstream f("/proc/sys/fs/inotify/max_queued_events");
  uint64_t n = 0;
  f >> n;
  return n;
}

TEST(FsMissDetection, QueueOverflowProbesUntilARescanRebuiltTheIndex) {
  const uint64_t max_queued = MaxQueuedEvents();
  if (max_queued == 0 || max_queued > 200000) {
    GTEST_SKIP() << "fs.inotify.max_queued_events = " << max_queued;
  }
  TempDir dir;
  auto a = MustCreate(Spec(dir.path()));
  auto d = Pattern(90, 1000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(90)}, {ViewOf(d)}).ok);
  // Fill the kernel queue: each open for writing and close of an existing
  // file is one IN_CLOSE_WRITE; alternating two names keeps the kernel from
  // merging them (identical consecutive events are coalesced).
  const std::string junk[2] = {dir.path() + "/junk-0", dir.path() + "/junk-1"};
  for (uint64_t i = 0; i < max_queued + 64; ++i) {
    const int fd = open(junk[i % 2].c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
  }
  // These events are lost: a file appears, an indexed one goes.
  WriteLikeLMCache(dir.path(), Key(91), d);
  ASSERT_TRUE(fs::remove(dir.path() + "/" + Key(90).ToString() + ".data"));
  // The miss is probed while the rescan is due.
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(91)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(91)});
  L2Status s = a->ReportStatus();
  EXPECT_GE(DetailU64(s, "inotify_overflows"), 1u);
  // The rescan (on a worker) drops the deleted file and returns to inotify.
  for (int i = 0; i < 2000 && DetailU64(s = a->ReportStatus(), "rescans") == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(DetailU64(s, "rescans"), 1u);
  EXPECT_EQ(Detail(s, "miss_detection"), "inotify") << Detail(s, "miss_detection_reason");
  EXPECT_EQ(a->Usage().objects, 1u);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(90), Key(91)})), "01");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(91)});
  // Exact again: a new file is found from its event.
  const uint64_t indexed = DetailU64(a->ReportStatus(), "inotify_indexed");
  WriteLikeLMCache(dir.path(), Key(92), d);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(92)})), "1");
  EXPECT_EQ(DetailU64(a->ReportStatus(), "inotify_indexed"), indexed + 1);
}

TEST(FsMissDetection, AMovedBaseDirectoryFallsBackToProbing) {
  TempDir dir;
  const std::string sub = dir.path() + "/l2", moved = dir.path() + "/l2-moved";
  auto a = MustCreate(Spec(sub));
  auto d = Pattern(95, 1000);
  ASSERT_EQ(rename(sub.c_str(), moved.c_str()), 0);
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(Detail(s, "miss_detection"), "probe");
  EXPECT_NE(Detail(s, "miss_detection_reason").find("moved"), std::string::npos) << Detail(s, "miss_detection_reason");
  // Our directory fd still names the moved directory: probes find files there.
  WriteFile(moved + "/" + Key(95).ToString() + ".data", d);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(95), Key(96)})), "10");
}

TEST(FsMissDetection, ConcurrentLookupsStoresAndDeletesAcrossTwoAdapters) {
  TempDir dir;
  auto a = MustCreate(Spec(dir.path(), R"("num_workers":2)"));
  auto b = MustCreate(Spec(dir.path(), R"("num_workers":2)"));
  auto d = Pattern(100, 4096);
  constexpr int kKeys = 64;
  std::atomic<bool> stop{false};
  std::thread looker([&] {
    std::vector<ObjectKey> keys;
    for (int i = 0; i < kKeys; ++i) keys.push_back(Key(1000 + i));
    while (!stop.load()) {
      const L2Bitmap bits = LookupSync(a.get(), keys);
      std::vector<ObjectKey> locked;
      for (size_t i = 0; i < bits.size(); ++i) {
        if (bits[i]) locked.push_back(keys[i]);
      }
      a->SubmitUnlock(locked);
      (void)a->Usage();
    }
  });
  bool ok = true;  // no ASSERT while the looker runs
  for (int i = 0; i < kKeys; ++i) {
    ok = ok && StoreSync(b.get(), {Key(1000 + i)}, {ViewOf(d)}).ok;
    if (i % 4 == 3) {
      auto removed = b->Delete(std::vector<ObjectKey>{Key(1000 + i - 1)});
      ok = ok && removed.ok() && removed.value() == 1u;
    }
  }
  stop.store(true);
  looker.join();
  ASSERT_TRUE(ok);
  std::vector<ObjectKey> keys;
  std::string want;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(Key(1000 + i));
    want += i % 4 == 2 ? '0' : '1';
  }
  EXPECT_EQ(Bits(LookupSync(a.get(), keys)), want);
  EXPECT_EQ(a->Usage().objects, static_cast<uint64_t>(kKeys - kKeys / 4));
}

}  // namespace
}  // namespace lmcache
