// IsolatedLRU specifics: run-time quotas, allow-list semantics (no quota =
// limit 0), per-salt LRU isolation, the watermark/ratio arithmetic of the
// quota pass, and quotas on policies that have none.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eviction/policies.h"
#include "lmcache/eviction_policy.h"
#include "lmcache/key.h"
#include "lmcache/status.h"

namespace lmcache {
namespace {

constexpr uint64_t kAll = std::numeric_limits<uint64_t>::max();

struct Object {
  ObjectKey key;
  EvictionNode node;
  std::string salt;
  int id = 0;  // per salt, in creation order
};

ObjectKey KeyFor(uint64_t n, std::string_view salt) {
  std::string digest(kMaxChunkHashBytes, '\0');
  std::memcpy(digest.data(), &n, sizeof(n));
  ObjectKey key;
  EXPECT_TRUE(MakeKey(digest, "model", 0, 0, salt, &key));
  return key;
}

class IsolatedLruTest : public ::testing::Test {
 protected:
  // Adds object <salt, next id of that salt> and inserts it.
  Object* Insert(std::string_view salt, uint64_t bytes) {
    Object* o = Make(salt, bytes);
    policy_.Insert(&o->node);
    return o;
  }
  Object* Make(std::string_view salt, uint64_t bytes) {
    auto obj = std::make_unique<Object>();
    obj->salt = std::string(salt);
    obj->id = next_id_[obj->salt]++;
    obj->key = KeyFor(objects_.size(), salt);
    obj->node.key = &obj->key;
    obj->node.bytes = bytes;
    objects_.push_back(std::move(obj));
    return objects_.back().get();
  }
  Object* Find(const ObjectKey& key) const {
    for (const auto& o : objects_) {
      if (o->key == key) return o.get();
    }
    ADD_FAILURE() << "unknown key " << key.ToString();
    return nullptr;
  }
  // "salt:id" per victim, in pop order ("" salt shown as "_").
  std::vector<std::string> NamesOf(const std::vector<ObjectKey>& keys) const {
    std::vector<std::string> names;
    for (const ObjectKey& k : keys) {
      const Object* o = Find(k);
      if (o == nullptr) continue;
      EXPECT_EQ(o->key.cache_salt.str(), o->salt);
      names.push_back((o->salt.empty() ? "_" : o->salt) + ":" + std::to_string(o->id));
    }
    return names;
  }
  std::vector<std::string> Pop(uint64_t target) {
    std::vector<ObjectKey> keys;
    const uint64_t popped = policy_.PopVictims(target, &keys);
    EXPECT_EQ(popped, Bytes(keys));
    return NamesOf(keys);
  }
  std::vector<std::string> QuotaPass(const SaltUsage& usage, double watermark, double ratio,
                                     uint64_t* popped_out = nullptr) {
    std::vector<ObjectKey> keys;
    const uint64_t popped = policy_.PopQuotaVictims(usage, watermark, ratio, &keys);
    EXPECT_EQ(popped, Bytes(keys));
    if (popped_out != nullptr) *popped_out = popped;
    return NamesOf(keys);
  }
  uint64_t Bytes(const std::vector<ObjectKey>& keys) const {
    uint64_t sum = 0;
    for (const ObjectKey& k : keys) {
      if (const Object* o = Find(k)) sum += o->node.bytes;
    }
    return sum;
  }
  static Symbol S(std::string_view s) { return Symbol::Intern(s); }
  void SetQuota(std::string_view salt, uint64_t limit) {
    const Status st = policy_.SetQuota(S(salt), limit);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  internal::IsolatedLruPolicy policy_;
  std::vector<std::unique_ptr<Object>> objects_;
  std::map<std::string, int> next_id_;
};

using Names = std::vector<std::string>;

// ---- quota bookkeeping ----

TEST_F(IsolatedLruTest, QuotasAreSetReplacedAndRemovedAtRunTime) {
  EXPECT_TRUE(policy_.supports_quotas());
  EXPECT_FALSE(policy_.GetQuota(S("a")).has_quota);
  EXPECT_TRUE(policy_.Quotas().empty());

  SetQuota("a", 100);
  EXPECT_TRUE(policy_.GetQuota(S("a")).has_quota);
  EXPECT_EQ(policy_.GetQuota(S("a")).limit_bytes, 100u);
  SetQuota("a", 200);  // replaces
  EXPECT_EQ(policy_.GetQuota(S("a")).limit_bytes, 200u);
  SetQuota("", 50);    // the empty salt is "" here (the HTTP layer says "_default")
  SetQuota("zero", 0);  // a zero limit is still a quota
  EXPECT_TRUE(policy_.GetQuota(S("zero")).has_quota);
  EXPECT_EQ(policy_.GetQuota(S("zero")).limit_bytes, 0u);
  EXPECT_EQ(policy_.GetQuota(Symbol()).limit_bytes, 50u);
  EXPECT_EQ(policy_.Quotas(), (std::map<std::string, uint64_t>{{"", 50}, {"a", 200}, {"zero", 0}}));

  EXPECT_TRUE(policy_.RemoveQuota(S("a")).ok());
  const Status again = policy_.RemoveQuota(S("a"));
  EXPECT_EQ(again.code(), StatusCode::kNotFound);
  EXPECT_NE(again.message().find("'a'"), std::string::npos) << again.message();
  EXPECT_EQ(policy_.RemoveQuota(S("never")).code(), StatusCode::kNotFound);
  EXPECT_FALSE(policy_.GetQuota(S("a")).has_quota);
  EXPECT_EQ(policy_.GetQuota(S("a")).limit_bytes, 0u);
  EXPECT_EQ(policy_.Quotas(), (std::map<std::string, uint64_t>{{"", 50}, {"zero", 0}}));
}

// ---- PopVictims: unquoted salts, then over-quota salts, then global LRU ----

TEST_F(IsolatedLruTest, SaltWithoutQuotaIsEvictedFirstEvenWhenRecent) {
  SetQuota("a", 1000);
  Insert("a", 10);
  Insert("a", 10);
  Insert("u", 10);  // most recently used, but no quota
  Insert("a", 10);
  Insert("u", 10);
  EXPECT_EQ(Pop(1), (Names{"u:0"}));
  EXPECT_EQ(Pop(1), (Names{"u:1"}));
  EXPECT_EQ(Pop(15), (Names{"a:0", "a:1"}));  // then global LRU, a within its quota
  EXPECT_EQ(Pop(kAll), (Names{"a:2"}));
}

TEST_F(IsolatedLruTest, SaltsWithoutQuotaGoOldestFirstAcrossSalts) {
  SetQuota("a", 1000);
  Insert("a", 1);
  Insert("u", 1);
  Insert("v", 1);
  Insert("u", 1);
  Insert("", 1);  // the empty salt has no quota either
  Insert("v", 1);
  policy_.Touch(&objects_[1]->node);  // u:0 becomes the newest
  EXPECT_EQ(Pop(5), (Names{"v:0", "u:1", "_:0", "v:1", "u:0"}));
  EXPECT_EQ(Pop(kAll), (Names{"a:0"}));
}

TEST_F(IsolatedLruTest, OverQuotaSaltsGoByLargestExcess) {
  SetQuota("a", 100);   // 6 x 50 = 300: excess 200
  SetQuota("b", 100);   // 4 x 50 = 200: excess 100
  SetQuota("c", 1000);  // 2 x 50 = 100: within
  Insert("c", 50);
  for (int i = 0; i < 4; ++i) Insert("b", 50);
  for (int i = 0; i < 6; ++i) Insert("a", 50);
  Insert("c", 50);
  // a alone until its excess is down to b's, then a and b alternate (ties go
  // to the older head) until both are at their limits.
  EXPECT_EQ(Pop(100), (Names{"a:0", "a:1"}));
  EXPECT_EQ(Pop(200), (Names{"b:0", "a:2", "b:1", "a:3"}));
  // Nobody over quota: global LRU.
  EXPECT_EQ(Pop(150), (Names{"c:0", "b:2", "b:3"}));
  EXPECT_EQ(Pop(kAll), (Names{"a:4", "a:5", "c:1"}));
}

TEST_F(IsolatedLruTest, GlobalLruAmongSaltsWithinQuota) {
  SetQuota("a", 1000);
  SetQuota("b", 1000);
  Insert("a", 1);
  Insert("b", 1);
  Insert("a", 1);
  Insert("b", 1);
  policy_.Touch(&objects_[0]->node);  // a:0
  policy_.Touch(&objects_[3]->node);  // b:1
  EXPECT_EQ(Pop(kAll), (Names{"b:0", "a:1", "a:0", "b:1"}));
}

TEST_F(IsolatedLruTest, QuotaChangesApplyToObjectsAlreadyLinked) {
  SetQuota("a", 1000);
  Insert("a", 1);
  Insert("u", 1);
  Insert("a", 1);
  Insert("u", 1);
  // u gets a quota: no unquoted salt left, plain global LRU.
  SetQuota("u", 1000);
  EXPECT_EQ(Pop(1), (Names{"a:0"}));
  // a loses its quota: it goes first now.
  ASSERT_TRUE(policy_.RemoveQuota(S("a")).ok());
  EXPECT_EQ(Pop(1), (Names{"a:1"}));
  // u's limit drops below its evictable bytes (2): it is over by 1.
  SetQuota("u", 1);
  Insert("b", 1);  // unquoted b is newest but still first
  EXPECT_EQ(Pop(1), (Names{"b:0"}));
  SetQuota("b", 0);
  Insert("b", 1);  // b: 1 byte over a limit of 0; u: 2 over 1 -> tie, older head wins
  EXPECT_EQ(Pop(1), (Names{"u:0"}));
  EXPECT_EQ(Pop(1), (Names{"b:1"}));  // b still 1 over, u now within
  EXPECT_EQ(Pop(kAll), (Names{"u:1"}));
}

TEST_F(IsolatedLruTest, QuotaSetBeforeTheSaltHasObjectsApplies) {
  SetQuota("q", 1000);
  SetQuota("gone", 1000);
  ASSERT_TRUE(policy_.RemoveQuota(S("gone")).ok());
  Insert("q", 1);
  Insert("gone", 1);
  Insert("q", 1);
  EXPECT_EQ(Pop(1), (Names{"gone:0"}));  // unquoted goes first though newer
  EXPECT_EQ(Pop(kAll), (Names{"q:0", "q:1"}));
}

TEST_F(IsolatedLruTest, EmptySaltListsAreDropped) {
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 0u);
  Object* x0 = Insert("x", 1);
  Object* x1 = Insert("x", 1);
  Insert("y", 1);
  Insert("z", 1);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 3u);
  policy_.Remove(&x0->node);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 3u);
  policy_.Remove(&x1->node);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 2u);
  EXPECT_EQ(Pop(1), (Names{"y:0"}));
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 1u);
  // Remove, Touch of nodes whose list is gone are no-ops; Insert recreates it.
  policy_.Remove(&x1->node);
  policy_.Touch(&x0->node);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 1u);
  policy_.Insert(&x0->node);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 2u);
  EXPECT_EQ(policy_.Stats().linked_objects, 2u);
  EXPECT_EQ(Pop(kAll), (Names{"z:0", "x:0"}));
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 0u);
}

