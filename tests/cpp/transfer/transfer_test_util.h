// Helpers of the transfer tests: KV tensors in plain memory with arbitrary
// padding, and slow element-by-element reference implementations of the
// object format and the checksum byte order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "lmcache/transfer.h"

namespace lmcache::testing {

struct Geometry {
  KvFormat format = KvFormat::kTwoNbBsNhHs;
  KvDtype dtype = KvDtype::kFloat16;
  uint32_t kv = 2, nb = 8, bs = 4, nh = 2, hs = 8;
};

// Logical sizes of the format's physical dims, outermost first.
inline std::vector<int64_t> PhysicalShape(const Geometry& g) {
  switch (g.format) {
    case KvFormat::kTwoNbBsNhHs: return {g.kv, g.nb, g.bs, g.nh, g.hs};
    case KvFormat::kTwoNbNhBsHs: return {g.kv, g.nb, g.nh, g.bs, g.hs};
    case KvFormat::kNbTwoBsNhHs: return {g.nb, g.kv, g.bs, g.nh, g.hs};
    case KvFormat::kNbTwoNhBsHs: return {g.nb, g.kv, g.nh, g.bs, g.hs};
    case KvFormat::kNbBsHs: return {g.nb, g.bs, g.hs};
  }
  return {};
}

// A KV tensor in its own heap buffer. extra[d] adds elements to dim d's
// natural stride (padding; on the last dim it spaces the elements out).
struct TestTensor {
  Geometry geo;
  std::vector<uint8_t> mem;
  KvTensorMeta meta;
  PagedKvLayout layout;
};

inline TestTensor MakeTensor(const Geometry& g, uint64_t seed, std::vector<int64_t> extra = {},
                             int64_t storage_offset = 0) {
  TestTensor t;
  t.geo = g;
  const std::vector<int64_t> shape = PhysicalShape(g);
  extra.resize(shape.size(), 0);
  std::vector<int64_t> stride(shape.size());
  int64_t s = 1 + extra.back();
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    stride[d] = (d == static_cast<int>(shape.size()) - 1) ? s : shape[d + 1] * stride[d + 1] + extra[d];
  }
  int64_t elems = storage_offset + 1;
  for (size_t d = 0; d < shape.size(); ++d) elems += (shape[d] - 1) * stride[d];
  const uint32_t e = KvDtypeSize(g.dtype);
  t.mem.resize(static_cast<size_t>(elems) * e + 64);
  std::mt19937_64 rng(seed);
  for (auto& b : t.mem) b = static_cast<uint8_t>(rng());
  t.meta.dtype = g.dtype;
  t.meta.shape = shape;
  t.meta.stride = stride;
  t.meta.storage_offset = storage_offset;
  auto r = PagedKvLayout::FromTensor(t.mem.data(), t.mem.size(), t.meta, g.format);
  if (r.ok()) t.layout = r.value();
  return t;
}

inline uint8_t* ElemPtr(const PagedKvLayout& l, uint32_t kv, int64_t b, uint32_t t, uint32_t h, uint32_t x) {
  return l.base + int64_t{kv} * l.kv_stride + b * l.block_stride + int64_t{t} * l.token_stride +
         int64_t{h} * l.head_stride + int64_t{x} * l.elem_stride;
}

// Expected bytes of the object of chunk `chunk` of object group og (element
// by element, straight from the documented format).
inline std::vector<uint8_t> ReferenceObject(const KvCacheRegistration& reg, uint32_t og,
                                            const std::vector<std::vector<int64_t>>& block_ids, uint32_t chunk) {
  std::vector<uint8_t> out;
  const uint32_t C = reg.chunk_tokens();
  for (uint32_t g : reg.object_groups()[og].kernel_groups) {
    const KernelGroupInfo& kg = reg.kernel_groups()[g];
    for (uint32_t k = 0; k < kg.kv_size; ++k) {
      for (uint32_t li : kg.layers) {
        const PagedKvLayout& l = reg.layer(li);
        for (uint32_t tok = 0; tok < C; ++tok) {
          const int64_t b = block_ids[g][uint64_t{chunk} * kg.blocks_per_chunk + tok / l.block_size];
          for (uint32_t h = 0; h < l.num_heads; ++h) {
            for (uint32_t x = 0; x < l.head_size; ++x) {
              const uint8_t* p = ElemPtr(l, k, b, tok % l.block_size, h, x);
              out.insert(out.end(), p, p + l.elem_size);
            }
          }
        }
      }
    }
  }
  return out;
}

