// CreateL2Adapter: the JSON `type` -> adapter factory, and the field reader
// shared by every adapter's config. Built-in types come from a constant
// table; types registered at run time (RegisterL2AdapterType: adapters
// implemented in Python, embedders' own) are consulted after it.

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lmcache/l2_adapter.h"
#include "storage/l2_config.h"
#include "util/mutex.h"

namespace lmcache {
namespace internal {
namespace {

using Json = nlohmann::json;
using Factory = Result<std::unique_ptr<L2Adapter>> (*)(const L2CommonConfig&, JsonFields&,
                                                        const L2AdapterContext&);

struct Registered {
  const char* name;
  Factory factory;
};

// Sorted by name.
constexpr Registered kTypes[] = {
    {"dax", &CreateDaxAdapter},
    {"fault_inject", &CreateFaultInjectAdapter},
    {"fs", &CreateFsAdapter},
    {"fs_native", &CreateFsAdapter},
    {"mock", &CreateMockAdapter},
    {"native_plugin", &CreateNativePluginAdapter},
    {"raw_block", &CreateRawBlockAdapter},
    {"resp", &CreateRespAdapter},
};

// Types LMCache 0.5.6 registers that this build does not provide (yet).
constexpr const char* kNotYet[] = {"aerospike", "bigtable",   "hf3fs",      "hfbucket",           "mooncake_store",
                                   "nixl_native", "nixl_store", "nixl_store_dynamic", "p2p", "plugin",
                                   "s3",          "sagemaker-hyperpod", "valkey"};

// Types registered at run time. Factories are copied out under the lock and
// called without it (they may be slow, or take other locks such as Python's).
class RuntimeRegistry {
 public:
  Status Add(const std::string& name, L2AdapterFactoryFn fn) EXCLUDES(mu_) {
    if (name.empty()) return Status::InvalidArgument("L2 adapter type name must not be empty");
    if (!fn) return Status::InvalidArgument("L2 adapter type '" + name + "': factory must not be empty");
    for (const Registered& r : kTypes) {
      if (name == r.name) return Status::AlreadyExists("L2 adapter type '" + name + "' is built in");
    }
    MutexLock lock(&mu_);
    if (!types_.emplace(name, std::move(fn)).second) {
      return Status::AlreadyExists("L2 adapter type '" + name + "' is already registered");
    }
    return Status::OK();
  }

  Status Remove(const std::string& name) EXCLUDES(mu_) {
    L2AdapterFactoryFn victim;  // destroyed after the lock is dropped
    {
      MutexLock lock(&mu_);
      auto it = types_.find(name);
      if (it == types_.end()) {
        return Status::NotFound("L2 adapter type '" + name + "' is not registered at run time");
      }
      victim = std::move(it->second);
      types_.erase(it);
    }
    return Status::OK();
  }

  std::optional<L2AdapterFactoryFn> Find(const std::string& name) const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = types_.find(name);
    if (it == types_.end()) return std::nullopt;
    return it->second;
  }

  std::vector<std::string> Names() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    std::vector<std::string> names;
    for (const auto& [name, fn] : types_) names.push_back(name);
    return names;
  }

 private:
  mutable Mutex mu_;
  std::map<std::string, L2AdapterFactoryFn> types_ GUARDED_BY(mu_);
};

RuntimeRegistry& Runtime() {
  static RuntimeRegistry* registry = new RuntimeRegistry();  // never destroyed: used until exit
  return *registry;
}

std::vector<std::string> AllTypeNames() {
  std::vector<std::string> names;
  for (const Registered& r : kTypes) names.emplace_back(r.name);
  for (std::string& n : Runtime().Names()) names.push_back(std::move(n));
  std::sort(names.begin(), names.end());
  return names;
}

std::string ChoiceList() {
  std::string s;
  for (const std::string& name : AllTypeNames()) {
    if (!s.empty()) s += ", ";
    s += name;
  }
  return s;
}

const char* TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return "a value";
  }
}

