// SlotAdapter: the engine behind the `raw_block` and `dax` L2 adapters
// (src-only). Objects live in fixed-size slots of one linear medium (a block
// device or preallocated file read with pread/pwrite, or an mmap-ed DAX
// device or file); the medium only moves bytes, the engine does the rest:
// index, locks, eviction, checksums, persistence of the catalogue.
//
// Layout of the medium (all offsets from its start, little endian):
//
//   [superblock][record 0 .. record N-1][pad to data_align][slot 0 .. slot N-1]
//
//  * superblock (superblock_bytes): magic "LMCSLOT1", version, kind (1
//    raw_block, 2 dax), slot_bytes, record_bytes, N, the two region offsets,
//    a random format id and an XXH64 of all of it;
//  * record s (record_bytes) describes slot s: magic "LMCREC01", version,
//    key length, format id, object size, XXH64 of the object's bytes, a
//    store sequence number, an XXH64 of the record itself, then the key
//    (binary: hash, kv_rank, group id, model name, cache salt). All zeros
//    = empty slot;
//  * slot s (slot_bytes): the object's bytes, at most one object per slot.
//
// Store: take a free slot, write the data, then the record. Free (delete,
// eviction, corrupt object): clear the record, then return the slot to the
// free list, so no record ever names a slot that another object is being
// written into. A crash between the two writes leaves either an empty record
// or a record whose checksum does not match the slot's bytes; both are
// caught (records by their own checksum at start-up, data by the object
// checksum verified on every load), so wrong bytes are never served.
// Records of an older format (another format id) are ignored.
//
// Start-up reads the superblock: absent, damaged or `load_existing` false ->
// format (new format id; old records become invisible). Otherwise the
// geometry must match the spec (InvalidArgument naming the fields if not),
// and every valid record is indexed, oldest sequence first (LRU order);
// duplicates of a key keep the newest record.
//
// Capacity: the index (L2Index) counts slot_bytes per object against
// N x slot_bytes, so Reserve evicts exactly enough unlocked objects (LRU) to
// free a slot. Usage() reports the objects' real bytes (kept beside the
// index) and capacity N x slot_bytes. Objects larger than slot_bytes are
// refused (bit 0; counters: store_failures, details.oversize_refused).
//
// Readers pin their slot (a per-slot counter) while copying; a slot is
// reused only once its pins are gone, so a load never reads bytes of a
// newer object written over a concurrently evicted one.
//
// Tasks, workers and Close are BatchedL2Adapter's (per-key store and load
// jobs; lookups answered inline from the index; OnClose flushes the medium).
//
// Thread safety: SlotAdapter is thread-safe (L2Adapter). A SlotMedium is
// used concurrently: WriteData/ReadData by workers (each with its own
// worker index), the rest from any thread; implementations must be safe for
// that.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_common.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxhash64.h"

