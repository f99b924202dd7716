// `resp`: objects in a Redis or Valkey server (RESP protocol), through
// hiredis. This is how several servers share one L2.
//
// Fields. LMCache 0.5.6's: host, port (required; LMCACHE_RESP_HOST /
// LMCACHE_RESP_PORT when absent), num_workers (8), username, password
// (LMCACHE_RESP_USERNAME / LMCACHE_RESP_PASSWORD when empty),
// max_capacity_gb (0 = unbounded). Ours: num_connections (alias of
// num_workers: one connection and one worker thread each), db (SELECT),
// connect_timeout_ms (2000), command_timeout_ms (5000), key_prefix (""),
// pipeline_depth (64 commands in flight per connection).
//
// Keys. `<key_prefix><model>@<kv_rank %08x>@<group %x>@<hash hex>[@<salt>]`:
// with an empty prefix, LMCache 0.5.6's native RESP connector key string, so
// LMCache and we can share a Redis. The value is the raw object bytes (as
// LMCache writes them). Our checksum lives in a companion key
// `<data key>#xxh64` = "xxh3:<16 hex>:<size>:<16 hex tag>" (XXH3-64, the fs
// xattr format plus a tag unique to each write; tag-less ones are read too,
// and so are the "xxh64:..." checksums earlier builds wrote, verified with
// XXH64; the companion key keeps its name so both kinds meet): the value
// stays readable by LMCache, and its objects (no companion) are served by
// us after a size check (unverified_loads).
//
// Store. Per object, pipelined: `MSETNX key value key#xxh64 sum` then
// `STRLEN key`. MSETNX sets both keys or neither, atomically, so:
//  * 1: both written (stored);
//  * 0 and STRLEN > 0: a value is there (ours, another server's, or
//    LMCache's without a checksum): first writer wins, nothing was written,
//    the object is indexed with that length. No checksum ever lands beside
//    bytes we did not write;
//  * 0 and STRLEN 0: a checksum key without its value (Redis's maxmemory
//    eviction took the value, or a crash). Claimed in a second round trip:
//    `MULTI; EVAL claim; SET key value NX; EXEC`, where the script (small
//    arguments only) overwrites the checksum iff the value is absent and
//    returns the length otherwise; in the same transaction SET NX writes the
//    value exactly when the script wrote the checksum.
// The value never passes through Lua: Redis keeps a large bulk argument as
// the stored object, where the former one-EVAL store copied it into the Lua
// VM and back (683 us of server time per 256 KiB object against about 3 us
// for MSETNX + STRLEN, INFO commandstats). Commands are sent with one
// sendmsg per pipeline window straight from the caller's buffers (no copy
// into hiredis's output buffer).
//
// Races. Every change to a data key and its checksum key is one atomic step:
// MSETNX, the claim transaction, eviction's `DEL key key#xxh64`, Delete's
// `MULTI; DEL key; DEL key#xxh64; EXEC`, and the corrupt-object drop script.
// A load is one MGET, so a reader sees either both keys of one write or
// neither, never a value beside a checksum of another write (except a value
// LMCache overwrote with a plain SET: detected as corrupt, never served).
// The drop script deletes both keys only while the checksum is the exact
// text the reader saw; since every write has its own tag, a drop that comes
// late (the corrupt object was meanwhile deleted and the same bytes stored
// again, by anyone) matches nothing and deletes no correct object.
//
// Load. One `MGET key key#xxh64` per object; the value is read from the
// socket straight into the caller's buffer, hashing each piece (XXH3) as it
// arrives (one round trip, one copy; a legacy XXH64 checksum is checked
// with a second pass over the buffer). Value length != recorded size:
// corrupt (counted, both keys deleted if unchanged); recorded size != buffer
// size: size mismatch (kept); hash mismatch: corrupt.
//
// Batches. A store or load task is split into at most num_connections
// contiguous slices (hashing and copying run in parallel); a lookup into one
// slice per pipeline_depth keys (a worker hand-off costs more than its few
// bytes). Each slice is pipelined on one connection (pipeline_depth commands
// per round trip). Lookups are pipelined STRLEN (EXISTS that also gives the
// size for Usage). The task machinery (Submit*, slices on the workers,
// counting, publishing, Close) is BatchedL2Adapter's (storage/l2_common.h);
// this file does a slice's Redis work (RunKeys).
//
// Index. An L2Index of the objects this adapter knows: filled at start-up
// by a SCAN over the key prefix (a restarted adapter knows what is stored),
// by our stores, and by lookups/loads that find objects other servers
// wrote; entries Redis no longer has are dropped when seen. Locks are
// client-side refcounts in the index (Redis has none). With
// max_capacity_gb, eviction runs through the index and DELs the victims.
//
// Failures. A broken connection is reopened once at once (a restarted
// server); if that fails the adapter is marked down with the reason: tasks
// then complete as failures at once, and a monitor thread reconnects with
// backoff (100 ms doubling to 2 s), resyncs the index with a SCAN, and
// only then reports healthy. Socket timeouts (command_timeout_ms) bound every wait.
//
// Thread safety: thread-safe. Worker i is the only user of connection i;
// the admin connection (Delete, InjectCorruption, SCAN) has its own mutex.
// SIGPIPE is blocked on a thread while it talks to the server (see
// ScopedSigpipeBlock); the process's signal dispositions are not changed.

#include <memory>
#include <string>

#include "lmcache/l2_adapter.h"
#include "storage/l2_config.h"

#ifdef LMCACHE_HAVE_HIREDIS

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "storage/l2_common.h"
#include "storage/l2_index.h"
#include "util/mutex.h"
#include "util/xxh3.h"
#include "util/xxhash64.h"

namespace lmcache::internal {
namespace {

constexpr std::string_view kSumSuffix = "#xxh64";
// Claim a key whose checksum key exists without its value, inside MULTI
// before `SET key value NX`. KEYS: data, checksum. ARGV: checksum text.
// The value is absent: overwrite the checksum, return -1 (the SET then
// writes). Else: the length of the value there (the SET then writes nothing).
constexpr std::string_view kClaimScript =
    "if redis.call('EXISTS',KEYS[1])==1 then return redis.call('STRLEN',KEYS[1]) end "
    "redis.call('SET',KEYS[2],ARGV[1]) return -1";
// Delete a corrupt object, only if its checksum is still the one we saw.
constexpr std::string_view kDropScript =
    "if redis.call('GET',KEYS[2])==ARGV[1] then return redis.call('DEL',KEYS[1],KEYS[2]) end return 0";
constexpr size_t kReadBuf = 64 * 1024;
constexpr int64_t kBackoffMinMs = 100;
constexpr int64_t kBackoffMaxMs = 2000;

struct RespOptions {
  std::string host;
  int port = 0;
  int num_connections = 8;
  std::string username;
  std::string password;
  int db = 0;
  int connect_timeout_ms = 2000;
  int command_timeout_ms = 5000;
  std::string key_prefix;
  uint64_t capacity_bytes = 0;
  int pipeline_depth = 64;

