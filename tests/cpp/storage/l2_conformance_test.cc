// The built-in adapters (fs, fs_native, mock, fault_inject) through the
// conformance suite of storage/l2_conformance.h.

#include "storage/l2_conformance.h"

namespace lmcache {
namespace conformance {
namespace {

struct FsTraits {
  static constexpr const char* kType = "fs";
  static constexpr bool kPersistent = true;  // a new adapter on the same spec finds the data
  static std::string Spec(const std::string& dir) {
    return R"({"type":"fs","base_path":")" + dir + R"("})";
  }
};

struct FsNativeTraits {
  static constexpr const char* kType = "fs_native";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"fs_native","base_path":")" + dir +
           R"(","num_workers":3,"relative_tmp_dir":"tmp","use_odirect":true})";
  }
};

struct FsSidecarTraits {
  static constexpr const char* kType = "fs";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"fs","base_path":")" + dir + R"(","checksum":"sidecar","num_workers":1})";
  }
};

struct MockTraits {
  static constexpr const char* kType = "mock";
  static constexpr bool kPersistent = false;
  static std::string Spec(const std::string&) { return R"({"type":"mock","max_size_gb":1,"latency_ms":1})"; }
};

struct FaultInjectFsTraits {
  static constexpr const char* kType = "fault_inject";
  static constexpr bool kPersistent = true;
  static std::string Spec(const std::string& dir) {
    return R"({"type":"fault_inject","seed":7,"fail_rate":0,"delay_ms":0,"corrupt_rate":0,)"
           R"("inner":{"type":"fs_native","base_path":")" +
           dir + R"("}})";
  }
};

struct FaultInjectMockTraits {
  static constexpr const char* kType = "fault_inject";
  static constexpr bool kPersistent = false;
  static std::string Spec(const std::string&) {
    return R"({"type":"fault_inject","seed":1,"inner":{"type":"mock"},"delay_ms":1,"delay_rate":0.5})";
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(fs, L2ConformanceTest, ::testing::Types<FsTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(fs_native, L2ConformanceTest, ::testing::Types<FsNativeTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(fs_sidecar, L2ConformanceTest, ::testing::Types<FsSidecarTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(mock, L2ConformanceTest, ::testing::Types<MockTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(fault_inject_fs, L2ConformanceTest, ::testing::Types<FaultInjectFsTraits>);
INSTANTIATE_TYPED_TEST_SUITE_P(fault_inject_mock, L2ConformanceTest, ::testing::Types<FaultInjectMockTraits>);

}  // namespace
}  // namespace conformance
}  // namespace lmcache
