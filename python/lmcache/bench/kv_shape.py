"""The ``--kvcache-shape-spec`` grammar of ``lmcache bench server`` (LMCache 0.5.6's
``parse_kvcache_shape_spec`` in ``lmcache/v1/kv_layer_groups.py``, reimplemented without torch).

Grammar::

    spec        := group { ";" group }
    group       := "(" shape ")" ":" dtype ":" layer_count
    shape       := kv_size "," NB "," BS "," NH "," HS
    dtype       := float16 | float32 | bfloat16 | uint8 | int8      (case-insensitive)
    layer_count := positive integer

* ``kv_size``: 2 for classical attention (separate K and V), 1 for MLA (one plane).
* ``NB``: paged blocks; ``BS``: tokens per block. 0 means "take ``--num-blocks`` /
  ``--block-size``" (as in 0.5.6, a positive value in the spec wins over the flags).
* ``NH``: attention heads per layer; ``HS``: head size in elements.
* Groups are concatenated in order; layer indices are assigned from 0. Blank groups (a
  trailing ``;``) are skipped. Every group must share NB and BS (paged KV has one block
  geometry).

Per-layer tensor shapes follow 0.5.6's bench (and vLLM's NHD layout): ``[2, NB, BS, NH, HS]``
for ``kv_size`` 2 and rank 3 ``[NB, BS, NH*HS]`` for ``kv_size`` 1 (how the server's format
detector recognises MLA).

Every problem raises :class:`ShapeSpecError` with one line naming the offending group. The
messages keep 0.5.6's wording where 0.5.6 has one ("Invalid group spec format", "Unrecognized
dtype", "Shape must be a 5-tuple", ...); the checks 0.5.6 lacks (kv_size 1 or 2, positive
sizes, shared NB/BS at parse time) are added in the same style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_SHAPE_SPEC",
    "DTYPES",
    "KVGroup",
    "ShapeSpecError",
    "format_kvcache_shape_spec",
    "parse_kvcache_shape_spec",
    "resolve_geometry",
]

DEFAULT_SHAPE_SPEC = "(2,1024,16,8,128):float16:32"


@dataclass(frozen=True)
class _DType:
    name: str
    storage: np.dtype[np.generic]  # how the bytes are held in numpy (bfloat16 as uint16)
    float_mask: int | None  # AND mask that keeps random bits finite (clears the exponent's MSB)

    @property
    def itemsize(self) -> int:
        return int(self.storage.itemsize)


DTYPES: dict[str, _DType] = {
    "float16": _DType("float16", np.dtype(np.uint16), 0xBFFF),
    "float32": _DType("float32", np.dtype(np.uint32), 0xBFFFFFFF),
    "bfloat16": _DType("bfloat16", np.dtype(np.uint16), 0xBFFF),
    "uint8": _DType("uint8", np.dtype(np.uint8), None),
    "int8": _DType("int8", np.dtype(np.uint8), None),
}
"""The dtypes of 0.5.6's ``DTYPE_MAP``. Data is generated and compared as raw bits, so every
dtype is held as an unsigned integer array of its width."""


class ShapeSpecError(ValueError):
    """A malformed ``--kvcache-shape-spec``; the message is one line."""


@dataclass(frozen=True)
class KVGroup:
    """One group of layers sharing a geometry; ``first_layer`` is its first layer index."""

    kv_size: int
    num_blocks: int
    block_size: int
    num_heads: int
    head_size: int
    dtype: str
    num_layers: int
    first_layer: int = 0

    @property
    def is_mla(self) -> bool:
        return self.kv_size == 1

    @property
    def layer_indices(self) -> tuple[int, ...]:
        return tuple(range(self.first_layer, self.first_layer + self.num_layers))

    @property
    def hidden(self) -> int:
        return self.num_heads * self.head_size

    @property
    def layer_shape(self) -> tuple[int, ...]:
        """The per-layer tensor shape (rank 5 classical, rank 3 MLA)."""
        if self.is_mla:
            return (self.num_blocks, self.block_size, self.hidden)
        return (self.kv_size, self.num_blocks, self.block_size, self.num_heads, self.head_size)

    @property
    def block_axis(self) -> int:
        return 0 if self.is_mla else 1

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def bytes_per_token(self) -> int:
        """KV bytes per token over the group's layers."""
        return self.num_layers * self.kv_size * self.hidden * self.itemsize

    def spec(self) -> str:
        return (
            f"({self.kv_size},{self.num_blocks},{self.block_size},{self.num_heads},{self.head_size})"
            f":{self.dtype}:{self.num_layers}"
        )


