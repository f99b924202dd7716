// native_plugin: the conformance suite on the example plugin
// (examples/l2_plugin/memory_plugin.c, built by CMake), thread-safe and
// serialized, then its own cases: loading errors (missing library, missing
// entry point, ABI version, empty table slot, create refusal), values
// shared through a named store (probe, list at start-up, footer checks on a
// value another writer damaged or truncated), capacity eviction, a full
// plugin.

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "lmcache/l2_native_plugin.h"
#include "storage/l2_conformance.h"
#include "util/xxhash64.h"

namespace lmcache {
namespace conformance {
namespace {

struct PluginTraits {
  static constexpr const char* kType = "native_plugin";
  static constexpr bool kPersistent = false;  // each adapter gets a private in-memory table
  static std::string Spec(const std::string&) {
    return R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH R"(","config":{}})";
  }
};

struct PluginSerialTraits {
  static constexpr const char* kType = "native_plugin";
  static constexpr bool kPersistent = false;
  static std::string Spec(const std::string&) {
    return R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_SERIAL_PATH
           R"(","num_workers":3,"probe_misses":false})";
  }
};

// A named store outlives the adapter (process-wide), like a persistent backend.
struct PluginNamedTraits {
  static constexpr const char* kType = "native_plugin";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH R"(","config":{"name":")" +
           dir + R"("}})";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(native_plugin, L2ConformanceTest, ::testing::Types<PluginTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(native_plugin_serial, L2ConformanceTest, ::testing::Types<PluginSerialTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(native_plugin_named, L2ConformanceTest, ::testing::Types<PluginNamedTraits>);

std::string Detail(const L2Status& s, const std::string& name) {
  for (const auto& [k, v] : s.details) {
    if (k == name) return v;
  }
  return "<missing>";
}

Status CreateStatus(const std::string& json) {
  auto r = CreateL2Adapter(json);
  return r.ok() ? Status::OK() : r.status();
}

std::string Named(const std::string& name, const std::string& extra = "") {
  return R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH R"(","config":{"name":")" + name +
         R"("})" + extra + "}";
}

// Direct access to the example plugin's named store, as another writer.
class RawPlugin {
 public:
  explicit RawPlugin(const std::string& name) {
    lib_ = dlopen(LMCACHE_EXAMPLE_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    EXPECT_NE(lib_, nullptr);
    auto entry = reinterpret_cast<lmcache_l2_plugin_v1_fn>(dlsym(lib_, LMCACHE_L2_PLUGIN_ENTRY_V1));
    api_ = entry();
    char err[128];
    h_ = api_->create((R"({"name":")" + name + R"("})").c_str(), err, sizeof(err));
    EXPECT_NE(h_, nullptr) << err;
  }
  ~RawPlugin() {
    api_->destroy(h_);
    dlclose(lib_);
  }
  int Put(const std::string& key, const std::vector<uint8_t>& v) {
    lmcache_l2_iovec part{const_cast<uint8_t*>(v.data()), v.size()};
    return api_->put(h_, key.c_str(), &part, 1);
  }
  std::vector<uint8_t> Get(const std::string& key) {
    uint64_t n = 0;
    if (api_->exists(h_, key.c_str(), &n) != LMCACHE_L2_OK) return {};
    std::vector<uint8_t> v(n);
    lmcache_l2_iovec part{v.data(), n};
    EXPECT_EQ(api_->get(h_, key.c_str(), &part, 1, &n), LMCACHE_L2_OK);
    return v;
  }
  int Remove(const std::string& key) { return api_->remove(h_, key.c_str()); }

 private:
  void* lib_ = nullptr;
  const lmcache_l2_plugin_api_v1* api_ = nullptr;
  void* h_ = nullptr;
};

TEST(NativePlugin, LoadingErrorsAreOneLiners) {
  auto expect = [](const std::string& json, StatusCode code, const std::string& needle) {
    const Status s = CreateStatus(json);
    EXPECT_EQ(s.code(), code) << json << " -> " << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  };
  expect(R"({"type":"native_plugin"})", StatusCode::kInvalidArgument, "library_path");
  expect(R"({"type":"native_plugin","library_path":"/nonexistent/libx.so"})", StatusCode::kInvalidArgument,
         "field 'library_path': cannot load '/nonexistent/libx.so'");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_BAD_PLUGIN_NO_ENTRY_PATH R"("})",
         StatusCode::kInvalidArgument, "does not export lmcache_l2_plugin_v1");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_BAD_PLUGIN_BAD_VERSION_PATH R"("})",
         StatusCode::kInvalidArgument, "ABI version 99");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_BAD_PLUGIN_NO_PUT_PATH R"("})",
         StatusCode::kInvalidArgument, "'put'");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH
         R"(","config":{"capacity_bytes":"lots"}})",
         StatusCode::kIOError, "capacity_bytes\" must be a non-negative integer");
  expect(R"({"type":"native_plugin","module_path":"x.y","class_name":"C"})", StatusCode::kInvalidArgument,
         "give library_path");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH
         R"(","config":{},"adapter_params":{}})",
         StatusCode::kInvalidArgument, "adapter_params");
  expect(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH R"(","config":3})",
         StatusCode::kInvalidArgument, "config");
}