  std::string Endpoint() const { return host + ":" + std::to_string(port); }
};

// Per object: its insertion number, so that a miss seen by a request (or a
// SCAN) only drops entries indexed before that request started.
struct RespMeta {
  uint64_t gen = 0;
};

// "xxh3:<16 hex>:<size>:<16 hex tag>": the fs xattr format plus a tag
// unique to this write, so that the drop script (which deletes a corrupt
// object only while its checksum is the one the reader saw) can never match
// a later write of the same bytes.
std::string SumText(uint64_t hash, uint64_t size, uint64_t tag) {
  char buf[80];
  std::snprintf(buf, sizeof(buf), "xxh3:%016" PRIx64 ":%" PRIu64 ":%016" PRIx64, hash, size, tag);
  return buf;
}

// Accepts the tag-less "xxh3:<16 hex>:<size>" too, and both forms with
// "xxh64:" (earlier builds; *legacy = true: the hash is an XXH64).
bool ParseSumText(std::string_view v, bool* legacy, uint64_t* hash, uint64_t* size) {
  auto hex = [](std::string_view digits, uint64_t* out) {
    if (digits.empty() || digits.size() > 16) return false;
    uint64_t h = 0;
    for (char c : digits) {
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return false;
      h = h << 4 | static_cast<uint64_t>(d);
    }
    *out = h;
    return true;
  };
  if (v.substr(0, 5) == "xxh3:") {
    *legacy = false;
    v.remove_prefix(5);
  } else if (v.substr(0, 6) == "xxh64:") {
    *legacy = true;
    v.remove_prefix(6);
  } else {
    return false;
  }
  uint64_t h = 0;
  if (v.size() < 18 || v[16] != ':' || !hex(v.substr(0, 16), &h)) return false;
  std::string_view digits = v.substr(17);
  const size_t colon = digits.find(':');
  if (colon != std::string_view::npos) {
    uint64_t tag = 0;
    if (!hex(digits.substr(colon + 1), &tag)) return false;
    digits = digits.substr(0, colon);
  }
  if (digits.empty() || digits.size() > 19) return false;
  uint64_t s = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    s = s * 10 + static_cast<uint64_t>(c - '0');
  }
  *hash = h;
  *size = s;
  return true;
}

// Random per adapter (checksum tags of different adapters never meet).
uint64_t RandomTagBase() {
  uint64_t v = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
               (static_cast<uint64_t>(getpid()) << 32);
  try {
    std::random_device rd;
    v ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (const std::exception&) {  // no entropy source: time and pid only
  }
  return v;
}

timeval Tv(int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

// Writing to a socket the server closed raises SIGPIPE, which would kill
// the process; hiredis writes with plain write(). While this lives, SIGPIPE
// is blocked on the calling thread, and one raised meanwhile is consumed
// (the write itself fails with EPIPE). The process's signal handling is
// left alone.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~ScopedSigpipeBlock() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string ReplyText(const redisReply* r) {
  if (r == nullptr) return "no reply";
  if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
    return std::string(r->str, r->len);
  }
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return "reply of type " + std::to_string(r->type);
}

// One connection: hiredis for connecting, auth and small commands; direct
// writev / buffered reads on its socket for the bulk data path. Between two
// exchanges nothing is outstanding, so hiredis's reader and ours never hold
// bytes of each other's replies. Single owner.
class Conn {
 public:
  // IOError naming the endpoint (connect, auth, SELECT).
  static Result<std::unique_ptr<Conn>> Open(const RespOptions& o) {
    redisContext* ctx = redisConnectWithTimeout(o.host.c_str(), o.port, Tv(o.connect_timeout_ms));
    if (ctx == nullptr) return Status::IOError("cannot allocate a redis context");
    std::unique_ptr<Conn> c(new Conn(ctx, o.command_timeout_ms));
    if (ctx->err != 0) {
      return Status::IOError("cannot connect to " + o.Endpoint() + ": " + ctx->errstr);
    }
    if (redisSetTimeout(ctx, Tv(o.command_timeout_ms)) != REDIS_OK) {
      return Status::IOError("cannot set the socket timeout for " + o.Endpoint());
    }
    redisEnableKeepAlive(ctx);
    if (!o.password.empty()) {
      std::vector<std::string_view> args = {"AUTH"};
      if (!o.username.empty()) args.push_back(o.username);
      args.push_back(o.password);
      auto r = c->Command(args);
      if (!r.ok()) return Status::IOError("authentication to " + o.Endpoint() + " failed: " + r.status().message());
      if (r.value()->type == REDIS_REPLY_ERROR) {
        return Status::IOError("authentication to " + o.Endpoint() + " failed: " + ReplyText(r.value().get()));
      }
    }
    auto ping = c->Command({"PING"});
    if (!ping.ok()) return Status::IOError(o.Endpoint() + " does not answer PING: " + ping.status().message());
    if (ping.value()->type == REDIS_REPLY_ERROR) {
      // NOAUTH without a password, LOADING, ...
      return Status::IOError(o.Endpoint() + " refused PING: " + ReplyText(ping.value().get()));
    }
    if (o.db != 0) {
      const std::string db = std::to_string(o.db);
      auto r = c->Command({"SELECT", db});
      if (!r.ok()) return Status::IOError("SELECT " + db + " on " + o.Endpoint() + " failed: " + r.status().message());
      if (r.value()->type == REDIS_REPLY_ERROR) {
        return Status::IOError("SELECT " + db + " on " + o.Endpoint() + " failed: " + ReplyText(r.value().get()));
      }
    }
    return c;
  }

  ~Conn() { redisFree(ctx_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool broken() const { return broken_; }

  // Queue a command in hiredis's output buffer (sent by the next GetReply).
  void Append(std::span<const std::string_view> args) {
    std::vector<const char*> argv(args.size());
    std::vector<size_t> lens(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      argv[i] = args[i].data();
      lens[i] = args[i].size();
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()) != REDIS_OK) {
      broken_ = true;
    }
  }

  // The next reply (an error reply is a reply); IOError when the
  // connection broke (it is then unusable).
  Result<Reply> GetReply() {
    if (broken_) return Broken();
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      broken_ = true;
      return Broken();
    }
    return Reply(static_cast<redisReply*>(raw));
  }

  Result<Reply> Command(std::initializer_list<std::string_view> args) {
    return Command(std::span<const std::string_view>(args.begin(), args.size()));
  }
  Result<Reply> Command(std::span<const std::string_view> args) {
    Append(args);
    return GetReply();
  }

  // Write every byte of iov (modified). REQUIRES: hiredis's output buffer is empty.
  Status WriteAll(std::vector<iovec>& iov) {
    if (broken_) return Broken();
    size_t idx = 0;
    while (idx < iov.size()) {
      const int n = static_cast<int>(std::min<size_t>(iov.size() - idx, IOV_MAX));
      msghdr msg{};
      msg.msg_iov = &iov[idx];
      msg.msg_iovlen = static_cast<size_t>(n);
      const ssize_t w = sendmsg(ctx_->fd, &msg, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        return SocketError("write", errno);
      }
      size_t left = static_cast<size_t>(w);
      while (left > 0 && idx < iov.size()) {
        if (left >= iov[idx].iov_len) {
          left -= iov[idx].iov_len;
          ++idx;
        } else {
          iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + left;
          iov[idx].iov_len -= left;
          left = 0;
        }
      }
      while (idx < iov.size() && iov[idx].iov_len == 0) ++idx;
    }
    return Status::OK();
  }

  // ---- our reader (bulk data path) ----

