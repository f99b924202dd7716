// Tests of the `resp` L2 adapter against real redis-server processes the
// suite starts itself (127.0.0.1, free ports, no persistence).
//
// Without redis-server (or in a build without hiredis) every test is skipped
// with a message, except when the environment variable CI is set: then the
// suite fails, so CI cannot pass without running it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "storage/l2_conformance.h"
#include "storage/l2_test_util.h"
#include "util/xxh3.h"
#include "util/xxhash64.h"

namespace lmcache {
namespace {

using testing::Bits;
using testing::Key;
using testing::LoadSync;
using testing::LookupSync;
using testing::Pattern;
using testing::StoreSync;
using testing::ViewOf;

// ---- a minimal RESP client for checking what the adapter wrote ----

struct RawReply {
  char type = 0;  // '+', '-', ':', '$', '*'
  bool nil = false;
  std::string str;
  int64_t integer = 0;
  std::vector<RawReply> elems;
};

class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~RawClient() { close(fd_); }
  bool ok() const { return ok_; }

  RawReply Cmd(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    size_t sent = 0;
    while (ok_ && sent < out.size()) {
      const ssize_t w = send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) ok_ = false;
      else sent += static_cast<size_t>(w);
    }
    RawReply r;
    if (ok_) Parse(&r);
    return r;
  }

 private:
  bool Byte(char* c) {
    if (pos_ == buf_.size()) {
      char tmp[65536];
      const ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return ok_ = false;
      buf_.assign(tmp, static_cast<size_t>(n));
      pos_ = 0;
    }
    *c = buf_[pos_++];
    return true;
  }
  std::string Line() {
    std::string l;
    char c;
    while (Byte(&c)) {
      if (c == '\n') break;
      if (c != '\r') l += c;
    }
    return l;
  }
  void Parse(RawReply* r) {
    const std::string l = Line();
    if (l.empty()) return;
    r->type = l[0];
    const std::string rest = l.substr(1);
    switch (r->type) {
      case '+':
      case '-': r->str = rest; break;
      case ':': r->integer = std::stoll(rest); break;
      case '$': {
        const int64_t n = std::stoll(rest);
        if (n < 0) {
          r->nil = true;
          break;
        }
        r->str.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) Byte(&r->str[static_cast<size_t>(i)]);
        Line();
        break;
      }
      case '*': {
        const int64_t n = std::stoll(rest);
        r->nil = n < 0;
        for (int64_t i = 0; i < n; ++i) {
          r->elems.emplace_back();
          Parse(&r->elems.back());
        }
        break;
      }
      default: break;
    }
  }

  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
  size_t pos_ = 0;
};

