// SHA-256 (FIPS 180-4), with a portable compression function and one using
// the x86 SHA extensions (SHA-NI), chosen once per process from CPUID. Both
// give identical results; tests run both.
//
// Thread safety: Sha256 is a value type owned by one thread; Sha256Digest()
// is a pure function, safe from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmcache::internal {

inline constexpr size_t kSha256OutLen = 32;
inline constexpr size_t kSha256BlockLen = 64;

enum class Sha256Impl : uint8_t { kAuto, kPortable, kShaNi };

// True when `impl` can run on this CPU (kAuto and kPortable always can).
bool Sha256ImplAvailable(Sha256Impl impl);

// Incremental hasher. Update() any number of times, then Finalize() once.
class Sha256 {
 public:
  // REQUIRES: Sha256ImplAvailable(impl).
  explicit Sha256(Sha256Impl impl = Sha256Impl::kAuto);

  void Update(const void* data, size_t len);
  // REQUIRES: called at most once; no Update() after it.
  void Finalize(uint8_t out[kSha256OutLen]);

 private:
  using CompressFn = void (*)(uint32_t state[8], const uint8_t* blocks, size_t num_blocks);

  CompressFn compress_;
  uint32_t state_[8];
  uint64_t total_len_ = 0;
  uint8_t buffer_[kSha256BlockLen];
  size_t buffer_len_ = 0;
};

// One-shot digest of `len` bytes.
void Sha256Digest(const void* data, size_t len, uint8_t out[kSha256OutLen], Sha256Impl impl = Sha256Impl::kAuto);

}  // namespace lmcache::internal
