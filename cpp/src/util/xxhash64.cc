#include "util/xxhash64.h"

#include <cstring>

#include "util/xxhash_common.h"

namespace lmcache::internal {
namespace {

constexpr uint64_t kP1 = xxhash::kPrime64_1;
constexpr uint64_t kP2 = xxhash::kPrime64_2;
constexpr uint64_t kP3 = xxhash::kPrime64_3;
constexpr uint64_t kP4 = xxhash::kPrime64_4;
constexpr uint64_t kP5 = xxhash::kPrime64_5;
using xxhash::Load32;
using xxhash::Load64;
using xxhash::Rotl64;
inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = Rotl64(acc, 31);
  return acc * kP1;
}
inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

// Consumes whole 32-byte stripes; returns the pointer past the last one.
inline const unsigned char* Stripes(uint64_t v[4], const unsigned char* p, const unsigned char* end) {
  uint64_t v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3];
  while (end - p >= 32) {
    v1 = Round(v1, Load64(p));
    v2 = Round(v2, Load64(p + 8));
    v3 = Round(v3, Load64(p + 16));
    v4 = Round(v4, Load64(p + 24));
    p += 32;
  }
  v[0] = v1, v[1] = v2, v[2] = v3, v[3] = v4;
  return p;
}

uint64_t Finish(uint64_t h, const unsigned char* p, size_t len) {
  while (len >= 8) {
    h ^= Round(0, Load64(p));
    h = Rotl64(h, 27) * kP1 + kP4;
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    h ^= static_cast<uint64_t>(Load32(p)) * kP1;
    h = Rotl64(h, 23) * kP2 + kP3;
    p += 4;
    len -= 4;
  }
  while (len > 0) {
    h ^= (*p) * kP5;
    h = Rotl64(h, 11) * kP1;
    ++p;
    --len;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

uint64_t Converge(const uint64_t v[4]) {
  uint64_t h = Rotl64(v[0], 1) + Rotl64(v[1], 7) + Rotl64(v[2], 12) + Rotl64(v[3], 18);
  for (int i = 0; i < 4; ++i) h = MergeRound(h, v[i]);
  return h;
}

}  // namespace

uint64_t Xxh64Digest(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v[4] = {seed + kP1 + kP2, seed + kP2, seed, seed - kP1};
    p = Stripes(v, p, end);
    h = Converge(v);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(len);
  return Finish(h, p, static_cast<size_t>(end - p));
}

void Xxh64::Reset(uint64_t seed) {
  seed_ = seed;
  v_[0] = seed + kP1 + kP2;
  v_[1] = seed + kP2;
  v_[2] = seed;
  v_[3] = seed - kP1;
  total_len_ = 0;
  mem_size_ = 0;
}

void Xxh64::Update(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* end = p + len;
  total_len_ += len;
  if (mem_size_ + len < 32) {
    if (len > 0) std::memcpy(mem_ + mem_size_, p, len);
    mem_size_ += len;
    return;
  }
  if (mem_size_ > 0) {
    const size_t fill = 32 - mem_size_;
    std::memcpy(mem_ + mem_size_, p, fill);
    Stripes(v_, mem_, mem_ + 32);
    p += fill;
    mem_size_ = 0;
  }
  p = Stripes(v_, p, end);
  mem_size_ = static_cast<size_t>(end - p);
  if (mem_size_ > 0) std::memcpy(mem_, p, mem_size_);
}

uint64_t Xxh64::Digest() const {
  uint64_t h = total_len_ >= 32 ? Converge(v_) : seed_ + kP5;
  h += total_len_;
  return Finish(h, mem_, mem_size_);
}

}  // namespace lmcache::internal