// ---- redis-server processes ----

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  int port = -1;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string FindRedisServer() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  p += ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= p.size()) {
    const size_t colon = p.find(':', start);
    const std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    const std::string exe = (dir.empty() ? "." : dir) + "/redis-server";
    if (access(exe.c_str(), X_OK) == 0) return exe;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

class RedisServer {
 public:
  RedisServer(std::string exe, std::string password = "") : exe_(std::move(exe)), password_(std::move(password)) {}
  ~RedisServer() { Stop(SIGKILL); }

  // Start on `port` (0: a free one); true once it answers.
  bool Start(int port = 0) {
    port_ = port != 0 ? port : FreePort();
    std::vector<std::string> args = {exe_, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                     "--loglevel", "warning"};
    if (!password_.empty()) {
      args.push_back("--requirepass");
      args.push_back(password_);
    }
    pid_ = fork();
    if (pid_ == 0) {
      const int null = open("/dev/null", O_RDWR);
      dup2(null, 1);
      dup2(null, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(exe_.c_str(), argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      RawClient c(port_);
      if (c.ok()) {
        const RawReply r = c.Cmd({"PING"});
        if (r.type == '+' || (r.type == '-' && r.str.rfind("NOAUTH", 0) == 0)) return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void Stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, SIGCONT);
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }

  int port() const { return port_; }

 private:
  std::string exe_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// The shared server of the suite; null when the suite is skipped.
RedisServer* g_server = nullptr;
std::string g_exe;

class RedisEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const bool ci = std::getenv("CI") != nullptr;
    auto probe = CreateL2Adapter(R"({"type":"resp","host":"127.0.0.1","port":1})");
    if (!probe.ok() && probe.status().message().find("built without hiredis") != std::string::npos) {
      if (ci) FAIL() << "CI is set but lmcache was built without hiredis (install libhiredis-dev)";
      GTEST_SKIP() << "resp tests skipped: lmcache was built without hiredis";
    }
    g_exe = FindRedisServer();
    if (g_exe.empty()) {
      if (ci) FAIL() << "CI is set but redis-server is not installed (apt-get install redis-server)";
      GTEST_SKIP() << "resp tests skipped: redis-server is not installed (apt-get install redis-server)";
    }
    server_ = std::make_unique<RedisServer>(g_exe);
    ASSERT_TRUE(server_->Start()) << "cannot start " << g_exe;
    g_server = server_.get();
  }
  void TearDown() override {
    g_server = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<RedisServer> server_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

std::string Spec(int port, const std::string& prefix, const std::string& extra = "") {
  std::string s = R"({"type":"resp","host":"127.0.0.1","port":)" + std::to_string(port) +
                  R"(,"key_prefix":")" + prefix + R"(")";
  if (!extra.empty()) s += "," + extra;
  return s + "}";
}

std::string UniquePrefix() {
  static std::atomic<int> n{0};
  return "t" + std::to_string(getpid()) + "-" + std::to_string(n.fetch_add(1)) + ":";
}

}  // namespace

// ---- the shared conformance suite ----

struct RespTraits {
  static constexpr const char* kType = "resp";
  static constexpr bool kPersistent = true;
  // One key prefix per temp dir: each test starts from an empty keyspace,
  // and reopening with the same dir finds the same objects.
  static std::string Spec(const std::string& dir) {
    const std::string base = dir.substr(dir.find_last_of('/') + 1);
    return lmcache::Spec(g_server ? g_server->port() : 1, base + ":", R"("num_connections":4)");
  }
};

}  // namespace lmcache

namespace lmcache::conformance {
INSTANTIATE_TYPED_TEST_SUITE_P(resp, L2ConformanceTest, ::testing::Types<RespTraits>);
}  // namespace lmcache::conformance

namespace lmcache {
namespace {

std::unique_ptr<L2Adapter> Open(const std::string& spec) { return testing::MustCreate(spec); }

// ---- configuration ----

TEST(RespConfig, BadFieldsNameTheField) {
  struct Case {
    std::string json;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {R"({"type":"resp","port":6379})", "'host'"},
      {R"({"type":"resp","host":"127.0.0.1"})", "'port'"},
      {R"({"type":"resp","host":"127.0.0.1","port":70000})", "'port'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"num_connections":0})", "'num_connections'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"num_workers":2,"num_connections":3})", "'num_connections'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"pipeline_depth":0})", "'pipeline_depth'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"command_timeout_ms":"5"})", "'command_timeout_ms'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"max_capacity_gb":-1})", "'max_capacity_gb'"},
      {R"({"type":"resp","host":"127.0.0.1","port":6379,"bogus":1})", "'bogus'"},
  };
  for (const auto& c : cases) {
    auto r = CreateL2Adapter(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
}

TEST(RespConfig, UnreachableServerIsAnIOError) {
  if (!g_server) GTEST_SKIP();
  auto r = CreateL2Adapter(Spec(FreePort(), "x:", R"("connect_timeout_ms":500)"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("cannot connect"), std::string::npos) << r.status().message();
}

TEST(RespConfig, StatusDetails) {
  if (!g_server) GTEST_SKIP();
  auto a = Open(Spec(g_server->port(), UniquePrefix(), R"("num_workers":3,"pipeline_depth":17)"));
  ASSERT_NE(a, nullptr);
  const L2Status s = a->ReportStatus();
  EXPECT_TRUE(s.healthy);
  std::map<std::string, std::string> d(s.details.begin(), s.details.end());
  EXPECT_EQ(d["num_connections"], "3");
  EXPECT_EQ(d["pipeline_depth"], "17");
  EXPECT_EQ(d["endpoint"], "127.0.0.1:" + std::to_string(g_server->port()));
}

// ---- auth and db ----

TEST(RespAuth, PasswordIsRequiredAndChecked) {
  if (!g_server) GTEST_SKIP();
  RedisServer secured(g_exe, "s3cret");
  ASSERT_TRUE(secured.Start());
  const std::string prefix = UniquePrefix();

  auto wrong = CreateL2Adapter(Spec(secured.port(), prefix, R"("password":"nope")"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kIOError);
  EXPECT_NE(wrong.status().message().find("authentication"), std::string::npos) << wrong.status().message();
  EXPECT_EQ(wrong.status().message().find('\n'), std::string::npos);

  auto none = CreateL2Adapter(Spec(secured.port(), prefix));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kIOError);
  EXPECT_NE(none.status().message().find("NOAUTH"), std::string::npos) << none.status().message();

  // Right password, with and without the ACL user name.
  for (const std::string extra : {R"("password":"s3cret")", R"("username":"default","password":"s3cret")"}) {
    auto a = Open(Spec(secured.port(), UniquePrefix(), extra));
    ASSERT_NE(a, nullptr);
    auto d = Pattern(1, 5000);
    std::vector<uint8_t> out(5000);
    EXPECT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
    EXPECT_TRUE(out == d);
  }
}

TEST(RespAuth, DatabasesAreSeparate) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix, R"("db":2)"));
  auto b = Open(Spec(g_server->port(), prefix, R"("db":3)"));
  ASSERT_TRUE(a && b);
  auto d = Pattern(7, 100);
  ASSERT_TRUE(StoreSync(a.get(), {Key(7)}, {ViewOf(d)}).ok);
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(7)})), "1");
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(7)})), "0");
  RawClient raw(g_server->port());
  raw.Cmd({"SELECT", "2"});
  EXPECT_EQ(raw.Cmd({"EXISTS", prefix + "test/model@01000100@0@" + Key(7).ChunkHashHex()}).integer, 1);
}

