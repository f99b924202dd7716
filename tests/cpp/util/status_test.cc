#include "lmcache/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace lmcache {
namespace {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, CodesAndMessages) {
  Status s = Status::NoSpace("L1 is full");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNoSpace);
  EXPECT_EQ(s.message(), "L1 is full");
  EXPECT_EQ(s.ToString(), "no_space: L1 is full");
  EXPECT_EQ(StatusCodeName(StatusCode::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(StatusCodeName(StatusCode::kAlreadyExists), "already_exists");
}

TEST(StatusTest, FromErrno) {
  Status s = Status::FromErrno("open /nope", ENOENT);
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find("open /nope: "), std::string::npos);
  EXPECT_NE(s.message().find("No such file"), std::string::npos);
}

Status Fails() { return Status::Timeout("late"); }
Status Propagates() {
  LMCACHE_RETURN_IF_ERROR(Fails());
  return Status::OK();
}

TEST(StatusTest, ReturnIfError) { EXPECT_EQ(Propagates().code(), StatusCode::kTimeout); }

TEST(ResultTest, ValueOrStatus) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 42);
  Result<int> e = Status::NotFound("x");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace lmcache
