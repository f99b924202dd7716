// Status and Result<T>: how every expected failure in lmcache is reported.
//
// A Status is either OK or carries a code and a one-line message. Expected
// failures (a missing key, a full L1, an I/O error) are returned, never
// thrown; programming errors (violated REQUIRES: preconditions) are checked
// with LMCACHE_CHECK and abort. Result<T> is a Status or a value.
//
// Thread safety: value types; a const Status/Result may be read from any
// number of threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace lmcache {

enum class StatusCode : uint8_t {
  kOk = 0,
  kNotFound = 1,
  kNoSpace = 2,
  kIOError = 3,
  kInvalidArgument = 4,
  kUnavailable = 5,
  kCorruption = 6,
  kTimeout = 7,
  kAlreadyExists = 8,
  kBusy = 9,
};

// Stable lower-case name of a code ("ok", "not_found", "no_space", ...).
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status NoSpace(std::string msg) { return {StatusCode::kNoSpace, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusCode::kIOError, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
  static Status Timeout(std::string msg) { return {StatusCode::kTimeout, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {StatusCode::kAlreadyExists, std::move(msg)}; }
  static Status Busy(std::string msg) { return {StatusCode::kBusy, std::move(msg)}; }
  // IOError carrying strerror(errnum) after `what`.
  static Status FromErrno(std::string_view what, int errnum);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "no_space: L1 is full (...)", or "ok".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or a non-OK Status. REQUIRES: value() only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}                 // NOLINT(implicit)
  Result(Status status) : status_(std::move(status)) {}         // NOLINT(implicit)

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace lmcache

// Abort with a message when a precondition (a bug, not an expected failure) fails.
#define LMCACHE_CHECK(cond, msg)                                      \
  do {                                                                \
    if (!(cond)) ::lmcache::internal_check_fail(__FILE__, __LINE__, #cond, msg); \
  } while (0)

#define LMCACHE_RETURN_IF_ERROR(expr)      \
  do {                                     \
    ::lmcache::Status _st = (expr);        \
    if (!_st.ok()) return _st;             \
  } while (0)

namespace lmcache {
[[noreturn]] void internal_check_fail(const char* file, int line, const char* cond, const char* msg);
}  // namespace lmcache
