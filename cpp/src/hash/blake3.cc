// BLAKE3 hash mode: see blake3.h. Structure follows the specification:
//   compress(cv, block, counter, block_len, flags) -> first 8 words of the
//   output state; chunks chain their blocks with CHUNK_START on the first
//   and CHUNK_END on the last; complete subtrees are merged eagerly through a
//   stack of chaining values (a new chunk CV merges once per trailing zero bit
//   of the total chunk count); the final output merges the rest of the stack
//   from the top, and the last compression carries ROOT.
#include "hash/blake3.h"

#include <algorithm>
#include <bit>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LMCACHE_BLAKE3_X86 1
#endif

namespace lmcache::internal {
namespace {

constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                             0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

enum : uint8_t { kChunkStart = 1, kChunkEnd = 2, kParent = 4, kRoot = 8 };

// Message word order of each of the 7 rounds: round 0 uses the words in
// order, and each round permutes the previous round's order by kPermutation.
struct Schedule {
  uint8_t s[7][16];
};
constexpr Schedule MakeSchedule() {
  constexpr uint8_t kPermutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
  Schedule sc{};
  for (int i = 0; i < 16; ++i) sc.s[0][i] = static_cast<uint8_t>(i);
  for (int r = 1; r < 7; ++r) {
    for (int i = 0; i < 16; ++i) sc.s[r][i] = sc.s[r - 1][kPermutation[i]];
  }
  return sc;
}
constexpr Schedule kSchedule = MakeSchedule();

inline uint32_t LoadLE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

inline void StoreLE32(uint8_t* p, uint32_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}

inline void LoadWords(const uint8_t block[kBlake3BlockLen], uint32_t m[16]) {
  for (int i = 0; i < 16; ++i) m[i] = LoadLE32(block + 4 * i);
}

// ---- portable compression ----

#define LMC_B3_G(a, b, c, d, x, y) \
  a = a + b + (x);                 \
  d = std::rotr(d ^ a, 16);        \
  c = c + d;                       \
  b = std::rotr(b ^ c, 12);        \
  a = a + b + (y);                 \
  d = std::rotr(d ^ a, 8);         \
  c = c + d;                       \
  b = std::rotr(b ^ c, 7)

#define LMC_B3_ROUND(r)                                                         \
  do {                                                                          \
    constexpr const uint8_t* s = kSchedule.s[r];                                \
    LMC_B3_G(v0, v4, v8, v12, m[s[0]], m[s[1]]);                                \
    LMC_B3_G(v1, v5, v9, v13, m[s[2]], m[s[3]]);                                \
    LMC_B3_G(v2, v6, v10, v14, m[s[4]], m[s[5]]);                               \
    LMC_B3_G(v3, v7, v11, v15, m[s[6]], m[s[7]]);                               \
    LMC_B3_G(v0, v5, v10, v15, m[s[8]], m[s[9]]);                               \
    LMC_B3_G(v1, v6, v11, v12, m[s[10]], m[s[11]]);                             \
    LMC_B3_G(v2, v7, v8, v13, m[s[12]], m[s[13]]);                              \
    LMC_B3_G(v3, v4, v9, v14, m[s[14]], m[s[15]]);                              \
  } while (0)

void CompressPortable(uint32_t cv[8], const uint8_t block[kBlake3BlockLen], uint8_t block_len, uint64_t counter,
                      uint8_t flags) {
  uint32_t m[16];
  LoadWords(block, m);
  uint32_t v0 = cv[0], v1 = cv[1], v2 = cv[2], v3 = cv[3], v4 = cv[4], v5 = cv[5], v6 = cv[6], v7 = cv[7];
  uint32_t v8 = kIv[0], v9 = kIv[1], v10 = kIv[2], v11 = kIv[3];
  uint32_t v12 = static_cast<uint32_t>(counter), v13 = static_cast<uint32_t>(counter >> 32);
  uint32_t v14 = block_len, v15 = flags;
  LMC_B3_ROUND(0);
  LMC_B3_ROUND(1);
  LMC_B3_ROUND(2);
  LMC_B3_ROUND(3);
  LMC_B3_ROUND(4);
  LMC_B3_ROUND(5);
  LMC_B3_ROUND(6);
  cv[0] = v0 ^ v8;
  cv[1] = v1 ^ v9;
  cv[2] = v2 ^ v10;
  cv[3] = v3 ^ v11;
  cv[4] = v4 ^ v12;
  cv[5] = v5 ^ v13;
  cv[6] = v6 ^ v14;
  cv[7] = v7 ^ v15;
}

#undef LMC_B3_ROUND
#undef LMC_B3_G

// ---- SSE4.1 compression: one state row per register ----

#if defined(LMCACHE_BLAKE3_X86)

#define LMC_B3_TARGET __attribute__((target("sse4.1")))

// Rotations right by 16 and 8 are byte shuffles; by 12 and 7, shifts.
#define LMC_B3_ROT16(x) _mm_shuffle_epi8(x, rot16)
#define LMC_B3_ROT8(x) _mm_shuffle_epi8(x, rot8)
#define LMC_B3_ROT12(x) _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20))
#define LMC_B3_ROT7(x) _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25))

#define LMC_B3_G4(mx, my)                                          \
  row0 = _mm_add_epi32(_mm_add_epi32(row0, mx), row1);             \
  row3 = LMC_B3_ROT16(_mm_xor_si128(row3, row0));                  \
  row2 = _mm_add_epi32(row2, row3);                                \
  row1 = LMC_B3_ROT12(_mm_xor_si128(row1, row2));                  \
  row0 = _mm_add_epi32(_mm_add_epi32(row0, my), row1);             \
  row3 = LMC_B3_ROT8(_mm_xor_si128(row3, row0));                   \
  row2 = _mm_add_epi32(row2, row3);                                \
  row1 = LMC_B3_ROT7(_mm_xor_si128(row1, row2))

#define LMC_B3_W(i) static_cast<int>(m[s[i]])

#define LMC_B3_ROUND4(r)                                                                             \
  do {                                                                                               \
    constexpr const uint8_t* s = kSchedule.s[r];                                                     \
    __m128i mx = _mm_setr_epi32(LMC_B3_W(0), LMC_B3_W(2), LMC_B3_W(4), LMC_B3_W(6));                 \
    __m128i my = _mm_setr_epi32(LMC_B3_W(1), LMC_B3_W(3), LMC_B3_W(5), LMC_B3_W(7));                 \
    LMC_B3_G4(mx, my);                                                                               \
    /* Diagonalise: lane i of each row then holds the words of diagonal G i. */                       \
    row1 = _mm_shuffle_epi32(row1, _MM_SHUFFLE(0, 3, 2, 1));                                         \
    row2 = _mm_shuffle_epi32(row2, _MM_SHUFFLE(1, 0, 3, 2));                                         \
    row3 = _mm_shuffle_epi32(row3, _MM_SHUFFLE(2, 1, 0, 3));                                         \
    mx = _mm_setr_epi32(LMC_B3_W(8), LMC_B3_W(10), LMC_B3_W(12), LMC_B3_W(14));                      \
    my = _mm_setr_epi32(LMC_B3_W(9), LMC_B3_W(11), LMC_B3_W(13), LMC_B3_W(15));                      \
    LMC_B3_G4(mx, my);                                                                               \
    row1 = _mm_shuffle_epi32(row1, _MM_SHUFFLE(2, 1, 0, 3));                                         \
    row2 = _mm_shuffle_epi32(row2, _MM_SHUFFLE(1, 0, 3, 2));                                         \
    row3 = _mm_shuffle_epi32(row3, _MM_SHUFFLE(0, 3, 2, 1));                                         \
  } while (0)

LMC_B3_TARGET void CompressSse41(uint32_t cv[8], const uint8_t block[kBlake3BlockLen], uint8_t block_len,
                                 uint64_t counter, uint8_t flags) {
  uint32_t m[16];
  LoadWords(block, m);
  const __m128i rot16 = _mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  const __m128i rot8 = _mm_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
  __m128i row0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cv));
  __m128i row1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cv + 4));
  __m128i row2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIv));
  __m128i row3 = _mm_setr_epi32(static_cast<int>(static_cast<uint32_t>(counter)),
                                static_cast<int>(static_cast<uint32_t>(counter >> 32)), block_len, flags);
  LMC_B3_ROUND4(0);
  LMC_B3_ROUND4(1);
  LMC_B3_ROUND4(2);
  LMC_B3_ROUND4(3);
  LMC_B3_ROUND4(4);
  LMC_B3_ROUND4(5);
  LMC_B3_ROUND4(6);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(cv), _mm_xor_si128(row0, row2));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(cv + 4), _mm_xor_si128(row1, row3));
}