namespace lmcache::internal {

// ---- persistent format ----

inline constexpr char kSlotSuperMagic[8] = {'L', 'M', 'C', 'S', 'L', 'O', 'T', '1'};
inline constexpr char kSlotRecordMagic[8] = {'L', 'M', 'C', 'R', 'E', 'C', '0', '1'};
inline constexpr uint32_t kSlotFormatVersion = 1;
inline constexpr size_t kSlotSuperUsed = 88;     // bytes of the superblock that carry fields
inline constexpr size_t kSlotRecordHeader = 56;  // record bytes before the key
inline constexpr uint32_t kSlotKindRawBlock = 1;
inline constexpr uint32_t kSlotKindDax = 2;

inline void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Binary key encoding (exact round trip for every key, unlike the fs stem).
inline void EncodeSlotKey(const ObjectKey& k, std::string* out) {
  out->clear();
  out->push_back(static_cast<char>(k.hash_len));
  out->append(reinterpret_cast<const char*>(k.chunk_hash.data()), k.hash_len);
  uint8_t b[8];
  PutU32(b, static_cast<uint32_t>(k.kv_rank));
  PutU32(b + 4, static_cast<uint32_t>(k.object_group_id));
  out->append(reinterpret_cast<const char*>(b), 8);
  for (const std::string* s : {&k.model_name.str(), &k.cache_salt.str()}) {
    const uint16_t n = static_cast<uint16_t>(std::min<size_t>(s->size(), 0xFFFF));
    out->push_back(static_cast<char>(n & 0xFF));
    out->push_back(static_cast<char>(n >> 8));
    out->append(s->data(), n);
  }
}

inline bool DecodeSlotKey(std::string_view in, ObjectKey* k) {
  if (in.empty()) return false;
  const size_t hl = static_cast<uint8_t>(in[0]);
  if (hl > kMaxChunkHashBytes || in.size() < 1 + hl + 8) return false;
  *k = ObjectKey{};
  k->hash_len = static_cast<uint8_t>(hl);
  std::memcpy(k->chunk_hash.data(), in.data() + 1, hl);
  const auto* p = reinterpret_cast<const uint8_t*>(in.data() + 1 + hl);
  k->kv_rank = static_cast<int32_t>(GetU32(p));
  k->object_group_id = static_cast<int32_t>(GetU32(p + 4));
  size_t pos = 1 + hl + 8;
  std::string_view parts[2];
  for (auto& part : parts) {
    if (in.size() < pos + 2) return false;
    const size_t n = static_cast<uint8_t>(in[pos]) | static_cast<size_t>(static_cast<uint8_t>(in[pos + 1])) << 8;
    pos += 2;
    if (in.size() < pos + n) return false;
    part = in.substr(pos, n);
    pos += n;
  }
  if (pos != in.size()) return false;
  k->model_name = Symbol::Intern(parts[0]);
  k->cache_salt = Symbol::Intern(parts[1]);
  return true;
}

struct SlotGeometry {
  uint64_t superblock_bytes = 4096;
  uint64_t record_bytes = 512;
  uint64_t slot_bytes = 0;
  uint64_t num_slots = 0;
  uint64_t records_offset = 0;
  uint64_t data_offset = 0;

  uint64_t RecordOffset(uint64_t slot) const { return records_offset + slot * record_bytes; }
  uint64_t SlotOffset(uint64_t slot) const { return data_offset + slot * slot_bytes; }
  uint64_t end() const { return data_offset + num_slots * slot_bytes; }

  // The most slots that fit in `usable` bytes; false if not even one.
  // REQUIRES: data_align is a power of two.
  static bool Compute(uint64_t usable, uint64_t superblock_bytes, uint64_t record_bytes, uint64_t slot_bytes,
                      uint64_t data_align, SlotGeometry* g) {
    g->superblock_bytes = superblock_bytes;
    g->record_bytes = record_bytes;
    g->slot_bytes = slot_bytes;
    g->records_offset = superblock_bytes;
    auto data_at = [&](uint64_t n) {
      return (g->records_offset + n * record_bytes + data_align - 1) & ~(data_align - 1);
    };
    if (usable <= superblock_bytes + record_bytes + slot_bytes) return false;
    uint64_t n = (usable - superblock_bytes) / (record_bytes + slot_bytes);
    while (n > 0 && data_at(n) + n * slot_bytes > usable) --n;
    if (n == 0 || n > 0xFFFFFFFFull) return false;
    g->num_slots = n;
    g->data_offset = data_at(n);
    return true;
  }
};

// ---- the medium ----

class SlotMedium {
 public:
  virtual ~SlotMedium() = default;
  // Prepare `num_workers` workers' private resources (bounce buffers).
  virtual Status Init(const SlotGeometry& g, int num_workers) = 0;
  // Hot path, on worker `worker` (0..num_workers-1): write / read `n` bytes
  // at `off` (the start of a slot, so aligned) and return their XXH64.
  virtual bool WriteData(int worker, uint64_t off, const uint8_t* src, uint64_t n, uint64_t* xxh) = 0;
  virtual bool ReadData(int worker, uint64_t off, uint8_t* dst, uint64_t n, uint64_t* xxh) = 0;
  // Any thread. Offsets and lengths are multiples of the record size (a
  // multiple of the medium's alignment); `src`/`dst` need no alignment.
  virtual bool WriteRange(uint64_t off, const uint8_t* src, uint64_t n) = 0;
  virtual bool ReadRange(uint64_t off, uint8_t* dst, uint64_t n) = 0;
  // XOR one byte at `off` (the corruption test seam).
  virtual Status FlipByte(uint64_t off) = 0;
  // Make everything written durable as far as the medium's policy says (Close).
  virtual void Flush() = 0;
  virtual void Details(std::vector<std::pair<std::string, std::string>>* d) const = 0;
  // Empty when healthy.
  virtual std::string Problem() const { return {}; }
};

struct SlotOptions {
  std::string type;  // "raw_block" / "dax"
  uint32_t kind = 0;
  int num_workers = 4;
  bool load_existing = true;
  std::string device_path;  // for messages
};

struct SlotMeta {
  uint32_t slot = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
  uint64_t seq = 0;
};

class SlotAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<SlotMeta>;

