"""The benchmark's fake worker memory: per-layer paged KV arrays, optionally in POSIX SHM.

Layers are held as unsigned-integer arrays of their dtype's width (bfloat16 as uint16), so data
is generated, copied and hashed as raw bits. Shapes follow :mod:`lmcache.bench.kv_shape`
(``[2, NB, BS, NH, HS]``, or ``[NB, BS, NH*HS]`` for MLA).

* :meth:`KVCache.fill` writes deterministic data for one chunk of one sequence: the bytes depend
  only on the layout, the sequence number and the chunk index, so a later run of the benchmark
  with the same spec regenerates exactly what an earlier run stored (which is how a cold-lookup
  hit can still be verified).
* :meth:`KVCache.checksums` computes the per-chunk MD5 of LMCache 0.5.6's
  ``POST /cache/checksums``: for each chunk, every layer in order, the layer's rows gathered along
  the block axis for the chunk's blocks, in C order; bfloat16 widened to float32 (exact: a 16-bit
  shift) first. Local and server digests are therefore directly comparable.
* :meth:`KVCache.gather` / :meth:`KVCache.scatter` convert between paged blocks and the object
  layout of the engine-driven SHM slots: ``[2, layers, chunk_tokens, NH*HS]`` (``[layers,
  chunk_tokens, NH*HS]`` for MLA), as 0.5.6's ``gather_paged_kv_to_cpu`` writes it.

SHM segments are created as ``/dev/shm/lmcache_kv_<pid>_<n>`` (0.5.6's names, which servers
recognise when cleaning up after dead clients), one per layer, ``O_EXCL`` and mode 0600.
:meth:`KVCache.unlink` removes the names (the mappings stay valid); the benchmark calls it as
soon as the server has mapped the segments, and again on every exit path.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import mmap
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lmcache.bench.kv_shape import DTYPES, KVGroup
from lmcache.protocol.types import CpuShmIPCData, TensorMetadata

__all__ = ["SHM_DIR", "KVCache", "ShmSegment"]

SHM_DIR = "/dev/shm"
_SEGMENT_NUMBERS = itertools.count()

Raw = npt.NDArray[np.unsignedinteger]


class ShmSegment:
    """A named POSIX shared-memory segment, created here and mapped read-write."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        pid = os.getpid()
        while True:
            self.name = f"/lmcache_kv_{pid}_{next(_SEGMENT_NUMBERS)}"
            path = SHM_DIR + self.name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                # Our pid is alive, so a segment carrying it is a leftover of a dead process
                # that had the same pid: remove it and take the next number.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            break
        self.linked = True
        try:
            os.ftruncate(fd, self.size)
            self.map: mmap.mmap | None = mmap.mmap(fd, self.size, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            self.unlink()
            raise
        os.close(fd)

    def unlink(self) -> None:
        if not self.linked:
            return
        self.linked = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SHM_DIR + self.name)

    def close(self) -> None:
        if self.map is not None:
            # BufferError: an array still views it; the mapping then goes with the process.
            with contextlib.suppress(BufferError):
                self.map.close()
            self.map = None


def _raw_dtype(group: KVGroup) -> np.dtype[np.unsignedinteger]:
    dt: np.dtype[np.unsignedinteger] = DTYPES[group.dtype].storage  # type: ignore[assignment]
    return dt