std::string FormatNumber(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  Json j = d;
  return j.dump();
}

struct DuplicateKey {
  std::string key;
};

}  // namespace

std::string Brief(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

JsonFields::JsonFields(const Json& obj, std::string context) : obj_(obj), context_(std::move(context)) {}

bool JsonFields::Has(const std::string& name) const { return obj_.contains(name); }

void JsonFields::Fail(const std::string& name, const std::string& what) {
  if (first_error_.ok()) first_error_ = Status::InvalidArgument(context_ + ": field '" + name + "' " + what);
}

// A null value counts as absent (LMCache specs write "read_ahead_size": null).
const Json* JsonFields::Get(const std::string& name) {
  used_.insert(name);
  auto it = obj_.find(name);
  return it == obj_.end() || it->is_null() ? nullptr : &*it;
}

void JsonFields::Skip(const std::string& name) { used_.insert(name); }

const Json* JsonFields::Value(const std::string& name) { return Get(name); }

void JsonFields::Adopt(const Status& status) {
  if (first_error_.ok() && !status.ok()) first_error_ = status;
}

std::string JsonFields::String(const std::string& name, const std::string& def) {
  const Json* v = Get(name);
  if (v == nullptr) return def;
  if (!v->is_string()) {
    Fail(name, std::string("must be a string, got ") + Brief(*v));
    return def;
  }
  return v->get<std::string>();
}

std::string JsonFields::RequiredString(const std::string& name) {
  const Json* v = Get(name);
  if (v == nullptr) {
    Fail(name, "is required (a non-empty string)");
    return "";
  }
  if (!v->is_string() || v->get_ref<const std::string&>().empty()) {
    Fail(name, std::string("must be a non-empty string, got ") + Brief(*v));
    return "";
  }
  return v->get<std::string>();
}

std::string JsonFields::Choice(const std::string& name, const std::string& def,
                               const std::vector<std::string>& choices) {
  const Json* v = Get(name);
  if (v == nullptr) return def;
  if (v->is_string()) {
    const auto& s = v->get_ref<const std::string&>();
    if (std::find(choices.begin(), choices.end(), s) != choices.end()) return s;
  }
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  Fail(name, "must be one of " + list + ", got " + Brief(*v));
  return def;
}

std::optional<int64_t> JsonFields::OptionalInt(const std::string& name, int64_t min, int64_t max) {
  const Json* v = Get(name);
  if (v == nullptr || v->is_null()) return std::nullopt;
  const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u <= static_cast<uint64_t>(max) && static_cast<int64_t>(u) >= min) return static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    const int64_t i = v->get<int64_t>();
    if (i >= min && i <= max) return i;
  }
  Fail(name, "must be an integer in " + range + ", got " + Brief(*v));
  return std::nullopt;
}

int64_t JsonFields::Int(const std::string& name, int64_t def, int64_t min, int64_t max) {
  return OptionalInt(name, min, max).value_or(def);
}

double JsonFields::Number(const std::string& name, double def, double min, double max) {
  const Json* v = Get(name);
  if (v == nullptr) return def;
  if (v->is_number()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d >= min && d <= max) return d;
  }
  Fail(name, "must be a number in [" + FormatNumber(min) + ", " + FormatNumber(max) + "], got " + Brief(*v));
  return def;
}

bool JsonFields::Bool(const std::string& name, bool def) {
  const Json* v = Get(name);
  if (v == nullptr) return def;
  if (!v->is_boolean()) {
    Fail(name, std::string("must be true or false, got ") + Brief(*v));
    return def;
  }
  return v->get<bool>();
}

const Json* JsonFields::Object(const std::string& name, bool required) {
  const Json* v = Get(name);
  if (v == nullptr) {
    if (required) Fail(name, "is required (an object)");
    return nullptr;
  }
  if (!v->is_object()) {
    Fail(name, std::string("must be an object, got ") + TypeName(*v));
    return nullptr;
  }
  return v;
}