  static Result<std::unique_ptr<L2Adapter>> Create(const L2CommonConfig& common, const SlotOptions& opts,
                                                   const SlotGeometry& geo, std::unique_ptr<SlotMedium> medium,
                                                   const L2AdapterContext& context) {
    return CreateBatchedAdapter<SlotAdapter, SlotMeta>(geo.num_slots * geo.slot_bytes, common, context, common, opts,
                                                       geo, std::move(medium));
  }

  SlotAdapter(const L2CommonConfig& common, const SlotOptions& opts, const SlotGeometry& geo,
              std::unique_ptr<SlotMedium> medium, std::unique_ptr<L2Completions> completions,
              std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions),
                         L2Spread{L2Spread::Mode::kClaim, static_cast<size_t>(opts.num_workers), 1}),
        opts_(opts),
        geo_(geo),
        medium_(std::move(medium)),
        index_(std::move(index)),
        pins_(new std::atomic<uint32_t>[geo.num_slots]),
        zero_record_(geo.record_bytes, 0) {
    for (uint64_t i = 0; i < geo.num_slots; ++i) pins_[i].store(0);
  }

  ~SlotAdapter() override { Close(); }

  template <class A, class Meta, class... Args>
  friend Result<std::unique_ptr<L2Adapter>> CreateBatchedAdapter(uint64_t, const L2CommonConfig&,
                                                                 const L2AdapterContext&, Args&&...);  // Open

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    size_t removed = 0;
    for (const ObjectKey& key : keys) {
      auto v = index_->Remove(key);
      if (!v) continue;
      Forget(v->key, v->payload.size);
      FreeSlot(v->payload.slot);
      ++removed;
    }
    Bump(counters_.deleted_objects, removed);
    return removed;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override {
    auto page = index_->List(request);
    if (!page.ok()) return page;
    for (L2KeyInfo& k : page.value().keys) {  // the index counts slots; report the object's bytes
      if (auto cur = index_->Get(k.key)) k.size = cur->second.size;
    }
    return page;
  }

  L2Usage Usage() const override {
    L2Usage u;
    u.capacity_bytes = geo_.num_slots * geo_.slot_bytes;
    u.objects = index_->size();
    MutexLock lock(&usage_mu_);
    u.total_bytes = static_cast<uint64_t>(std::max<int64_t>(0, real_total_));
    for (const auto& [salt, bytes] : real_by_salt_) {
      if (bytes > 0) u.bytes_by_salt[salt] = static_cast<uint64_t>(bytes);
    }
    return u;
  }

  L2Status ReportStatus() const override {
    L2Status s = BaseStatus();
    if (std::string p = medium_->Problem(); s.healthy && !p.empty()) {
      s.healthy = false;
      s.message = p;
    }
    auto& d = s.details;
    medium_->Details(&d);
    d.emplace_back("num_workers", std::to_string(opts_.num_workers));
    d.emplace_back("slot_bytes", std::to_string(geo_.slot_bytes));
    d.emplace_back("record_bytes", std::to_string(geo_.record_bytes));
    d.emplace_back("num_slots", std::to_string(geo_.num_slots));
    d.emplace_back("data_offset", std::to_string(geo_.data_offset));
    d.emplace_back("free_slots", std::to_string(FreeSlots()));
    d.emplace_back("indexed_objects", std::to_string(index_->size()));
    d.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    d.emplace_back("recovered_objects", std::to_string(recovered_));
    d.emplace_back("dropped_records", std::to_string(dropped_records_));
    d.emplace_back("formatted", formatted_ ? "true" : "false");
    d.emplace_back("oversize_refused", std::to_string(oversize_.load()));
    return s;
  }

  bool supports_corruption_injection() const override { return true; }

  Status InjectCorruption(const ObjectKey& key) override {
    auto cur = index_->Get(key);
    if (!cur) return Status::NotFound("key is not stored in this " + opts_.type + " L2");
    return medium_->FlipByte(geo_.SlotOffset(cur->second.slot) + cur->second.size / 2);
  }

 private:
  // Answered from the index at once (no I/O): the medium has one owner.
  void StartLookup(const BatchPtr& b) override {
    L2Bitmap bits(b->keys.size(), false);
    index_->LookupAndLock(b->keys, &bits);
    FinishInline(b, bits);
  }

  void OnClose() override { medium_->Flush(); }

  // ---- real-bytes accounting (the index counts whole slots) ----

  void Remember(const ObjectKey& key, uint64_t size) EXCLUDES(usage_mu_) {
    MutexLock lock(&usage_mu_);
    real_total_ += static_cast<int64_t>(size);
    real_by_salt_[key.cache_salt.str()] += static_cast<int64_t>(size);
  }
  void Forget(const ObjectKey& key, uint64_t size) EXCLUDES(usage_mu_) {
    MutexLock lock(&usage_mu_);
    real_total_ -= static_cast<int64_t>(size);
    auto it = real_by_salt_.find(key.cache_salt.str());
    if (it != real_by_salt_.end() && (it->second -= static_cast<int64_t>(size)) == 0) real_by_salt_.erase(it);
  }

  // ---- slots ----

  size_t FreeSlots() const EXCLUDES(free_mu_) {
    MutexLock lock(&free_mu_);
    return free_.size();
  }

  void PushFree(uint32_t slot) EXCLUDES(free_mu_) {
    {
      MutexLock lock(&free_mu_);
      free_.push_back(slot);
    }
    free_cv_.NotifyOne();
  }

  // A free slot. The index reservation guarantees one exists or is about to
  // be returned by a thread that is freeing it (waiting for readers).
  std::optional<uint32_t> PopFree() EXCLUDES(free_mu_) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    MutexLock lock(&free_mu_);
    while (free_.empty()) {
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      free_cv_.WaitFor(&free_mu_, std::chrono::milliseconds(100));
    }
    const uint32_t s = free_.back();
    free_.pop_back();
    return s;
  }

  bool ClearRecord(uint32_t slot) { return medium_->WriteRange(geo_.RecordOffset(slot), zero_record_.data(), geo_.record_bytes); }

  // The slot left the index: wait for its readers, clear its record, reuse it.
  void FreeSlot(uint32_t slot) {
    while (pins_[slot].load() != 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (!ClearRecord(slot)) Bump(counters_.io_errors);
    PushFree(slot);
  }

  void ReleaseVictims(const std::vector<Index::Victim>& victims) {
    for (const auto& v : victims) {
      Forget(v.key, v.payload.size);
      FreeSlot(v.payload.slot);
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.payload.size);
    }
  }

  std::vector<uint8_t> MakeRecord(const std::string& key_bytes, const SlotMeta& m) const {
    std::vector<uint8_t> r(geo_.record_bytes, 0);
    std::memcpy(r.data(), kSlotRecordMagic, 8);
    PutU32(r.data() + 8, kSlotFormatVersion);
    PutU32(r.data() + 12, static_cast<uint32_t>(key_bytes.size()));
    PutU64(r.data() + 16, format_id_);
    PutU64(r.data() + 24, m.size);
    PutU64(r.data() + 32, m.checksum);
    PutU64(r.data() + 40, m.seq);
    std::memcpy(r.data() + kSlotRecordHeader, key_bytes.data(), key_bytes.size());
    PutU64(r.data() + 48, RecordChecksum(r.data(), key_bytes.size()));
    return r;
  }

  static uint64_t RecordChecksum(const uint8_t* r, size_t key_len) {
    Xxh64 h;
    h.Update(r, 48);
    h.Update(r + kSlotRecordHeader, key_len);
    return h.Digest();
  }

  // ---- store / load ----

  bool StoreKey(const ObjectKey& key, const ObjectView& view, int worker, std::atomic<uint64_t>* bytes) override {
    if (view.size > geo_.slot_bytes) {
      oversize_.fetch_add(1);
      return false;
    }
    std::string kb;
    EncodeSlotKey(key, &kb);
    if (kb.size() > geo_.record_bytes - kSlotRecordHeader || key.model_name.str().size() > 0xFFFF ||
        key.cache_salt.str().size() > 0xFFFF) {
      Bump(counters_.rejected_keys);
      return false;
    }
    if (index_->Contains(key)) {  // first writer wins
      Bump(counters_.store_skipped);
      return true;
    }
    std::vector<Index::Victim> victims;
    const Status reserved = index_->Reserve(geo_.slot_bytes, &victims);
    ReleaseVictims(victims);
    if (!reserved.ok()) return false;
    const std::optional<uint32_t> slot = PopFree();
    if (!slot) {
      index_->Unreserve(geo_.slot_bytes);
      return false;
    }
    SlotMeta m;
    m.slot = *slot;
    m.size = view.size;
    if (!medium_->WriteData(worker, geo_.SlotOffset(*slot), view.data, view.size, &m.checksum)) {
      Bump(counters_.io_errors);
      PushFree(*slot);  // its record is still the empty one
      index_->Unreserve(geo_.slot_bytes);
      return false;
    }
    m.seq = next_seq_.fetch_add(1);
    const std::vector<uint8_t> rec = MakeRecord(kb, m);
    if (!medium_->WriteRange(geo_.RecordOffset(*slot), rec.data(), rec.size())) {
      Bump(counters_.io_errors);
      FreeSlot(*slot);
      index_->Unreserve(geo_.slot_bytes);
      return false;
    }
    victims.clear();
    if (!index_->Insert(key, geo_.slot_bytes, m, geo_.slot_bytes, &victims)) {
      FreeSlot(*slot);  // a concurrent store of the same key won
      Bump(counters_.store_skipped);
      return true;
    }
    Remember(key, view.size);
    ReleaseVictims(victims);
    bytes->fetch_add(view.size);
    Bump(counters_.stored_objects);
    Bump(counters_.stored_bytes, view.size);
    return true;
  }

  bool LoadKey(const ObjectKey& key, const ObjectView& view, int worker) override {
    auto cur = index_->Get(key);
    if (!cur) return false;
    const SlotMeta m = cur->second;
    if (m.size != view.size) {
      Bump(counters_.size_mismatches);
      return false;
    }
    std::atomic<uint32_t>& pin = pins_[m.slot];
    pin.fetch_add(1);
    auto again = index_->Get(key);  // still the same object, now that its slot is pinned?
    if (!again || again->second.seq != m.seq) {
      pin.fetch_sub(1);
      return false;
    }
    uint64_t xxh = 0;
    const bool read = medium_->ReadData(worker, geo_.SlotOffset(m.slot), view.data, view.size, &xxh);
    pin.fetch_sub(1);
    if (!read) {
      Bump(counters_.io_errors);
      return false;
    }
    if (xxh != m.checksum) {
      Bump(counters_.corrupt_objects);
      auto now = index_->Get(key);
      if (now && now->second.seq == m.seq) {
        if (auto v = index_->Remove(key)) {
          Forget(v->key, v->payload.size);
          FreeSlot(v->payload.slot);
        }
      }
      return false;
    }
    index_->Touch(key);
    return true;
  }

  // ---- start-up ----

  Status Open() {
    std::vector<uint8_t> sb(geo_.superblock_bytes);
    if (!medium_->ReadRange(0, sb.data(), sb.size())) {
      return Status::IOError("L2 adapter '" + opts_.type + "': cannot read the superblock of '" + opts_.device_path + "'");
    }
    const bool valid = std::memcmp(sb.data(), kSlotSuperMagic, 8) == 0 && GetU32(sb.data() + 8) == kSlotFormatVersion &&
                       GetU64(sb.data() + kSlotSuperUsed - 8) == Xxh64Digest(sb.data(), kSlotSuperUsed - 8);
    if (valid && opts_.load_existing) {
      const uint32_t kind = GetU32(sb.data() + 12);
      const uint64_t slot_bytes = GetU64(sb.data() + 16), record_bytes = GetU64(sb.data() + 24),
                     num_slots = GetU64(sb.data() + 32), records_offset = GetU64(sb.data() + 40),
                     data_offset = GetU64(sb.data() + 48);
      if (kind != opts_.kind || slot_bytes != geo_.slot_bytes || record_bytes != geo_.record_bytes ||
          num_slots != geo_.num_slots || records_offset != geo_.records_offset || data_offset != geo_.data_offset) {
        return Status::InvalidArgument(
            "L2 adapter '" + opts_.type + "': '" + opts_.device_path + "' holds a " +
            (kind == kSlotKindDax ? "dax" : kind == kSlotKindRawBlock ? "raw_block" : "foreign") +
            " cache with slot_bytes " + std::to_string(slot_bytes) + ", record bytes " + std::to_string(record_bytes) +
            " and " + std::to_string(num_slots) + " slots, the spec gives slot_bytes " +
            std::to_string(geo_.slot_bytes) + ", record bytes " + std::to_string(geo_.record_bytes) + " and " +
            std::to_string(geo_.num_slots) + " slots (use the same fields, or set load_checkpoint_on_init false to "
            "reformat it)");
      }
      format_id_ = GetU64(sb.data() + 56);
      LMCACHE_RETURN_IF_ERROR(LoadRecords());
    } else {
      LMCACHE_RETURN_IF_ERROR(Format());
    }
    LMCACHE_RETURN_IF_ERROR(medium_->Init(geo_, opts_.num_workers));
    return StartWorkers(opts_.num_workers);
  }

  Status Format() {
    std::random_device rd;
    format_id_ = (static_cast<uint64_t>(rd()) << 32 | rd()) ^
                 static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    if (format_id_ == 0) format_id_ = 1;
    std::vector<uint8_t> sb(geo_.superblock_bytes, 0);
    std::memcpy(sb.data(), kSlotSuperMagic, 8);
    PutU32(sb.data() + 8, kSlotFormatVersion);
    PutU32(sb.data() + 12, opts_.kind);
    PutU64(sb.data() + 16, geo_.slot_bytes);
    PutU64(sb.data() + 24, geo_.record_bytes);
    PutU64(sb.data() + 32, geo_.num_slots);
    PutU64(sb.data() + 40, geo_.records_offset);
    PutU64(sb.data() + 48, geo_.data_offset);
    PutU64(sb.data() + 56, format_id_);
    PutU64(sb.data() + 64, static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
    PutU64(sb.data() + kSlotSuperUsed - 8, Xxh64Digest(sb.data(), kSlotSuperUsed - 8));
    if (!medium_->WriteRange(0, sb.data(), sb.size())) {
      return Status::IOError("L2 adapter '" + opts_.type + "': cannot write the superblock of '" + opts_.device_path + "'");
    }
    formatted_ = true;
    MutexLock lock(&free_mu_);
    for (uint64_t s = geo_.num_slots; s-- > 0;) free_.push_back(static_cast<uint32_t>(s));
    return Status::OK();
  }

  Status LoadRecords() {
    struct Found {
      uint64_t seq;
      uint32_t slot;
      ObjectKey key;
      uint64_t size;
      uint64_t checksum;
    };
    std::vector<Found> found;
    std::vector<uint8_t> used(geo_.num_slots, 0);
    const uint64_t per_chunk = std::max<uint64_t>(1, (4ull << 20) / geo_.record_bytes);
    std::vector<uint8_t> buf(per_chunk * geo_.record_bytes);
    uint64_t max_seq = 0;
    for (uint64_t first = 0; first < geo_.num_slots; first += per_chunk) {
      const uint64_t n = std::min(per_chunk, geo_.num_slots - first);
      if (!medium_->ReadRange(geo_.RecordOffset(first), buf.data(), n * geo_.record_bytes)) {
        return Status::IOError("L2 adapter '" + opts_.type + "': cannot read the slot records of '" +
                               opts_.device_path + "'");
      }
      for (uint64_t i = 0; i < n; ++i) {
        const uint8_t* r = buf.data() + i * geo_.record_bytes;
        if (std::memcmp(r, kSlotRecordMagic, 8) != 0) continue;
        const uint32_t key_len = GetU32(r + 12);
        ObjectKey key;
        if (GetU32(r + 8) != kSlotFormatVersion || GetU64(r + 16) != format_id_ ||
            key_len > geo_.record_bytes - kSlotRecordHeader || GetU64(r + 48) != RecordChecksum(r, key_len) ||
            GetU64(r + 24) > geo_.slot_bytes ||
            !DecodeSlotKey(std::string_view(reinterpret_cast<const char*>(r + kSlotRecordHeader), key_len), &key)) {
          if (GetU64(r + 16) == format_id_) ++dropped_records_;  // torn or damaged record of this format
          continue;
        }
        found.push_back(Found{GetU64(r + 40), static_cast<uint32_t>(first + i), key, GetU64(r + 24), GetU64(r + 32)});
        max_seq = std::max(max_seq, GetU64(r + 40));
      }
    }
    next_seq_.store(max_seq + 1);
    // Newest first, so a duplicate key keeps its newest record; then insert
    // oldest first so LRU order follows store order.
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.seq > b.seq; });
    std::vector<const Found*> live;
    std::vector<uint32_t> stale;
    {
      std::unordered_map<ObjectKey, bool, ObjectKeyHash> seen;
      for (const Found& f : found) {
        if (seen.emplace(f.key, true).second) {
          live.push_back(&f);
        } else {
          stale.push_back(f.slot);
        }
      }
    }
    for (auto it = live.rbegin(); it != live.rend(); ++it) {
      const Found& f = **it;
      index_->Insert(f.key, geo_.slot_bytes, SlotMeta{f.slot, f.size, f.checksum, f.seq}, 0);
      Remember(f.key, f.size);
      used[f.slot] = 1;
    }
    recovered_ = live.size();
    for (uint32_t s : stale) {
      ClearRecord(s);
      ++dropped_records_;
    }
    MutexLock lock(&free_mu_);
    for (uint64_t s = geo_.num_slots; s-- > 0;) {
      if (!used[s]) free_.push_back(static_cast<uint32_t>(s));
    }
    return Status::OK();
  }

  const SlotOptions opts_;
  const SlotGeometry geo_;
  const std::unique_ptr<SlotMedium> medium_;
  const std::unique_ptr<Index> index_;
  std::unique_ptr<std::atomic<uint32_t>[]> pins_;  // readers per slot
  const std::vector<uint8_t> zero_record_;
  uint64_t format_id_ = 0;  // fixed after Open
  std::atomic<uint64_t> next_seq_{1};
  size_t recovered_ = 0;        // fixed after Open
  size_t dropped_records_ = 0;  // fixed after Open
  bool formatted_ = false;      // fixed after Open

  mutable Mutex free_mu_;
  CondVar free_cv_;
  std::vector<uint32_t> free_ GUARDED_BY(free_mu_);

  mutable Mutex usage_mu_;
  int64_t real_total_ GUARDED_BY(usage_mu_) = 0;
  std::map<std::string, int64_t> real_by_salt_ GUARDED_BY(usage_mu_);

  std::atomic<uint64_t> oversize_{0};
};

}  // namespace lmcache::internal