  // One reply header line without "\r\n" ("$5", "*2", "-ERR ...").
  Status ReadLine(std::string* line) {
    line->clear();
    for (;;) {
      const char* start = rbuf_.data() + rpos_;
      const void* nl = std::memchr(start, '\n', rlen_ - rpos_);
      if (nl != nullptr) {
        const size_t n = static_cast<size_t>(static_cast<const char*>(nl) - start);
        line->append(start, n);
        rpos_ += n + 1;
        if (line->empty() || line->back() != '\r') return Protocol("reply line without CR");
        line->pop_back();
        return Status::OK();
      }
      line->append(start, rlen_ - rpos_);
      rpos_ = rlen_;
      if (line->size() > 4096) return Protocol("reply line too long");
      LMCACHE_RETURN_IF_ERROR(Fill());
    }
  }

  // Exactly n bytes into dst (hashed into h when given).
  Status Read(uint8_t* dst, size_t n, Xxh3* h) {
    size_t done = 0;
    const size_t buffered = std::min(n, rlen_ - rpos_);
    if (buffered > 0) {
      std::memcpy(dst, rbuf_.data() + rpos_, buffered);
      if (h != nullptr) h->Update(dst, buffered);
      rpos_ += buffered;
      done = buffered;
    }
    while (done < n) {  // large values: straight from the socket, hashed while in cache
      const ssize_t r = recv(ctx_->fd, dst + done, n - done, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        return SocketError("read", errno);
      }
      if (r == 0) return Closed();
      if (h != nullptr) h->Update(dst + done, static_cast<size_t>(r));
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  Status Skip(size_t n) {
    while (n > 0) {
      if (rpos_ == rlen_) LMCACHE_RETURN_IF_ERROR(Fill());
      const size_t k = std::min(n, rlen_ - rpos_);
      rpos_ += k;
      n -= k;
    }
    return Status::OK();
  }

  Status ExpectCrlf() {
    char crlf[2];
    LMCACHE_RETURN_IF_ERROR(Read(reinterpret_cast<uint8_t*>(crlf), 2, nullptr));
    if (crlf[0] != '\r' || crlf[1] != '\n') return Protocol("bulk string without CRLF");
    return Status::OK();
  }

  // After an exchange read with our reader: nothing may be left over.
  Status ExpectDrained() {
    if (rpos_ != rlen_) return Protocol("unexpected bytes after the replies");
    return Status::OK();
  }

  // Mark the connection unusable (the reply stream is out of step).
  Status Poison(const std::string& what) { return Protocol(what); }

 private:
  Conn(redisContext* ctx, int timeout_ms) : ctx_(ctx), timeout_ms_(timeout_ms), rbuf_(kReadBuf) {}

  Status Fill() {
    if (broken_) return Broken();
    for (;;) {
      const ssize_t r = recv(ctx_->fd, rbuf_.data(), rbuf_.size(), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        return SocketError("read", errno);
      }
      if (r == 0) return Closed();
      rpos_ = 0;
      rlen_ = static_cast<size_t>(r);
      return Status::OK();
    }
  }

  Status SocketError(const char* op, int err) {
    broken_ = true;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      error_ = std::string(op) + " timed out after " + std::to_string(timeout_ms_) + " ms";
      timed_out_ = true;
    } else {
      error_ = std::string(op) + " failed: " + std::strerror(err);
    }
    return Status::IOError(error_);
  }
  Status Closed() {
    broken_ = true;
    error_ = "server closed the connection";
    return Status::IOError(error_);
  }
  Status Protocol(const std::string& what) {
    broken_ = true;
    error_ = "protocol error: " + what;
    return Status::IOError(error_);
  }
  Status Broken() {
    if (error_.empty()) {
      error_ = ctx_->err != 0 ? std::string(ctx_->errstr) : "connection is broken";
      if (ctx_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out_ = true;
    }
    return Status::IOError(error_);
  }

 public:
  bool timed_out() const { return timed_out_; }

 private:
  redisContext* ctx_;
  const int timeout_ms_;
  bool broken_ = false;
  bool timed_out_ = false;
  std::string error_;
  std::vector<char> rbuf_;
  size_t rpos_ = 0;
  size_t rlen_ = 0;
};

// Parse "$<n>" / ":<n>" / "*<n>" into n; false for anything else.
bool ParseLen(std::string_view line, char prefix, int64_t* n) {
  if (line.size() < 2 || line[0] != prefix) return false;
  line.remove_prefix(1);
  bool neg = false;
  if (line[0] == '-') {
    neg = true;
    line.remove_prefix(1);
  }
  if (line.empty() || line.size() > 18) return false;
  int64_t v = 0;
  for (char c : line) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *n = neg ? -v : v;
  return true;
}

// "$<n>\r\n": a bulk string's header (its n bytes and "\r\n" follow).
void AppendBulkHeader(std::string* out, uint64_t n) {
  *out += '$';
  *out += std::to_string(n);
  *out += "\r\n";
}

void AppendBulk(std::string* out, std::string_view s) {
  *out += '$';
  *out += std::to_string(s.size());
  *out += "\r\n";
  out->append(s);
  *out += "\r\n";
}

// Tasks, workers and Close are BatchedL2Adapter's: a task is spread over at
// most num_connections contiguous slices (kSlices; a lookup, one per
// pipeline window), and RunKeys does one slice on its worker's connection
// (worker w owns connection w; see Batches above).
class RespAdapter final : public BatchedL2Adapter {
 public:
  using Index = L2Index<RespMeta>;

  RespAdapter(const L2CommonConfig& common, const RespOptions& opts, std::unique_ptr<L2Completions> completions,
              std::unique_ptr<Index> index)
      : BatchedL2Adapter(common, std::move(completions),
                         L2Spread{L2Spread::Mode::kSlices, static_cast<size_t>(opts.num_connections)}),
        opts_(opts),
        index_(std::move(index)) {}

  ~RespAdapter() override { Close(); }

  template <class A, class Meta, class... Args>
  friend Result<std::unique_ptr<L2Adapter>> internal::CreateBatchedAdapter(uint64_t, const L2CommonConfig&,
                                                                           const L2AdapterContext&,
                                                                           Args&&...);  // Open

  void SubmitUnlock(std::span<const ObjectKey> keys) override { index_->Unlock(keys); }

  Result<size_t> Delete(std::span<const ObjectKey> keys) override {
    if (keys.empty()) return size_t{0};
    ScopedSigpipeBlock no_sigpipe;
    MutexLock lock(&admin_mu_);
    std::vector<std::string> names;
    names.reserve(keys.size());
    for (const ObjectKey& k : keys) names.push_back(RedisKey(k));
    size_t removed = 0;
    size_t next = 0;  // keys before it are done (a retry goes on from there)
    const Status st = WithAdmin([&](Conn* c) -> Status {
      while (next < names.size()) {
        const size_t end = std::min(names.size(), next + Depth());
        for (size_t i = next; i < end; ++i) {
          const std::string sum = names[i] + std::string(kSumSuffix);
          // MULTI; DEL key; DEL key#xxh64; EXEC: nobody sees one without the other.
          const std::string_view multi[] = {"MULTI"};
          const std::string_view del_data[] = {"DEL", names[i]};
          const std::string_view del_sum[] = {"DEL", sum};
          const std::string_view exec[] = {"EXEC"};
          c->Append(multi);
          c->Append(del_data);
          c->Append(del_sum);
          c->Append(exec);
        }
        for (; next < end; ++next) {
          for (int q = 0; q < 3; ++q) {  // +OK +QUEUED +QUEUED
            auto r = c->GetReply();
            if (!r.ok()) return r.status();
          }
          auto exec = c->GetReply();
          if (!exec.ok()) return exec.status();
          const redisReply* e = exec.value().get();
          index_->Remove(keys[next]);
          if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[0]->type == REDIS_REPLY_INTEGER &&
              e->element[0]->integer == 1) {
            ++removed;
          }
        }
      }
      return Status::OK();
    });
    Bump(counters_.deleted_objects, removed);
    if (!st.ok() && next == 0) return Status::IOError("L2 adapter 'resp': delete failed: " + st.message());
    return removed;
  }

  Result<L2KeyPage> List(const L2ListRequest& request) const override { return index_->List(request); }
  L2Usage Usage() const override { return index_->Usage(); }

  L2Status ReportStatus() const override {
    L2Status s = BaseStatus();
    if (s.healthy && down_.load()) {  // "closed" takes precedence
      MutexLock lock(&health_mu_);
      s.healthy = false;
      s.message = "redis " + opts_.Endpoint() + " unreachable: " + down_reason_;
    }
    s.details.emplace_back("endpoint", opts_.Endpoint());
    s.details.emplace_back("db", std::to_string(opts_.db));
    s.details.emplace_back("key_prefix", opts_.key_prefix);
    s.details.emplace_back("num_connections", std::to_string(opts_.num_connections));
    s.details.emplace_back("pipeline_depth", std::to_string(opts_.pipeline_depth));
    s.details.emplace_back("command_timeout_ms", std::to_string(opts_.command_timeout_ms));
    s.details.emplace_back("max_capacity_bytes", std::to_string(opts_.capacity_bytes));
    s.details.emplace_back("stored_objects", std::to_string(index_->size()));
    s.details.emplace_back("locked_objects", std::to_string(index_->locked_objects()));
    s.details.emplace_back("scanned_objects", std::to_string(scanned_objects_.load()));
    s.details.emplace_back("ignored_keys", std::to_string(ignored_keys_.load()));
    s.details.emplace_back("reconnects", std::to_string(reconnects_.load()));
    return s;
  }

  bool supports_corruption_injection() const override { return true; }

  Status InjectCorruption(const ObjectKey& key) override {
    ScopedSigpipeBlock no_sigpipe;
    MutexLock lock(&admin_mu_);
    const std::string name = RedisKey(key);
    return WithAdmin([&](Conn* c) -> Status {
      auto r = c->Command({"GET", name});
      if (!r.ok()) return r.status();
      if (r.value()->type != REDIS_REPLY_STRING || r.value()->len == 0) {
        return Status::NotFound("key is not stored in the resp L2");
      }
      std::string damaged(r.value()->str, r.value()->len);
      damaged[damaged.size() / 2] = static_cast<char>(damaged[damaged.size() / 2] ^ 0x5A);
      auto w = c->Command({"SET", name, damaged, "XX"});
      if (!w.ok()) return w.status();
      if (w.value()->type == REDIS_REPLY_ERROR) return Status::IOError(ReplyText(w.value().get()));
      return Status::OK();
    });
  }

 private:
  size_t Depth() const { return static_cast<size_t>(opts_.pipeline_depth); }

  // ---- start-up ----

  Status Open() {
    ScopedSigpipeBlock no_sigpipe;
    auto admin = Conn::Open(opts_);
    if (!admin.ok()) return Status::IOError("L2 adapter 'resp': " + admin.status().message());
    {
      MutexLock lock(&admin_mu_);
      admin_ = std::move(admin).value();
      LMCACHE_RETURN_IF_ERROR(ScanLocked(/*resync=*/false));
    }
    conns_.resize(static_cast<size_t>(opts_.num_connections));
    conn_epochs_.assign(conns_.size(), 0);
    for (auto& c : conns_) {
      auto conn = Conn::Open(opts_);
      if (!conn.ok()) return Status::IOError("L2 adapter 'resp': " + conn.status().message());
      c = std::move(conn).value();
    }
    try {
      monitor_ = std::thread([this] { Monitor(); });
    } catch (const std::system_error& e) {
      return Status::Unavailable(std::string("cannot start the resp monitor thread: ") + e.what());
    }
    return StartWorkers(opts_.num_connections);
  }

  // Index every object under the prefix (SCAN + pipelined STRLEN). With
  // `resync`, also drop entries indexed before the scan began that Redis no
  // longer has (it restarted, was flushed, or evicted them).
  Status ScanLocked(bool resync) REQUIRES(admin_mu_) {
    const Status st = WithAdmin([&](Conn* c) { return ScanOnce(c, resync); });
    if (st.ok()) return st;
    return Status::IOError("L2 adapter 'resp': SCAN of " + opts_.Endpoint() + " failed: " + st.message());
  }

  // Called by WithAdmin, so under admin_mu_ (the lambda hides that from the analysis).
  Status ScanOnce(Conn* c, bool resync) {
    const uint64_t scan_gen = gen_.load();  // entries indexed after this are kept
    std::string pattern;
    for (char ch : opts_.key_prefix) {
      if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') pattern += '\\';
      pattern += ch;
    }
    pattern += '*';
    std::unordered_map<ObjectKey, uint64_t, ObjectKeyHash> found;
    uint64_t ignored = 0;
    std::string cursor = "0";
    do {
      auto r = c->Command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      if (!r.ok()) return r.status();
      const redisReply* rep = r.value().get();
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
          rep->element[1]->type != REDIS_REPLY_ARRAY) {
        return Status::IOError(ReplyText(rep));
      }
      cursor.assign(rep->element[0]->str, rep->element[0]->len);
      std::vector<std::pair<ObjectKey, std::string>> keys;
      const redisReply* arr = rep->element[1];
      for (size_t i = 0; i < arr->elements; ++i) {
        const redisReply* e = arr->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        std::string_view name(e->str, e->len);
        if (name.size() >= kSumSuffix.size() && name.substr(name.size() - kSumSuffix.size()) == kSumSuffix) continue;
        ObjectKey key;
        if (!ParseRedisKey(name, &key)) {
          ++ignored;
          continue;
        }
        keys.emplace_back(key, std::string(name));
      }
      for (size_t off = 0; off < keys.size(); off += Depth()) {
        const size_t end = std::min(keys.size(), off + Depth());
        for (size_t i = off; i < end; ++i) {
          const std::string_view args[] = {"STRLEN", keys[i].second};
          c->Append(args);
        }
        for (size_t i = off; i < end; ++i) {
          auto len = c->GetReply();
          if (!len.ok()) return len.status();
          if (len.value()->type == REDIS_REPLY_INTEGER && len.value()->integer > 0) {
            found[keys[i].first] = static_cast<uint64_t>(len.value()->integer);
          }
        }
      }
    } while (cursor != "0");

    if (resync) {
      L2ListRequest req;
      req.page_size = 4096;
      for (;;) {
        auto page = index_->List(req);
        if (!page.ok()) break;
        for (const L2KeyInfo& info : page.value().keys) {
          if (found.count(info.key) != 0) continue;
          auto cur = index_->Get(info.key);
          if (cur && cur->second.gen <= scan_gen) index_->Remove(info.key);
        }
        if (page.value().next_cursor.empty()) break;
        req.cursor = page.value().next_cursor;
      }
    }
    for (const auto& [key, size] : found) {
      if (!index_->Contains(key)) index_->Insert(key, size, RespMeta{NextGen()}, 0);
    }
    scanned_objects_.store(found.size());
    ignored_keys_.store(ignored);
    return Status::OK();
  }