std::vector<int64_t> JsonFields::IntList(const std::string& name, int64_t min, int64_t max) {
  std::vector<int64_t> out;
  const Json* v = Get(name);
  if (v == nullptr) return out;
  bool ok = v->is_array();
  if (ok) {
    for (const Json& e : *v) {
      if (!e.is_number_integer() || e.get<int64_t>() < min || e.get<int64_t>() > max) {
        ok = false;
        break;
      }
      out.push_back(e.get<int64_t>());
    }
  }
  if (!ok) {
    Fail(name, "must be a list of integers in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                   Brief(*v));
    out.clear();
  }
  return out;
}

std::vector<double> JsonFields::NumberList(const std::string& name, double min, double max) {
  std::vector<double> out;
  const Json* v = Get(name);
  if (v == nullptr) return out;
  bool ok = v->is_array();
  if (ok) {
    for (const Json& e : *v) {
      if (!e.is_number() || !(e.get<double>() >= min && e.get<double>() <= max)) {
        ok = false;
        break;
      }
      out.push_back(e.get<double>());
    }
  }
  if (!ok) {
    Fail(name, "must be a list of numbers in [" + FormatNumber(min) + ", " + FormatNumber(max) + "], got " +
                   Brief(*v));
    out.clear();
  }
  return out;
}

std::vector<std::string> JsonFields::ChoiceList(const std::string& name, const std::vector<std::string>& choices) {
  std::vector<std::string> out;
  const Json* v = Get(name);
  if (v == nullptr) return out;
  bool ok = v->is_array();
  if (ok) {
    for (const Json& e : *v) {
      if (!e.is_string() || std::find(choices.begin(), choices.end(), e.get<std::string>()) == choices.end()) {
        ok = false;
        break;
      }
      out.push_back(e.get<std::string>());
    }
  }
  if (!ok) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    Fail(name, "must be a list of names from " + list + ", got " + Brief(*v));
    out.clear();
  }
  return out;
}

Status JsonFields::Finish() const {
  if (!first_error_.ok()) return first_error_;
  std::string known;
  for (const auto& n : used_) known += (known.empty() ? "" : ", ") + n;
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (used_.count(it.key()) == 0) {
      return Status::InvalidArgument(context_ + ": unknown field '" + it.key() + "' (known fields: " + known + ")");
    }
  }
  return Status::OK();
}

L2CommonConfig ParseCommonFields(JsonFields& fields, const std::string& type) {
  L2CommonConfig c;
  c.type = type;
  fields.Skip("type");
  if (const Json* ev = fields.Object("eviction", false)) {
    JsonFields e(*ev, "L2 adapter '" + type + "': eviction");
    L2EvictionConfig cfg;
    if (!e.Has("eviction_policy")) {
      e.Fail("eviction_policy", "is required (LRU, IsolatedLRU or noop)");
    }
    cfg.eviction_policy = e.Choice("eviction_policy", "LRU", {"LRU", "IsolatedLRU", "noop"});
    cfg.trigger_watermark = e.Number("trigger_watermark", cfg.trigger_watermark, 0.0, 1.0);
    cfg.eviction_ratio = e.Number("eviction_ratio", cfg.eviction_ratio, 0.0, 1.0);
    fields.Adopt(e.Finish());
    c.eviction = cfg;
  }
  c.shared = fields.Bool("shared", false);
  c.persist_enabled = fields.Bool("persist_enabled", true);
  if (fields.Has("serde")) fields.Fail("serde", "is not supported (no serializers in this build)");
  return c;
}

