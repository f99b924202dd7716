// MD5 (RFC 1321), incremental. Only for the /cache/checksums diagnostic,
// which must match LMCache 0.5.6's hashlib.md5 digests; never for security.
//
// Thread safety: a Md5 object is single-owner.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmcache::internal {

class Md5 {
 public:
  Md5() { Reset(); }
  void Reset();
  void Update(const void* data, size_t len);
  // Writes the 16-byte digest; the object must be Reset before reuse.
  void Final(uint8_t out[16]);

 private:
  void Blocks(const uint8_t* p, size_t nblocks);
  uint32_t a_, b_, c_, d_;
  uint64_t total_ = 0;
  uint8_t buf_[64];
  size_t buf_len_ = 0;
};

}  // namespace lmcache::internal
