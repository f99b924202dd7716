// KvDtype / KvFormat names, 0.5.6-compatible format detection and
// PagedKvLayout::FromTensor.
#include <algorithm>
#include <array>
#include <numeric>
#include <string>

#include "lmcache/transfer.h"
#include "transfer/internal.h"

namespace lmcache {
namespace {

struct DtypeEntry {
  std::string_view name;
  KvDtype dtype;
};
constexpr DtypeEntry kDtypeNames[] = {
    {"float16", KvDtype::kFloat16},      {"half", KvDtype::kFloat16},
    {"bfloat16", KvDtype::kBFloat16},    {"float32", KvDtype::kFloat32},
    {"float", KvDtype::kFloat32},        {"float64", KvDtype::kFloat64},
    {"double", KvDtype::kFloat64},       {"uint8", KvDtype::kUInt8},
    {"int8", KvDtype::kInt8},            {"float8_e4m3fn", KvDtype::kFloat8E4M3},
    {"float8_e5m2", KvDtype::kFloat8E5M2},
};

// Logical axes of a layer tensor.
enum Axis : int { kKv = 0, kBlock = 1, kToken = 2, kHead = 3, kElem = 4 };

// The physical (stride-sorted) dim order of each format, as logical axes.
struct FormatInfo {
  KvFormat format;
  std::string_view name;
  int rank;
  std::array<Axis, 5> dims;
};
constexpr FormatInfo kFormats[] = {
    {KvFormat::kTwoNbBsNhHs, "NL_X_TWO_NB_BS_NH_HS", 5, {kKv, kBlock, kToken, kHead, kElem}},
    {KvFormat::kTwoNbNhBsHs, "NL_X_TWO_NB_NH_BS_HS", 5, {kKv, kBlock, kHead, kToken, kElem}},
    {KvFormat::kNbTwoBsNhHs, "NL_X_NB_TWO_BS_NH_HS", 5, {kBlock, kKv, kToken, kHead, kElem}},
    {KvFormat::kNbTwoNhBsHs, "NL_X_NB_TWO_NH_BS_HS", 5, {kBlock, kKv, kHead, kToken, kElem}},
    {KvFormat::kNbBsHs, "NL_X_NB_BS_HS", 3, {kBlock, kToken, kElem, kElem, kElem}},
};

const FormatInfo& Info(KvFormat f) {
  for (const FormatInfo& i : kFormats) {
    if (i.format == f) return i;
  }
  LMCACHE_CHECK(false, "unknown KvFormat");
  return kFormats[0];
}

std::string DimsToString(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + ")";
}

// 0.5.6 attempt_permute_to_contiguous_view: dims sorted by stride, largest
// first; a size-1 dim tying on stride goes innermost among the tied dims.
// Python's sorted(reverse=True) is stable, and so is this.
void StrideSorted(const KvTensorMeta& m, std::vector<int64_t>* shape, std::vector<int64_t>* stride) {
  std::vector<size_t> perm(m.shape.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](size_t a, size_t b) {
    if (m.stride[a] != m.stride[b]) return m.stride[a] > m.stride[b];
    return (m.shape[a] != 1) > (m.shape[b] != 1);
  });
  shape->clear();
  stride->clear();
  for (size_t p : perm) {
    shape->push_back(m.shape[p]);
    stride->push_back(m.stride[p]);
  }
}

Status CheckMeta(const KvTensorMeta& m) {
  if (m.shape.empty() || m.shape.size() != m.stride.size()) {
    return Status::InvalidArgument("KV tensor shape " + DimsToString(m.shape) + " and stride " +
                                   DimsToString(m.stride) + " must be non-empty and of equal rank");
  }
  for (size_t i = 0; i < m.shape.size(); ++i) {
    if (m.shape[i] <= 0) return Status::InvalidArgument("KV tensor shape " + DimsToString(m.shape) + " has an empty dim");
    if (m.stride[i] < 0) return Status::InvalidArgument("KV tensor stride " + DimsToString(m.stride) + " is negative");
    if (m.stride[i] == 0 && m.shape[i] > 1) {
      return Status::InvalidArgument("KV tensor stride " + DimsToString(m.stride) + " broadcasts a dim (stride 0)");
    }
  }
  if (m.storage_offset < 0) return Status::InvalidArgument("KV tensor storage_offset is negative");
  return Status::OK();
}

}  // namespace

