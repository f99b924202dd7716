// One typed suite that runs every EvictionPolicy against the shared contract
// of lmcache/eviction_policy.h. What differs between policies is stated once,
// in a traits struct per policy.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <limits>
#include <list>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lmcache/eviction_policy.h"
#include "lmcache/key.h"
#include "lmcache/status.h"

namespace lmcache {
namespace {

constexpr uint64_t kAll = std::numeric_limits<uint64_t>::max();

// ---- per-policy expectations ----

struct LruTraits {
  static constexpr std::string_view kName = "LRU";
  // Insert links the node; PopVictims returns victims.
  static constexpr bool kLinks = true;
  // With no quota set, victims leave in global least-recently-used order.
  static constexpr bool kGlobalLruOrder = true;
  // SetQuota & co. work.
  static constexpr bool kQuotas = false;
  // PopQuotaVictims pops every evictable object of salts without a quota.
  static constexpr bool kQuotaPassWipesUnquoted = false;
};

struct IsolatedLruTraits {
  static constexpr std::string_view kName = "IsolatedLRU";
  static constexpr bool kLinks = true;
  // With no quota set every salt is unquoted, and unquoted salts go oldest
  // first across salts: the global LRU order.
  static constexpr bool kGlobalLruOrder = true;
  static constexpr bool kQuotas = true;
  static constexpr bool kQuotaPassWipesUnquoted = true;
};

struct NoopTraits {
  static constexpr std::string_view kName = "noop";
  static constexpr bool kLinks = false;
  static constexpr bool kGlobalLruOrder = false;
  static constexpr bool kQuotas = false;
  static constexpr bool kQuotaPassWipesUnquoted = false;
};

// ---- objects owned by a test, as the L1 store owns its entries ----

struct Object {
  ObjectKey key;
  EvictionNode node;
  int id = 0;
};

ObjectKey KeyFor(int id, std::string_view salt) {
  std::string digest(kMaxChunkHashBytes, '\0');
  const uint64_t v = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull + 1;
  std::memcpy(digest.data(), &v, sizeof(v));
  std::memcpy(digest.data() + 8, &id, sizeof(id));
  ObjectKey key;
  EXPECT_TRUE(MakeKey(digest, "model", 0, 0, salt, &key));
  return key;
}

class Objects {
 public:
  // Creates object `id` (ids are dense, starting at 0) with a stable address.
  Object* Add(uint64_t bytes, std::string_view salt = "") {
    auto obj = std::make_unique<Object>();
    obj->id = static_cast<int>(objects_.size());
    obj->key = KeyFor(obj->id, salt);
    obj->node.key = &obj->key;
    obj->node.bytes = bytes;
    by_key_.emplace(obj->key, obj.get());
    objects_.push_back(std::move(obj));
    return objects_.back().get();
  }
  Object* operator[](size_t i) const { return objects_[i].get(); }
  size_t size() const { return objects_.size(); }

  // The object a returned key names; fails the test for an unknown key.
  Object* Find(const ObjectKey& key) const {
    auto it = by_key_.find(key);
    EXPECT_NE(it, by_key_.end()) << "policy returned a key it was never given";
    return it == by_key_.end() ? nullptr : it->second;
  }
  std::vector<int> Ids(const std::vector<ObjectKey>& keys) const {
    std::vector<int> ids;
    for (const ObjectKey& k : keys) {
      Object* o = Find(k);
      ids.push_back(o == nullptr ? -1 : o->id);
    }
    return ids;
  }
  uint64_t Bytes(const std::vector<ObjectKey>& keys) const {
    uint64_t sum = 0;
    for (const ObjectKey& k : keys) {
      if (Object* o = Find(k)) sum += o->node.bytes;
    }
    return sum;
  }

 private:
  std::vector<std::unique_ptr<Object>> objects_;
  std::unordered_map<ObjectKey, Object*, ObjectKeyHash> by_key_;
};

template <typename Traits>
class PolicyConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<EvictionPolicy>> p = CreateEvictionPolicy(Traits::kName);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    policy_ = std::move(p).value();
  }

