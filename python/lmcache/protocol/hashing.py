"""Prefix-chain chunk hashes of token ids, bit-identical to LMCache 0.5.6.

Tokens are cut into chunks of ``chunk_size``; only full chunks get a hash, and
chunk ``i``'s hash chains the previous one, ``h_i = H(h_{i-1}, chunk_i)`` with
``h_{-1} = NONE_HASH`` (compat reference §6). Equal ``h_i`` means equal tokens
``[0, (i + 1) * chunk_size)``. ``--hash-algorithm`` picks ``H``:

``blake3`` (default; native, ``lmcache._native.hashing``)
    ``h_i = blake3(h_{i-1} || each token as a big-endian uint32)``,
    ``NONE_HASH = blake3(12 zero bytes)``. 32 bytes.

``sha256_cbor`` (native)
    vLLM's ``sha256_cbor`` (``vllm/utils/hashing.py``:
    ``hashlib.sha256(cbor2.dumps(input, canonical=True)).digest()``) called the
    way LMCache 0.5.6 calls every hash function (``token_hasher.py``,
    ``hash_tokens``): ``input = (h_{i-1}, tuple(chunk_tokens), None)``, so
    ``h_i = sha256(CBOR [bytes h_{i-1}, [uint tokens...], null])``. 32 bytes.
    ``NONE_HASH`` follows vLLM's ``init_none_hash`` (``vllm/v1/core/
    kv_cache_utils.py``), which 0.5.6 calls for every algorithm but blake3:
    with ``PYTHONHASHSEED=S`` set it is ``sha256_cbor(S)`` (the CBOR text
    string S). Without it vLLM draws 32 random bytes per process, which no other
    process can reproduce; we use the deterministic value 0.5.6 computes when
    vLLM's ``init_none_hash`` is unavailable, ``sha256_cbor((0, (0,), None))``,
    so hashes survive restarts.

``builtin`` (pure Python: it *is* Python's ``hash()``)
    0.5.6 falls back to ``hash`` (``token_hasher.py``, ``_get_hash_func``) and
    chains the raw ints (``session.py``, ``_compute_hash``):
    ``h_i = hash((h_{i-1}, tuple(chunk_tokens), None))`` with
    ``h_{-1} = hash((0, (0,), None))``; each ``h_i`` becomes an 8-byte key by
    ``h_i.to_bytes(8, "big", signed=True)`` (``hash_to_bytes``).
    **Process-local**: the tuple hash mixes in ``hash(None)``, which Python
    3.11 and older derive from None's address (different in every process,
    whatever ``PYTHONHASHSEED`` says); from 3.12 on it is a constant, so the
    chain is the same in every process of one Python version. (A 0.5.6 server
    that can import vLLM seeds this chain with ``hash(PYTHONHASHSEED)`` or 32
    random bytes instead; nothing outside that process can match either.)
"""

from __future__ import annotations

import array
import operator
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from lmcache._native import hashing as _native
from lmcache.errors import ConfigError, InvalidArgumentError

if TYPE_CHECKING:
    from typing import TypeAlias

    from typing_extensions import Buffer

    TokenIds: TypeAlias = Iterable[int] | Buffer

ALGORITHMS: Final = ("blake3", "sha256_cbor", "builtin")
DEFAULT_ALGORITHM: Final = "blake3"
NATIVE_ALGORITHMS: Final = ("blake3", "sha256_cbor")
_UINT32_MAX: Final = 0xFFFF_FFFF
_BUILTIN_HASH_LEN: Final = 8