// ---- format: LMCache's key names, raw values, checksum beside them ----

// "<algo>:<16 hex>:<size>", a checksum without its tag.
std::string SumOf(const char* algo, uint64_t hash, size_t size) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s:%016llx:%zu", algo, static_cast<unsigned long long>(hash), size);
  return buf;
}

// The tag-less prefix of what we write for `d` (XXH3-64).
std::string SumPrefix(const std::vector<uint8_t>& d) {
  return SumOf("xxh3", internal::Xxh3Digest(d.data(), d.size()), d.size());
}

// What builds before XXH3 wrote (XXH64), without the tag.
std::string LegacySumPrefix(const std::vector<uint8_t>& d) {
  return SumOf("xxh64", internal::Xxh64Digest(d.data(), d.size()), d.size());
}

TEST(RespFormat, KeyNamesValuesAndChecksumKeys) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(3, 4096);
  ObjectKey salted = Key(3, "alice");
  ASSERT_TRUE(StoreSync(a.get(), {Key(3), salted}, {ViewOf(d), ViewOf(d)}).ok);
  RawClient raw(g_server->port());
  const std::string name = prefix + "test/model@01000100@0@" + Key(3).ChunkHashHex();
  const RawReply v = raw.Cmd({"GET", name});
  ASSERT_EQ(v.type, '$');
  EXPECT_EQ(v.str, std::string(d.begin(), d.end()));  // raw bytes, as LMCache stores them
  const RawReply sum = raw.Cmd({"GET", name + "#xxh64"});
  ASSERT_EQ(sum.type, '$');
  EXPECT_EQ(sum.str.rfind(SumPrefix(d) + ":", 0), 0u) << sum.str;  // "xxh3:<hash>:4096:<tag>"
  EXPECT_NE(sum.str.find(":4096"), std::string::npos);
  EXPECT_EQ(raw.Cmd({"EXISTS", name + "@alice"}).integer, 1);
}

TEST(RespFormat, ObjectsWrittenByLMCacheAreServedAfterASizeCheck) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(9, 3000);
  RawClient raw(g_server->port());
  // What LMCache 0.5.6's RESP connector writes: SET <key> <bytes>, nothing else.
  raw.Cmd({"SET", prefix + "test/model@01000100@0@" + Key(9).ChunkHashHex(), std::string(d.begin(), d.end())});
  EXPECT_EQ(Bits(LookupSync(a.get(), {Key(9)})), "1");
  a->SubmitUnlock(std::vector<ObjectKey>{Key(9)});
  std::vector<uint8_t> out(3000), wrong(2999);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(9), Key(9)}, {ViewOf(out), ViewOf(wrong)})), "10");
  EXPECT_TRUE(out == d);
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 1u);
  EXPECT_EQ(c.size_mismatches, 1u);
  EXPECT_EQ(a->Usage().total_bytes, 3000u);
}

TEST(RespFormat, TruncatedValueIsCorruptAndDeleted) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(4, 10000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(4)}, {ViewOf(d)}).ok);
  RawClient raw(g_server->port());
  const std::string name = prefix + "test/model@01000100@0@" + Key(4).ChunkHashHex();
  raw.Cmd({"SET", name, std::string(d.begin(), d.begin() + 5000)});  // truncated, checksum left as is
  std::vector<uint8_t> out(10000), half(5000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(4)}, {ViewOf(half)})), "0");  // not served even at its own size
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
  EXPECT_EQ(raw.Cmd({"EXISTS", name}).integer, 0);
  EXPECT_EQ(raw.Cmd({"EXISTS", name + "#xxh64"}).integer, 0);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(4)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->Usage().objects, 0u);
}

TEST(RespFormat, UnrepresentableKeysAreRejected) {
  if (!g_server) GTEST_SKIP();
  auto a = Open(Spec(g_server->port(), UniquePrefix()));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(1, 10);
  const L2StoreResult r = StoreSync(a.get(), {Key(1, "a@b"), Key(2, "x#xxh64"), Key(3)},
                                    {ViewOf(d), ViewOf(d), ViewOf(d)});
  EXPECT_EQ(Bits(r.stored), "001");
  EXPECT_EQ(a->ReportStatus().counters.rejected_keys, 2u);
}

// ---- pipelining, connections, concurrency ----

