// CreateL2Adapter: JSON parsing, the type registry, and one-line errors that
// name the offending field.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_test_util.h"

namespace lmcache {
namespace {

using testing::TempDir;

Status Err(const std::string& json) {
  auto r = CreateL2Adapter(json);
  return r.ok() ? Status::OK() : r.status();
}

void ExpectInvalid(const std::string& json, const std::string& needle) {
  const Status s = Err(json);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << json << " -> " << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << json << " -> " << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << "multi-line message: " << s.message();
}

TEST(L2Factory, RegisteredTypes) {
  EXPECT_EQ(L2AdapterTypes(), (std::vector<std::string>{"dax", "fault_inject", "fs", "fs_native", "mock", "native_plugin", "raw_block", "resp"}));
}

TEST(L2Factory, UnknownAndUnavailableTypes) {
  EXPECT_EQ(Err(R"({"type":"nope"})").message(),
            "unknown L2 adapter type 'nope' (choose from dax, fault_inject, fs, fs_native, mock, native_plugin, raw_block, resp)");
  ExpectInvalid(R"({"type":"aerospike","hosts":"x"})", "L2 adapter type 'aerospike' is not available in this build");
  ExpectInvalid(R"({"base_path":"/tmp"})", "needs a \"type\" field");
  ExpectInvalid(R"({"type":3})", "'type' must be a string");
}

TEST(L2Factory, MalformedJson) {
  ExpectInvalid(R"({"type":"fs",)", "invalid L2 adapter JSON");
  ExpectInvalid(R"(["fs"])", "expected an object");
  ExpectInvalid(R"({"type":"fs"} trailing)", "invalid L2 adapter JSON");
  ExpectInvalid(R"({"type":"mock","type":"fs"})", "duplicate field 'type'");
  ExpectInvalid("", "invalid L2 adapter JSON");
}

TEST(L2Factory, FieldErrorsNameTheField) {
  TempDir d;
  const std::string base = R"("base_path":")" + d.path() + "\"";
  ExpectInvalid(R"({"type":"fs"})", "L2 adapter 'fs': field 'base_path' is required");
  ExpectInvalid(R"({"type":"fs","base_path":""})", "field 'base_path' must be a non-empty string");
  ExpectInvalid(R"({"type":"fs_native",)" + base + R"(,"num_workers":"4"})",
                "L2 adapter 'fs_native': field 'num_workers' must be an integer in [1, 256], got \"4\"");
  ExpectInvalid(R"({"type":"fs_native",)" + base + R"(,"num_workers":0})", "field 'num_workers'");
  ExpectInvalid(R"({"type":"fs_native",)" + base + R"(,"num_workers":2.5})", "field 'num_workers'");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"use_odirect":"yes"})", "field 'use_odirect' must be true or false");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"read_ahead_size":0})", "field 'read_ahead_size'");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"max_capacity_gb":-1})", "field 'max_capacity_gb'");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"relative_tmp_dir":"../x"})", "field 'relative_tmp_dir'");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"relative_tmp_dir":"/abs"})", "field 'relative_tmp_dir'");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"checksum":"md5"})",
                "field 'checksum' must be one of auto, xattr, sidecar, off");
  ExpectInvalid(R"({"type":"fs",)" + base + R"(,"bogus":1})", "L2 adapter 'fs': unknown field 'bogus'");
  ExpectInvalid(R"({"type":"mock","max_size_gb":"1"})", "L2 adapter 'mock': field 'max_size_gb'");
  ExpectInvalid(R"({"type":"mock","latency_ms":-5})", "field 'latency_ms'");
  ExpectInvalid(R"({"type":"mock","serde":{"type":"fp8"}})", "field 'serde' is not supported");
  ExpectInvalid(R"({"type":"mock","eviction":{"eviction_policy":"ARC"}})",
                "eviction: field 'eviction_policy' must be one of LRU, IsolatedLRU, noop");
  ExpectInvalid(R"({"type":"mock","eviction":{}})", "field 'eviction_policy' is required");
  ExpectInvalid(R"({"type":"mock","eviction":{"eviction_policy":"LRU","ratio":1}})", "unknown field 'ratio'");
  ExpectInvalid(R"({"type":"mock","eviction":"LRU"})", "field 'eviction' must be an object");
  ExpectInvalid(R"({"type":"mock","shared":"no"})", "field 'shared'");
}

