#include "util/xxh3.h"

#include <cstring>

#include "util/xxhash_common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lmcache::internal {
namespace {

using namespace xxhash;  // NOLINT: the primes and loads of the specification
constexpr uint64_t kMx1 = 0x165667919E3779F9ull;
constexpr uint64_t kMx2 = 0x9FB21C651E98DF25ull;

constexpr size_t kStripe = 64;
constexpr size_t kSecretSize = 192;
constexpr size_t kStripesPerBlock = (kSecretSize - kStripe) / 8;  // 16
constexpr size_t kScrambleOffset = kSecretSize - kStripe;         // 128
constexpr size_t kLastStripeOffset = kSecretSize - kStripe - 7;   // 121
constexpr size_t kMergeOffset = 11;

// The default secret of the specification.
alignas(64) constexpr unsigned char kSecret[kSecretSize] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};


inline uint64_t Fold64(uint64_t a, uint64_t b) {
  const unsigned __int128 m = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64);
}

inline uint64_t Avalanche(uint64_t x) {
  x ^= x >> 37;
  x *= kMx1;
  return x ^ (x >> 32);
}

inline uint64_t AvalancheXxh64(uint64_t x) {
  x ^= x >> 33;
  x *= kPrime64_2;
  x ^= x >> 29;
  x *= kPrime64_3;
  return x ^ (x >> 32);
}

inline uint64_t Mix16(const unsigned char* p, const unsigned char* s) {
  return Fold64(Load64(p) ^ Load64(s), Load64(p + 8) ^ Load64(s + 8));
}

uint64_t Len0To16(const unsigned char* p, size_t len) {
  const unsigned char* s = kSecret;
  if (len > 8) {
    const uint64_t lo = Load64(p) ^ (Load64(s + 24) ^ Load64(s + 32));
    const uint64_t hi = Load64(p + len - 8) ^ (Load64(s + 40) ^ Load64(s + 48));
    return Avalanche(len + __builtin_bswap64(lo) + hi + Fold64(lo, hi));
  }
  if (len >= 4) {
    const uint64_t first = Load32(p);
    const uint64_t last = Load32(p + len - 4);
    uint64_t h = (last | (first << 32)) ^ (Load64(s + 8) ^ Load64(s + 16));
    h ^= Rotl64(h, 49) ^ Rotl64(h, 24);
    h *= kMx2;
    h ^= (h >> 35) + len;
    h *= kMx2;
    return h ^ (h >> 28);
  }
  if (len > 0) {
    const uint32_t combined = static_cast<uint32_t>(p[len - 1]) | (static_cast<uint32_t>(len) << 8) |
                              (static_cast<uint32_t>(p[0]) << 16) | (static_cast<uint32_t>(p[len >> 1]) << 24);
    return AvalancheXxh64(static_cast<uint64_t>(Load32(s) ^ Load32(s + 4)) ^ combined);
  }
  return AvalancheXxh64(Load64(s + 56) ^ Load64(s + 64));
}

uint64_t Len17To128(const unsigned char* p, size_t len) {
  uint64_t acc = len * kPrime64_1;
  const size_t rounds = ((len - 1) >> 5) + 1;
  for (size_t i = rounds; i-- > 0;) {
    acc += Mix16(p + 16 * i, kSecret + 32 * i);
    acc += Mix16(p + len - 16 * i - 16, kSecret + 32 * i + 16);
  }
  return Avalanche(acc);
}

uint64_t Len129To240(const unsigned char* p, size_t len) {
  uint64_t acc = len * kPrime64_1;
  for (size_t i = 0; i < 8; ++i) acc += Mix16(p + 16 * i, kSecret + 16 * i);
  acc = Avalanche(acc);
  const size_t chunks = len >> 4;
  for (size_t i = 8; i < chunks; ++i) acc += Mix16(p + 16 * i, kSecret + 16 * (i - 8) + 3);
  acc += Mix16(p + len - 16, kSecret + 119);
  return Avalanche(acc);
}