TEST(NativePlugin, StatusNamesThePlugin) {
  auto a = testing::MustCreate(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_SERIAL_PATH
                               R"(","adapter_params":{}})");
  const L2Status s = a->ReportStatus();
  EXPECT_EQ(Detail(s, "plugin"), "memory");
  EXPECT_EQ(Detail(s, "plugin_thread_safe"), "false (calls serialized)");
  EXPECT_EQ(Detail(s, "abi_version"), "1");
}

TEST(NativePlugin, ValuesCarryAVerifiedFooter) {
  TempDir name;
  RawPlugin raw(name.path());
  auto a = testing::MustCreate(Named(name.path()));
  auto d = Pattern(1, 5000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
  const std::vector<uint8_t> v = raw.Get(Key(1).ToString());
  ASSERT_EQ(v.size(), 5000u + 24);
  EXPECT_TRUE(std::equal(d.begin(), d.end(), v.begin()));
  EXPECT_EQ(std::string(v.begin() + 5000, v.begin() + 5004), "LMCF");
  uint64_t size = 0, xxh = 0;
  std::memcpy(&size, v.data() + 5008, 8);
  std::memcpy(&xxh, v.data() + 5016, 8);
  EXPECT_EQ(size, 5000u);
  EXPECT_EQ(xxh, internal::Xxh64Digest(d.data(), d.size()));
}

TEST(NativePlugin, SharedStoreFindsOtherWritersAndChecksTheirValues) {
  TempDir name;
  RawPlugin raw(name.path());
  auto a = testing::MustCreate(Named(name.path()));
  auto b = testing::MustCreate(Named(name.path()));
  auto d = Pattern(1, 4000), e = Pattern(2, 4000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1), Key(2)}, {ViewOf(d), ViewOf(e)}).ok);
  // b never stored them: found by probing the plugin; first writer wins.
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(1), Key(2), Key(3)})), "110");
  b->SubmitUnlock(std::vector<ObjectKey>{Key(1), Key(2)});
  EXPECT_EQ(StoreSync(b.get(), {Key(1)}, {ViewOf(e)}).bytes_written, 0u);
  std::vector<uint8_t> out(4000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(1)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);

  // Another writer damages key 2's bytes, and truncates a copy of key 1 under key 4.
  std::vector<uint8_t> v2 = raw.Get(Key(2).ToString());
  v2[10] ^= 1;
  ASSERT_EQ(raw.Remove(Key(2).ToString()), LMCACHE_L2_OK);
  ASSERT_EQ(raw.Put(Key(2).ToString(), v2), LMCACHE_L2_OK);
  std::vector<uint8_t> v4 = raw.Get(Key(1).ToString());
  v4.resize(3000);
  ASSERT_EQ(raw.Put(Key(4).ToString(), v4), LMCACHE_L2_OK);
  // A value with a valid footer for another size: a size mismatch, kept.
  std::vector<uint8_t> v5 = raw.Get(Key(1).ToString());
  ASSERT_EQ(raw.Put(Key(5).ToString(), v5), LMCACHE_L2_OK);

  std::vector<uint8_t> o2(4000), o4(3000 - 24), o5(5000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(2), Key(4), Key(5)}, {ViewOf(o2), ViewOf(o4), ViewOf(o5)})), "000");
  const L2Counters c = b->ReportStatus().counters;
  EXPECT_EQ(c.corrupt_objects, 2u);
  EXPECT_EQ(c.size_mismatches, 1u);
  EXPECT_TRUE(raw.Get(Key(2).ToString()).empty());  // dropped from the plugin too
  EXPECT_TRUE(raw.Get(Key(4).ToString()).empty());
  EXPECT_FALSE(raw.Get(Key(5).ToString()).empty());
}

