// KvCacheRegistration::ChunkChecksumsMd5: the digests of 0.5.6's
// POST /cache/checksums (lmcache/v1/multiprocess/http_apis/cache_api.py,
// `_compute_block_checksums`, read from the installed lmcache 0.5.6):
//
//   for each layer tensor kv (registration order, after 0.5.6 sorted its dims
//   by stride, i.e. the KvFormat's physical order):
//       gathered = kv.index_select(block_axis, block_ids)   # all ids at once
//       if bf16: gathered = gathered.to(float32)
//   for chunk c (chunk_size = blocks per chunk, last chunk may be shorter):
//       md5 = hashlib.md5()
//       for each layer: md5.update(gathered.narrow(block_axis, s, e - s)
//                                          .contiguous().numpy().tobytes())
//   layerwise=True instead gives one md5 per (layer, chunk).
//
// So the bytes of (layer, chunk) are the layer's elements in C order over its
// physical dims, with the block dim running over the chunk's ids in list
// order (for [2, NB, BS, NH, HS]: all K blocks of the chunk, then all V
// blocks), little-endian, bf16 widened to fp32 by a 16-bit shift (torch's
// exact conversion, NaN payloads kept).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "lmcache/transfer.h"
#include "transfer/internal.h"
#include "transfer/md5.h"

namespace lmcache {
namespace {

// Feeds MD5 with few, large updates: small runs are staged in a buffer;
// bf16 runs are widened to fp32 on the way in.
class Md5Sink {
 public:
  explicit Md5Sink(bool widen_bf16) : widen_(widen_bf16), buf_(kBuf) {}

  void set_widen(bool widen_bf16) { widen_ = widen_bf16; }

  void Append(const uint8_t* p, size_t len) {
    if (widen_) {
      for (size_t i = 0; i + 2 <= len; i += 2) {
        if (used_ + 4 > kBuf) Flush();
        uint16_t h;
        std::memcpy(&h, p + i, 2);
        const uint32_t f = uint32_t{h} << 16;
        std::memcpy(buf_.data() + used_, &f, 4);
        used_ += 4;
      }
      return;
    }
    if (len >= kDirect) {
      Flush();
      md5_.Update(p, len);
      return;
    }
    if (used_ + len > kBuf) Flush();
    std::memcpy(buf_.data() + used_, p, len);
    used_ += len;
  }

  Md5Digest Finish() {
    Flush();
    Md5Digest d;
    md5_.Final(d.bytes);
    md5_.Reset();
    return d;
  }

 private:
  static constexpr size_t kBuf = 64 * 1024;
  static constexpr size_t kDirect = 4096;
  void Flush() {
    if (used_ > 0) md5_.Update(buf_.data(), used_);
    used_ = 0;
  }
  bool widen_;
  internal::Md5 md5_;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
};

// Appends the bytes of one layer for the blocks sel[0..n) to sink.
void HashLayerChunk(const PagedKvLayout& l, const int64_t* sel, size_t n, Md5Sink* sink) {
  std::vector<internal::PhysDim> dims = internal::PhysicalDims(l);
  // Merge the contiguous innermost dims (never the block dim) into one run.
  const int64_t e = l.elem_size;
  int64_t run = e;
  int k = static_cast<int>(dims.size()) - 1;
  while (k >= 0 && !dims[k].block && (dims[k].size == 1 || dims[k].stride == run)) {
    run *= dims[k].size;
    --k;
  }
  const int outer = k + 1;  // dims [0, outer) are iterated
  std::vector<int64_t> idx(outer, 0);
  auto size_of = [&](int d) { return dims[d].block ? static_cast<int64_t>(n) : dims[d].size; };
  for (int d = 0; d < outer; ++d) {
    if (size_of(d) == 0) return;
  }
  for (;;) {
    int64_t off = 0;
    for (int d = 0; d < outer; ++d) off += (dims[d].block ? sel[idx[d]] : idx[d]) * dims[d].stride;
    sink->Append(l.base + off, static_cast<size_t>(run));
    int d = outer - 1;
    while (d >= 0 && ++idx[d] == size_of(d)) {
      idx[d] = 0;
      --d;
    }
    if (d < 0) break;
  }
}

}  // namespace

std::string Md5Digest::Hex() const {
  static const char kHex[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

Result<std::vector<std::vector<Md5Digest>>> KvCacheRegistration::ChunkChecksumsMd5(std::span<const int64_t> block_ids,
                                                                                  uint32_t blocks_per_chunk,
                                                                                  bool layerwise) const {
  Use use(this);
  if (!use.ok()) return Status::Unavailable("the KV cache registration is closed");
  if (block_ids.empty()) return Status::InvalidArgument("block_ids is required");
  if (blocks_per_chunk == 0) return Status::InvalidArgument("chunk_size must be positive");
  for (size_t li = 0; li < layers_.size(); ++li) {
    for (int64_t b : block_ids) {
      if (b < 0 || b >= int64_t{layers_[li].num_blocks}) {
        return Status::InvalidArgument("block id " + std::to_string(b) + " outside [0, " +
                                       std::to_string(layers_[li].num_blocks) + ") of layer " + std::to_string(li));
      }
    }
  }
  const size_t nb = block_ids.size();
  const size_t num_chunks = (nb + blocks_per_chunk - 1) / blocks_per_chunk;
  std::vector<std::vector<Md5Digest>> out(layerwise ? layers_.size() : 1);
  for (size_t c = 0; c < num_chunks; ++c) {
    const size_t s = c * blocks_per_chunk;
    const size_t len = std::min<size_t>(blocks_per_chunk, nb - s);
    if (layerwise) {
      for (size_t li = 0; li < layers_.size(); ++li) {
        Md5Sink sink(layers_[li].dtype == KvDtype::kBFloat16);
        HashLayerChunk(layers_[li], block_ids.data() + s, len, &sink);
        out[li].push_back(sink.Finish());
      }
    } else {
      // One digest over every layer; the staging buffer holds bytes already
      // widened, so the widening can change from layer to layer.
      Md5Sink sink(false);
      for (const PagedKvLayout& l : layers_) {
        sink.set_widen(l.dtype == KvDtype::kBFloat16);
        HashLayerChunk(l, block_ids.data() + s, len, &sink);
      }
      out[0].push_back(sink.Finish());
    }
  }
  return out;
}

}  // namespace lmcache
