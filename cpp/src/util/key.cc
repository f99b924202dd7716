#include "lmcache/key.h"

#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <unordered_set>

namespace lmcache {
namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Elements of a node-based unordered_set keep their address across rehashing,
// so a Symbol can point straight at the interned string.
struct SymbolTable {
  std::shared_mutex mu;
  std::unordered_set<std::string, StringHash, std::equal_to<>> strings;
  const std::string* empty = &*strings.emplace().first;
};

SymbolTable& Table() {
  static SymbolTable* t = new SymbolTable();  // immortal: symbols outlive static destructors
  return *t;
}

}  // namespace

Symbol::Symbol() : p_(Table().empty) {}

Symbol Symbol::Intern(std::string_view s) {
  SymbolTable& t = Table();
  if (s.empty()) return Symbol(t.empty);
  {
    std::shared_lock lock(t.mu);
    auto it = t.strings.find(s);
    if (it != t.strings.end()) return Symbol(&*it);
  }
  std::unique_lock lock(t.mu);
  return Symbol(&*t.strings.emplace(s).first);
}

bool MakeKey(std::string_view chunk_hash, std::string_view model_name, int32_t kv_rank,
             int32_t object_group_id, std::string_view cache_salt, ObjectKey* out) {
  if (chunk_hash.size() > kMaxChunkHashBytes) return false;
  ObjectKey k;
  std::memcpy(k.chunk_hash.data(), chunk_hash.data(), chunk_hash.size());
  k.hash_len = static_cast<uint8_t>(chunk_hash.size());
  k.kv_rank = kv_rank;
  k.object_group_id = object_group_id;
  k.model_name = Symbol::Intern(model_name);
  k.cache_salt = Symbol::Intern(cache_salt);
  *out = k;
  return true;
}

std::string ObjectKey::ChunkHashHex() const {
  static const char* kHex = "0123456789abcdef";
  std::string s(hash_len * 2, '0');
  for (size_t i = 0; i < hash_len; ++i) {
    s[2 * i] = kHex[chunk_hash[i] >> 4];
    s[2 * i + 1] = kHex[chunk_hash[i] & 15];
  }
  return s;
}

std::string ObjectKey::ToString() const {
  std::string model;
  for (char c : model_name.str()) {
    if (c == '/') model += "-SEP-";
    else model += c;
  }
  char rank[16];
  std::snprintf(rank, sizeof(rank), "%08x", static_cast<uint32_t>(kv_rank));
  char group[16];
  std::snprintf(group, sizeof(group), "%x", static_cast<uint32_t>(object_group_id));
  std::string s = model + "@0x" + rank + "@" + group + "@" + ChunkHashHex();
  if (!cache_salt.empty()) s += "@" + cache_salt.str();
  return s;
}

}  // namespace lmcache

namespace lmcache {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 1 to 8 hex digits, optionally after "0x".
bool ParseHex32(std::string_view s, bool allow_prefix, uint32_t* out) {
  if (allow_prefix && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  if (s.empty() || s.size() > 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    const int d = HexDigit(c);
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

}  // namespace

bool ParseObjectKey(std::string_view s, ObjectKey* out) {
  std::string_view parts[5];
  size_t n = 0;
  for (;;) {
    const size_t at = s.find('@');
    if (n == 5) return false;
    parts[n++] = s.substr(0, at);
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  if (n != 4 && n != 5) return false;
  uint32_t rank = 0, group = 0;
  if (!ParseHex32(parts[1], true, &rank) || !ParseHex32(parts[2], false, &group)) return false;
  const std::string_view hex = parts[3];
  if (hex.size() % 2 != 0 || hex.size() > 2 * kMaxChunkHashBytes) return false;
  std::string digest(hex.size() / 2, '\0');
  for (size_t i = 0; i < digest.size(); ++i) {
    const int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    digest[i] = static_cast<char>((hi << 4) | lo);
  }
  std::string model;
  std::string_view m = parts[0];
  static constexpr std::string_view kSep = "-SEP-";
  for (size_t i = 0; i < m.size();) {
    if (m.substr(i, kSep.size()) == kSep) {
      model += '/';
      i += kSep.size();
    } else {
      model += m[i++];
    }
  }
  const std::string_view salt = n == 5 ? parts[4] : std::string_view();
  if (n == 5 && salt.empty()) return false;  // ToString never writes an empty salt field
  return MakeKey(digest, model, static_cast<int32_t>(rank), static_cast<int32_t>(group), salt, out);
}

}  // namespace lmcache