def _parse_group(text: str, first_layer: int) -> KVGroup:
    if not (text.startswith("(") and "):" in text):
        raise ShapeSpecError(
            f"Invalid group spec format: {text!r} (expected '(kv_size,NB,BS,NH,HS):dtype:layers')"
        )
    close = text.find(")")
    shape_text = text[1:close]
    parts = text[close + 2 :].split(":")
    if len(parts) != 2:
        raise ShapeSpecError(
            f"Invalid group spec format: {text!r} (expected '(kv_size,NB,BS,NH,HS):dtype:layers')"
        )
    dtype_text, layers_text = parts[0].strip(), parts[1].strip()
    dtype = dtype_text.lower()
    if dtype not in DTYPES:
        raise ShapeSpecError(
            f"Unrecognized dtype {dtype_text!r} in group spec: {text!r}. Supported: {', '.join(DTYPES)}"
        )
    try:
        shape = tuple(int(p.strip()) for p in shape_text.split(","))
        layers = int(layers_text)
    except ValueError:
        raise ShapeSpecError(f"Invalid number in group spec: {text!r}") from None
    if len(shape) != 5:
        raise ShapeSpecError(f"Shape must be a 5-tuple (kv_size,NB,BS,NH,HS): {text!r}")
    kv_size, nb, bs, nh, hs = shape
    if kv_size not in (1, 2):
        raise ShapeSpecError(f"kv_size must be 2 (K and V) or 1 (MLA), got {kv_size}: {text!r}")
    if nb < 0 or bs < 0:
        raise ShapeSpecError(f"NB and BS must be positive (or 0 for --num-blocks/--block-size): {text!r}")
    if nh <= 0 or hs <= 0:
        raise ShapeSpecError(f"NH and HS must be positive: {text!r}")
    if layers <= 0:
        raise ShapeSpecError(f"Layer count must be a positive integer: {text!r}")
    return KVGroup(kv_size, nb, bs, nh, hs, dtype, layers, first_layer)


def parse_kvcache_shape_spec(spec: str) -> list[KVGroup]:
    """Parse a spec into its groups (NB/BS may still be 0: see :func:`resolve_geometry`)."""
    if not spec or not spec.strip():
        raise ShapeSpecError("KV shape specification cannot be empty")
    groups: list[KVGroup] = []
    first = 0
    for raw in spec.split(";"):
        text = raw.strip()
        if not text:
            continue
        group = _parse_group(text, first)
        groups.append(group)
        first += group.num_layers
    if not groups:
        raise ShapeSpecError("No valid layer groups found in spec")
    nbs = sorted({g.num_blocks for g in groups})
    bss = sorted({g.block_size for g in groups})
    if len(nbs) > 1 or len(bss) > 1:
        raise ShapeSpecError(
            "All groups must share NB and BS (paged KV requires uniform block geometry). "
            f"Got NB={nbs} BS={bss}"
        )
    return groups


def resolve_geometry(groups: Sequence[KVGroup], num_blocks: int, block_size: int) -> list[KVGroup]:
    """Fill NB/BS that the spec left at 0 from ``--num-blocks`` / ``--block-size``."""
    out = []
    for g in groups:
        nb = g.num_blocks if g.num_blocks > 0 else num_blocks
        bs = g.block_size if g.block_size > 0 else block_size
        out.append(KVGroup(g.kv_size, nb, bs, g.num_heads, g.head_size, g.dtype, g.num_layers, g.first_layer))
    return out


def format_kvcache_shape_spec(groups: Sequence[KVGroup]) -> str:
    """The inverse of :func:`parse_kvcache_shape_spec` (canonical spelling)."""
    if not groups:
        raise ShapeSpecError("Cannot format an empty layer group list")
    return ";".join(g.spec() for g in groups)
