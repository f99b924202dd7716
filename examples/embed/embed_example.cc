// Embedding lmcache's storage core in a C++ program, without Python.
//
// Walks through the L1 store's write and read paths:
//   1. create an L1Store (lazy 64 MiB arena, LRU eviction) and start the
//      background EvictionController;
//   2. reserve 8 objects of 1 MiB, fill them, publish them (FinishWrite);
//   3. read-lock them all (ReserveReadPrefix), verify every byte, unlock;
//   4. write 100 more objects of 1 MiB into the 64 MiB store: every
//      ReserveWrite succeeds because it evicts least recently used objects
//      synchronously when the arena is full.
// Exits 0 on success; prints what went wrong and exits 1 otherwise.
//
// Build: see CMakeLists.txt next to this file (in-tree with
// -DLMCACHE_BUILD_EXAMPLES=ON, or standalone against an installed lmcache).
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmcache/eviction_controller.h"
#include "lmcache/key.h"
#include "lmcache/l1_store.h"
#include "lmcache/status.h"

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kCapacity = 64 * kMiB;
constexpr uint64_t kObjectSize = 1 * kMiB;
constexpr int kFirstBatch = 8;
constexpr int kFillCount = 100;
constexpr char kModel[] = "example/model";
constexpr lmcache::WriterTag kTag = 1;

// A 32-byte digest that looks like a blake3 chunk hash, derived from a
// counter with splitmix64 (deterministic, well mixed).
std::string FakeDigest(uint64_t counter) {
  std::string digest(32, '\0');
  uint64_t x = counter * 4 + 0x5eed;
  for (int word = 0; word < 4; ++word) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(&digest[word * 8], &z, sizeof(z));
  }
  return digest;
}

bool MakeExampleKey(uint64_t counter, lmcache::ObjectKey* key) {
  return lmcache::MakeKey(FakeDigest(counter), kModel, lmcache::PackKvRank(1, 0, 1, 0),
                          /*object_group_id=*/0, /*cache_salt=*/"", key);
}

// Object contents: every 4 KiB page of object `counter` is the object's tile
// (bytes derived from the counter), with the page's first 16 bytes replaced
// by (counter, page offset). Pages are copied whole, so filling and checking
// stay fast in sanitizer builds, and a page landing in the wrong object or at
// the wrong offset is still caught.
constexpr uint64_t kPage = 4096;

std::vector<uint8_t> Tile(uint64_t counter) {
  std::vector<uint8_t> tile(kPage);
  for (uint64_t i = 0; i < kPage; ++i) tile[i] = static_cast<uint8_t>(counter * 131 + i * 7 + (i >> 5));
  return tile;
}

// Writes the expected bytes of the page at `offset` (n <= kPage bytes) to out.
void ExpectedPage(uint64_t counter, uint64_t offset, const std::vector<uint8_t>& tile, uint64_t n,
                  uint8_t* out) {
  std::memcpy(out, tile.data(), n);
  const uint64_t stamp[2] = {counter, offset};
  std::memcpy(out, stamp, n < sizeof(stamp) ? n : sizeof(stamp));
}

void Fill(uint64_t counter, const lmcache::ObjectView& view) {
  const std::vector<uint8_t> tile = Tile(counter);
  for (uint64_t off = 0; off < view.size; off += kPage) {
    const uint64_t n = view.size - off < kPage ? view.size - off : kPage;
    ExpectedPage(counter, off, tile, n, view.data + off);
  }
}

// Returns the offset of the first page that differs, or view.size when all match.
uint64_t FirstMismatch(uint64_t counter, const lmcache::ObjectView& view) {
  const std::vector<uint8_t> tile = Tile(counter);
  std::vector<uint8_t> expected(kPage);
  for (uint64_t off = 0; off < view.size; off += kPage) {
    const uint64_t n = view.size - off < kPage ? view.size - off : kPage;
    ExpectedPage(counter, off, tile, n, expected.data());
    if (std::memcmp(view.data + off, expected.data(), n) != 0) return off;
  }
  return view.size;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "embed_example: FAILED: %s\n", what.c_str());
  return 1;
}

