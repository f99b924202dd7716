#include "lmcache/status.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace lmcache {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kNoSpace: return "no_space";
    case StatusCode::kIOError: return "io_error";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kCorruption: return "corruption";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kBusy: return "busy";
  }
  return "unknown";
}

Status Status::FromErrno(std::string_view what, int errnum) {
  char buf[128];
  // GNU strerror_r returns the message pointer.
  const char* msg = strerror_r(errnum, buf, sizeof(buf));
  std::string m(what);
  m += ": ";
  m += msg;
  return Status(StatusCode::kIOError, std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(StatusCodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

void internal_check_fail(const char* file, int line, const char* cond, const char* msg) {
  std::fprintf(stderr, "lmcache: check failed at %s:%d: %s (%s)\n", file, line, cond, msg);
  std::abort();
}

}  // namespace lmcache