TEST_F(IsolatedLruTest, StatsCountAllSalts) {
  SetQuota("a", 5);
  Insert("a", 3);
  Insert("b", 4);
  Object* c = Insert("", 5);
  EXPECT_EQ(policy_.Stats().linked_objects, 3u);
  EXPECT_EQ(policy_.Stats().linked_bytes, 12u);
  policy_.Remove(&c->node);
  EXPECT_EQ(policy_.Stats().linked_bytes, 7u);
  Pop(1);  // b (unquoted)
  EXPECT_EQ(policy_.Stats().linked_objects, 1u);
  EXPECT_EQ(policy_.Stats().linked_bytes, 3u);
}

// ---- PopQuotaVictims ----

TEST_F(IsolatedLruTest, QuotaPassWipesSaltsWithoutQuota) {
  SetQuota("a", 1000);
  Insert("u", 10);
  Insert("a", 10);
  Insert("u", 20);
  Insert("v", 5);  // absent from usage: still unquoted, still wiped
  SaltUsage usage;
  usage[S("u")] = 30;
  usage[S("a")] = 10;  // far below 0.8 x 1000
  uint64_t popped = 0;
  Names names = QuotaPass(usage, 0.8, 0.2, &popped);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (Names{"u:0", "u:1", "v:0"}));
  EXPECT_EQ(popped, 35u);
  EXPECT_EQ(policy_.Stats().linked_objects, 1u);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 1u);
  EXPECT_TRUE(QuotaPass(usage, 0.8, 0.2).empty());  // a is still fine
}