#undef LMC_B3_ROUND4
#undef LMC_B3_W
#undef LMC_B3_G4
#undef LMC_B3_ROT7
#undef LMC_B3_ROT12
#undef LMC_B3_ROT8
#undef LMC_B3_ROT16
#undef LMC_B3_TARGET

bool HasSse41() {
  static const bool has = __builtin_cpu_supports("sse4.1");
  return has;
}

#else
bool HasSse41() { return false; }
#endif  // LMCACHE_BLAKE3_X86

// Parent node: the two children's chaining values form one 64-byte block.
template <typename Compress>
void ParentCv(Compress compress, const uint32_t left[8], const uint32_t right[8], uint32_t out[8]) {
  uint8_t block[kBlake3BlockLen];
  for (int i = 0; i < 8; ++i) StoreLE32(block + 4 * i, left[i]);
  for (int i = 0; i < 8; ++i) StoreLE32(block + 32 + 4 * i, right[i]);
  std::memcpy(out, kIv, sizeof(kIv));
  compress(out, block, kBlake3BlockLen, 0, kParent);
}

}  // namespace

bool Blake3ImplAvailable(Blake3Impl impl) {
  switch (impl) {
    case Blake3Impl::kAuto:
    case Blake3Impl::kPortable:
      return true;
    case Blake3Impl::kSse41:
      return HasSse41();
  }
  return false;
}