// ---- large inputs: 8 accumulators, 64-byte stripes, 16 stripes a block ----

constexpr uint64_t kAccInit[8] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3, kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};

inline void StripeScalar(uint64_t* acc, const unsigned char* p, const unsigned char* key) {
  for (size_t i = 0; i < 8; ++i) {
    const uint64_t v = Load64(p + 8 * i);
    const uint64_t k = v ^ Load64(key + 8 * i);
    acc[i ^ 1] += v;
    acc[i] += (k & 0xFFFFFFFFu) * (k >> 32);
  }
}

inline void ScrambleScalar(uint64_t* acc) {
  for (size_t i = 0; i < 8; ++i) {
    uint64_t a = acc[i];
    a ^= a >> 47;
    a ^= Load64(kSecret + kScrambleOffset + 8 * i);
    acc[i] = a * kPrime32_1;
  }
}

// Consumes n stripes at p; *in_block counts the stripes of the current
// block (a scramble ends each block of 16).
void StripesScalar(uint64_t* acc, const unsigned char* p, size_t n, size_t* in_block) {
  size_t b = *in_block;
  for (size_t i = 0; i < n; ++i, p += kStripe) {
    StripeScalar(acc, p, kSecret + 8 * b);
    if (++b == kStripesPerBlock) {
      ScrambleScalar(acc);
      b = 0;
    }
  }
  *in_block = b;
}

#if defined(__x86_64__)
#define LMCACHE_AVX2 __attribute__((target("avx2")))

// One half stripe (4 lanes) into 4 accumulators.
LMCACHE_AVX2 inline __m256i AccumulateAvx2(__m256i acc, const unsigned char* d, const unsigned char* k) {
  const __m256i data = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d));
  const __m256i key = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k));
  const __m256i dk = _mm256_xor_si256(data, key);
  // low 32 bits times high 32 bits of each lane
  const __m256i prod = _mm256_mul_epu32(dk, _mm256_shuffle_epi32(dk, _MM_SHUFFLE(0, 3, 0, 1)));
  // acc[i ^ 1] += data[i]: swap the lanes of each pair
  const __m256i swapped = _mm256_shuffle_epi32(data, _MM_SHUFFLE(1, 0, 3, 2));
  return _mm256_add_epi64(_mm256_add_epi64(acc, swapped), prod);
}

LMCACHE_AVX2 inline __m256i ScrambleAvx2(__m256i acc, const unsigned char* k) {
  const __m256i prime = _mm256_set1_epi32(static_cast<int>(kPrime32_1));
  acc = _mm256_xor_si256(acc, _mm256_srli_epi64(acc, 47));
  acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k)));
  // 64 x 32-bit multiply: low half times prime, plus high half times prime << 32
  const __m256i lo = _mm256_mul_epu32(acc, prime);
  const __m256i hi = _mm256_mul_epu32(_mm256_shuffle_epi32(acc, _MM_SHUFFLE(0, 3, 0, 1)), prime);
  return _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
}

LMCACHE_AVX2 void StripesAvx2(uint64_t* acc, const unsigned char* p, size_t n, size_t* in_block) {
  __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc));
  __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + 4));
  size_t b = *in_block;
  for (size_t i = 0; i < n; ++i, p += kStripe) {
    const unsigned char* key = kSecret + 8 * b;
    a0 = AccumulateAvx2(a0, p, key);
    a1 = AccumulateAvx2(a1, p + 32, key + 32);
    if (++b == kStripesPerBlock) {
      a0 = ScrambleAvx2(a0, kSecret + kScrambleOffset);
      a1 = ScrambleAvx2(a1, kSecret + kScrambleOffset + 32);
      b = 0;
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), a0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + 4), a1);
  *in_block = b;
}
#undef LMCACHE_AVX2
#endif

using StripesFn = void (*)(uint64_t*, const unsigned char*, size_t, size_t*);

StripesFn PickStripes() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return &StripesAvx2;
#endif
  return &StripesScalar;
}