TEST_F(IsolatedLruTest, QuotaPassLeavesSaltsBelowTheWatermark) {
  SetQuota("a", 1000);
  for (int i = 0; i < 100; ++i) Insert("a", 10);
  SaltUsage usage;
  usage[S("a")] = 799;  // < 0.8 x 1000
  EXPECT_TRUE(QuotaPass(usage, 0.8, 0.2).empty());
  usage.erase(S("a"));  // no usage reported at all
  EXPECT_TRUE(QuotaPass(usage, 0.8, 0.2).empty());
  EXPECT_EQ(policy_.Stats().linked_objects, 100u);
}

TEST_F(IsolatedLruTest, QuotaPassArithmetic) {
  struct Case {
    uint64_t limit, usage;
    double watermark, ratio;
    uint64_t want_popped;  // with 1-byte objects and enough of them
  };
  const Case cases[] = {
      {1000, 800, 0.8, 0.2, 160},    // exactly at the watermark triggers: 0.2 x 800
      {1000, 799, 0.8, 0.2, 0},      // just below: nothing
      {1000, 1000, 0.8, 0.2, 200},   // at the limit: the ratio
      {1000, 1500, 0.8, 0.2, 500},   // over: back to the limit beats 0.2 x 1500 = 300
      {900, 1000, 0.8, 0.2, 200},    // over by 100, the ratio (200) is more
      {1000, 1001, 0.8, 0.2, 201},   // 200.2 rounds up
      {1000, 900, 0.8, 0.0, 0},      // ratio 0 and within the limit: nothing
      {1000, 1200, 0.8, 0.0, 200},   // ratio 0 but over: back to the limit
      {0, 50, 0.8, 0.2, 50},         // a zero quota behaves like no quota for the reported usage
      {1000, 500, 0.0, 0.1, 50},     // watermark 0: always triggers
      {1000, 1000, 1.0, 1.0, 1000},  // ratio 1: everything reported
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("limit=" + std::to_string(c.limit) + " usage=" + std::to_string(c.usage) +
                 " watermark=" + std::to_string(c.watermark) + " ratio=" + std::to_string(c.ratio));
    internal::IsolatedLruPolicy policy;
    std::vector<std::unique_ptr<Object>> objs;
    for (int i = 0; i < 2000; ++i) {
      auto o = std::make_unique<Object>();
      o->key = KeyFor(i, "t");
      o->node.key = &o->key;
      o->node.bytes = 1;
      policy.Insert(&o->node);
      objs.push_back(std::move(o));
    }
    ASSERT_TRUE(policy.SetQuota(S("t"), c.limit).ok());
    SaltUsage usage;
    usage[S("t")] = c.usage;
    std::vector<ObjectKey> keys;
    EXPECT_EQ(policy.PopQuotaVictims(usage, c.watermark, c.ratio, &keys), c.want_popped);
    ASSERT_EQ(keys.size(), c.want_popped);
    for (size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(keys[i], objs[i]->key) << "not LRU first at " << i;
    }
  }
}