  // Stats as the sum over the test's own nodes (only meaningful when no other
  // thread is running).
  PolicyStats ExpectedStats() const {
    PolicyStats s;
    for (size_t i = 0; i < objs_.size(); ++i) {
      if (objs_[i]->node.linked) {
        ++s.linked_objects;
        s.linked_bytes += objs_[i]->node.bytes;
      }
    }
    return s;
  }
  void ExpectStatsConsistent() {
    const PolicyStats want = ExpectedStats();
    const PolicyStats got = policy_->Stats();
    EXPECT_EQ(got.linked_objects, want.linked_objects);
    EXPECT_EQ(got.linked_bytes, want.linked_bytes);
    if (!Traits::kLinks) {
      EXPECT_EQ(got.linked_objects, 0u);
      EXPECT_EQ(got.linked_bytes, 0u);
    }
  }
  // Pops everything; the ids in pop order.
  std::vector<int> Drain() {
    std::vector<ObjectKey> keys;
    const uint64_t bytes = policy_->PopVictims(kAll, &keys);
    EXPECT_EQ(bytes, objs_.Bytes(keys));
    return objs_.Ids(keys);
  }

  std::unique_ptr<EvictionPolicy> policy_;
  Objects objs_;
};

struct TraitsName {
  template <typename T>
  static std::string GetName(int) {
    return std::string(T::kName);
  }
};

using AllPolicies = ::testing::Types<LruTraits, IsolatedLruTraits, NoopTraits>;
TYPED_TEST_SUITE(PolicyConformanceTest, AllPolicies, TraitsName);

TYPED_TEST(PolicyConformanceTest, NameAndFactory) {
  EXPECT_EQ(this->policy_->name(), TypeParam::kName);
  EXPECT_EQ(this->policy_->supports_quotas(), TypeParam::kQuotas);

  // The factory is exact and case-sensitive.
  std::string lower(TypeParam::kName), upper(TypeParam::kName);
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (const std::string& bad :
       {lower + "x", upper == std::string(TypeParam::kName) ? lower : upper,
        std::string(TypeParam::kName) + " ", " " + std::string(TypeParam::kName)}) {
    Result<std::unique_ptr<EvictionPolicy>> p = CreateEvictionPolicy(bad);
    ASSERT_FALSE(p.ok()) << "'" << bad << "' accepted";
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p.status().message(),
              "unknown eviction policy '" + bad + "' (choose from LRU, IsolatedLRU, noop)");
  }
}

TYPED_TEST(PolicyConformanceTest, FreshPolicyIsEmpty) {
  EXPECT_EQ(this->policy_->Stats().linked_objects, 0u);
  EXPECT_EQ(this->policy_->Stats().linked_bytes, 0u);
  std::vector<ObjectKey> keys;
  EXPECT_EQ(this->policy_->PopVictims(kAll, &keys), 0u);
  EXPECT_TRUE(keys.empty());
}

TYPED_TEST(PolicyConformanceTest, InsertLinksAndCounts) {
  for (int i = 0; i < 5; ++i) {
    Object* o = this->objs_.Add(10 * (i + 1), i % 2 ? "a" : "");
    this->policy_->Insert(&o->node);
    EXPECT_EQ(o->node.linked, TypeParam::kLinks);
    this->ExpectStatsConsistent();
  }
  if (TypeParam::kLinks) {
    EXPECT_EQ(this->policy_->Stats().linked_objects, 5u);
    EXPECT_EQ(this->policy_->Stats().linked_bytes, 150u);
  }
}

TYPED_TEST(PolicyConformanceTest, InsertOfLinkedNodeCountsOnce) {
  Object* a = this->objs_.Add(7);
  Object* b = this->objs_.Add(9);
  this->policy_->Insert(&a->node);
  this->policy_->Insert(&b->node);
  this->policy_->Insert(&a->node);  // acts as Touch
  this->ExpectStatsConsistent();
  if (TypeParam::kLinks) {
    EXPECT_EQ(this->policy_->Stats().linked_objects, 2u);
  }
  if (TypeParam::kGlobalLruOrder) {
    EXPECT_EQ(this->Drain(), (std::vector<int>{1, 0}));
  }
}