  // Run `exchange` on the admin connection, with WithConn's policy: one
  // retry on a fresh connection after a break that was not a timeout.
  template <class Fn>
  Status WithAdmin(Fn&& exchange) REQUIRES(admin_mu_) {
    Status st = Status::OK();
    for (int attempt = 0; attempt < 2; ++attempt) {
      Conn* c = nullptr;
      LMCACHE_RETURN_IF_ERROR(AdminConn(&c));
      st = exchange(c);
      if (st.ok() || !c->broken()) return st;
      Bump(counters_.io_errors);
      const bool timed_out = c->timed_out();
      admin_.reset();
      if (timed_out || attempt == 1) {
        MarkDown(st.message());
        return st;
      }
    }
    return st;
  }

  // The admin connection, reopened if broken. IOError while the server is down.
  Status AdminConn(Conn** out) REQUIRES(admin_mu_) {
    if (admin_ == nullptr || admin_->broken()) {
      admin_.reset();
      if (down_.load()) return Status::IOError("redis " + opts_.Endpoint() + " is unreachable: " + DownReason());
      auto c = Conn::Open(opts_);
      if (!c.ok()) {
        MarkDown(c.status().message());
        return c.status();
      }
      admin_ = std::move(c).value();
    }
    *out = admin_.get();
    return Status::OK();
  }

