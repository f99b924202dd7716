// Reading an L2 adapter's JSON spec (src-only).
//
// JsonFields reads the fields of one JSON object with type and range checks
// and remembers which ones it read. Getters never fail: the first error is
// kept (and a default returned), and Finish() reports it, or else the first
// field nobody read. Every message is one line naming the adapter type and
// the field, e.g.
//   L2 adapter 'fs': field 'num_workers' must be an integer in [1, 256], got 2.5
//
// Adapter factories (one per type) take the common config already parsed
// and a JsonFields over the whole object, read their own fields, and call
// Finish() before creating anything.
//
// Thread safety: JsonFields is single-owner.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmcache/l2_adapter.h"

namespace lmcache::internal {

class JsonFields {
 public:
  // REQUIRES: obj.is_object(). `context` prefixes messages ("L2 adapter 'fs'").
  JsonFields(const nlohmann::json& obj, std::string context);

  bool Has(const std::string& name) const;
  std::string String(const std::string& name, const std::string& def);
  std::string RequiredString(const std::string& name);  // non-empty
  // One of `choices`.
  std::string Choice(const std::string& name, const std::string& def, const std::vector<std::string>& choices);
  int64_t Int(const std::string& name, int64_t def, int64_t min, int64_t max);
  std::optional<int64_t> OptionalInt(const std::string& name, int64_t min, int64_t max);
  double Number(const std::string& name, double def, double min, double max);
  bool Bool(const std::string& name, bool def);
  // The raw value, for a field of mixed type (the caller checks it); null
  // when absent or null.
  const nlohmann::json* Value(const std::string& name);
  // REQUIRES for the caller: use the returned object while this lives.
  const nlohmann::json* Object(const std::string& name, bool required);
  std::vector<int64_t> IntList(const std::string& name, int64_t min, int64_t max);
  std::vector<double> NumberList(const std::string& name, double min, double max);
  // A list of strings, each one of `choices`.
  std::vector<std::string> ChoiceList(const std::string& name, const std::vector<std::string>& choices);
  // Mark a field as handled elsewhere.
  void Skip(const std::string& name);
  void Fail(const std::string& name, const std::string& what);
  // Keep `status` as the error if none was recorded yet (nested readers).
  void Adopt(const Status& status);

  // The first error, or InvalidArgument for the first field nobody read.
  Status Finish() const;

 private:
  const nlohmann::json* Get(const std::string& name);

  const nlohmann::json& obj_;
  std::string context_;
  std::set<std::string> used_;
  Status first_error_;
};

// The fields every type accepts: type, eviction, shared, persist_enabled.
L2CommonConfig ParseCommonFields(JsonFields& fields, const std::string& type);

// Parse JSON text into an object: InvalidArgument for syntax errors,
// duplicate keys, or a top level that is not an object.
Result<nlohmann::json> ParseJsonObject(const std::string& text);

// Create an adapter from an already parsed spec (used for fault_inject's
// "inner" too).
Result<std::unique_ptr<L2Adapter>> CreateL2AdapterFromJson(const nlohmann::json& spec,
                                                           const L2AdapterContext& context);

// Per-type factories (storage/adapters/*.cc).
Result<std::unique_ptr<L2Adapter>> CreateFsAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                   const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateMockAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                     const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateFaultInjectAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                            const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateRawBlockAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                         const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateDaxAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                    const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateRespAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                     const L2AdapterContext& context);
Result<std::unique_ptr<L2Adapter>> CreateNativePluginAdapter(const L2CommonConfig& common, JsonFields& fields,
                                                             const L2AdapterContext& context);

// Short rendering of a JSON value for messages (at most ~40 characters).
std::string Brief(const nlohmann::json& v);

}  // namespace lmcache::internal