class KVCache:
    """Paged KV tensors of one fake worker: ``layers[i]`` belongs to ``layer_groups[i]``."""

    def __init__(self, groups: Sequence[KVGroup], *, shared: bool) -> None:
        self.groups = list(groups)
        self.shared = shared
        self.layers: list[Raw] = []
        self.layer_groups: list[KVGroup] = []
        self.segments: list[ShmSegment] = []
        try:
            for g in self.groups:
                dtype = _raw_dtype(g)
                count = int(np.prod(g.layer_shape))
                for _ in range(g.num_layers):
                    if shared:
                        seg = ShmSegment(count * dtype.itemsize)
                        self.segments.append(seg)
                        assert seg.map is not None
                        arr: Raw = np.frombuffer(seg.map, dtype=dtype, count=count).reshape(g.layer_shape)
                    else:
                        arr = np.zeros(g.layer_shape, dtype=dtype)
                    self.layers.append(arr)
                    self.layer_groups.append(g)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def unlink(self) -> None:
        """Remove the segment names (the memory lives on in every mapping)."""
        for seg in self.segments:
            seg.unlink()

    def close(self) -> None:
        self.layers = []
        self.layer_groups = []
        for seg in self.segments:
            seg.unlink()
            seg.close()
        self.segments = []

    def handles(self) -> list[CpuShmIPCData]:
        """The ``cpu_shm`` KV handles of ``register_kv_cache``, one per layer."""
        if not self.shared:
            raise RuntimeError("KV cache is not in shared memory")
        out = []
        for arr, g, seg in zip(self.layers, self.layer_groups, self.segments, strict=True):
            meta = TensorMetadata(
                dtype=g.dtype,
                shape=tuple(int(x) for x in arr.shape),
                stride=tuple(int(s) // arr.itemsize for s in arr.strides),
                storage_offset=0,
                device_uuid="cpu",
            )
            out.append(CpuShmIPCData(version=1, metadata=meta, shm_name=seg.name, nbytes=seg.size))
        return out

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.layers)

    # ------------------------------------------------------------------ block views

    @staticmethod
    def _view(arr: Raw, group: KVGroup, first: int, count: int) -> Raw:
        if group.is_mla:
            return arr[first : first + count]
        return arr[:, first : first + count]

    def zero(self, first_block: int, num_blocks: int) -> None:
        for arr, g in zip(self.layers, self.layer_groups, strict=True):
            self._view(arr, g, first_block, num_blocks)[...] = 0

    def fill(self, seq: int, chunk: int, first_block: int, blocks_per_chunk: int) -> None:
        """Write the deterministic data of chunk ``chunk`` of sequence ``seq`` at ``first_block``."""
        rng = np.random.default_rng([seq, chunk])
        for arr, g in zip(self.layers, self.layer_groups, strict=True):
            view = self._view(arr, g, first_block, blocks_per_chunk)
            nbytes = int(view.size) * view.itemsize
            words = rng.integers(0, 2**64 - 1, size=(nbytes + 7) // 8, dtype=np.uint64, endpoint=True)
            data = words.view(view.dtype)[: view.size].reshape(view.shape)
            mask = DTYPES[g.dtype].float_mask
            if mask is not None:
                np.bitwise_and(data, mask, out=data)
            view[...] = data

    def checksums(self, first_block: int, num_chunks: int, blocks_per_chunk: int) -> list[str]:
        """MD5 per chunk of ``num_chunks`` chunks starting at ``first_block`` (0.5.6's definition)."""
        out = []
        for c in range(num_chunks):
            md5 = hashlib.md5()
            first = first_block + c * blocks_per_chunk
            for arr, g in zip(self.layers, self.layer_groups, strict=True):
                view = self._view(arr, g, first, blocks_per_chunk)
                if g.dtype == "bfloat16":
                    md5.update(np.left_shift(view.astype(np.uint32), 16).tobytes())
                else:
                    md5.update(np.ascontiguousarray(view).data)
            out.append(md5.hexdigest())
        return out

    # ------------------------------------------------------------------ engine-driven objects

    def object_shape(self, chunk_tokens: int) -> tuple[int, ...]:
        """The object (SHM slot) shape of one chunk; engine_driven has exactly one group."""
        g = self.groups[0]
        if g.is_mla:
            return (g.num_layers, chunk_tokens, g.hidden)
        return (2, g.num_layers, chunk_tokens, g.hidden)

    def gather(self, first_block: int, blocks_per_chunk: int, out: Raw) -> None:
        """Copy one chunk of paged blocks into an object ``out`` (see :meth:`object_shape`)."""
        g = self.groups[0]
        tokens = blocks_per_chunk * g.block_size
        for li, arr in enumerate(self.layers):
            view = self._view(arr, g, first_block, blocks_per_chunk)
            if g.is_mla:
                out[li] = view.reshape(tokens, g.hidden)
            else:
                out[:, li] = view.reshape(2, tokens, g.hidden)

    def scatter(self, first_block: int, blocks_per_chunk: int, src: Raw) -> None:
        """Copy one object ``src`` into a chunk of paged blocks."""
        g = self.groups[0]
        for li, arr in enumerate(self.layers):
            view = self._view(arr, g, first_block, blocks_per_chunk)
            if g.is_mla:
                view[...] = src[li].reshape(view.shape)
            else:
                view[...] = src[:, li].reshape(view.shape)