void PrintStats(const char* title, const lmcache::L1Stats& s) {
  std::printf("%s\n", title);
  std::printf("  capacity        %" PRIu64 " MiB (usable %" PRIu64 " MiB, prefaulted %" PRIu64 " MiB)\n",
              s.capacity_bytes / kMiB, s.usable_bytes / kMiB, s.prefaulted_bytes / kMiB);
  std::printf("  used            %" PRIu64 " MiB in %" PRIu64 " resident objects\n", s.used_bytes / kMiB,
              s.resident_objects);
  std::printf("  staging         %" PRIu64 " objects, read-locked %" PRIu64 "\n", s.staging_objects,
              s.read_locked_objects);
  std::printf("  evicted         %" PRIu64 " objects (%" PRIu64 " MiB)\n", s.evicted_objects,
              s.evicted_bytes / kMiB);
  std::printf("  alloc failures  %" PRIu64 ", high water %" PRIu64 " MiB\n", s.allocation_failures,
              s.high_water_mark / kMiB);
}

// Reserve, fill and publish one object per counter in [first, first + count),
// all in one ReserveWrite/FinishWrite pair.
int WriteObjects(lmcache::L1Store* store, uint64_t first, int count) {
  std::vector<lmcache::ObjectKey> keys(count);
  for (int i = 0; i < count; ++i) {
    if (!MakeExampleKey(first + i, &keys[i])) return Fail("MakeKey rejected a 32-byte digest");
  }
  std::vector<uint64_t> sizes(count, kObjectSize);
  std::vector<lmcache::ReserveOutcome> outcomes;
  std::vector<lmcache::ObjectView> views;
  lmcache::Status st = store->ReserveWrite(keys, sizes, kTag, &outcomes, &views);
  if (!st.ok()) return Fail("ReserveWrite of object " + std::to_string(first) + ": " + st.ToString());
  if (outcomes.size() != keys.size() || views.size() != keys.size()) {
    return Fail("ReserveWrite returned " + std::to_string(outcomes.size()) + " outcomes and " +
                std::to_string(views.size()) + " views for " + std::to_string(keys.size()) + " keys");
  }
  for (int i = 0; i < count; ++i) {
    if (outcomes[i] != lmcache::ReserveOutcome::kReserved) {
      return Fail("object " + std::to_string(first + i) + " was unexpectedly resident already");
    }
    if (views[i].data == nullptr || views[i].size != kObjectSize) {
      return Fail("ReserveWrite gave a bad view for object " + std::to_string(first + i));
    }
    Fill(first + i, views[i]);
  }
  st = store->FinishWrite(keys, kTag);
  if (!st.ok()) return Fail("FinishWrite of object " + std::to_string(first) + ": " + st.ToString());
  return 0;
}

// Read-lock objects [first, first + count), verify their bytes, unlock.
int VerifyObjects(lmcache::L1Store* store, uint64_t first, int count) {
  std::vector<lmcache::ObjectKey> keys(count);
  for (int i = 0; i < count; ++i) {
    if (!MakeExampleKey(first + i, &keys[i])) return Fail("MakeKey rejected a 32-byte digest");
  }
  std::vector<lmcache::ObjectView> views;
  const size_t hits = store->ReserveReadPrefix(keys, /*readers=*/1, &views);
  if (hits != keys.size()) {
    store->FinishRead(std::span<const lmcache::ObjectKey>(keys.data(), hits));
    return Fail("ReserveReadPrefix found " + std::to_string(hits) + " of " + std::to_string(keys.size()) +
                " objects starting at " + std::to_string(first));
  }
  int rc = 0;
  for (int i = 0; i < count && rc == 0; ++i) {
    if (views.size() <= static_cast<size_t>(i) || views[i].data == nullptr || views[i].size != kObjectSize) {
      rc = Fail("ReserveReadPrefix gave a bad view for object " + std::to_string(first + i));
      break;
    }
    const uint64_t bad = FirstMismatch(first + i, views[i]);
    if (bad != views[i].size) {
      rc = Fail("object " + std::to_string(first + i) + " differs in the page at byte " + std::to_string(bad));
    }
  }
  const size_t released = store->FinishRead(keys);
  if (rc == 0 && released != keys.size()) {
    rc = Fail("FinishRead released " + std::to_string(released) + " of " + std::to_string(keys.size()) +
              " locks");
  }
  return rc;
}