Result<KvDtype> ParseKvDtype(std::string_view name) {
  if (name.substr(0, 6) == "torch.") name.remove_prefix(6);
  for (const DtypeEntry& e : kDtypeNames) {
    if (e.name == name) return e.dtype;
  }
  return Status::InvalidArgument("unsupported KV dtype '" + std::string(name) +
                                 "' (float16, bfloat16, float32, float64, uint8, int8, float8_e4m3fn, float8_e5m2)");
}

std::string_view KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kFloat16: return "float16";
    case KvDtype::kBFloat16: return "bfloat16";
    case KvDtype::kFloat32: return "float32";
    case KvDtype::kFloat64: return "float64";
    case KvDtype::kUInt8: return "uint8";
    case KvDtype::kInt8: return "int8";
    case KvDtype::kFloat8E4M3: return "float8_e4m3fn";
    case KvDtype::kFloat8E5M2: return "float8_e5m2";
  }
  return "unknown";
}

uint32_t KvDtypeSize(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kFloat16:
    case KvDtype::kBFloat16: return 2;
    case KvDtype::kFloat32: return 4;
    case KvDtype::kFloat64: return 8;
    case KvDtype::kUInt8:
    case KvDtype::kInt8:
    case KvDtype::kFloat8E4M3:
    case KvDtype::kFloat8E5M2: return 1;
  }
  return 0;
}

std::string_view KvFormatName(KvFormat format) { return Info(format).name; }

Result<KvFormat> ParseKvFormat(std::string_view name) {
  for (const FormatInfo& i : kFormats) {
    if (i.name == name) return i.format;
  }
  return Status::InvalidArgument("unsupported KV format '" + std::string(name) +
                                 "' (NL_X_TWO_NB_BS_NH_HS, NL_X_TWO_NB_NH_BS_HS, NL_X_NB_TWO_BS_NH_HS, "
                                 "NL_X_NB_TWO_NH_BS_HS, NL_X_NB_BS_HS)");
}

Result<KvLayoutHint> ParseKvLayoutHint(std::string_view name) {
  if (name == "NHD") return KvLayoutHint::kNHD;
  if (name == "HND") return KvLayoutHint::kHND;
  return Status::InvalidArgument("unsupported kv_layout '" + std::string(name) + "' (NHD or HND)");
}

Result<KvFormat> DetectKvFormat(const KvTensorMeta& meta, KvLayoutHint hint) {
  LMCACHE_RETURN_IF_ERROR(CheckMeta(meta));
  std::vector<int64_t> shape, stride;
  StrideSorted(meta, &shape, &stride);
  const bool hnd = hint == KvLayoutHint::kHND;
  if (shape.size() == 5) {
    // dim0 == 2: K/V axis first (flash-attn); dim1 == 2: blocks first
    // (flashinfer). dim0 == 1 (a single-plane 5-D tensor) is our extension;
    // 0.5.6 rejects it.
    if (shape[0] == 2 || (shape[0] == 1 && shape[1] != 2)) {
      return hnd ? KvFormat::kTwoNbNhBsHs : KvFormat::kTwoNbBsNhHs;
    }
    if (shape[1] == 2) return hnd ? KvFormat::kNbTwoNhBsHs : KvFormat::kNbTwoBsNhHs;
  } else if (shape.size() == 3) {
    return KvFormat::kNbBsHs;
  }
  return Status::InvalidArgument("unsupported KV tensor layout: shape " + DimsToString(meta.shape) + ", stride " +
                                 DimsToString(meta.stride) +
                                 " (expected rank 5 [2,NB,BS,NH,HS] / [NB,2,BS,NH,HS] or rank 3 [NB,BS,HS])");
}

