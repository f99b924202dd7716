// `native_plugin`: an L2 over a key-value store in a shared library that
// implements the C ABI of lmcache/l2_native_plugin.h (dlopen-ed with
// RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE: a library stays mapped after the
// adapter is gone, since a plugin may leave threads, atexit handlers or
// process-wide state behind; loading it again is then free).
//
// Fields:
//   library_path      required: the plugin (.so).
//   config            any JSON object, handed to the plugin's create() as
//                     text ("{}" when absent). LMCache's name for it,
//                     adapter_params, is accepted too.
//   num_workers       threads that run the plugin's blocking calls (4).
//   max_capacity_gb   0 (default) = unbounded; else stores evict unlocked
//                     objects (LRU) and remove them from the plugin.
//   probe_misses      true (default): a lookup that misses the index asks
//                     the plugin (exists) on a worker, and a store first
//                     checks exists, so values written by another server
//                     sharing the plugin's backend are found.
// LMCache 0.5.6's native_plugin loads a pybind class (module_path,
// class_name); those fields are refused with a pointer to library_path.
//
// Value format: the object's bytes + a 24-byte footer
//   "LMCF" | u32 version 1 | u64 object size | u64 XXH64 of the bytes
// (little endian), passed as two iovecs (no copy). A get reads into the
// caller's buffer and a footer buffer; the footer is checked (magic, size)
// and the checksum recomputed over the loaded bytes. So the plugin needs no
// side channel for checksums, and a value read by another server sharing
// the backend verifies the same way. Keys are the LMCache fs stems
// (ObjectKey::ToString); a key whose stem does not parse back to itself
// ('@' in the model name or salt) is refused (rejected_keys).
//
// The adapter's index (L2Index) keeps sizes, locks, usage per salt and LRU
// order. At start-up, when the plugin implements list, every value it holds
// is indexed (so a persistent plugin survives a restart).

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmcache/l2_adapter.h"
#include "lmcache/l2_native_plugin.h"
#include "storage/l2_common.h"
#include "storage/l2_config.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

constexpr size_t kFooterBytes = 24;
constexpr char kFooterMagic[4] = {'L', 'M', 'C', 'F'};
constexpr uint32_t kFooterVersion = 1;
constexpr size_t kMaxKeyBytes = 4096;

struct Footer {
  uint8_t bytes[kFooterBytes] = {};

  static Footer Make(uint64_t size, uint64_t xxh) {
    Footer f;
    std::memcpy(f.bytes, kFooterMagic, 4);
    std::memcpy(f.bytes + 4, &kFooterVersion, 4);
    std::memcpy(f.bytes + 8, &size, 8);
    std::memcpy(f.bytes + 16, &xxh, 8);
    return f;
  }
  bool Valid() const {
    uint32_t v;
    std::memcpy(&v, bytes + 4, 4);
    return std::memcmp(bytes, kFooterMagic, 4) == 0 && v == kFooterVersion;
  }
  uint64_t size() const {
    uint64_t s;
    std::memcpy(&s, bytes + 8, 8);
    return s;
  }
  uint64_t xxh() const {
    uint64_t h;
    std::memcpy(&h, bytes + 16, 8);
    return h;
  }
};

struct PluginOptions {
  std::string library_path;
  std::string config_json = "{}";
  int num_workers = 4;
  uint64_t capacity_bytes = 0;
  bool probe_misses = true;
};

struct PluginMeta {};  // sizes live in the index; checksums in the values

// The loaded library and one store handle.
class Plugin {
 public:
  ~Plugin() {
    if (handle_ != nullptr) api_->destroy(handle_);
    if (lib_ != nullptr) dlclose(lib_);
  }