int Run() {
  // ---- 1. store and background eviction ----
  lmcache::L1Options options;
  options.arena.capacity_bytes = kCapacity;
  options.arena.lazy = true;
  options.eviction_policy = "LRU";
  options.prefault_window_bytes = 16 * kMiB;
  auto store_or = lmcache::L1Store::Create(options);
  if (!store_or.ok()) return Fail("L1Store::Create: " + store_or.status().ToString());
  std::unique_ptr<lmcache::L1Store> store = std::move(store_or).value();

  lmcache::EvictionControllerOptions controller_options;
  controller_options.interval_ns = 100'000'000;  // 100 ms
  auto controller_or = lmcache::EvictionController::Create(store.get(), controller_options);
  if (!controller_or.ok()) return Fail("EvictionController::Create: " + controller_or.status().ToString());
  // Declared after the store, so it is destroyed (and stopped) first.
  std::unique_ptr<lmcache::EvictionController> controller = std::move(controller_or).value();
  lmcache::Status st = controller->Start();
  if (!st.ok()) return Fail("EvictionController::Start: " + st.ToString());

  // ---- 2 + 3. write 8 objects, read them back ----
  if (int rc = WriteObjects(store.get(), 0, kFirstBatch); rc != 0) return rc;
  if (int rc = VerifyObjects(store.get(), 0, kFirstBatch); rc != 0) return rc;
  lmcache::L1Stats stats = store->Stats();
  PrintStats("after writing and verifying 8 objects of 1 MiB:", stats);
  if (stats.resident_objects != kFirstBatch) {
    return Fail("expected 8 resident objects, found " + std::to_string(stats.resident_objects));
  }
  if (stats.read_locked_objects != 0) return Fail("read locks left after FinishRead");

  // ---- 4. overfill: 100 MiB through a 64 MiB store ----
  for (int i = 0; i < kFillCount; ++i) {
    if (int rc = WriteObjects(store.get(), kFirstBatch + i, 1); rc != 0) return rc;
  }
  stats = store->Stats();
  PrintStats("after writing 100 more objects of 1 MiB into 64 MiB:", stats);
  if (stats.evicted_objects == 0) return Fail("no object was evicted although 108 MiB went into 64 MiB");
  if (stats.used_bytes > stats.capacity_bytes) return Fail("used bytes exceed the capacity");
  // LRU: the newest object is still there and intact, the oldest is gone.
  if (int rc = VerifyObjects(store.get(), kFirstBatch + kFillCount - 1, 1); rc != 0) return rc;
  lmcache::ObjectKey oldest;
  if (!MakeExampleKey(0, &oldest)) return Fail("MakeKey rejected a 32-byte digest");
  if (store->Contains(oldest)) return Fail("the least recently used object survived the overfill");

  controller->Stop();
  const lmcache::EvictionControllerStats cs = controller->Stats();
  std::printf("eviction controller: %" PRIu64 " ticks, %" PRIu64 " background evictions, %" PRIu64
              " failed ticks\n",
              cs.ticks, cs.evictions_triggered, cs.failed_ticks);
  std::printf("embed_example: OK\n");
  return 0;
}

}  // namespace

int main() { return Run(); }