Result<Json> ParseJsonObject(const std::string& text) {
  std::vector<std::vector<std::string>> seen;  // keys of each open object
  auto callback = [&seen](int /*depth*/, Json::parse_event_t event, Json& parsed) -> bool {
    switch (event) {
      case Json::parse_event_t::object_start: seen.emplace_back(); break;
      case Json::parse_event_t::object_end: seen.pop_back(); break;
      case Json::parse_event_t::key: {
        auto& keys = seen.back();
        const auto& k = parsed.get_ref<const std::string&>();
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) throw DuplicateKey{k};
        keys.push_back(k);
        break;
      }
      default: break;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text, callback);
  } catch (const DuplicateKey& d) {
    return Status::InvalidArgument("invalid L2 adapter JSON: duplicate field '" + d.key + "'");
  } catch (const Json::exception& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> after "] ".
    const size_t p = what.find("] ");
    if (p != std::string::npos) what = what.substr(p + 2);
    return Status::InvalidArgument("invalid L2 adapter JSON: " + what);
  }
  if (!j.is_object()) {
    return Status::InvalidArgument("invalid L2 adapter JSON: expected an object like {\"type\": \"fs\", ...}, got " +
                                   Brief(j));
  }
  return j;
}

Result<std::unique_ptr<L2Adapter>> CreateL2AdapterFromJson(const Json& spec, const L2AdapterContext& context) {
  if (!spec.is_object()) return Status::InvalidArgument("L2 adapter spec must be a JSON object, got " + Brief(spec));
  auto t = spec.find("type");
  if (t == spec.end()) {
    return Status::InvalidArgument("L2 adapter spec needs a \"type\" field (choose from " + ChoiceList() + ")");
  }
  if (!t->is_string()) {
    return Status::InvalidArgument("L2 adapter field 'type' must be a string, got " + Brief(*t));
  }
  const std::string type = t->get<std::string>();
  for (const Registered& r : kTypes) {
    if (type != r.name) continue;
    JsonFields fields(spec, "L2 adapter '" + type + "'");
    const L2CommonConfig common = ParseCommonFields(fields, type);
    try {
      return r.factory(common, fields, context);
    } catch (const Json::exception& e) {  // a reader bug; never escape as an exception
      return Status::InvalidArgument("L2 adapter '" + type + "': " + e.what());
    }
  }
  if (std::optional<L2AdapterFactoryFn> fn = Runtime().Find(type)) {
    // The common fields are checked here, with the built-ins' messages; the
    // factory gets the rest.
    Json common_part = Json::object();
    Json rest = spec;
    for (const char* f : {"type", "eviction", "shared", "persist_enabled", "serde"}) {
      auto it = spec.find(f);
      if (it == spec.end()) continue;
      common_part[f] = *it;
      rest.erase(f);
    }
    JsonFields fields(common_part, "L2 adapter '" + type + "'");
    const L2CommonConfig common = ParseCommonFields(fields, type);
    LMCACHE_RETURN_IF_ERROR(fields.Finish());
    Result<std::unique_ptr<L2Adapter>> made = (*fn)(common, rest.dump(), context);
    if (made.ok() && made.value() == nullptr) {
      return Status::Unavailable("L2 adapter '" + type + "': its factory returned no adapter");
    }
    return made;
  }
  for (const char* n : kNotYet) {
    if (type == n) {
      return Status::InvalidArgument("L2 adapter type '" + type + "' is not available in this build (choose from " +
                                     ChoiceList() + ")");
    }
  }
  return Status::InvalidArgument("unknown L2 adapter type '" + type + "' (choose from " + ChoiceList() + ")");
}

}  // namespace internal

Result<std::unique_ptr<L2Adapter>> CreateL2Adapter(const std::string& json, const L2AdapterContext& context) {
  auto spec = internal::ParseJsonObject(json);
  if (!spec.ok()) return spec.status();
  return internal::CreateL2AdapterFromJson(spec.value(), context);
}

std::vector<std::string> L2AdapterTypes() { return internal::AllTypeNames(); }

Status RegisterL2AdapterType(const std::string& name, L2AdapterFactoryFn fn) {
  return internal::Runtime().Add(name, std::move(fn));
}

Status UnregisterL2AdapterType(const std::string& name) { return internal::Runtime().Remove(name); }

}  // namespace lmcache