// Chosen once, on first use (no static-initialization order to care about).
StripesFn Kernel() {
  static const StripesFn f = PickStripes();
  return f;
}

uint64_t MergeAccs(const uint64_t* acc, uint64_t total) {
  uint64_t r = total * kPrime64_1;
  const unsigned char* s = kSecret + kMergeOffset;
  for (size_t i = 0; i < 4; ++i) r += Fold64(acc[2 * i] ^ Load64(s + 16 * i), acc[2 * i + 1] ^ Load64(s + 16 * i + 8));
  return Avalanche(r);
}

uint64_t Large(const unsigned char* p, size_t len, StripesFn stripes) {
  alignas(32) uint64_t acc[8];
  std::memcpy(acc, kAccInit, sizeof(acc));
  size_t in_block = 0;
  // Every whole stripe that is followed by at least one more byte; then the
  // last 64 bytes of the input (which may overlap the stripes before).
  stripes(acc, p, (len - 1) / kStripe, &in_block);
  StripeScalar(acc, p + len - kStripe, kSecret + kLastStripeOffset);
  return MergeAccs(acc, len);
}

uint64_t Digest(const unsigned char* p, size_t len, StripesFn stripes) {
  if (len <= 16) return Len0To16(p, len);
  if (len <= 128) return Len17To128(p, len);
  if (len <= 240) return Len129To240(p, len);
  return Large(p, len, stripes);
}

}  // namespace

uint64_t Xxh3Digest(const void* data, size_t len) {
  return Digest(static_cast<const unsigned char*>(data), len, Kernel());
}

const char* Xxh3Kernel() { return Kernel() == &StripesScalar ? "scalar" : "avx2"; }

uint64_t xxh3_testing::ScalarDigest(const void* data, size_t len) {
  return Digest(static_cast<const unsigned char*>(data), len, &StripesScalar);
}

void Xxh3::Reset() {
  std::memcpy(acc_, kAccInit, sizeof(acc_));
  buffered_ = 0;
  stripes_in_block_ = 0;
  total_ = 0;
}

void Xxh3::Update(const void* data, size_t len) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += len;
  if (buffered_ + len <= kBuffer) {  // not known yet whether more follows
    if (len > 0) std::memcpy(buf_ + buffered_, p, len);
    buffered_ += len;
    return;
  }
  // More input follows whatever is buffered: its stripes can be consumed.
  if (buffered_ > 0) {
    const size_t fill = kBuffer - buffered_;
    std::memcpy(buf_ + buffered_, p, fill);
    p += fill;
    len -= fill;
    Kernel()(acc_, buf_, kBuffer / kStripe, &stripes_in_block_);
    std::memcpy(prev_, buf_ + kBuffer - kStripe, kStripe);
    buffered_ = 0;
  }
  if (len > kBuffer) {  // straight from the input, keeping 1..64 bytes back
    const size_t n = (len - 1) / kStripe;
    Kernel()(acc_, p, n, &stripes_in_block_);
    std::memcpy(prev_, p + n * kStripe - kStripe, kStripe);
    p += n * kStripe;
    len -= n * kStripe;
  }
  std::memcpy(buf_, p, len);
  buffered_ = len;
}

uint64_t Xxh3::Digest() const {
  if (total_ <= 240) return Xxh3Digest(buf_, static_cast<size_t>(total_));  // all of it is in buf_
  alignas(32) uint64_t acc[8];
  std::memcpy(acc, acc_, sizeof(acc));
  size_t in_block = stripes_in_block_;
  Kernel()(acc, buf_, (buffered_ - 1) / kStripe, &in_block);
  unsigned char last[kStripe];
  if (buffered_ >= kStripe) {
    std::memcpy(last, buf_ + buffered_ - kStripe, kStripe);
  } else {
    std::memcpy(last, prev_ + buffered_, kStripe - buffered_);
    std::memcpy(last + kStripe - buffered_, buf_, buffered_);
  }
  StripeScalar(acc, last, kSecret + kLastStripeOffset);
  return MergeAccs(acc, total_);
}

}  // namespace lmcache::internal