TEST(RespPipeline, LargeBatchesOnOneConnection) {
  if (!g_server) GTEST_SKIP();
  for (const char* extra : {R"("num_connections":1,"pipeline_depth":256)", R"("num_connections":1,"pipeline_depth":7)",
                            R"("num_connections":8,"pipeline_depth":64)"}) {
    auto a = Open(Spec(g_server->port(), UniquePrefix(), extra));
    ASSERT_NE(a, nullptr);
    constexpr int kN = 256;
    std::vector<ObjectKey> keys;
    std::vector<std::vector<uint8_t>> data, out;
    std::vector<ObjectView> views, out_views;
    for (int i = 0; i < kN; ++i) {
      keys.push_back(Key(i));
      data.push_back(Pattern(i, 16384 + i));
      out.emplace_back(16384 + i);
    }
    for (int i = 0; i < kN; ++i) {
      views.push_back(ViewOf(data[i]));
      out_views.push_back(ViewOf(out[i]));
    }
    const L2StoreResult st = StoreSync(a.get(), keys, views);
    EXPECT_TRUE(st.ok) << extra;
    EXPECT_EQ(Bits(LookupSync(a.get(), keys)), std::string(kN, '1'));
    a->SubmitUnlock(keys);
    EXPECT_EQ(Bits(LoadSync(a.get(), keys, out_views)), std::string(kN, '1'));
    for (int i = 0; i < kN; ++i) EXPECT_TRUE(out[i] == data[i]) << i;
    EXPECT_EQ(a->Usage().objects, static_cast<uint64_t>(kN));
  }
}

TEST(RespPipeline, OneConnectionPerWorker) {
  if (!g_server) GTEST_SKIP();
  RawClient raw(g_server->port());
  auto count_clients = [&] {
    const RawReply r = raw.Cmd({"CLIENT", "LIST"});
    return std::count(r.str.begin(), r.str.end(), '\n');
  };
  const auto before = count_clients();
  auto a = Open(Spec(g_server->port(), UniquePrefix(), R"("num_connections":6)"));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(count_clients() - before, 7);  // 6 workers + the admin connection
  a.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(count_clients(), before);
}

TEST(RespPipeline, ConcurrentTasksOnSeveralConnections) {
  if (!g_server) GTEST_SKIP();
  auto a = Open(Spec(g_server->port(), UniquePrefix(), R"("num_connections":8,"pipeline_depth":16)"));
  ASSERT_NE(a, nullptr);
  testing::StoreWaiter waiter(a.get());
  std::atomic<int> failures{0};
  auto body = [&](int t) {
    for (int round = 0; round < 5; ++round) {
      std::vector<ObjectKey> keys;
      std::vector<std::vector<uint8_t>> data, out;
      std::vector<ObjectView> views, out_views;
      for (int i = 0; i < 40; ++i) {
        const int id = t * 10000 + round * 100 + i;
        keys.push_back(Key(id));
        data.push_back(Pattern(id, 1000 + 37 * i));
        out.emplace_back(1000 + 37 * i);
      }
      for (int i = 0; i < 40; ++i) {
        views.push_back(ViewOf(data[i]));
        out_views.push_back(ViewOf(out[i]));
      }
      auto id = a->SubmitStore(keys, views);
      if (!id.ok()) {
        ++failures;
        continue;
      }
      auto r = waiter.Wait(id.value());
      if (!r || !r->ok) ++failures;
      const L2Bitmap loaded = LoadSync(a.get(), keys, out_views);
      for (int i = 0; i < 40; ++i) {
        if (!loaded[i] || out[i] != data[i]) ++failures;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) threads.emplace_back(body, t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(a->Usage().objects, 6u * 5 * 40);
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
}

// ---- several servers sharing one Redis ----

TEST(RespShared, FirstWriterWinsAndTheOtherSeesTheObject) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  auto b = Open(Spec(g_server->port(), prefix));
  ASSERT_TRUE(a && b);
  auto x = Pattern(1, 8000), y = Pattern(2, 8000);
  ASSERT_EQ(StoreSync(a.get(), {Key(1)}, {ViewOf(x)}).bytes_written, 8000u);
  const L2StoreResult second = StoreSync(b.get(), {Key(1)}, {ViewOf(y)});
  EXPECT_EQ(Bits(second.stored), "1");
  EXPECT_EQ(second.bytes_written, 0u);
  EXPECT_EQ(b->ReportStatus().counters.store_skipped, 1u);
  std::vector<uint8_t> out(8000);
  EXPECT_EQ(Bits(LoadSync(b.get(), {Key(1)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == x);
  EXPECT_EQ(b->Usage().total_bytes, 8000u);

  // b sees objects a stores later, through lookups.
  auto z = Pattern(3, 1234);
  ASSERT_TRUE(StoreSync(a.get(), {Key(3)}, {ViewOf(z)}).ok);
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(3), Key(4)})), "10");
  b->SubmitUnlock(std::vector<ObjectKey>{Key(3)});
  EXPECT_EQ(b->Usage().objects, 2u);

  // Deleted through a: b's lookup notices and forgets it.
  ASSERT_EQ(a->Delete(std::vector<ObjectKey>{Key(3)}).value(), 1u);
  EXPECT_EQ(Bits(LookupSync(b.get(), {Key(3)})), "0");
  EXPECT_EQ(b->Usage().objects, 1u);
}

TEST(RespShared, ConcurrentWritersOfTheSameKeysAgree) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  auto b = Open(Spec(g_server->port(), prefix));
  ASSERT_TRUE(a && b);
  constexpr int kN = 64;
  std::vector<ObjectKey> keys;
  std::vector<std::vector<uint8_t>> da, db;
  std::vector<ObjectView> va, vb;
  for (int i = 0; i < kN; ++i) {
    keys.push_back(Key(i));
    da.push_back(Pattern(i, 20000));
    db.push_back(Pattern(i + 1000, 20000));
  }
  for (int i = 0; i < kN; ++i) {
    va.push_back(ViewOf(da[i]));
    vb.push_back(ViewOf(db[i]));
  }
  L2StoreResult ra, rb;
  std::thread ta([&] { ra = StoreSync(a.get(), keys, va); });
  std::thread tb([&] { rb = StoreSync(b.get(), keys, vb); });
  ta.join();
  tb.join();
  EXPECT_TRUE(ra.ok && rb.ok);
  EXPECT_EQ(ra.bytes_written + rb.bytes_written, uint64_t{kN} * 20000);  // each key written once
  std::vector<std::vector<uint8_t>> oa(kN, std::vector<uint8_t>(20000)), ob = oa;
  std::vector<ObjectView> voa, vob;
  for (int i = 0; i < kN; ++i) {
    voa.push_back(ViewOf(oa[i]));
    vob.push_back(ViewOf(ob[i]));
  }
  EXPECT_EQ(Bits(LoadSync(a.get(), keys, voa)), std::string(kN, '1'));
  EXPECT_EQ(Bits(LoadSync(b.get(), keys, vob)), std::string(kN, '1'));
  for (int i = 0; i < kN; ++i) {
    EXPECT_TRUE(oa[i] == ob[i]) << i;
    EXPECT_TRUE(oa[i] == da[i] || oa[i] == db[i]) << i;
  }
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects + b->ReportStatus().counters.corrupt_objects, 0u);
}

