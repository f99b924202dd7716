// CreateL2Adapter: JSON parsing, the type registry, and one-line errors that
// name the offending field.

#include <gtest/gtest.h>

#include <string>
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

}  // namespace
}  // namespace lmcache
