#include "lmcache/key.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "test_util.h"

namespace lmcache {
namespace {

using testing::FakeHash;

TEST(SymbolTest, InterningIsByIdentity) {
  Symbol a = Symbol::Intern("meta-llama/Llama-3.1-8B");
  Symbol b = Symbol::Intern(std::string("meta-llama/") + "Llama-3.1-8B");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.str(), "meta-llama/Llama-3.1-8B");
  EXPECT_NE(a, Symbol::Intern("other"));
  EXPECT_TRUE(Symbol().empty());
  EXPECT_EQ(Symbol(), Symbol::Intern(""));
}

TEST(SymbolTest, ConcurrentInterning) {
  std::vector<std::thread> threads;
  std::vector<std::vector<Symbol>> out(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &out] {
      for (int i = 0; i < 1000; ++i) out[t].push_back(Symbol::Intern("salt-" + std::to_string(i)));
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 1; t < 4; ++t) EXPECT_EQ(out[t], out[0]);
}

TEST(ObjectKeyTest, EqualityCoversEveryField) {
  ObjectKey base;
  ASSERT_TRUE(MakeKey(FakeHash(1), "m", 7, 0, "s", &base));
  ObjectKey k;
  ASSERT_TRUE(MakeKey(FakeHash(1), "m", 7, 0, "s", &k));
  EXPECT_EQ(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(2), "m", 7, 0, "s", &k));
  EXPECT_NE(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(1), "m2", 7, 0, "s", &k));
  EXPECT_NE(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(1), "m", 8, 0, "s", &k));
  EXPECT_NE(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(1), "m", 7, 1, "s", &k));
  EXPECT_NE(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(1), "m", 7, 0, "", &k));
  EXPECT_NE(k, base);
  ASSERT_TRUE(MakeKey(FakeHash(1).substr(0, 8), "m", 7, 0, "s", &k));
  EXPECT_NE(k, base);
}

TEST(ObjectKeyTest, RejectsLongDigest) {
  ObjectKey k;
  EXPECT_FALSE(MakeKey(std::string(33, 'x'), "m", 0, 0, "", &k));
  EXPECT_TRUE(MakeKey(std::string(8, 'x'), "m", 0, 0, "", &k));
  EXPECT_EQ(k.hash_len, 8);
}

TEST(ObjectKeyTest, FsFileStem) {
  std::string h(32, '\0');
  for (int i = 0; i < 32; ++i) h[i] = static_cast<char>(i);
  ObjectKey k;
  ASSERT_TRUE(MakeKey(h, "meta-llama/Llama-3", PackKvRank(1, 0, 1, 0), 0, "", &k));
  EXPECT_EQ(k.ToString(),
            "meta-llama-SEP-Llama-3@0x01000100@0@000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  ASSERT_TRUE(MakeKey(h, "m", PackKvRank(2, 1, 2, 1), 10, "tenant", &k));
  EXPECT_EQ(k.ToString(),
            "m@0x02010201@a@000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f@tenant");
}

TEST(ObjectKeyTest, HashSpreads) {
  std::unordered_set<size_t> hashes;
  for (int i = 0; i < 10000; ++i) hashes.insert(ObjectKeyHash()(testing::Key(i)));
  EXPECT_EQ(hashes.size(), 10000u);
  EXPECT_EQ(sizeof(ObjectKey), 64u);
}

// Synthetic digests that differ only in their last bytes (LMCache's bench
// uses idx.to_bytes(16, "big")) must still spread: the whole digest counts,
// not just its first 8 bytes.
TEST(ObjectKeyTest, HashSpreadsDigestsThatDifferOnlyAtTheEnd) {
  const Symbol model = Symbol::Intern("m");
  std::unordered_set<size_t> hashes;
  std::unordered_set<size_t> low_bits;  // what a 1024-bucket table would use
  for (uint32_t i = 0; i < 4096; ++i) {
    std::string digest(16, '\0');
    for (int b = 0; b < 4; ++b) digest[15 - b] = static_cast<char>((i >> (8 * b)) & 0xff);
    ObjectKey k;
    ASSERT_TRUE(MakeKey(digest, model.str(), 0, 0, "", &k));
    const size_t h = ObjectKeyHash()(k);
    hashes.insert(h);
    low_bits.insert(h & 1023);
  }
  EXPECT_EQ(hashes.size(), 4096u);
  EXPECT_GT(low_bits.size(), 900u);  // ~1020 expected for a good hash; 1 before the fix
}

}  // namespace
}  // namespace lmcache
