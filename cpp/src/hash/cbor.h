// The few CBOR (RFC 8949) encodings that vLLM's sha256_cbor needs for a
// chunk: arrays, byte strings, text strings, unsigned integers and null,
// each head in its shortest form, as cbor2.dumps(..., canonical=True) writes
// them (cbor2 always writes integers and lengths in the shortest form).
//
// Thread safety: pure functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lmcache::internal::cbor {

enum MajorType : uint8_t {
  kUnsigned = 0,
  kNegative = 1,
  kByteString = 2,
  kTextString = 3,
  kArray = 4,
  kMap = 5,
  kTag = 6,
  kSimple = 7,
};

inline constexpr uint8_t kNull = 0xf6;  // major type 7, simple value 22
inline constexpr size_t kMaxHeadLen = 9;

// Writes the head of a data item (major type and argument: the value of an
// unsigned integer, or the length of a string or array) at p, in the
// shortest form, and returns the end. Writes at most kMaxHeadLen bytes.
inline uint8_t* PutHead(uint8_t* p, MajorType major, uint64_t arg) {
  const uint8_t mt = static_cast<uint8_t>(major << 5);
  if (arg < 24) {
    *p++ = static_cast<uint8_t>(mt | arg);
  } else if (arg <= 0xff) {
    *p++ = mt | 24;
    *p++ = static_cast<uint8_t>(arg);
  } else if (arg <= 0xffff) {
    *p++ = mt | 25;
    *p++ = static_cast<uint8_t>(arg >> 8);
    *p++ = static_cast<uint8_t>(arg);
  } else if (arg <= 0xffffffffULL) {
    *p++ = mt | 26;
    for (int s = 24; s >= 0; s -= 8) *p++ = static_cast<uint8_t>(arg >> s);
  } else {
    *p++ = mt | 27;
    for (int s = 56; s >= 0; s -= 8) *p++ = static_cast<uint8_t>(arg >> s);
  }
  return p;
}

// PutHead(p, kUnsigned, v) for a 32-bit v without branches: writes 8 bytes
// (only the first 1, 2, 3 or 5 belong to the item, the rest is scratch) and
// returns the end of the item. REQUIRES: 8 writable bytes at p.
inline uint8_t* PutUint32Branchless(uint8_t* p, uint32_t v) {
  // Width class: 0 (v < 24, the value is the head), 1, 2 or 3 (1, 2 or 4
  // argument bytes after a head of 0x18, 0x19 or 0x1a). Written as
  // arithmetic on purpose: token widths are random, and a branch on them
  // mispredicts about every other token.
  const uint32_t cls = static_cast<uint32_t>(v >= 24) + static_cast<uint32_t>(v >= 256) +
                       static_cast<uint32_t>(v >= 65536);
  const uint32_t arg_bytes = cls + ((cls >> 1) & cls & 1);  // 0, 1, 2, 4
  const uint32_t mask = 0u - ((cls + 3) >> 2);               // all ones unless cls == 0
  const uint64_t head = (v & ~mask) | ((0x17 + cls) & mask);
  // The argument big-endian: the low arg_bytes bytes of v, most significant
  // first (a shift by 32 leaves nothing when there is no argument).
  const uint64_t arg = static_cast<uint64_t>(__builtin_bswap32(v)) >> (32 - 8 * arg_bytes);
  uint64_t word = head | (arg << 8);  // byte 0 first in memory
  if constexpr (std::endian::native == std::endian::big) word = __builtin_bswap64(word);
  std::memcpy(p, &word, 8);
  return p + 1 + arg_bytes;
}

// Writes n unsigned integers as consecutive CBOR items at p and returns the
// end: the same bytes as n calls of PutHead(p, kUnsigned, v[i]). Uses AVX2
// when the CPU has it (use_avx2 = false forces the portable loop, for tests).
// REQUIRES: 5 * n + 8 writable bytes at p.
uint8_t* PutUint32Array(uint8_t* p, const uint32_t* v, size_t n, bool use_avx2 = true);

// Length of the head PutHead writes for `arg`.
inline constexpr size_t HeadLen(uint64_t arg) {
  return arg < 24 ? 1 : arg <= 0xff ? 2 : arg <= 0xffff ? 3 : arg <= 0xffffffffULL ? 5 : 9;
}

}  // namespace lmcache::internal::cbor