TYPED_TEST(PolicyConformanceTest, RemoveUnlinksAndIsIdempotent) {
  Object* never = this->objs_.Add(1);
  this->policy_->Remove(&never->node);  // never inserted: no-op
  EXPECT_FALSE(never->node.linked);
  for (int i = 0; i < 4; ++i) this->policy_->Insert(&this->objs_.Add(100, i < 2 ? "x" : "y")->node);
  this->ExpectStatsConsistent();

  // Tail, head, middle: the list stays well formed.
  for (int id : {4, 1, 3}) {
    this->policy_->Remove(&this->objs_[id]->node);
    EXPECT_FALSE(this->objs_[id]->node.linked);
    this->ExpectStatsConsistent();
    this->policy_->Remove(&this->objs_[id]->node);  // second Remove: no-op
    this->ExpectStatsConsistent();
  }
  const std::vector<int> rest = this->Drain();
  if (TypeParam::kLinks) {
    EXPECT_EQ(rest, (std::vector<int>{2}));
  } else {
    EXPECT_TRUE(rest.empty());
  }
}

TYPED_TEST(PolicyConformanceTest, TouchOfUnlinkedNodeIsNoop) {
  Object* never = this->objs_.Add(5);
  this->policy_->Touch(&never->node);
  EXPECT_FALSE(never->node.linked);
  this->ExpectStatsConsistent();

  Object* removed = this->objs_.Add(6);
  this->policy_->Insert(&removed->node);
  this->policy_->Remove(&removed->node);
  this->policy_->Touch(&removed->node);
  EXPECT_FALSE(removed->node.linked);
  this->ExpectStatsConsistent();
  EXPECT_TRUE(this->Drain().empty());
}

TYPED_TEST(PolicyConformanceTest, PopVictimsUnlinksAndReturnsEachNodeOnce) {
  for (int i = 0; i < 10; ++i) this->policy_->Insert(&this->objs_.Add(i + 1, i % 3 ? "s" : "t")->node);
  std::vector<int> ids = this->Drain();
  if (!TypeParam::kLinks) {
    EXPECT_TRUE(ids.empty());
    return;
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  for (size_t i = 0; i < this->objs_.size(); ++i) EXPECT_FALSE(this->objs_[i]->node.linked);
  this->ExpectStatsConsistent();
  EXPECT_TRUE(this->Drain().empty());

  // Popped nodes are unlinked: Remove and Touch are no-ops, Insert links again.
  this->policy_->Remove(&this->objs_[3]->node);
  this->policy_->Touch(&this->objs_[4]->node);
  this->ExpectStatsConsistent();
  this->policy_->Insert(&this->objs_[5]->node);
  this->policy_->Insert(&this->objs_[6]->node);
  this->ExpectStatsConsistent();
  ids = this->Drain();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{5, 6}));
}

TYPED_TEST(PolicyConformanceTest, PopVictimsReachesTargetAndStopsThere) {
  // Sizes 10, 20, ..., 100: total 550.
  for (uint64_t target : {1ull, 10ull, 11ull, 30ull, 31ull, 275ull, 549ull, 550ull, 551ull, 10000ull}) {
    SCOPED_TRACE(target);
    Objects objs;
    for (int i = 0; i < 10; ++i) this->policy_->Insert(&objs.Add(10 * (i + 1), i % 2 ? "p" : "q")->node);
    std::vector<ObjectKey> keys;
    const uint64_t popped = this->policy_->PopVictims(target, &keys);
    EXPECT_EQ(popped, objs.Bytes(keys));
    if (!TypeParam::kLinks) {
      EXPECT_EQ(popped, 0u);
      EXPECT_TRUE(keys.empty());
      continue;
    }
    EXPECT_GE(popped, std::min<uint64_t>(target, 550));
    ASSERT_FALSE(keys.empty());
    // It stops at the first victim that reaches the target.
    EXPECT_LT(popped - objs.Find(keys.back())->node.bytes, target);
    EXPECT_EQ(this->policy_->Stats().linked_bytes, 550 - popped);
    for (const ObjectKey& k : keys) EXPECT_FALSE(objs.Find(k)->node.linked);
    this->policy_->PopVictims(kAll, &keys);  // leave the policy empty for the next round
    EXPECT_EQ(this->policy_->Stats().linked_objects, 0u);
  }
}

TYPED_TEST(PolicyConformanceTest, PopVictimsWithZeroTargetPopsNothing) {
  for (int i = 0; i < 3; ++i) this->policy_->Insert(&this->objs_.Add(8)->node);
  std::vector<ObjectKey> keys;
  EXPECT_EQ(this->policy_->PopVictims(0, &keys), 0u);
  EXPECT_TRUE(keys.empty());
  this->ExpectStatsConsistent();
}