TEST_F(IsolatedLruTest, QuotaPassTakesWholeObjectsAndStopsWhenASaltRunsDry) {
  SetQuota("a", 100);
  for (int i = 0; i < 5; ++i) Insert("a", 30);  // 150 evictable
  SaltUsage usage;
  usage[S("a")] = 400;  // locked objects count too: target max(80, 300) = 300
  uint64_t popped = 0;
  EXPECT_EQ(QuotaPass(usage, 0.8, 0.2, &popped), (Names{"a:0", "a:1", "a:2", "a:3", "a:4"}));
  EXPECT_EQ(popped, 150u);
  EXPECT_EQ(policy_.num_salt_lists_for_testing(), 0u);

  for (int i = 0; i < 5; ++i) Insert("a", 30);
  usage[S("a")] = 150;  // target max(30, 50) = 50: two whole objects (60)
  EXPECT_EQ(QuotaPass(usage, 0.8, 0.2, &popped), (Names{"a:5", "a:6"}));
  EXPECT_EQ(popped, 60u);
}

TEST_F(IsolatedLruTest, QuotaPassIsolatesSalts) {
  SetQuota("a", 100);
  SetQuota("b", 100);
  // b's objects are all older than a's; b is within its quota.
  for (int i = 0; i < 5; ++i) Insert("b", 10);
  for (int i = 0; i < 20; ++i) Insert("a", 10);
  policy_.Touch(&objects_[5]->node);  // a:0 becomes a's most recent
  policy_.Touch(&objects_[0]->node);  // b:0: b's order only
  SaltUsage usage;
  usage[S("a")] = 200;  // over: max(40, 100) = 100 -> ten objects of a
  usage[S("b")] = 50;   // below 0.8 x 100
  Names want;
  for (int i = 1; i <= 10; ++i) want.push_back("a:" + std::to_string(i));
  EXPECT_EQ(QuotaPass(usage, 0.8, 0.2), want);
  EXPECT_EQ(policy_.Stats().linked_objects, 15u);

  // Both over: each loses its own least recently used objects only.
  usage[S("a")] = 100;  // at the limit: 0.2 x 100 = 20 -> two
  usage[S("b")] = 90;   // >= 80: 0.2 x 90 = 18 -> two
  Names names = QuotaPass(usage, 0.8, 0.2);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (Names{"a:11", "a:12", "b:1", "b:2"}));
}