TEST(NativePlugin, ListAtStartUpIndexesWhatThePluginHolds) {
  TempDir name;
  auto d = Pattern(1, 3000), e = Pattern(2, 7000);
  {
    auto a = testing::MustCreate(Named(name.path()));
    ASSERT_TRUE(StoreSync(a.get(), {Key(1, "x"), Key(2)}, {ViewOf(d), ViewOf(e)}).ok);
  }
  {
    RawPlugin raw(name.path());
    ASSERT_EQ(raw.Put("not an lmcache key", std::vector<uint8_t>(100, 1)), LMCACHE_L2_OK);
  }
  auto b = testing::MustCreate(Named(name.path(), R"(,"probe_misses":false)"));
  const L2Status s = b->ReportStatus();
  EXPECT_EQ(Detail(s, "listed_at_start"), "2");
  EXPECT_EQ(Detail(s, "foreign_values"), "1");
  const L2Usage u = b->Usage();
  EXPECT_EQ(u.total_bytes, 10000u);
  EXPECT_EQ(u.bytes_by_salt.at("x"), 3000u);
}

TEST(NativePlugin, CapacityEvictsFromThePlugin) {
  TempDir name;
  RawPlugin raw(name.path());
  // 100 KiB capacity, 40 KB objects: the third store evicts the first.
  auto a = testing::MustCreate(Named(name.path(), R"(,"max_capacity_gb":)" + std::to_string(100.0 / (1 << 20)) + ""));
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 3; ++i) data.push_back(Pattern(i, 40000));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok);
  EXPECT_EQ(a->ReportStatus().counters.evicted_objects, 1u);
  EXPECT_TRUE(raw.Get(Key(0).ToString()).empty());
  EXPECT_FALSE(raw.Get(Key(2).ToString()).empty());
  EXPECT_EQ(a->Usage().total_bytes, 80000u);
}

TEST(NativePlugin, AFullPluginFailsTheStore) {
  auto a = testing::MustCreate(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH
                               R"(","config":{"capacity_bytes":10000}})");
  auto small = Pattern(1, 5000), big = Pattern(2, 6000);
  EXPECT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(small)}).ok);
  EXPECT_EQ(Bits(StoreSync(a.get(), {Key(2)}, {ViewOf(big)}).stored), "0");
  EXPECT_EQ(a->ReportStatus().counters.io_errors, 1u);
  EXPECT_EQ(a->Usage().total_bytes, 5000u);
}

TEST(NativePlugin, KeysThatCannotBeNamedAreRejected) {
  auto a = testing::MustCreate(R"({"type":"native_plugin","library_path":")" LMCACHE_EXAMPLE_PLUGIN_PATH R"("})");
  auto d = Pattern(1, 100);
  EXPECT_EQ(Bits(StoreSync(a.get(), {Key(1, "a@b")}, {ViewOf(d)}).stored), "0");
  EXPECT_EQ(a->ReportStatus().counters.rejected_keys, 1u);
}

}  // namespace
}  // namespace conformance
}  // namespace lmcache