TYPED_TEST(PolicyConformanceTest, PopVictimsAppendsToOut) {
  this->policy_->Insert(&this->objs_.Add(8)->node);
  std::vector<ObjectKey> keys = {KeyFor(999, "")};
  this->policy_->PopVictims(kAll, &keys);
  ASSERT_EQ(keys.size(), TypeParam::kLinks ? 2u : 1u);
  EXPECT_EQ(keys[0], KeyFor(999, ""));
}

TYPED_TEST(PolicyConformanceTest, ZeroByteNodesArePoppedUntilTargetOrEmpty) {
  for (int i = 0; i < 4; ++i) this->policy_->Insert(&this->objs_.Add(0)->node);
  std::vector<ObjectKey> keys;
  EXPECT_EQ(this->policy_->PopVictims(1, &keys), 0u);
  EXPECT_EQ(keys.size(), TypeParam::kLinks ? 4u : 0u);
  this->ExpectStatsConsistent();
}

TYPED_TEST(PolicyConformanceTest, NeverReturnsRemovedNodes) {
  for (int i = 0; i < 10; ++i) this->policy_->Insert(&this->objs_.Add(3, i % 2 ? "a" : "b")->node);
  for (int i = 0; i < 10; i += 2) this->policy_->Remove(&this->objs_[i]->node);
  this->ExpectStatsConsistent();
  std::vector<int> ids = this->Drain();
  std::sort(ids.begin(), ids.end());
  if (TypeParam::kLinks) {
    EXPECT_EQ(ids, (std::vector<int>{1, 3, 5, 7, 9}));
  } else {
    EXPECT_TRUE(ids.empty());
  }
}

TYPED_TEST(PolicyConformanceTest, VictimOrderFollowsInsertsAndTouches) {
  if (!TypeParam::kGlobalLruOrder) GTEST_SKIP() << "policy has no LRU order";
  for (int i = 0; i < 6; ++i) this->policy_->Insert(&this->objs_.Add(10, i % 2 ? "a" : "")->node);
  this->policy_->Touch(&this->objs_[2]->node);
  this->policy_->Touch(&this->objs_[0]->node);
  this->policy_->Remove(&this->objs_[3]->node);
  this->policy_->Insert(&this->objs_[3]->node);  // back as most recently used
  this->policy_->Touch(&this->objs_[5]->node);
  this->policy_->Touch(&this->objs_[5]->node);  // touching the MRU node keeps it there
  // One victim at a time: each node is worth the target on its own.
  std::vector<int> order;
  for (int i = 0; i < 7; ++i) {
    std::vector<ObjectKey> keys;
    const uint64_t popped = this->policy_->PopVictims(1, &keys);
    if (i == 6) {
      EXPECT_EQ(popped, 0u);
      EXPECT_TRUE(keys.empty());
      break;
    }
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_EQ(popped, 10u);
    order.push_back(this->objs_.Find(keys[0])->id);
  }
  EXPECT_EQ(order, (std::vector<int>{1, 4, 2, 0, 3, 5}));
}

TYPED_TEST(PolicyConformanceTest, QuotaPassWithoutQuotas) {
  for (int i = 0; i < 6; ++i) this->policy_->Insert(&this->objs_.Add(10, i % 2 ? "a" : "")->node);
  SaltUsage usage;
  usage[Symbol::Intern("a")] = 30;
  usage[Symbol()] = 30;
  std::vector<ObjectKey> keys;
  const uint64_t popped = this->policy_->PopQuotaVictims(usage, 0.8, 0.2, &keys);
  EXPECT_EQ(popped, this->objs_.Bytes(keys));
  if (TypeParam::kQuotaPassWipesUnquoted) {
    EXPECT_EQ(popped, 60u);  // allow-list: no quota = limit 0, everything goes
    EXPECT_EQ(keys.size(), 6u);
  } else {
    EXPECT_EQ(popped, 0u);
    EXPECT_TRUE(keys.empty());
  }
  this->ExpectStatsConsistent();
}

