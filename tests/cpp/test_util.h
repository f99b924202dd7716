// Helpers shared by the gtest suites.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "lmcache/key.h"

namespace lmcache::testing {

// A 32-byte digest derived from an integer (not a real hash; distinct per n).
inline std::string FakeHash(uint64_t n) {
  std::string h(32, '\0');
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 0x1234567;
  for (int i = 0; i < 4; ++i) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    std::memcpy(&h[i * 8], &x, 8);
  }
  return h;
}

inline ObjectKey Key(uint64_t n, std::string_view salt = "", std::string_view model = "test/model") {
  ObjectKey k;
  MakeKey(FakeHash(n), model, PackKvRank(1, 0, 1, 0), 0, salt, &k);
  return k;
}

// Deterministic byte pattern of an object.
inline uint8_t PatternByte(uint64_t seed, uint64_t i) {
  return static_cast<uint8_t>((seed * 131 + i * 7 + (i >> 8)) & 0xFF);
}

}  // namespace lmcache::testing