TEST(L2Factory, FaultInjectErrors) {
  ExpectInvalid(R"({"type":"fault_inject"})", "L2 adapter 'fault_inject': field 'inner' is required");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock"},"fail_rate":2})", "field 'fail_rate'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock"},"fail_ops":["write"]})", "field 'fail_ops'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock"},"gap_indices":[-1]})", "field 'gap_indices'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock"},"gap_tail_ratios":[1.5]})",
                "field 'gap_tail_ratios'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock"},"seed":-1})", "field 'seed'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"nope"}})",
                "L2 adapter 'fault_inject': inner: unknown L2 adapter type 'nope'");
  ExpectInvalid(R"({"type":"fault_inject","inner":{"type":"mock","x":1}})", "inner: L2 adapter 'mock': unknown field 'x'");
}

TEST(L2Factory, AcceptsLMCacheSpecs) {
  TempDir d;
  // As LMCache 0.5.6 documents and its own defaults write them.
  for (const std::string& json : {
           R"({"type":"fs","base_path":")" + d.path() + R"("})",
           R"({"type":"fs","base_path":")" + d.path() + R"(","relative_tmp_dir":null,"read_ahead_size":null,"use_odirect":false})",
           R"({"type":"fs_native","base_path":")" + d.path() +
               R"(","num_workers":2,"relative_tmp_dir":"","use_odirect":false,"read_ahead_size":65536,)"
               R"("max_capacity_gb":1.5,"eviction":{"eviction_policy":"LRU","trigger_watermark":0.8,"eviction_ratio":0.2},)"
               R"("shared":true,"persist_enabled":true})",
           std::string(R"({"type":"mock","max_size_gb":1,"mock_bandwidth_gb":10})"),
           std::string(R"({"type":"fault_inject","inner":{"type":"mock","max_size_gb":1,"mock_bandwidth_gb":10},)"
                       R"("rate":0.1,"seed":7,"gap_indices":[2],"gap_tail_ratios":[0.5]})"),
       }) {
    auto r = CreateL2Adapter(json);
    ASSERT_TRUE(r.ok()) << json << " -> " << r.status().ToString();
  }
  auto r = CreateL2Adapter(R"({"type":"fs_native","base_path":")" + d.path() +
                           R"(","max_capacity_gb":1.5,"shared":true,"eviction":{"eviction_policy":"IsolatedLRU"}})");
  ASSERT_TRUE(r.ok());
  const L2CommonConfig& c = r.value()->common_config();
  EXPECT_EQ(c.type, "fs_native");
  EXPECT_TRUE(c.shared);
  ASSERT_TRUE(c.eviction.has_value());
  EXPECT_EQ(c.eviction->eviction_policy, "IsolatedLRU");
  EXPECT_DOUBLE_EQ(c.eviction->trigger_watermark, 0.8);
  EXPECT_EQ(r.value()->Usage().capacity_bytes, 1536ull << 20);
}