Blake3Hasher::Blake3Hasher(Blake3Impl impl) {
  compress_ = &CompressPortable;
#if defined(LMCACHE_BLAKE3_X86)
  if ((impl == Blake3Impl::kAuto || impl == Blake3Impl::kSse41) && HasSse41()) compress_ = &CompressSse41;
#endif
  std::memcpy(chunk_cv_, kIv, sizeof(kIv));
}

void Blake3Hasher::ChunkUpdate(const uint8_t* p, size_t len) {
  // The chunk's latest block stays buffered until more input arrives: only
  // then is it known not to be the chunk's last block (CHUNK_END).
  if (block_len_ > 0) {
    size_t take = std::min(kBlake3BlockLen - block_len_, len);
    std::memcpy(block_ + block_len_, p, take);
    block_len_ = static_cast<uint8_t>(block_len_ + take);
    p += take;
    len -= take;
    if (len == 0) return;
    compress_(chunk_cv_, block_, kBlake3BlockLen, chunk_counter_, StartFlag());
    ++blocks_compressed_;
    block_len_ = 0;
  }
  while (len > kBlake3BlockLen) {  // full blocks straight from the input
    compress_(chunk_cv_, p, kBlake3BlockLen, chunk_counter_, StartFlag());
    ++blocks_compressed_;
    p += kBlake3BlockLen;
    len -= kBlake3BlockLen;
  }
  std::memcpy(block_, p, len);
  std::memset(block_ + len, 0, kBlake3BlockLen - len);
  block_len_ = static_cast<uint8_t>(len);
}

void Blake3Hasher::PushChunkCv(uint32_t cv[8], uint64_t total_chunks) {
  // Each trailing zero bit of the chunk count completes one subtree.
  while ((total_chunks & 1) == 0) {
    --cv_stack_len_;
    ParentCv(compress_, cv_stack_[cv_stack_len_], cv, cv);
    total_chunks >>= 1;
  }
  std::memcpy(cv_stack_[cv_stack_len_], cv, 32);
  ++cv_stack_len_;
}

void Blake3Hasher::Update(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    if (ChunkLen() == kBlake3ChunkLen) {  // the chunk is complete and more input follows
      uint32_t cv[8];
      std::memcpy(cv, chunk_cv_, sizeof(cv));
      compress_(cv, block_, block_len_, chunk_counter_, static_cast<uint8_t>(StartFlag() | kChunkEnd));
      PushChunkCv(cv, chunk_counter_ + 1);
      ++chunk_counter_;
      std::memcpy(chunk_cv_, kIv, sizeof(kIv));
      block_len_ = 0;
      blocks_compressed_ = 0;
    }
    size_t take = std::min(kBlake3ChunkLen - ChunkLen(), len);
    ChunkUpdate(p, take);
    p += take;
    len -= take;
  }
}

void Blake3Hasher::Finalize(uint8_t out[kBlake3OutLen]) const {
  // The pending output node starts as the current chunk's last block.
  uint32_t cv[8];
  std::memcpy(cv, chunk_cv_, sizeof(cv));
  uint8_t block[kBlake3BlockLen];
  std::memcpy(block, block_, sizeof(block));
  uint8_t block_len = block_len_;
  uint64_t counter = chunk_counter_;
  uint8_t flags = static_cast<uint8_t>(StartFlag() | kChunkEnd);
  for (size_t remaining = cv_stack_len_; remaining > 0; --remaining) {
    compress_(cv, block, block_len, counter, flags);  // the pending node's chaining value
    for (int i = 0; i < 8; ++i) StoreLE32(block + 4 * i, cv_stack_[remaining - 1][i]);
    for (int i = 0; i < 8; ++i) StoreLE32(block + 32 + 4 * i, cv[i]);
    std::memcpy(cv, kIv, sizeof(kIv));
    block_len = kBlake3BlockLen;
    counter = 0;
    flags = kParent;
  }
  // Root: the output block counter (0 for the first 64 output bytes) replaces
  // the chunk counter, which is 0 here anyway (a root chunk is chunk 0).
  compress_(cv, block, block_len, 0, static_cast<uint8_t>(flags | kRoot));
  for (int i = 0; i < 8; ++i) StoreLE32(out + 4 * i, cv[i]);
}

void Blake3(const void* data, size_t len, uint8_t out[kBlake3OutLen], Blake3Impl impl) {
  Blake3Hasher h(impl);
  h.Update(data, len);
  h.Finalize(out);
}

}  // namespace lmcache::internal