  // ---- health ----

  void MarkDown(const std::string& reason) {
    {
      MutexLock lock(&health_mu_);
      down_reason_ = reason;
      if (!down_.load()) {
        down_.store(true);
        epoch_.fetch_add(1);
      }
    }
    health_cv_.NotifyAll();
  }

  std::string DownReason() const {
    MutexLock lock(&health_mu_);
    return down_reason_;
  }

  // While down: probe with backoff; once the server answers, resync the
  // index and then mark healthy.
  void Monitor() {
    ScopedSigpipeBlock no_sigpipe;  // for the thread's life
    int64_t backoff_ms = kBackoffMinMs;
    for (;;) {
      {
        MutexLock lock(&health_mu_);
        while (!stopping_ && !down_.load()) health_cv_.Wait(&health_mu_);
        if (stopping_) return;
        health_cv_.WaitFor(&health_mu_, std::chrono::milliseconds(backoff_ms));
        if (stopping_) return;
      }
      auto probe = Conn::Open(opts_);
      if (!probe.ok()) {
        {
          MutexLock lock(&health_mu_);
          down_reason_ = probe.status().message();
        }
        backoff_ms = std::min(backoff_ms * 2, kBackoffMaxMs);
        continue;
      }
      {
        MutexLock lock(&admin_mu_);
        admin_ = std::move(probe).value();
        // Resync the index BEFORE reporting healthy, so nobody sees a healthy
        // adapter whose index still lists what the restarted server lost. The
        // scan runs on the probe connection (AdminConn only consults down_
        // when it has to open one).
        const Status st = ScanLocked(/*resync=*/true);
        if (!st.ok()) {
          MutexLock hl(&health_mu_);
          down_.store(true);
          down_reason_ = st.message();
          backoff_ms = std::min(backoff_ms * 2, kBackoffMaxMs);
          continue;
        }
        MutexLock hl(&health_mu_);
        down_.store(false);
        down_reason_.clear();
      }
      backoff_ms = kBackoffMinMs;
      reconnects_.fetch_add(1);
    }
  }

  // Connection of worker w, (re)opened when needed; null (and *err) while down.
  Conn* WorkerConn(int w, std::string* err) {
    auto& c = conns_[static_cast<size_t>(w)];
    const uint64_t epoch = epoch_.load();
    if (c != nullptr && !c->broken() && conn_epochs_[static_cast<size_t>(w)] == epoch) return c.get();
    c.reset();
    if (down_.load()) {
      *err = DownReason();
      return nullptr;
    }
    auto conn = Conn::Open(opts_);
    if (!conn.ok()) {
      *err = conn.status().message();
      MarkDown(*err);
      return nullptr;
    }
    c = std::move(conn).value();
    conn_epochs_[static_cast<size_t>(w)] = epoch;
    return c.get();
  }

