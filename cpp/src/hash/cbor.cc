// Batch CBOR encoding of unsigned integers: see cbor.h.
#include "hash/cbor.h"

namespace lmcache::internal::cbor {
namespace {

// Each item as an 8-byte little-endian word (PutUint32Branchless's) and its
// length: pure lane-wise arithmetic, so the compiler vectorises it.
#define LMC_CBOR_WORDS_BODY                                                                              \
  for (size_t i = 0; i < n; ++i) {                                                                      \
    const uint32_t x = v[i];                                                                            \
    const uint32_t cls = static_cast<uint32_t>(x >= 24) + static_cast<uint32_t>(x >= 256) +             \
                         static_cast<uint32_t>(x >= 65536);                                             \
    const uint32_t arg_bytes = cls + ((cls >> 1) & cls & 1);                                            \
    const uint32_t mask = 0u - ((cls + 3) >> 2);                                                        \
    const uint64_t head = (x & ~mask) | ((0x17 + cls) & mask);                                          \
    const uint64_t arg = static_cast<uint64_t>(__builtin_bswap32(x)) >> (32 - 8 * arg_bytes);           \
    words[i] = head | (arg << 8);                                                                       \
    lens[i] = static_cast<uint8_t>(1 + arg_bytes);                                                      \
  }

#if defined(__x86_64__) || defined(__i386__)
#define LMC_CBOR_AVX2 1
__attribute__((target("avx2"))) void WordsAvx2(const uint32_t* v, size_t n, uint64_t* words, uint8_t* lens) {
  LMC_CBOR_WORDS_BODY
}
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

#undef LMC_CBOR_WORDS_BODY

}  // namespace

uint8_t* PutUint32Array(uint8_t* p, const uint32_t* v, size_t n, bool use_avx2) {
#if defined(LMC_CBOR_AVX2)
  if (use_avx2 && HasAvx2()) {
    constexpr size_t kBlock = 64;
    uint64_t words[kBlock];
    uint8_t lens[kBlock];
    for (size_t done = 0; done < n; done += kBlock) {
      const size_t m = n - done < kBlock ? n - done : kBlock;
      WordsAvx2(v + done, m, words, lens);
      for (size_t i = 0; i < m; ++i) {
        std::memcpy(p, &words[i], 8);
        p += lens[i];
      }
    }
    return p;
  }
#endif
  for (size_t i = 0; i < n; ++i) p = PutUint32Branchless(p, v[i]);
  return p;
}

}  // namespace lmcache::internal::cbor