class TokenHasher:
    """Chunk hashes of token-id sequences for one algorithm and chunk size.

    Immutable and thread-safe; the native algorithms release the GIL while
    hashing. Token ids may be a list (or any iterable) of ints or a buffer of
    32/64-bit integers (numpy array, ``array.array``); they must fit in uint32.
    """

    __slots__ = ("_algorithm", "_builtin_seed", "_chunk_size", "_none_hash")

    def __init__(self, algorithm: str, chunk_size: int, *, hash_seed: str | None = None) -> None:
        """``hash_seed`` is the ``PYTHONHASHSEED`` to seed sha256_cbor with as vLLM does
        (default: the environment's); blake3 and builtin ignore it.

        Raises ConfigError for an unknown algorithm or a chunk size that is not a positive int.
        """
        if algorithm not in ALGORITHMS:
            raise ConfigError(
                f"--hash-algorithm: unknown '{algorithm}'; choose one of {', '.join(ALGORITHMS)}"
            )
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ConfigError(f"--chunk-size: must be a positive integer, got {chunk_size!r}")
        self._algorithm = algorithm
        self._chunk_size = chunk_size
        self._builtin_seed = 0
        if algorithm == "builtin":
            self._builtin_seed = hash((0, (0,), None))
            self._none_hash = _builtin_bytes(self._builtin_seed)
        else:
            seed = hash_seed if hash_seed is not None else os.environ.get("PYTHONHASHSEED")
            self._none_hash = _native.none_hash(algorithm, seed if algorithm == "sha256_cbor" else None)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def none_hash(self) -> bytes:
        """The chain seed ``h_{-1}`` (8 bytes for builtin, else 32)."""
        return self._none_hash

    @property
    def hash_len(self) -> int:
        return _BUILTIN_HASH_LEN if self._algorithm == "builtin" else _native.HASH_LEN

    @property
    def process_local(self) -> bool:
        """True when hashes mean nothing outside this process (builtin)."""
        return self._algorithm == "builtin"

    def num_chunks(self, num_tokens: int) -> int:
        """How many full chunks ``num_tokens`` tokens make (the partial tail has no hash)."""
        return num_tokens // self._chunk_size

    def hashes(self, tokens: TokenIds, start_chunk: int = 0, prefix: bytes | None = None) -> list[bytes]:
        """Hashes of the full chunks of ``tokens`` from chunk ``start_chunk`` on.

        With ``prefix`` (the hash of chunk ``start_chunk - 1``, e.g. cached by a
        session; with ``start_chunk`` 0, a chain seed) the tokens before
        ``start_chunk`` are not read. Without it the chain is computed from the
        start and only the hashes from ``start_chunk`` on are returned, as
        0.5.6's ``compute_chunk_hashes(start=...)`` does.

        Raises InvalidArgumentError for a token outside uint32, a negative
        ``start_chunk`` or a prefix of the wrong length.
        """
        if isinstance(start_chunk, bool) or not isinstance(start_chunk, int) or start_chunk < 0:
            raise InvalidArgumentError(f"start_chunk must be a non-negative int, got {start_chunk!r}")
        if self._algorithm == "builtin":
            return self._builtin_hashes(tokens, start_chunk, prefix)
        if prefix is None:
            out = _native.chunk_hashes(tokens, self._chunk_size, self._algorithm, self._none_hash)
            return out[start_chunk:] if start_chunk else out
        return _native.chunk_hashes(tokens, self._chunk_size, self._algorithm, prefix, start_chunk)

    def _builtin_hashes(self, tokens: TokenIds, start_chunk: int, prefix: bytes | None) -> list[bytes]:
        seq = _int_sequence(tokens)
        c = self._chunk_size
        num_chunks = len(seq) // c
        if prefix is None:
            h, first = self._builtin_seed, 0
        else:
            if not isinstance(prefix, bytes) or len(prefix) != _BUILTIN_HASH_LEN:
                raise InvalidArgumentError(f"builtin prefix must be {_BUILTIN_HASH_LEN} bytes")
            h, first = int.from_bytes(prefix, "big", signed=True), start_chunk
        _check_uint32(seq, first * c, num_chunks * c)
        out: list[bytes] = []
        for i in range(first, num_chunks):
            h = hash((h, tuple(seq[i * c : (i + 1) * c]), None))
            if i >= start_chunk:
                out.append(_builtin_bytes(h))
        return out


def _builtin_bytes(h: int) -> bytes:
    return h.to_bytes(_BUILTIN_HASH_LEN, "big", signed=True)


def _check_uint32(seq: Sequence[int], lo: int, hi: int) -> None:
    """Raises InvalidArgumentError unless seq[lo:hi] are all ints in uint32 range."""
    if hi <= lo:
        return
    try:
        array.array("I", seq[lo:hi])  # C-speed check: OverflowError / TypeError
    except (OverflowError, TypeError):
        for i in range(lo, hi):
            try:
                v = operator.index(seq[i])
            except TypeError:
                raise InvalidArgumentError(
                    f"token ids must be integers, got {type(seq[i]).__name__} at index {i}"
                ) from None
            if not 0 <= v <= _UINT32_MAX:
                raise InvalidArgumentError(
                    f"token id {v} at index {i} does not fit in uint32 (0..{_UINT32_MAX})"
                ) from None
        raise  # unreachable unless the sequence changed underneath


def _int_sequence(tokens: TokenIds) -> Sequence[int]:
    """Token ids as a sliceable sequence of Python ints (buffers via memoryview)."""
    if isinstance(tokens, (bytes, bytearray, str)):
        raise InvalidArgumentError(f"tokens must be integers, not {type(tokens).__name__}")
    if isinstance(tokens, (list, tuple, range)):
        return tokens
    try:
        view = memoryview(tokens)  # type: ignore[arg-type]
    except TypeError:
        return list(tokens)  # type: ignore[arg-type]
    if view.ndim != 1 or view.format.lstrip("@=<") not in ("i", "I", "l", "L", "q", "Q", "n", "N"):
        raise InvalidArgumentError(f"token buffer must hold 1-D 32- or 64-bit integers, got '{view.format}'")
    out: list[int] = view.tolist()
    return out


__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "NATIVE_ALGORITHMS", "TokenHasher"]
