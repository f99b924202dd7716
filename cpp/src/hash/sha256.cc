// SHA-256: see sha256.h.
#include "hash/sha256.h"

#include <algorithm>
#include <bit>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define LMCACHE_SHA256_X86 1
#endif

namespace lmcache::internal {
namespace {

alignas(16) constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t LoadBE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap32(v);
  return v;
}

inline void StoreBE32(uint8_t* p, uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}

// ---- portable compression ----

void CompressPortable(uint32_t state[8], const uint8_t* blocks, size_t num_blocks) {
  for (size_t b = 0; b < num_blocks; ++b, blocks += kSha256BlockLen) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t) w[t] = LoadBE32(blocks + 4 * t);
    for (int t = 16; t < 64; ++t) {
      uint32_t s0 = std::rotr(w[t - 15], 7) ^ std::rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      uint32_t s1 = std::rotr(w[t - 2], 17) ^ std::rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b_ = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; ++t) {
      uint32_t s1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
      uint32_t ch = (e & f) ^ (~e & g);
      uint32_t t1 = h + s1 + ch + kK[t] + w[t];
      uint32_t s0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
      uint32_t maj = (a & b_) ^ (a & c) ^ (b_ & c);
      uint32_t t2 = s0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b_;
      b_ = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b_;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

// ---- SHA-NI compression ----
//
// sha256rnds2 runs two rounds on the state held as (ABEF, CDGH) with the two
// rounds' W+K in the low 64 bits of its third operand; sha256msg1/msg2
// compute the sigma0/sigma1 parts of the message schedule four words at a
// time. Group g (rounds 4g..4g+3) uses the message words held in msg[g % 4].

#if defined(LMCACHE_SHA256_X86)

__attribute__((target("sha,sse4.1"))) void CompressShaNi(uint32_t state[8], const uint8_t* blocks,
                                                         size_t num_blocks) {
  const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));        // A B C D (lanes 0..3)
  __m128i state1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));  // E F G H
  tmp = _mm_shuffle_epi32(tmp, 0xB1);                                             // B A D C
  state1 = _mm_shuffle_epi32(state1, 0x1B);                                       // H G F E
  __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                               // F E B A = ABEF
  state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                    // H G D C = CDGH

  for (size_t b = 0; b < num_blocks; ++b, blocks += kSha256BlockLen) {
    const __m128i abef_save = state0;
    const __m128i cdgh_save = state1;
    __m128i msg[4];
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      if (g < 4) {
        msg[g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 16 * g)), byteswap);
      }
      __m128i wk = _mm_add_epi32(msg[g % 4], _mm_load_si128(reinterpret_cast<const __m128i*>(kK + 4 * g)));
      state1 = _mm_sha256rnds2_epu32(state1, state0, wk);
      if (g >= 3 && g <= 14) {  // finish the words of group g + 1
        __m128i& next = msg[(g + 1) % 4];
        next = _mm_add_epi32(next, _mm_alignr_epi8(msg[g % 4], msg[(g + 3) % 4], 4));
        next = _mm_sha256msg2_epu32(next, msg[g % 4]);
      }
      wk = _mm_shuffle_epi32(wk, 0x0E);
      state0 = _mm_sha256rnds2_epu32(state0, state1, wk);
      if (g >= 1 && g <= 12) {  // start the words of group g + 3
        __m128i& prev = msg[(g + 3) % 4];
        prev = _mm_sha256msg1_epu32(prev, msg[g % 4]);
      }
    }
    state0 = _mm_add_epi32(state0, abef_save);
    state1 = _mm_add_epi32(state1, cdgh_save);
  }

  tmp = _mm_shuffle_epi32(state0, 0x1B);          // FEBA
  state1 = _mm_shuffle_epi32(state1, 0xB1);       // DCHG
  state0 = _mm_blend_epi16(tmp, state1, 0xF0);    // DCBA
  state1 = _mm_alignr_epi8(state1, tmp, 8);       // HGFE
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), state0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), state1);
}

bool HasShaNi() {
  static const bool has = [] {
    if (!__builtin_cpu_supports("sse4.1")) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // CPUID leaf 7, subleaf 0: EBX bit 29 is SHA.
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return ((ebx >> 29) & 1) != 0;
  }();
  return has;
}

#else
bool HasShaNi() { return false; }
#endif  // LMCACHE_SHA256_X86

}  // namespace

bool Sha256ImplAvailable(Sha256Impl impl) {
  switch (impl) {
    case Sha256Impl::kAuto:
    case Sha256Impl::kPortable:
      return true;
    case Sha256Impl::kShaNi:
      return HasShaNi();
  }
  return false;
}

Sha256::Sha256(Sha256Impl impl) {
  compress_ = &CompressPortable;
#if defined(LMCACHE_SHA256_X86)
  if ((impl == Sha256Impl::kAuto || impl == Sha256Impl::kShaNi) && HasShaNi()) compress_ = &CompressShaNi;
#endif
  std::memcpy(state_, kInit, sizeof(kInit));
}

void Sha256::Update(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_len_ += len;
  if (buffer_len_ > 0) {
    size_t take = std::min(kSha256BlockLen - buffer_len_, len);
    std::memcpy(buffer_ + buffer_len_, p, take);
    buffer_len_ += take;
    p += take;
    len -= take;
    if (buffer_len_ < kSha256BlockLen) return;
    compress_(state_, buffer_, 1);
    buffer_len_ = 0;
  }
  size_t full = len / kSha256BlockLen;
  if (full > 0) {
    compress_(state_, p, full);
    p += full * kSha256BlockLen;
    len -= full * kSha256BlockLen;
  }
  std::memcpy(buffer_, p, len);
  buffer_len_ = len;
}

void Sha256::Finalize(uint8_t out[kSha256OutLen]) {
  // Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian.
  uint8_t tail[2 * kSha256BlockLen] = {};
  std::memcpy(tail, buffer_, buffer_len_);
  tail[buffer_len_] = 0x80;
  size_t tail_len = buffer_len_ + 1 + 8 <= kSha256BlockLen ? kSha256BlockLen : 2 * kSha256BlockLen;
  uint64_t bits = total_len_ * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  compress_(state_, tail, tail_len / kSha256BlockLen);
  for (int i = 0; i < 8; ++i) StoreBE32(out + 4 * i, state_[i]);
}

void Sha256Digest(const void* data, size_t len, uint8_t out[kSha256OutLen], Sha256Impl impl) {
  Sha256 h(impl);
  h.Update(data, len);
  h.Finalize(out);
}

}  // namespace lmcache::internal