  static Result<std::unique_ptr<Plugin>> Load(const PluginOptions& o) {
    const std::string ctx = "L2 adapter 'native_plugin': ";
    std::unique_ptr<Plugin> p(new Plugin);
    dlerror();
    p->lib_ = dlopen(o.library_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (p->lib_ == nullptr) {
      const char* e = dlerror();
      return Status::InvalidArgument(ctx + "field 'library_path': cannot load '" + o.library_path +
                                     "': " + (e ? e : "unknown error"));
    }
    dlerror();
    void* sym = dlsym(p->lib_, LMCACHE_L2_PLUGIN_ENTRY_V1);
    if (sym == nullptr) {
      return Status::InvalidArgument(ctx + "'" + o.library_path + "' does not export " + LMCACHE_L2_PLUGIN_ENTRY_V1 +
                                     " (not an lmcache L2 plugin, or built for another ABI)");
    }
    auto entry = reinterpret_cast<lmcache_l2_plugin_v1_fn>(sym);
    p->api_ = entry();
    const lmcache_l2_plugin_api_v1* a = p->api_;
    if (a == nullptr) return Status::InvalidArgument(ctx + "'" + o.library_path + "' returned no plugin table");
    if (a->abi_version != LMCACHE_L2_PLUGIN_ABI_VERSION || a->struct_size < sizeof(lmcache_l2_plugin_api_v1)) {
      return Status::InvalidArgument(ctx + "'" + o.library_path + "' implements L2 plugin ABI version " +
                                     std::to_string(a->abi_version) + " (table of " + std::to_string(a->struct_size) +
                                     " bytes); this build speaks version " +
                                     std::to_string(LMCACHE_L2_PLUGIN_ABI_VERSION) + " (" +
                                     std::to_string(sizeof(lmcache_l2_plugin_api_v1)) + " bytes)");
    }
    const char* missing = a->create == nullptr    ? "create"
                          : a->destroy == nullptr ? "destroy"
                          : a->put == nullptr     ? "put"
                          : a->get == nullptr     ? "get"
                          : a->exists == nullptr  ? "exists"
                          : a->remove == nullptr  ? "remove"
                                                  : nullptr;
    if (missing != nullptr) {
      return Status::InvalidArgument(ctx + "'" + o.library_path + "' leaves the required function '" + missing +
                                     "' of its plugin table empty");
    }
    p->serialize_ = (a->flags & LMCACHE_L2_PLUGIN_THREAD_SAFE) == 0;
    char err[512] = {};
    p->handle_ = a->create(o.config_json.c_str(), err, sizeof(err));
    if (p->handle_ == nullptr) {
      err[sizeof(err) - 1] = '\0';
      return Status::IOError(ctx + "plugin '" + (a->name ? a->name : "?") + "' refused its config: " +
                             (err[0] ? err : "no reason given"));
    }
    return p;
  }

  const char* name() const { return api_->name ? api_->name : "?"; }
  bool serialized() const { return serialize_; }
  bool can_list() const { return api_->list != nullptr; }

  int Put(const char* key, const lmcache_l2_iovec* parts, uint32_t n) {
    return Call([&] { return api_->put(handle_, key, parts, n); });
  }
  int Get(const char* key, const lmcache_l2_iovec* parts, uint32_t n, uint64_t* size) {
    return Call([&] { return api_->get(handle_, key, parts, n, size); });
  }
  int Exists(const char* key, uint64_t* size) {
    return Call([&] { return api_->exists(handle_, key, size); });
  }
  int Remove(const char* key) {
    return Call([&] { return api_->remove(handle_, key); });
  }
  int List(lmcache_l2_list_fn fn, void* ctx) {
    return Call([&] { return api_->list(handle_, fn, ctx); });
  }

 private:
  Plugin() = default;

  template <class F>
  int Call(F&& f) EXCLUDES(mu_) {
    if (!serialize_) return f();
    MutexLock lock(&mu_);
    return f();
  }

  void* lib_ = nullptr;
  const lmcache_l2_plugin_api_v1* api_ = nullptr;
  void* handle_ = nullptr;
  bool serialize_ = false;
  Mutex mu_;  // serializes calls into a plugin that is not thread-safe
};

// Store and load run one key per job step on the workers (kClaim); a lookup
// is answered from the index, and with probe_misses its misses are probed on
// the workers.
class NativePluginAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<PluginMeta>;