  // Run `exchange` on worker w's connection. A connection that breaks
  // without timing out (a restarted server, an idle socket closed) is
  // reopened and the exchange retried once; otherwise the adapter is
  // marked down. False when it could not complete.
  template <class Fn>
  bool WithConn(int w, Fn&& exchange) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::string err;
      Conn* c = WorkerConn(w, &err);
      if (c == nullptr) return false;
      const Status st = exchange(c);
      if (st.ok()) return true;
      if (!c->broken()) return false;
      Bump(counters_.io_errors);
      const bool timed_out = c->timed_out();
      conns_[static_cast<size_t>(w)].reset();
      if (timed_out || attempt == 1) {
        MarkDown(st.message());
        return false;
      }
    }
    return false;
  }

  // ---- batches (BatchedL2Adapter hooks) ----

  // Lookups carry no data: one slice per pipeline_depth keys (a worker
  // hand-off costs more than the few bytes). Stores and loads use every
  // connection (the constructor's spread: hashing and copying run in parallel).
  void StartLookup(const BatchPtr& b) override {
    const size_t windows = (b->keys.size() + Depth() - 1) / Depth();
    Run(b, L2Spread{L2Spread::Mode::kSlices, std::min(windows, static_cast<size_t>(opts_.num_connections))});
  }

  // One slice of keys, pipelined on worker w's connection. Resp never sets
  // b.todo, so work positions are key indexes.
  void RunKeys(Batch& b, size_t begin, size_t end, int w) override {
    LMCACHE_CHECK(b.todo.empty(), "resp batches work on every key");
    ScopedSigpipeBlock no_sigpipe;
    switch (b.kind) {
      case Kind::kStore: StoreSlice(b, begin, end, w); break;
      case Kind::kLookup: LookupSlice(b, begin, end, w); break;
      case Kind::kLoad: LoadSlice(b, begin, end, w); break;
    }
  }

  // After the workers are joined (running slices finished, bounded by the
  // socket timeouts; queued ones failed): stop the monitor, drop the connections.
  void OnClose() override {
    {
      MutexLock lock(&health_mu_);
      stopping_ = true;
    }
    health_cv_.NotifyAll();
    if (monitor_.joinable()) monitor_.join();
    conns_.clear();
    MutexLock lock(&admin_mu_);
    admin_.reset();
  }

  // `<prefix><model>@<kv_rank %08x>@<group %x>@<hash hex>[@<salt>]`.
  std::string RedisKey(const ObjectKey& key) const {
    char rank[16], group[16];
    std::snprintf(rank, sizeof(rank), "%08x", static_cast<uint32_t>(key.kv_rank));
    std::snprintf(group, sizeof(group), "%x", static_cast<uint32_t>(key.object_group_id));
    std::string s = opts_.key_prefix;
    s += key.model_name.str();
    s += '@';
    s += rank;
    s += '@';
    s += group;
    s += '@';
    s += key.ChunkHashHex();
    if (!key.cache_salt.empty()) {
      s += '@';
      s += key.cache_salt.str();
    }
    return s;
  }

  // False for keys whose name would not parse back into the same key
  // ('@' or NUL in the model or salt, a salt that looks like a checksum key).
  static bool Representable(const ObjectKey& key) {
    const std::string& m = key.model_name.str();
    const std::string& s = key.cache_salt.str();
    if (m.find_first_of(std::string_view("@\0", 2)) != std::string::npos) return false;
    if (s.find_first_of(std::string_view("@\0", 2)) != std::string::npos) return false;
    return !(s.size() >= kSumSuffix.size() && s.substr(s.size() - kSumSuffix.size()) == kSumSuffix);
  }

  bool ParseRedisKey(std::string_view name, ObjectKey* key) const {
    if (name.substr(0, opts_.key_prefix.size()) != opts_.key_prefix) return false;
    if (!ParseObjectKey(name.substr(opts_.key_prefix.size()), key)) return false;
    return RedisKey(*key) == name;  // canonical form only (ParseObjectKey is lenient)
  }

  // ---- store ----

  void StoreSlice(Batch& b, size_t begin, size_t end, int w) {
    struct Item {
      size_t i;
      std::string name;
      std::string sum;
      std::string head;  // the command(s) before the value
      std::string tail;  // after it
    };
    std::vector<Item> todo;
    for (size_t i = begin; i < end; ++i) {
      const ObjectKey& key = b.keys[i];
      if (!Representable(key)) {
        Bump(counters_.rejected_keys);
        continue;
      }
      if (index_->Contains(key)) {  // first writer wins (see the lookup path for stale entries)
        Bump(counters_.store_skipped);
        b.ok[i] = 1;
        continue;
      }
      std::vector<Index::Victim> victims;
      const Status reserved = index_->Reserve(b.views[i].size, &victims);
      if (!victims.empty()) EvictVictims(w, victims);
      if (!reserved.ok()) continue;
      todo.push_back(Item{i, RedisKey(key), {}, {}, {}});
    }
    if (todo.empty()) return;
    for (Item& it : todo) {
      const ObjectView& v = b.views[it.i];
      it.sum = SumText(Xxh3Digest(v.data, v.size), v.size, NextTag());
      // MSETNX key value key#xxh64 sum; STRLEN key.
      it.head.reserve(it.name.size() + 48);
      it.head += "*5\r\n";
      AppendBulk(&it.head, "MSETNX");
      AppendBulk(&it.head, it.name);
      AppendBulkHeader(&it.head, v.size);
      it.tail.reserve(2 * it.name.size() + it.sum.size() + 64);
      it.tail += "\r\n";
      AppendBulk(&it.tail, it.name + std::string(kSumSuffix));
      AppendBulk(&it.tail, it.sum);
      it.tail += "*2\r\n";
      AppendBulk(&it.tail, "STRLEN");
      AppendBulk(&it.tail, it.name);
    }
    // Per item: -1 failed, 0 written, >0 length of the value already there,
    // kNeedsClaim: the value is absent but a checksum key is not.
    constexpr int64_t kNeedsClaim = -2;
    std::vector<int64_t> result(todo.size(), -1);
    SendValues(w, b, todo, [&](size_t k, Conn* c) -> Status {
      auto set = c->GetReply();
      if (!set.ok()) return set.status();
      auto len = c->GetReply();
      if (!len.ok()) return len.status();
      const redisReply* s = set.value().get();
      const redisReply* l = len.value().get();
      if (s->type != REDIS_REPLY_INTEGER || l->type != REDIS_REPLY_INTEGER) {
        Bump(counters_.io_errors);  // an error reply (OOM, WRONGTYPE, ...)
      } else if (s->integer == 1) {
        result[k] = 0;
      } else if (l->integer > 0) {
        result[k] = l->integer;
      } else {
        result[k] = kNeedsClaim;
      }
      return Status::OK();
    });

    // Rare: a checksum key without its value (Redis evicted the value, a
    // Delete or a crash came between the two). Claim the key atomically:
    // the script overwrites the checksum only if the value is absent, and
    // the SET NX after it in the same transaction writes the value exactly then.
    std::vector<Item> claims;
    std::vector<size_t> claim_of;  // index into todo/result
    for (size_t k = 0; k < todo.size(); ++k) {
      if (result[k] != kNeedsClaim) continue;
      result[k] = -1;
      Item it = todo[k];
      const ObjectView& v = b.views[it.i];
      // MULTI; EVAL claim 2 key key#xxh64 sum; SET key value NX; EXEC.
      it.head = "*1\r\n";
      AppendBulk(&it.head, "MULTI");
      it.head += "*6\r\n";
      AppendBulk(&it.head, "EVAL");
      AppendBulk(&it.head, kClaimScript);
      AppendBulk(&it.head, "2");
      AppendBulk(&it.head, it.name);
      AppendBulk(&it.head, it.name + std::string(kSumSuffix));
      AppendBulk(&it.head, it.sum);
      it.head += "*4\r\n";
      AppendBulk(&it.head, "SET");
      AppendBulk(&it.head, it.name);
      AppendBulkHeader(&it.head, v.size);
      it.tail = "\r\n";
      AppendBulk(&it.tail, "NX");
      it.tail += "*1\r\n";
      AppendBulk(&it.tail, "EXEC");
      claims.push_back(std::move(it));
      claim_of.push_back(k);
    }
    if (!claims.empty()) {
      SendValues(w, b, claims, [&](size_t j, Conn* c) -> Status {
        for (int q = 0; q < 3; ++q) {  // +OK, +QUEUED, +QUEUED (or errors: EXEC then aborts)
          auto r = c->GetReply();
          if (!r.ok()) return r.status();
        }
        auto exec = c->GetReply();
        if (!exec.ok()) return exec.status();
        const redisReply* e = exec.value().get();
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) {
          Bump(counters_.io_errors);  // EXECABORT (OOM, ...)
          return Status::OK();
        }
        const redisReply* claimed = e->element[0];
        const redisReply* set = e->element[1];
        if (set->type == REDIS_REPLY_STATUS) {
          result[claim_of[j]] = 0;  // written, with our checksum beside it
        } else if (claimed->type == REDIS_REPLY_INTEGER && claimed->integer > 0) {
          result[claim_of[j]] = claimed->integer;  // another writer came first
        } else {
          Bump(counters_.io_errors);
        }
        return Status::OK();
      });
    }

    std::vector<Index::Victim> victims;
    for (size_t k = 0; k < todo.size(); ++k) {
      const size_t i = todo[k].i;
      const uint64_t size = b.views[i].size;
      if (result[k] < 0) {
        index_->Unreserve(size);
        continue;
      }
      b.ok[i] = 1;
      if (result[k] == 0) {
        index_->Insert(b.keys[i], size, RespMeta{NextGen()}, size, &victims);
        b.bytes.fetch_add(size);
        Bump(counters_.stored_objects);
        Bump(counters_.stored_bytes, size);
      } else {
        index_->Unreserve(size);
        Bump(counters_.store_skipped);
        index_->Insert(b.keys[i], static_cast<uint64_t>(result[k]), RespMeta{NextGen()}, 0, &victims);
      }
    }
    if (!victims.empty()) EvictVictims(w, victims);
  }

  // Send items[k].head, the value of b.views[items[k].i], items[k].tail,
  // pipeline_depth items per round trip with one sendmsg straight from the
  // caller's buffers, then read each item's replies with `read(k, conn)`.
  template <class Item, class ReadFn>
  void SendValues(int w, const Batch& b, const std::vector<Item>& items, ReadFn&& read) {
    for (size_t off = 0; off < items.size(); off += Depth()) {
      const size_t wend = std::min(items.size(), off + Depth());
      WithConn(w, [&](Conn* c) -> Status {
        std::vector<iovec> iov;
        iov.reserve(3 * (wend - off));
        for (size_t k = off; k < wend; ++k) {
          const ObjectView& v = b.views[items[k].i];
          iov.push_back(iovec{const_cast<char*>(items[k].head.data()), items[k].head.size()});
          iov.push_back(iovec{v.data, v.size});
          iov.push_back(iovec{const_cast<char*>(items[k].tail.data()), items[k].tail.size()});
        }
        LMCACHE_RETURN_IF_ERROR(c->WriteAll(iov));
        for (size_t k = off; k < wend; ++k) LMCACHE_RETURN_IF_ERROR(read(k, c));
        return Status::OK();
      });
    }
  }

  // DEL evicted objects (both keys), pipelined on worker w's connection.
  void EvictVictims(int w, const std::vector<Index::Victim>& victims) {
    for (const auto& v : victims) {
      Bump(counters_.evicted_objects);
      Bump(counters_.evicted_bytes, v.size);
    }
    WithConn(w, [&](Conn* c) -> Status {
      std::vector<std::string> names;
      names.reserve(victims.size());
      for (const auto& v : victims) names.push_back(RedisKey(v.key));
      for (const std::string& n : names) {
        const std::string sum = n + std::string(kSumSuffix);
        const std::string_view args[] = {"DEL", n, sum};
        c->Append(args);
      }
      for (size_t k = 0; k < names.size(); ++k) {
        auto r = c->GetReply();
        if (!r.ok()) return r.status();
      }
      return Status::OK();
    });
  }

  // ---- lookup ----

  void LookupSlice(Batch& b, size_t begin, size_t end, int w) {
    const uint64_t start_gen = gen_.load();
    std::vector<int64_t> len(end - begin, -1);  // -1 unknown (failed), 0 absent
    std::vector<std::string> names;
    names.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) names.push_back(RedisKey(b.keys[i]));
    for (size_t off = 0; off < names.size(); off += Depth()) {
      const size_t wend = std::min(names.size(), off + Depth());
      WithConn(w, [&](Conn* c) -> Status {
        for (size_t k = off; k < wend; ++k) {
          const std::string_view args[] = {"STRLEN", names[k]};
          c->Append(args);
        }
        for (size_t k = off; k < wend; ++k) {
          auto r = c->GetReply();
          if (!r.ok()) return r.status();
          len[k] = r.value()->type == REDIS_REPLY_INTEGER ? r.value()->integer : 0;  // WRONGTYPE: not ours
        }
        return Status::OK();
      });
    }
    std::vector<Index::Victim> victims;
    for (size_t k = 0; k < len.size(); ++k) {
      const ObjectKey& key = b.keys[begin + k];
      if (len[k] < 0) continue;
      if (len[k] == 0) {
        ForgetIfOlder(key, start_gen);
        continue;
      }
      if (!index_->Contains(key)) {  // written by another server
        index_->Insert(key, static_cast<uint64_t>(len[k]), RespMeta{NextGen()}, 0, &victims);
      }
      b.ok[begin + k] = index_->Lock(key) ? 1 : 0;
    }
    if (!victims.empty()) EvictVictims(w, victims);
  }

  // Drop an index entry Redis no longer has, unless it was indexed after
  // `gen` was read (a store that completed after our request).
  void ForgetIfOlder(const ObjectKey& key, uint64_t gen) {
    auto cur = index_->Get(key);
    if (cur && cur->second.gen <= gen) index_->Remove(key);
  }

  // Index entries are numbered in insertion order.
  uint64_t NextGen() { return gen_.fetch_add(1) + 1; }

  // The tag of a checksum we write: unique per write (a random base per adapter, plus a count).
  uint64_t NextTag() { return tag_base_ + tag_count_.fetch_add(1) * 0x9E3779B97F4A7C15ull; }

  // ---- load ----

  enum class LoadOutcome { kFailed, kLoaded, kMissing, kSizeMismatch, kCorrupt };

  void LoadSlice(Batch& b, size_t begin, size_t end, int w) {
    const uint64_t start_gen = gen_.load();
    const size_t n = end - begin;
    std::vector<LoadOutcome> out(n, LoadOutcome::kFailed);
    std::vector<std::string> seen_sum(n);  // checksum text of corrupt objects
    std::vector<uint64_t> value_len(n, 0);
    std::vector<std::string> names;
    names.reserve(n);
    for (size_t i = begin; i < end; ++i) names.push_back(RedisKey(b.keys[i]));
    for (size_t off = 0; off < n; off += Depth()) {
      const size_t wend = std::min(n, off + Depth());
      WithConn(w, [&](Conn* c) -> Status {
        std::string cmds;
        for (size_t k = off; k < wend; ++k) {
          cmds += "*3\r\n";
          AppendBulk(&cmds, "MGET");
          AppendBulk(&cmds, names[k]);
          AppendBulk(&cmds, names[k] + std::string(kSumSuffix));
        }
        std::vector<iovec> iov = {iovec{cmds.data(), cmds.size()}};
        LMCACHE_RETURN_IF_ERROR(c->WriteAll(iov));
        for (size_t k = off; k < wend; ++k) {
          LMCACHE_RETURN_IF_ERROR(ReadOne(c, b.views[begin + k], &out[k], &seen_sum[k], &value_len[k]));
        }
        return c->ExpectDrained();
      });
    }
    std::vector<size_t> corrupt;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = begin + k;
      switch (out[k]) {
        case LoadOutcome::kLoaded:
          b.ok[i] = 1;  // loaded_objects / loaded_bytes: counted by the base
          if (index_->Contains(b.keys[i])) {
            index_->Touch(b.keys[i]);
          } else {
            index_->Insert(b.keys[i], value_len[k], RespMeta{NextGen()}, 0);
          }
          break;
        case LoadOutcome::kMissing: ForgetIfOlder(b.keys[i], start_gen); break;
        case LoadOutcome::kSizeMismatch: Bump(counters_.size_mismatches); break;
        case LoadOutcome::kCorrupt:
          Bump(counters_.corrupt_objects);
          index_->Remove(b.keys[i]);
          corrupt.push_back(k);
          break;
        case LoadOutcome::kFailed: break;
      }
    }
    if (!corrupt.empty()) {
      WithConn(w, [&](Conn* c) -> Status {
        for (size_t k : corrupt) {
          const std::string sum = names[k] + std::string(kSumSuffix);
          const std::string_view args[] = {"EVAL", kDropScript, "2", names[k], sum, seen_sum[k]};
          c->Append(args);
        }
        for (size_t j = 0; j < corrupt.size(); ++j) {
          auto r = c->GetReply();
          if (!r.ok()) return r.status();
        }
        return Status::OK();
      });
    }
  }

  // One MGET reply: *2, the checksum (or nil), the value (or nil).
  // Connection-level errors only are returned; the outcome is per key.
  Status ReadOne(Conn* c, const ObjectView& dst, LoadOutcome* outcome, std::string* sum_text, uint64_t* value_len) {
    std::string line;
    LMCACHE_RETURN_IF_ERROR(c->ReadLine(&line));
    int64_t count = 0;
    if (!line.empty() && line[0] == '-') {  // an error reply for this command
      Bump(counters_.io_errors);
      *outcome = LoadOutcome::kFailed;
      return Status::OK();
    }
    if (!ParseLen(line, '*', &count) || count != 2) return BadReply(c, line);
    LMCACHE_RETURN_IF_ERROR(c->ReadLine(&line));
    int64_t vlen = 0;
    if (!ParseLen(line, '$', &vlen)) return BadReply(c, line);
    // The value precedes its checksum (MGET key key#xxh64): it is read
    // into the buffer when its length fits, and verified after.
    bool read_into = false;
    Xxh3 h;
    if (vlen >= 0) {
      *value_len = static_cast<uint64_t>(vlen);
      read_into = static_cast<uint64_t>(vlen) == dst.size;
      if (read_into) {
        LMCACHE_RETURN_IF_ERROR(c->Read(dst.data, dst.size, &h));
      } else {
        LMCACHE_RETURN_IF_ERROR(c->Skip(static_cast<size_t>(vlen)));
      }
      LMCACHE_RETURN_IF_ERROR(c->ExpectCrlf());
    }
    LMCACHE_RETURN_IF_ERROR(c->ReadLine(&line));
    int64_t slen = 0;
    if (!ParseLen(line, '$', &slen)) return BadReply(c, line);
    std::string sum;
    if (slen >= 0) {
      if (slen > 4096) return BadReply(c, line);
      sum.resize(static_cast<size_t>(slen));
      LMCACHE_RETURN_IF_ERROR(c->Read(reinterpret_cast<uint8_t*>(sum.data()), sum.size(), nullptr));
      LMCACHE_RETURN_IF_ERROR(c->ExpectCrlf());
    }
    if (vlen < 0) {
      *outcome = LoadOutcome::kMissing;
      return Status::OK();
    }
    uint64_t want_hash = 0, recorded = 0;
    bool legacy = false;
    const bool has_sum = slen >= 0 && ParseSumText(sum, &legacy, &want_hash, &recorded);
    if (has_sum) {
      if (recorded != static_cast<uint64_t>(vlen)) {  // truncated or replaced without its checksum
        *outcome = LoadOutcome::kCorrupt;
      } else if (!read_into) {
        *outcome = LoadOutcome::kSizeMismatch;
      } else {
        const uint64_t got = legacy ? Xxh64Digest(dst.data, dst.size) : h.Digest();
        *outcome = got == want_hash ? LoadOutcome::kLoaded : LoadOutcome::kCorrupt;
      }
      if (*outcome == LoadOutcome::kCorrupt) *sum_text = sum;
      return Status::OK();
    }
    if (!read_into) {
      *outcome = LoadOutcome::kSizeMismatch;
      return Status::OK();
    }
    Bump(counters_.unverified_loads);  // written by LMCache: no checksum
    *outcome = LoadOutcome::kLoaded;
    return Status::OK();
  }

  // An unexpected reply shape: the stream position is unknown, so the
  // connection is dropped.
  static Status BadReply(Conn* c, const std::string& line) {
    return c->Poison("unexpected reply '" + line.substr(0, 64) + "'");
  }

  const RespOptions opts_;
  const std::unique_ptr<Index> index_;
  std::atomic<uint64_t> gen_{0};
  const uint64_t tag_base_ = RandomTagBase();
  std::atomic<uint64_t> tag_count_{0};
  std::atomic<uint64_t> scanned_objects_{0};
  std::atomic<uint64_t> ignored_keys_{0};
  std::atomic<uint64_t> reconnects_{0};

  // Worker connections: conns_[w] and conn_epochs_[w] are used by worker w only
  // (and by Open before the workers start, OnClose after they are joined).
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint64_t> conn_epochs_;
  std::atomic<uint64_t> epoch_{0};  // bumped when the server goes down: older connections are reopened

  Mutex admin_mu_;
  std::unique_ptr<Conn> admin_ GUARDED_BY(admin_mu_);

  mutable Mutex health_mu_;
  CondVar health_cv_;
  std::atomic<bool> down_{false};  // written under health_mu_
  std::string down_reason_ GUARDED_BY(health_mu_);
  bool stopping_ GUARDED_BY(health_mu_) = false;
  std::thread monitor_;  // started by Open, joined by OnClose
};

}  // namespace