Result<PagedKvLayout> PagedKvLayout::FromTensor(uint8_t* mapping, uint64_t mapping_bytes, const KvTensorMeta& meta,
                                                KvFormat format) {
  LMCACHE_RETURN_IF_ERROR(CheckMeta(meta));
  const FormatInfo& info = Info(format);
  if (static_cast<int>(meta.shape.size()) != info.rank) {
    return Status::InvalidArgument("KV tensor shape " + DimsToString(meta.shape) + " does not have the rank of " +
                                   std::string(info.name));
  }
  std::vector<int64_t> shape, stride;
  StrideSorted(meta, &shape, &stride);

  PagedKvLayout l;
  l.dtype = meta.dtype;
  l.format = format;
  l.elem_size = KvDtypeSize(meta.dtype);
  const int64_t e = l.elem_size;
  int64_t size[5] = {1, 1, 1, 1, 1};
  int64_t bstride[5] = {0, 0, 0, 0, 0};
  for (int d = 0; d < info.rank; ++d) {
    size[info.dims[d]] = shape[d];
    bstride[info.dims[d]] = stride[d] * e;
  }
  if (size[kKv] > 2) {
    return Status::InvalidArgument("KV tensor shape " + DimsToString(meta.shape) + ": the K/V axis of " +
                                   std::string(info.name) + " must have size 1 or 2, not " +
                                   std::to_string(size[kKv]));
  }
  for (int a = 0; a < 5; ++a) {
    if (size[a] > int64_t{UINT32_MAX}) return Status::InvalidArgument("KV tensor dim too large");
  }
  // Extent: every element must lie inside the mapping.
  unsigned __int128 lo = static_cast<unsigned __int128>(meta.storage_offset) * e;
  unsigned __int128 hi = lo + e;
  for (size_t d = 0; d < shape.size(); ++d) {
    hi += static_cast<unsigned __int128>(shape[d] - 1) * static_cast<uint64_t>(stride[d]) * e;
  }
  if (hi > mapping_bytes) {
    return Status::InvalidArgument("KV tensor shape " + DimsToString(meta.shape) + " stride " +
                                   DimsToString(meta.stride) + " offset " + std::to_string(meta.storage_offset) +
                                   " (" + std::string(KvDtypeName(meta.dtype)) + ") ends at byte " +
                                   std::to_string(static_cast<uint64_t>(hi)) + ", past the " +
                                   std::to_string(mapping_bytes) + "-byte mapping");
  }
  l.base = mapping + static_cast<uint64_t>(lo);
  l.kv_size = static_cast<uint32_t>(size[kKv]);
  l.num_blocks = static_cast<uint32_t>(size[kBlock]);
  l.block_size = static_cast<uint32_t>(size[kToken]);
  l.num_heads = static_cast<uint32_t>(size[kHead]);
  l.head_size = static_cast<uint32_t>(size[kElem]);
  l.kv_stride = bstride[kKv];
  l.block_stride = bstride[kBlock];
  l.token_stride = bstride[kToken];
  l.head_stride = bstride[kHead];
  l.elem_stride = bstride[kElem];
  return l;
}

namespace internal {

std::vector<PhysDim> PhysicalDims(const PagedKvLayout& l) {
  const FormatInfo& info = Info(l.format);
  std::vector<PhysDim> out;
  for (int d = 0; d < info.rank; ++d) {
    switch (info.dims[d]) {
      case kKv: out.push_back({l.kv_size, l.kv_stride, false}); break;
      case kBlock: out.push_back({l.num_blocks, l.block_stride, true}); break;
      case kToken: out.push_back({l.block_size, l.token_stride, false}); break;
      case kHead: out.push_back({l.num_heads, l.head_stride, false}); break;
      case kElem: out.push_back({l.head_size, l.elem_stride, false}); break;
    }
  }
  return out;
}

}  // namespace internal
}  // namespace lmcache