  NativePluginAdapter(const L2CommonConfig& common, const PluginOptions& opts, std::unique_ptr<Plugin> plugin,
                      std::unique_ptr<L2Completions> completions, std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions), Spread(opts)),
        opts_(opts),
        plugin_(std::move(plugin)),
        index_(std::move(index)) {}

  ~NativePluginAdapter() override { Close(); }  // joins the workers before the plugin is destroyed

  Status Open() {
    if (plugin_->can_list()) {
      struct Ctx {
        NativePluginAdapter* self;
        size_t n;
      } c{this, 0};
      const int rc = plugin_->List(
          [](void* p, const char* name, uint64_t size) {
            auto* c = static_cast<Ctx*>(p);
            ObjectKey key;
            if (name == nullptr || size < kFooterBytes || !ParseObjectKey(name, &key) || key.ToString() != name) {
              c->self->foreign_values_.fetch_add(1);
              return;
            }
            if (c->self->index_->Insert(key, size - kFooterBytes, PluginMeta{}, 0)) ++c->n;
          },
          &c);
      if (rc < 0) {
        return Status::IOError("L2 adapter 'native_plugin': plugin '" + std::string(plugin_->name()) +
                               "' failed to list its keys (" + std::to_string(rc) + ")");
      }
      listed_ = c.n;
    }
    return StartWorkers(opts_.num_workers);
  }

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    size_t removed = 0;
    for (const ObjectKey& key : keys) {
      const bool indexed = index_->Remove(key).has_value();
      std::string name;
      if (!KeyName(key, &name)) continue;
      const int rc = plugin_->Remove(name.c_str());
      if (rc == LMCACHE_L2_OK || (indexed && rc == LMCACHE_L2_NOT_FOUND)) {
        ++removed;
      } else if (rc < 0) {
        Bump(counters_.io_errors);
        if (indexed) ++removed;  // gone from this adapter at least
      }
    }
    Bump(counters_.deleted_objects, removed);
    return removed;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override { return index_->List(request); }
  L2Usage Usage() const override { return index_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s = BaseStatus();
    auto& d = s.details;
    d.emplace_back("library_path", opts_.library_path);
    d.emplace_back("plugin", plugin_->name());
    d.emplace_back("abi_version", std::to_string(LMCACHE_L2_PLUGIN_ABI_VERSION));
    d.emplace_back("plugin_thread_safe", plugin_->serialized() ? "false (calls serialized)" : "true");
    d.emplace_back("num_workers", std::to_string(opts_.num_workers));
    d.emplace_back("probe_misses", opts_.probe_misses ? "true" : "false");
    d.emplace_back("indexed_objects", std::to_string(index_->size()));
    d.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    d.emplace_back("listed_at_start", std::to_string(listed_));
    d.emplace_back("foreign_values", std::to_string(foreign_values_.load()));
    return s;
  }

  bool supports_corruption_injection() const override { return true; }

  Status InjectCorruption(const ObjectKey& key) override {
    std::string name;
    if (!KeyName(key, &name)) return Status::InvalidArgument("key cannot be stored by the native_plugin adapter");
    uint64_t size = 0;
    if (plugin_->Exists(name.c_str(), &size) != LMCACHE_L2_OK) return Status::NotFound(name);
    std::vector<uint8_t> value(size);
    lmcache_l2_iovec part{value.data(), size};
    if (plugin_->Get(name.c_str(), &part, 1, &size) != LMCACHE_L2_OK || size <= kFooterBytes) {
      return Status::NotFound(name);
    }
    value.resize(size);
    value[(size - kFooterBytes) / 2] ^= 0x5A;
    plugin_->Remove(name.c_str());
    part = {value.data(), size};
    if (plugin_->Put(name.c_str(), &part, 1) != LMCACHE_L2_OK) return Status::IOError("re-put " + name);
    return Status::OK();
  }

 private:
  static L2Spread Spread(const PluginOptions& o) {
    return L2Spread{L2Spread::Mode::kClaim, static_cast<size_t>(o.num_workers), 1};
  }

  // The index answers; misses are probed on the workers (with probe_misses).
  void StartLookup(const BatchPtr& b) override {
    L2Bitmap bits(b->keys.size(), false);
    const size_t hits = index_->LookupAndLock(b->keys, &bits);
    if (hits == b->keys.size() || !opts_.probe_misses) {
      FinishInline(b, bits);
    } else {
      ProbeMisses(b, bits, spread());
    }
  }

  bool ProbeKey(const ObjectKey& key, int /*worker*/) override { return Probe(key) && index_->Lock(key); }

  // The plugin key of `key`; false when the stem would not parse back.
  static bool KeyName(const ObjectKey& key, std::string* name) {
    *name = key.ToString();
    if (name->empty() || name->size() > kMaxKeyBytes || name->find('\0') != std::string::npos) return false;
    ObjectKey back;
    return ParseObjectKey(*name, &back) && back == key;
  }

  // Index a value the plugin has but the index does not (another writer).
  bool Probe(const ObjectKey& key) {
    std::string name;
    if (!KeyName(key, &name)) return false;
    uint64_t size = 0;
    const int rc = plugin_->Exists(name.c_str(), &size);
    if (rc < 0) Bump(counters_.io_errors);
    if (rc != LMCACHE_L2_OK || size < kFooterBytes) return false;
    index_->Insert(key, size - kFooterBytes, PluginMeta{}, 0);
    return true;
  }

  void FreeVictims(const std::vector<Index::Victim>& victims) {
    for (const auto& v : victims) {
      std::string name;
      if (KeyName(v.key, &name) && plugin_->Remove(name.c_str()) < 0) Bump(counters_.io_errors);
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.size);
    }
  }

  bool StoreKey(const ObjectKey& key, const ObjectView& view, int /*worker*/, std::atomic<uint64_t>* bytes) override {
    std::string name;
    if (!KeyName(key, &name)) {
      Bump(counters_.rejected_keys);
      return false;
    }
    if (index_->Contains(key) || (opts_.probe_misses && Probe(key))) {  // first writer wins
      Bump(counters_.store_skipped);
      return true;
    }
    std::vector<Index::Victim> victims;
    const Status reserved = index_->Reserve(view.size, &victims);
    FreeVictims(victims);
    if (!reserved.ok()) return false;
    Footer footer = Footer::Make(view.size, Xxh64Digest(view.data, view.size));
    const lmcache_l2_iovec parts[2] = {{view.data, view.size}, {footer.bytes, kFooterBytes}};
    const int rc = plugin_->Put(name.c_str(), parts, 2);
    if (rc != LMCACHE_L2_OK) {
      index_->Unreserve(view.size);
      if (rc == LMCACHE_L2_EXISTS && (index_->Contains(key) || Probe(key))) {  // a concurrent writer won
        Bump(counters_.store_skipped);
        return true;
      }
      Bump(counters_.io_errors);
      return false;
    }
    victims.clear();
    index_->Insert(key, view.size, PluginMeta{}, view.size, &victims);  // false: probed in meanwhile, same value
    FreeVictims(victims);
    bytes->fetch_add(view.size);
    Bump(counters_.stored_objects);
    Bump(counters_.stored_bytes, view.size);
    return true;
  }

  // The value failed verification: count it, drop it here and in the plugin.
  void Quarantine(const ObjectKey& key, const std::string& name) {
    Bump(counters_.corrupt_objects);
    index_->Remove(key);
    plugin_->Remove(name.c_str());
  }

  bool LoadKey(const ObjectKey& key, const ObjectView& view, int /*worker*/) override {
    std::string name;
    if (!KeyName(key, &name)) return false;
    auto cur = index_->Get(key);
    if (!cur && opts_.probe_misses && Probe(key)) cur = index_->Get(key);
    if (!cur) return false;
    if (cur->first != view.size) {
      Bump(counters_.size_mismatches);
      return false;
    }
    Footer footer;
    const lmcache_l2_iovec parts[2] = {{view.data, view.size}, {footer.bytes, kFooterBytes}};
    uint64_t got = 0;
    const int rc = plugin_->Get(name.c_str(), parts, 2, &got);
    if (rc == LMCACHE_L2_NOT_FOUND) {
      index_->Remove(key);  // removed behind our back
      return false;
    }
    if (rc == LMCACHE_L2_TOO_SMALL) {  // larger than the buffer: the index was stale
      Bump(counters_.size_mismatches);
      return false;
    }
    if (rc != LMCACHE_L2_OK) {
      Bump(counters_.io_errors);
      return false;
    }
    if (got != view.size + kFooterBytes) {
      // Shorter than expected: the footer, if intact, sits inside the
      // buffers at got - 24. A valid one for that length is a genuine size
      // mismatch; anything else is a truncated value.
      if (got >= kFooterBytes) {
        Footer inner;
        for (size_t i = 0; i < kFooterBytes; ++i) {
          const uint64_t at = got - kFooterBytes + i;
          inner.bytes[i] = at < view.size ? view.data[at] : footer.bytes[at - view.size];
        }
        if (inner.Valid() && inner.size() == got - kFooterBytes) {
          Bump(counters_.size_mismatches);
          return false;
        }
      }
      Quarantine(key, name);
      return false;
    }
    if (!footer.Valid() || footer.size() != view.size || Xxh64Digest(view.data, view.size) != footer.xxh()) {
      Quarantine(key, name);
      return false;
    }
    index_->Touch(key);
    return true;
  }

  const PluginOptions opts_;
  const std::unique_ptr<Plugin> plugin_;
  const std::unique_ptr<Index> index_;
  size_t listed_ = 0;  // fixed after Open
  std::atomic<uint64_t> foreign_values_{0};
};

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateNativePluginAdapter(const L2CommonConfig& common, JsonFields& f,
                                                             const L2AdapterContext& context) {
  PluginOptions o;
  if (f.Has("module_path") || f.Has("class_name")) {
    f.Fail(f.Has("module_path") ? "module_path" : "class_name",
           "names a Python connector class (LMCache's pybind plugins); this build loads a shared library with the C "
           "ABI of lmcache/l2_native_plugin.h: give library_path");
  }
  o.library_path = f.RequiredString("library_path");
  const bool has_config = f.Has("config"), has_params = f.Has("adapter_params");
  if (has_config && has_params) f.Fail("adapter_params", "give config or adapter_params, not both");
  if (const nlohmann::json* c = f.Object(has_params ? "adapter_params" : "config", false)) o.config_json = c->dump();
  o.num_workers = static_cast<int>(f.Int("num_workers", o.num_workers, 1, 256));
  o.capacity_bytes = static_cast<uint64_t>(f.Number("max_capacity_gb", 0, 0, 1e9) * static_cast<double>(1ull << 30));
  o.probe_misses = f.Bool("probe_misses", true);
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  auto plugin = Plugin::Load(o);
  if (!plugin.ok()) return plugin.status();
  return CreateBatchedAdapter<NativePluginAdapter, PluginMeta>(o.capacity_bytes, common, context, common, o,
                                                                std::move(plugin).value());
}

}  // namespace lmcache::internal
