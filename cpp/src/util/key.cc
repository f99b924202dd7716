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