// ---- the store path: MSETNX of value and checksum, and its corner cases ----

std::string DataName(const std::string& prefix, const ObjectKey& key) {
  const std::string salt = key.cache_salt.empty() ? "" : "@" + key.cache_salt.str();
  return prefix + "test/model@01000100@0@" + key.ChunkHashHex() + salt;
}

TEST(RespStore, ValueWrittenByLMCacheGetsNoChecksumBesideIt) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto theirs = Pattern(21, 6000), ours = Pattern(22, 6000);
  RawClient raw(g_server->port());
  const std::string name = DataName(prefix, Key(21));
  raw.Cmd({"SET", name, std::string(theirs.begin(), theirs.end())});  // LMCache: no checksum key
  const L2StoreResult r = StoreSync(a.get(), {Key(21)}, {ViewOf(ours)});
  EXPECT_EQ(Bits(r.stored), "1");  // present: first writer wins
  EXPECT_EQ(r.bytes_written, 0u);
  EXPECT_EQ(a->ReportStatus().counters.store_skipped, 1u);
  EXPECT_EQ(raw.Cmd({"EXISTS", name + "#xxh64"}).integer, 0);  // nothing attached to their bytes
  EXPECT_TRUE(raw.Cmd({"GET", name}).str == std::string(theirs.begin(), theirs.end()));
  std::vector<uint8_t> out(6000), wrong(6001);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(21), Key(21)}, {ViewOf(out), ViewOf(wrong)})), "10");
  EXPECT_TRUE(out == theirs);
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 1u);
  EXPECT_EQ(c.size_mismatches, 1u);
  EXPECT_EQ(c.corrupt_objects, 0u);
  EXPECT_EQ(a->Usage().total_bytes, 6000u);
}

TEST(RespStore, StaleChecksumWithoutValueIsRepaired) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto old = Pattern(31, 5000), d = Pattern(32, 7000);
  RawClient raw(g_server->port());
  const std::string name = DataName(prefix, Key(31));
  // The checksum of an object Redis evicted (allkeys-lru takes keys one by one).
  raw.Cmd({"SET", name + "#xxh64", SumPrefix(old) + ":00000000000000aa"});
  const L2StoreResult r = StoreSync(a.get(), {Key(31)}, {ViewOf(d)});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.bytes_written, 7000u);
  EXPECT_EQ(a->ReportStatus().counters.stored_objects, 1u);
  EXPECT_TRUE(raw.Cmd({"GET", name}).str == std::string(d.begin(), d.end()));
  const RawReply sum = raw.Cmd({"GET", name + "#xxh64"});
  EXPECT_EQ(sum.str.rfind(SumPrefix(d) + ":", 0), 0u) << sum.str;
  std::vector<uint8_t> out(7000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(31)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  const L2Counters c = a->ReportStatus().counters;
  EXPECT_EQ(c.unverified_loads, 0u);  // verified against the new checksum
  EXPECT_EQ(c.corrupt_objects, 0u);
}