Result<std::unique_ptr<L2Adapter>> CreateRespAdapter(const L2CommonConfig& common, JsonFields& f,
                                                     const L2AdapterContext& context) {
  RespOptions o;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v != nullptr ? v : "";
  };
  if (f.Has("host") || env("LMCACHE_RESP_HOST").empty()) {
    o.host = f.RequiredString("host");
  } else {
    o.host = env("LMCACHE_RESP_HOST");
  }
  if (f.Has("port") || env("LMCACHE_RESP_PORT").empty()) {
    o.port = static_cast<int>(f.Int("port", 0, 1, 65535));
    if (!f.Has("port")) f.Fail("port", "is required (or set LMCACHE_RESP_PORT)");
  } else {
    const std::string p = env("LMCACHE_RESP_PORT");
    char* endp = nullptr;
    const long v = std::strtol(p.c_str(), &endp, 10);
    if (endp == p.c_str() || *endp != '\0' || v < 1 || v > 65535) {
      f.Fail("port", "LMCACHE_RESP_PORT must be an integer in [1, 65535], got '" + p + "'");
    }
    o.port = static_cast<int>(v);
  }
  const int64_t workers = f.Int("num_workers", 8, 1, 256);
  const int64_t conns = f.Int("num_connections", workers, 1, 256);
  if (f.Has("num_workers") && f.Has("num_connections") && workers != conns) {
    f.Fail("num_connections", "and num_workers are the same setting; got " + std::to_string(conns) + " and " +
                                  std::to_string(workers));
  }
  o.num_connections = static_cast<int>(conns);
  o.username = f.String("username", "");
  o.password = f.String("password", "");
  if (o.username.empty()) o.username = env("LMCACHE_RESP_USERNAME");
  if (o.password.empty()) o.password = env("LMCACHE_RESP_PASSWORD");
  o.db = static_cast<int>(f.Int("db", 0, 0, 1 << 20));
  o.connect_timeout_ms = static_cast<int>(f.Int("connect_timeout_ms", o.connect_timeout_ms, 1, 600'000));
  o.command_timeout_ms = static_cast<int>(f.Int("command_timeout_ms", o.command_timeout_ms, 1, 600'000));
  o.key_prefix = f.String("key_prefix", "");
  o.pipeline_depth = static_cast<int>(f.Int("pipeline_depth", o.pipeline_depth, 1, 65536));
  const double gb = f.Number("max_capacity_gb", 0, 0, 1e9);
  o.capacity_bytes = static_cast<uint64_t>(gb * static_cast<double>(1ull << 30));
  LMCACHE_RETURN_IF_ERROR(f.Finish());
  return CreateBatchedAdapter<RespAdapter, RespMeta>(o.capacity_bytes, common, context, common, o);
}

}  // namespace lmcache::internal

#else  // !LMCACHE_HAVE_HIREDIS

namespace lmcache::internal {

Result<std::unique_ptr<L2Adapter>> CreateRespAdapter(const L2CommonConfig& /*common*/, JsonFields& /*fields*/,
                                                     const L2AdapterContext& /*context*/) {
  return Status::InvalidArgument("L2 adapter type 'resp' is not available in this build (built without hiredis)");
}

}  // namespace lmcache::internal

#endif  // LMCACHE_HAVE_HIREDIS