// ---- policies without quotas ----

TEST(NonQuotaPolicyTest, QuotaCallsAreRejected) {
  for (std::string_view name : {"LRU", "noop"}) {
    SCOPED_TRACE(std::string(name));
    Result<std::unique_ptr<EvictionPolicy>> p = CreateEvictionPolicy(name);
    ASSERT_TRUE(p.ok());
    EvictionPolicy& policy = *p.value();
    EXPECT_FALSE(policy.supports_quotas());
    const Status set = policy.SetQuota(Symbol::Intern("a"), 10);
    EXPECT_EQ(set.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(set.message(), std::string(name) + " eviction policy has no quotas");
    EXPECT_EQ(policy.RemoveQuota(Symbol::Intern("a")).code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(policy.Quotas().empty());
    EXPECT_FALSE(policy.GetQuota(Symbol::Intern("a")).has_quota);

    // The quota pass does nothing, even for salts that would have no quota.
    ObjectKey key = KeyFor(1, "a");
    EvictionNode node;
    node.key = &key;
    node.bytes = 10;
    policy.Insert(&node);
    SaltUsage usage;
    usage[Symbol::Intern("a")] = 10;
    std::vector<ObjectKey> keys;
    EXPECT_EQ(policy.PopQuotaVictims(usage, 0.0, 1.0, &keys), 0u);
    EXPECT_TRUE(keys.empty());
    EXPECT_EQ(node.linked, name == "LRU");
    policy.Remove(&node);
  }
}

TEST(EvictionPolicyFactoryTest, CreatesTheThreePoliciesAndRejectsOthers) {
  for (std::string_view name : {"LRU", "IsolatedLRU", "noop"}) {
    Result<std::unique_ptr<EvictionPolicy>> p = CreateEvictionPolicy(name);
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ(p.value()->name(), name);
  }
  for (std::string_view bad : {"", "lru", "ARC", "isolated_lru", "Noop"}) {
    Result<std::unique_ptr<EvictionPolicy>> p = CreateEvictionPolicy(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p.status().ToString(), "invalid_argument: unknown eviction policy '" + std::string(bad) +
                                         "' (choose from LRU, IsolatedLRU, noop)");
  }
}

}  // namespace
}  // namespace lmcache