TEST(RespStore, EveryWriteHasItsOwnChecksumTag) {
  // A reader that saw a corrupt object deletes it only while the checksum is
  // the one it saw: a later write of the same bytes must not match it.
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  auto b = Open(Spec(g_server->port(), prefix));
  ASSERT_TRUE(a && b);
  auto d = Pattern(41, 3000);
  RawClient raw(g_server->port());
  const std::string sum_name = DataName(prefix, Key(41)) + "#xxh64";
  std::vector<std::string> seen;
  for (L2Adapter* x : {a.get(), a.get(), b.get()}) {
    ASSERT_TRUE(StoreSync(x, {Key(41)}, {ViewOf(d)}).ok);
    const std::string sum = raw.Cmd({"GET", sum_name}).str;
    EXPECT_EQ(sum.rfind(SumPrefix(d) + ":", 0), 0u) << sum;
    for (const std::string& s : seen) EXPECT_NE(sum, s);
    seen.push_back(sum);
    ASSERT_EQ(x->Delete(std::vector<ObjectKey>{Key(41)}).value(), 1u);
  }
}

TEST(RespStore, TaglessChecksumsAreAccepted) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(51, 4000);
  RawClient raw(g_server->port());
  const std::string name = DataName(prefix, Key(51));
  raw.Cmd({"SET", name, std::string(d.begin(), d.end())});
  raw.Cmd({"SET", name + "#xxh64", SumPrefix(d)});
  std::vector<uint8_t> out(4000);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(51)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 0u);
  // And a wrong one is caught.
  auto e = Pattern(52, 4000);
  raw.Cmd({"SET", name + "#xxh64", SumPrefix(e)});
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(51)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
  EXPECT_EQ(raw.Cmd({"EXISTS", name}).integer, 0);
}

TEST(RespStore, Xxh64ChecksumsOfEarlierBuildsAreVerified) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(53, 70000), e = Pattern(54, 70000);
  RawClient raw(g_server->port());
  const std::string name = DataName(prefix, Key(53));
  std::vector<uint8_t> out(70000);
  for (const std::string tag : {"", ":00000000000000ab"}) {
    raw.Cmd({"SET", name, std::string(d.begin(), d.end())});
    raw.Cmd({"SET", name + "#xxh64", LegacySumPrefix(d) + tag});
    std::fill(out.begin(), out.end(), 0);
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(53)}, {ViewOf(out)})), "1") << tag;
    EXPECT_TRUE(out == d);
  }
  EXPECT_EQ(a->ReportStatus().counters.unverified_loads, 0u);
  raw.Cmd({"SET", name + "#xxh64", LegacySumPrefix(e) + ":00000000000000ac"});  // not these bytes
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(53)}, {ViewOf(out)})), "0");
  EXPECT_EQ(a->ReportStatus().counters.corrupt_objects, 1u);
}