// Bytes of one layer for the blocks `sel`, in the format's physical order
// (the order 0.5.6 hashes), bf16 widened to fp32.
inline void ReferenceChecksumBytes(const PagedKvLayout& l, const std::vector<int64_t>& sel,
                                   std::vector<uint8_t>* out) {
  auto emit = [&](uint32_t k, int64_t b, uint32_t t, uint32_t h, uint32_t x) {
    const uint8_t* p = ElemPtr(l, k, b, t, h, x);
    if (l.dtype == KvDtype::kBFloat16) {
      uint16_t v;
      std::memcpy(&v, p, 2);
      const uint32_t f = uint32_t{v} << 16;
      const auto* fb = reinterpret_cast<const uint8_t*>(&f);
      out->insert(out->end(), fb, fb + 4);
    } else {
      out->insert(out->end(), p, p + l.elem_size);
    }
  };
  const uint32_t K = l.kv_size, BS = l.block_size, NH = l.num_heads, HS = l.head_size;
  switch (l.format) {
    case KvFormat::kTwoNbBsNhHs:
      for (uint32_t k = 0; k < K; ++k)
        for (int64_t b : sel)
          for (uint32_t t = 0; t < BS; ++t)
            for (uint32_t h = 0; h < NH; ++h)
              for (uint32_t x = 0; x < HS; ++x) emit(k, b, t, h, x);
      break;
    case KvFormat::kTwoNbNhBsHs:
      for (uint32_t k = 0; k < K; ++k)
        for (int64_t b : sel)
          for (uint32_t h = 0; h < NH; ++h)
            for (uint32_t t = 0; t < BS; ++t)
              for (uint32_t x = 0; x < HS; ++x) emit(k, b, t, h, x);
      break;
    case KvFormat::kNbTwoBsNhHs:
      for (int64_t b : sel)
        for (uint32_t k = 0; k < K; ++k)
          for (uint32_t t = 0; t < BS; ++t)
            for (uint32_t h = 0; h < NH; ++h)
              for (uint32_t x = 0; x < HS; ++x) emit(k, b, t, h, x);
      break;
    case KvFormat::kNbTwoNhBsHs:
      for (int64_t b : sel)
        for (uint32_t k = 0; k < K; ++k)
          for (uint32_t h = 0; h < NH; ++h)
            for (uint32_t t = 0; t < BS; ++t)
              for (uint32_t x = 0; x < HS; ++x) emit(k, b, t, h, x);
      break;
    case KvFormat::kNbBsHs:
      for (int64_t b : sel)
        for (uint32_t t = 0; t < BS; ++t)
          for (uint32_t x = 0; x < HS; ++x) emit(0, b, t, 0, x);
      break;
  }
}

// Every logical element of block b1 of layout l1 equals that of b2 in l2.
inline bool SameBlock(const PagedKvLayout& l1, int64_t b1, const PagedKvLayout& l2, int64_t b2,
                      uint32_t first_token = 0) {
  for (uint32_t k = 0; k < l1.kv_size; ++k)
    for (uint32_t t = first_token; t < l1.block_size; ++t)
      for (uint32_t h = 0; h < l1.num_heads; ++h)
        for (uint32_t x = 0; x < l1.head_size; ++x) {
          if (std::memcmp(ElemPtr(l1, k, b1, t, h, x), ElemPtr(l2, k, b2, t, h, x), l1.elem_size) != 0) return false;
        }
  return true;
}

}  // namespace lmcache::testing