TEST(L2Factory, BackendErrorsAreIOErrors) {
  auto r = CreateL2Adapter(R"({"type":"fs","base_path":"/proc/lmcache-cannot-exist"})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  EXPECT_NE(r.status().message().find("/proc/lmcache-cannot-exist"), std::string::npos);
}

// ---- run-time registered types ----

// Registers `name` as a mock with the given capacity field renamed, and
// remembers what the factory was given; unregisters on destruction so the
// process-wide registry is left as found.
class ScopedMockType {
 public:
  explicit ScopedMockType(std::string name) : name_(std::move(name)) {
    status_ = RegisterL2AdapterType(
        name_, [this](const L2CommonConfig& common, const std::string& fields,
                      const L2AdapterContext& context) -> Result<std::unique_ptr<L2Adapter>> {
          ++calls_;
          last_common_ = common;
          last_fields_ = fields;
          if (fields.find("\"bad\"") != std::string::npos) {
            return Status::InvalidArgument("L2 adapter '" + common.type + "': field 'bad' is bad");
          }
          return CreateL2Adapter(R"({"type":"mock","max_size_gb":1})", context);
        });
  }
  ~ScopedMockType() {
    if (status_.ok()) {
      EXPECT_TRUE(UnregisterL2AdapterType(name_).ok());
    }
  }
  const Status& status() const { return status_; }
  int calls_ = 0;
  L2CommonConfig last_common_;
  std::string last_fields_;

 private:
  std::string name_;
  Status status_;
};

TEST(L2FactoryRuntime, RegisterCreateListUnregister) {
  const std::vector<std::string> before = L2AdapterTypes();
  {
    ScopedMockType t("my_store");
    ASSERT_TRUE(t.status().ok()) << t.status().ToString();
    std::vector<std::string> after = L2AdapterTypes();
    EXPECT_TRUE(std::is_sorted(after.begin(), after.end()));
    EXPECT_EQ(std::count(after.begin(), after.end(), "my_store"), 1);
    EXPECT_EQ(after.size(), before.size() + 1);
    EXPECT_NE(Err(R"({"type":"nope"})").message().find("my_store"), std::string::npos);

    auto r = CreateL2Adapter(
        R"({"type":"my_store","x":1,"shared":true,"eviction":{"eviction_policy":"noop"},"persist_enabled":false})");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(t.calls_, 1);
    EXPECT_EQ(t.last_common_.type, "my_store");
    EXPECT_TRUE(t.last_common_.shared);
    EXPECT_FALSE(t.last_common_.persist_enabled);
    ASSERT_TRUE(t.last_common_.eviction.has_value());
    EXPECT_EQ(t.last_common_.eviction->eviction_policy, "noop");
    EXPECT_EQ(t.last_fields_, R"({"x":1})");  // the common fields are not passed on

    // The common fields are checked before the factory runs; its own errors pass through.
    ExpectInvalid(R"({"type":"my_store","shared":"yes"})", "L2 adapter 'my_store': field 'shared' must be true or false");
    ExpectInvalid(R"({"type":"my_store","serde":"x"})", "field 'serde' is not supported");
    ExpectInvalid(R"({"type":"my_store","bad":1})", "L2 adapter 'my_store': field 'bad' is bad");
    EXPECT_EQ(t.calls_, 2);

    // Usable as fault_inject's inner adapter.
    auto fi = CreateL2Adapter(R"({"type":"fault_inject","seed":1,"inner":{"type":"my_store","y":[2]}})");
    ASSERT_TRUE(fi.ok()) << fi.status().ToString();
    EXPECT_EQ(fi.value()->common_config().type, "fault_inject");
    EXPECT_EQ(t.last_fields_, R"({"y":[2]})");
  }
  EXPECT_EQ(L2AdapterTypes(), before);
  ExpectInvalid(R"({"type":"my_store"})", "unknown L2 adapter type 'my_store'");
}

TEST(L2FactoryRuntime, DuplicatesAndBuiltInsAreRefused) {
  ScopedMockType t("dup_store");
  ASSERT_TRUE(t.status().ok());
  ScopedMockType again("dup_store");
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  ScopedMockType builtin("fs");
  EXPECT_EQ(builtin.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(RegisterL2AdapterType("", [](const L2CommonConfig&, const std::string&, const L2AdapterContext&)
                                      -> Result<std::unique_ptr<L2Adapter>> { return Status::IOError("x"); })
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterL2AdapterType("null_fn", nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(UnregisterL2AdapterType("fs").code(), StatusCode::kNotFound);
  EXPECT_EQ(UnregisterL2AdapterType("never_registered").code(), StatusCode::kNotFound);
}

TEST(L2FactoryRuntime, NotYetTypesBecomeAvailableWhenRegistered) {
  ExpectInvalid(R"({"type":"s3"})", "L2 adapter type 's3' is not available in this build");
  {
    ScopedMockType t("s3");
    ASSERT_TRUE(t.status().ok());
    EXPECT_TRUE(CreateL2Adapter(R"({"type":"s3","bucket":"b"})").ok());
    EXPECT_EQ(t.last_fields_, R"({"bucket":"b"})");
  }
  ExpectInvalid(R"({"type":"s3"})", "L2 adapter type 's3' is not available in this build");
}

TEST(L2FactoryRuntime, ConcurrentRegistrationAndCreation) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &created] {
      for (int i = 0; i < 20; ++i) {
        const std::string name = "conc_" + std::to_string(t) + "_" + std::to_string(i);
        ScopedMockType type(name);
        if (type.status().ok() && CreateL2Adapter(R"({"type":")" + name + "\"}").ok()) ++created;
        (void)L2AdapterTypes();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 80);
}

}  // namespace
}  // namespace lmcache