TEST(RespStore, ConcurrentWritersReadersAndDeletesNeverServeWrongBytes) {
  // Two adapters store the same keys (different bytes) while a third loads
  // them and deletes some: every load returns one writer's bytes whole, no
  // object is ever seen as corrupt, and at the end each key holds exactly
  // one writer's bytes with a checksum that verifies.
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  auto a = Open(Spec(g_server->port(), prefix, R"("num_connections":3)"));
  auto b = Open(Spec(g_server->port(), prefix, R"("num_connections":3)"));
  auto c = Open(Spec(g_server->port(), prefix, R"("num_connections":2)"));
  ASSERT_TRUE(a && b && c);
  constexpr int kN = 24;
  constexpr size_t kSize = 40000;
  std::vector<ObjectKey> keys;
  std::vector<std::vector<uint8_t>> da, db;
  std::vector<ObjectView> va, vb;
  for (int i = 0; i < kN; ++i) {
    keys.push_back(Key(i));
    da.push_back(Pattern(i, kSize));
    db.push_back(Pattern(i + 5000, kSize));
  }
  for (int i = 0; i < kN; ++i) {
    va.push_back(ViewOf(da[i]));
    vb.push_back(ViewOf(db[i]));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, loaded{0};
  // Each writer deletes a few keys through itself first (its index then
  // lets the store through to Redis, where the other writers race it).
  auto writer = [&](L2Adapter* x, std::vector<ObjectView>* v, int off) {
    for (int round = 0; round < 30; ++round) {
      std::vector<ObjectKey> del = {keys[(round * 5 + off) % kN], keys[(round * 11 + off + 1) % kN]};
      if (!x->Delete(del).ok()) ++bad;
      if (!StoreSync(x, keys, *v).ok) ++bad;
    }
  };
  std::thread reader([&] {
    std::vector<std::vector<uint8_t>> out(kN, std::vector<uint8_t>(kSize));
    std::vector<ObjectView> vo;
    for (auto& o : out) vo.push_back(ViewOf(o));
    for (int round = 0; !stop.load(); ++round) {
      const L2Bitmap bits = LoadSync(c.get(), keys, vo);
      for (int i = 0; i < kN; ++i) {
        if (!bits[i]) continue;
        ++loaded;
        if (out[i] != da[i] && out[i] != db[i]) ++bad;
      }
      // Delete a few, so that the writers race to store them again.
      std::vector<ObjectKey> del = {keys[round % kN], keys[(round * 7 + 3) % kN]};
      if (!c->Delete(del).ok()) ++bad;
    }
  });
  std::thread ta(writer, a.get(), &va, 0), tb(writer, b.get(), &vb, 1);
  ta.join();
  tb.join();
  stop.store(true);
  reader.join();
  // On a loaded machine the reader can delete every key the writers' last
  // rounds stored: one more store through each writer, now that nobody
  // deletes, so the check of Redis below always has keys to look at.
  ASSERT_TRUE(a->Delete(std::vector<ObjectKey>{keys[kN - 1]}).ok());
  ASSERT_TRUE(StoreSync(a.get(), {keys[kN - 1]}, {va[kN - 1]}).ok);
  ASSERT_TRUE(b->Delete(std::vector<ObjectKey>{keys[kN - 2]}).ok());
  ASSERT_TRUE(StoreSync(b.get(), {keys[kN - 2]}, {vb[kN - 2]}).ok);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(loaded.load(), 0);
  for (L2Adapter* x : {a.get(), b.get(), c.get()}) {
    const L2Counters k = x->ReportStatus().counters;
    EXPECT_EQ(k.corrupt_objects, 0u);
    EXPECT_EQ(k.unverified_loads, 0u);  // never a value without its checksum
  }
  // Redis itself: each key holds one writer's bytes with their checksum, or
  // (deleted last) neither key.
  RawClient raw(g_server->port());
  int present = 0;
  for (int i = 0; i < kN; ++i) {
    const std::string name = DataName(prefix, keys[i]);
    const RawReply v = raw.Cmd({"GET", name});
    const RawReply s = raw.Cmd({"GET", name + "#xxh64"});
    ASSERT_EQ(v.type, '$');
    if (v.nil) {
      EXPECT_TRUE(s.nil) << i;
      continue;
    }
    ++present;
    const std::vector<uint8_t> bytes(v.str.begin(), v.str.end());
    EXPECT_TRUE(bytes == da[i] || bytes == db[i]) << i;
    EXPECT_EQ(s.str.rfind(SumPrefix(bytes) + ":", 0), 0u) << i << " " << s.str;
  }
  EXPECT_GT(present, 0);
}

// ---- capacity ----

TEST(RespCapacity, EvictsThroughTheIndexAndDeletesFromRedis) {
  if (!g_server) GTEST_SKIP();
  const std::string prefix = UniquePrefix();
  // 1 MiB = 4 objects of 256 KiB.
  auto a = Open(Spec(g_server->port(), prefix, R"("max_capacity_gb":0.0009765625,"num_connections":1)"));
  ASSERT_NE(a, nullptr);
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 6; ++i) data.push_back(Pattern(i, 256 * 1024));
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(StoreSync(a.get(), {Key(i)}, {ViewOf(data[i])}).ok) << i;
  const L2Usage u = a->Usage();
  EXPECT_EQ(u.capacity_bytes, 1u << 20);
  EXPECT_LE(u.total_bytes, u.capacity_bytes);
  EXPECT_EQ(a->ReportStatus().counters.evicted_objects, 2u);
  RawClient raw(g_server->port());
  EXPECT_EQ(raw.Cmd({"EXISTS", prefix + "test/model@01000100@0@" + Key(0).ChunkHashHex()}).integer, 0);  // LRU
  EXPECT_EQ(raw.Cmd({"EXISTS", prefix + "test/model@01000100@0@" + Key(5).ChunkHashHex()}).integer, 1);
}

// ---- failures ----

// Completes every kind of task and checks each took less than `limit_ms`
// and failed (all-zero bitmaps).
void ExpectFastFailures(L2Adapter* a, int limit_ms) {
  auto d = Pattern(77, 4096);
  std::vector<uint8_t> out(4096);
  const auto t0 = std::chrono::steady_clock::now();
  const L2StoreResult st = StoreSync(a, {Key(77)}, {ViewOf(d)});
  EXPECT_FALSE(st.ok);
  EXPECT_EQ(Bits(LookupSync(a, {Key(1)})), "0");
  EXPECT_EQ(Bits(LoadSync(a, {Key(1)}, {ViewOf(out)})), "0");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, limit_ms);
}