TYPED_TEST(PolicyConformanceTest, QuotaApi) {
  const Symbol salt = Symbol::Intern("tenant");
  const Status set = this->policy_->SetQuota(salt, 1234);
  const Status removed = this->policy_->RemoveQuota(salt);
  const Status removed_again = this->policy_->RemoveQuota(salt);
  if (TypeParam::kQuotas) {
    EXPECT_TRUE(set.ok()) << set.ToString();
    EXPECT_TRUE(removed.ok()) << removed.ToString();
    EXPECT_EQ(removed_again.code(), StatusCode::kNotFound);
  } else {
    EXPECT_EQ(set.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(removed.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(removed_again.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(set.message(), std::string(TypeParam::kName) + " eviction policy has no quotas");
  }
  EXPECT_TRUE(this->policy_->Quotas().empty());
  EXPECT_FALSE(this->policy_->GetQuota(salt).has_quota);
  EXPECT_EQ(this->policy_->GetQuota(salt).limit_bytes, 0u);
}

// A random mix of operations checked step by step against a model: a global
// LRU list for ordered policies, nothing for non-linking ones.
TYPED_TEST(PolicyConformanceTest, RandomOperationsMatchModel) {
  constexpr int kNodes = 40;
  const char* kSalts[] = {"", "a", "b"};
  for (int i = 0; i < kNodes; ++i) this->objs_.Add(1 + i % 7, kSalts[i % 3]);
  std::list<int> model;  // front = next victim
  std::vector<std::list<int>::iterator> where(kNodes, model.end());
  std::vector<bool> in(kNodes, false);
  auto model_unlink = [&](int id) {
    model.erase(where[id]);
    in[id] = false;
  };
  auto model_to_back = [&](int id) {
    if (in[id]) model.erase(where[id]);
    where[id] = model.insert(model.end(), id);
    in[id] = true;
  };

  std::mt19937 rng(12345);
  for (int step = 0; step < 5000; ++step) {
    const int id = static_cast<int>(rng() % kNodes);
    EvictionNode* node = &this->objs_[id]->node;
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2:
        this->policy_->Insert(node);
        if (TypeParam::kLinks) model_to_back(id);
        break;
      case 3:
      case 4:
        this->policy_->Remove(node);
        if (in[id]) model_unlink(id);
        break;
      case 5:
      case 6:
        this->policy_->Touch(node);
        if (in[id]) model_to_back(id);
        break;
      case 7: {
        const uint64_t target = rng() % 20;
        std::vector<ObjectKey> keys;
        const uint64_t popped = this->policy_->PopVictims(target, &keys);
        EXPECT_EQ(popped, this->objs_.Bytes(keys));
        std::vector<int> want;
        uint64_t sum = 0;
        while (sum < target && !model.empty() && TypeParam::kGlobalLruOrder) {
          const int victim = model.front();
          want.push_back(victim);
          sum += this->objs_[victim]->node.bytes;
          model_unlink(victim);
        }
        if (TypeParam::kGlobalLruOrder || !TypeParam::kLinks) {
          ASSERT_EQ(this->objs_.Ids(keys), want) << "step " << step;
        }
        break;
      }
    }
    for (int i = 0; i < kNodes; ++i) {
      ASSERT_EQ(this->objs_[i]->node.linked, static_cast<bool>(in[i]))
          << "step " << step << " node " << i;
    }
    const PolicyStats stats = this->policy_->Stats();
    ASSERT_EQ(stats.linked_objects, model.size());
    this->ExpectStatsConsistent();
  }
}

// Four owner threads drive their own nodes through the store's calls (Insert
// when evictable, Remove when not, Touch, repeated Insert) while another
// thread pops victims, runs quota passes and changes quotas. Meant for TSAN;
// afterwards every node's state must agree with the policy's.
TYPED_TEST(PolicyConformanceTest, ConcurrentOwnersAndEvictor) {
  constexpr int kThreads = 4;
  constexpr int kNodesPerThread = 64;
  constexpr int kOpsPerThread = 20000;
  // Owners go on past kOpsPerThread until the evictor has taken this many
  // victims while they run (up to kMaxOpsPerThread), so the threads overlap
  // however they are scheduled.
  constexpr int kMinEvictorVictims = 200;
  constexpr int kMaxOpsPerThread = 20000000;
  const char* kSalts[] = {"", "a", "b"};
  for (int i = 0; i < kThreads * kNodesPerThread; ++i) this->objs_.Add(1 + i % 13, kSalts[i % 3]);
  EvictionPolicy* policy = this->policy_.get();
  Objects& objs = this->objs_;

  // Owner-side state, written only by the owner thread (read after join).
  std::vector<int> insert_calls(objs.size(), 0);
  // Not vector<bool>: owners write neighbouring elements concurrently.
  std::vector<char> owner_evictable(objs.size(), 0);
  std::atomic<int> owners_running{kThreads};
  std::atomic<bool> go{false};  // all threads start together
  std::atomic<int> evictor_victims{0};

  std::vector<std::thread> owners;
  for (int t = 0; t < kThreads; ++t) {
    owners.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      while (!go.load()) std::this_thread::yield();
      for (int op = 0; op < kMaxOpsPerThread; ++op) {
        if (op >= kOpsPerThread &&
            (!TypeParam::kLinks || evictor_victims.load() >= kMinEvictorVictims)) {
          break;
        }
        if (op % 256 == 255) std::this_thread::yield();
        const int id = t * kNodesPerThread + static_cast<int>(rng() % kNodesPerThread);
        EvictionNode* node = &objs[id]->node;
        if (!owner_evictable[id]) {
          policy->Insert(node);
          owner_evictable[id] = true;
          ++insert_calls[id];
          continue;
        }
        switch (rng() % 4) {
          case 0:
            policy->Remove(node);
            owner_evictable[id] = false;
            break;
          case 1:
            policy->Insert(node);  // may re-link a node the evictor popped
            ++insert_calls[id];
            break;
          default:
            policy->Touch(node);
            break;
        }
      }
      owners_running.fetch_sub(1);
    });
  }

  std::vector<ObjectKey> popped_keys;
  std::thread evictor([&] {
    std::mt19937 rng(99);
    SaltUsage usage;
    usage[Symbol()] = 1000;
    usage[Symbol::Intern("a")] = 1000;
    usage[Symbol::Intern("b")] = 10;
    go.store(true);
    while (owners_running.load() > 0) {
      std::vector<ObjectKey> keys;
      uint64_t bytes = 0;
      switch (rng() % 8) {
        case 0:
          bytes = policy->PopQuotaVictims(usage, 0.8, 0.2, &keys);
          break;
        case 1:
          if (rng() % 2) {
            (void)policy->SetQuota(Symbol::Intern(kSalts[rng() % 3]), rng() % 500);
          } else {
            (void)policy->RemoveQuota(Symbol::Intern(kSalts[rng() % 3]));
          }
          break;
        case 2: {
          const PolicyStats s = policy->Stats();
          EXPECT_LE(s.linked_objects, objs.size());
          break;
        }
        default:
          bytes = policy->PopVictims(1 + rng() % 100, &keys);
          break;
      }
      EXPECT_EQ(bytes, objs.Bytes(keys));
      popped_keys.insert(popped_keys.end(), keys.begin(), keys.end());
      evictor_victims.fetch_add(static_cast<int>(keys.size()));
    }
  });
  for (std::thread& t : owners) t.join();
  evictor.join();

  // Each Insert call links a node at most once, so a node is popped at most
  // as often as it was inserted.
  std::vector<int> pops(objs.size(), 0);
  for (const ObjectKey& k : popped_keys) {
    Object* o = objs.Find(k);
    ASSERT_NE(o, nullptr);
    ++pops[o->id];
  }
  for (size_t i = 0; i < objs.size(); ++i) {
    EXPECT_LE(pops[i], insert_calls[i]) << "node " << i;
    if (!owner_evictable[i]) {
      EXPECT_FALSE(objs[i]->node.linked) << "removed node " << i << " still linked";
    }
    if (!TypeParam::kLinks) {
      EXPECT_EQ(pops[i], 0);
      EXPECT_FALSE(objs[i]->node.linked);
    }
  }
  this->ExpectStatsConsistent();

  // A final drain returns exactly the linked nodes, once each.
  std::set<int> linked;
  for (size_t i = 0; i < objs.size(); ++i) {
    if (objs[i]->node.linked) linked.insert(static_cast<int>(i));
  }
  std::vector<int> drained = this->Drain();
  std::sort(drained.begin(), drained.end());
  EXPECT_EQ(drained, std::vector<int>(linked.begin(), linked.end()));
  for (size_t i = 0; i < objs.size(); ++i) EXPECT_FALSE(objs[i]->node.linked);
  EXPECT_EQ(policy->Stats().linked_objects, 0u);
  EXPECT_EQ(policy->Stats().linked_bytes, 0u);
  if (TypeParam::kLinks) {
    EXPECT_GE(popped_keys.size(), static_cast<size_t>(kMinEvictorVictims))
        << "the evictor never raced the owners";
  }
}

}  // namespace
}  // namespace lmcache