bool WaitHealthy(L2Adapter* a, bool healthy, int timeout_ms = 15000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (a->ReportStatus().healthy == healthy) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(RespFailure, ServerKilledThenRestarted) {
  if (!g_server) GTEST_SKIP();
  RedisServer server(g_exe);
  ASSERT_TRUE(server.Start());
  auto a = Open(Spec(server.port(), UniquePrefix(), R"("num_connections":4,"command_timeout_ms":1000)"));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(1, 65536);
  std::vector<uint8_t> out(65536);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);

  server.Stop(SIGKILL);
  ExpectFastFailures(a.get(), 3000);
  const L2Status down = a->ReportStatus();
  EXPECT_FALSE(down.healthy);
  EXPECT_NE(down.message.find("unreachable"), std::string::npos) << down.message;
  EXPECT_EQ(down.pending_tasks, 0u);
  EXPECT_EQ(a->Delete(std::vector<ObjectKey>{Key(1)}).status().code(), StatusCode::kIOError);
  ExpectFastFailures(a.get(), 500);  // while down: no connection attempts on the request path

  ASSERT_TRUE(server.Start(server.port()));
  ASSERT_TRUE(WaitHealthy(a.get(), true)) << a->ReportStatus().message;
  // The restarted server has no data (no persistence): the resync forgot it.
  EXPECT_EQ(a->Usage().objects, 0u);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "0");
  EXPECT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
}

TEST(RespFailure, ConnectionsClosedByTheServerAreReopened) {
  if (!g_server) GTEST_SKIP();
  auto a = Open(Spec(g_server->port(), UniquePrefix(), R"("num_connections":3)"));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(1, 100000);
  std::vector<uint8_t> out(100000);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
  RawClient raw(g_server->port());
  for (int round = 0; round < 3; ++round) {
    // Every other client's connection is closed (idle timeout, CLIENT KILL, a proxy...).
    // (3 workers + the admin connection at first; later only the ones reopened since.)
    EXPECT_GE(raw.Cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).integer, round == 0 ? 4 : 1);
    EXPECT_EQ(Bits(LookupSync(a.get(), {Key(1), Key(1), Key(1)})), "111");
    a->SubmitUnlock(std::vector<ObjectKey>{Key(1), Key(1), Key(1)});
    raw.Cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
    EXPECT_TRUE(out == d);
    raw.Cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    auto e = Pattern(10 + round, 100000);
    EXPECT_TRUE(StoreSync(a.get(), {Key(10 + round)}, {ViewOf(e)}).ok);
    EXPECT_EQ(a->Delete(std::vector<ObjectKey>{Key(10 + round)}).value(), 1u);  // admin connection too
  }
  EXPECT_TRUE(a->ReportStatus().healthy) << a->ReportStatus().message;
}

TEST(RespFailure, StalledServerTimesOut) {
  if (!g_server) GTEST_SKIP();
  RedisServer server(g_exe);
  ASSERT_TRUE(server.Start());
  auto a = Open(Spec(server.port(), UniquePrefix(), R"("num_connections":2,"command_timeout_ms":300)"));
  ASSERT_NE(a, nullptr);
  auto d = Pattern(1, 4096);
  std::vector<uint8_t> out(4096);
  ASSERT_TRUE(StoreSync(a.get(), {Key(1)}, {ViewOf(d)}).ok);
  server.Pause();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "0");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, 2000);  // one command timeout (300 ms), not a hang
  EXPECT_FALSE(a->ReportStatus().healthy);
  EXPECT_NE(a->ReportStatus().message.find("timed out"), std::string::npos) << a->ReportStatus().message;
  server.Resume();
  ASSERT_TRUE(WaitHealthy(a.get(), true)) << a->ReportStatus().message;
  EXPECT_EQ(Bits(LoadSync(a.get(), {Key(1)}, {ViewOf(out)})), "1");
  EXPECT_TRUE(out == d);
}

TEST(RespFailure, CloseWhileDownCompletesEverything) {
  if (!g_server) GTEST_SKIP();
  RedisServer server(g_exe);
  ASSERT_TRUE(server.Start());
  auto a = Open(Spec(server.port(), UniquePrefix(), R"("num_connections":2,"command_timeout_ms":500)"));
  ASSERT_NE(a, nullptr);
  server.Stop(SIGKILL);
  auto d = Pattern(1, 4096);
  std::vector<L2TaskId> ids;
  for (int i = 0; i < 20; ++i) {
    auto id = a->SubmitStore(std::vector<ObjectKey>{Key(i)}, std::vector<ObjectView>{ViewOf(d)});
    ASSERT_TRUE(id.ok());
    ids.push_back(id.value());
  }
  a->Close();
  EXPECT_EQ(a->PopCompletedStores().size(), ids.size());
  EXPECT_EQ(a->ReportStatus().pending_tasks, 0u);
}

}  // namespace
}  // namespace lmcache
