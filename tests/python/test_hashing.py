"""Prefix-chain chunk hashing: compat vectors, references written from the
LMCache 0.5.6 / vLLM definitions, input types, resuming, errors."""

from __future__ import annotations

import array
import hashlib
import random
import struct
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from lmcache import errors
from lmcache._native import hashing as native
from lmcache.protocol.hashing import ALGORITHMS, TokenHasher

H0 = "084547b6c40ed5b05ba8cd0305db5bf74d5617673948d9ed193ab7d6cbc484d4"
H1 = "e5ffee45c2b9db326814c9692dc594369887ba3b0df5761817820b60f864c8e0"
BLAKE3_NONE = "7e3eff9ef7613a50340eb12677ee03b83ac759fcba9bb32705f07248d56d473b"
UINT32_MAX = 2**32 - 1


@pytest.fixture(autouse=True)
def _no_hash_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    # sha256_cbor's NONE_HASH follows PYTHONHASHSEED; tests set it explicitly.
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)


def spread(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    widths = (23, 255, 65535, UINT32_MAX)  # every CBOR integer width
    return [rng.randint(0, rng.choice(widths)) for _ in range(n)]


# ---- references written from the definitions ----


def cbor_head(major: int, arg: int) -> bytes:
    """RFC 8949 head in the shortest form (what cbor2 writes)."""
    mt = major << 5
    if arg < 24:
        return bytes([mt | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([mt | info]) + arg.to_bytes(size, "big")
    raise ValueError(arg)


def cbor_encode(x: Any) -> bytes:
    """The subset of cbor2.dumps(x, canonical=True) that a chunk hash input uses."""
    if x is None:
        return b"\xf6"
    if isinstance(x, bool):
        raise TypeError(x)
    if isinstance(x, int):
        return cbor_head(0, x) if x >= 0 else cbor_head(1, -1 - x)
    if isinstance(x, bytes):
        return cbor_head(2, len(x)) + x
    if isinstance(x, str):
        data = x.encode()
        return cbor_head(3, len(data)) + data
    if isinstance(x, (tuple, list)):
        return cbor_head(4, len(x)) + b"".join(cbor_encode(e) for e in x)
    raise TypeError(type(x))


def vllm_sha256_cbor(x: Any) -> bytes:
    # vllm/utils/hashing.py: hashlib.sha256(cbor2.dumps(input, canonical=True)).digest()
    return hashlib.sha256(cbor_encode(x)).digest()


def lmcache_blake3(prefix: bytes | int, tokens: Sequence[int]) -> bytes:
    # lmcache/v1/multiprocess/token_hasher.py, _make_blake3_hash_func
    blake3 = pytest.importorskip("blake3")
    h = blake3.blake3()
    h.update(prefix if isinstance(prefix, bytes) else prefix.to_bytes(8, byteorder="big", signed=True))
    h.update(struct.pack(f">{len(tokens)}I", *tokens))
    digest: bytes = h.digest()
    return digest


def lmcache_chain(hash_fn: Any, none_hash: Any, tokens: Sequence[int], c: int) -> list[Any]:
    # TokenHasher.compute_chunk_hashes / Session._compute_hash: raw values chained.
    out, prev = [], none_hash
    for i in range(0, len(tokens) - len(tokens) % c, c):
        prev = hash_fn((prev, tuple(tokens[i : i + c]), None))
        out.append(prev)
    return out


# ---- vectors ----


def test_compat_vectors_blake3() -> None:
    tokens = list(range(512))
    assert [h.hex() for h in native.chunk_hashes(tokens, 256)] == [H0, H1]
    assert [h.hex() for h in TokenHasher("blake3", 256).hashes(tokens)] == [H0, H1]
    assert native.none_hash("blake3").hex() == BLAKE3_NONE
    assert native.none_hash("blake3", "123").hex() == BLAKE3_NONE
    assert TokenHasher("blake3", 256, hash_seed="7").none_hash.hex() == BLAKE3_NONE


def test_none_hashes_follow_lmcache_and_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    # LMCache's seed input (0, (0,), None) through each function.
    assert native.none_hash("sha256_cbor") == vllm_sha256_cbor((0, (0,), None))
    assert TokenHasher("sha256_cbor", 256).none_hash == vllm_sha256_cbor((0, (0,), None))
    # vLLM init_none_hash with PYTHONHASHSEED set: sha256_cbor(seed string).
    assert native.none_hash("sha256_cbor", "0") == hashlib.sha256(b"\x61\x30").digest()
    assert TokenHasher("sha256_cbor", 256, hash_seed="abc").none_hash == vllm_sha256_cbor("abc")
    monkeypatch.setenv("PYTHONHASHSEED", "42")
    hasher = TokenHasher("sha256_cbor", 256)
    assert hasher.none_hash == vllm_sha256_cbor("42")
    tokens = spread(600)
    assert hasher.hashes(tokens) == lmcache_chain(vllm_sha256_cbor, vllm_sha256_cbor("42"), tokens, 256)


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 256])
def test_blake3_matches_lmcache_function(chunk_size: int) -> None:
    pytest.importorskip("blake3")
    for seed in range(5):
        tokens = spread(random.Random(seed).randint(0, 1200), seed)
        none = lmcache_blake3(0, (0,))
        assert none.hex() == BLAKE3_NONE
        expected = lmcache_chain(lambda a: lmcache_blake3(a[0], a[1]), none, tokens, chunk_size)
        assert native.chunk_hashes(tokens, chunk_size) == expected
        assert TokenHasher("blake3", chunk_size).hashes(tokens) == expected


@pytest.mark.parametrize("chunk_size", [1, 23, 24, 256, 300])
def test_sha256_cbor_matches_vllm_definition(chunk_size: int) -> None:
    for seed in range(5):
        tokens = spread(random.Random(seed).randint(0, 1500), seed)
        none = vllm_sha256_cbor((0, (0,), None))
        expected = lmcache_chain(vllm_sha256_cbor, none, tokens, chunk_size)
        assert native.chunk_hashes(tokens, chunk_size, "sha256_cbor") == expected
        assert TokenHasher("sha256_cbor", chunk_size).hashes(tokens) == expected


def test_reference_cbor_matches_cbor2() -> None:
    cbor2 = pytest.importorskip("cbor2")
    for seed in range(20):
        item = (random.randbytes(32), tuple(spread(300, seed)), None)
        assert cbor_encode(item) == cbor2.dumps(item, canonical=True)
    assert cbor_encode("12345") == cbor2.dumps("12345", canonical=True)
    assert cbor_encode((0, (0,), None)) == cbor2.dumps((0, (0,), None), canonical=True)


def test_builtin_matches_lmcache_fallback() -> None:
    tokens = spread(1000)
    hasher = TokenHasher("builtin", 256)
    raw = lmcache_chain(hash, hash((0, (0,), None)), tokens, 256)
    expected = [h.to_bytes(8, "big", signed=True) for h in raw]
    assert hasher.hashes(tokens) == expected
    assert hasher.none_hash == hash((0, (0,), None)).to_bytes(8, "big", signed=True)
    assert hasher.process_local and hasher.hash_len == 8
    assert not TokenHasher("blake3", 256).process_local
    # resuming from a returned 8-byte hash continues the int chain
    assert hasher.hashes(tokens, 2, prefix=expected[1]) == expected[2:]
    assert hasher.hashes(tokens, 1) == expected[1:]
    with pytest.raises(errors.InvalidArgumentError):
        hasher.hashes(tokens, 1, prefix=b"\x00" * 32)


# ---- chaining and resuming ----


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resume_equals_full_chain_and_tail_ignored(algorithm: str) -> None:
    hasher = TokenHasher(algorithm, 64)
    tokens = spread(64 * 9 + 30)
    full = hasher.hashes(tokens)
    assert len(full) == 9 == hasher.num_chunks(len(tokens))
    for k in range(1, 10):
        assert hasher.hashes(tokens, k, prefix=full[k - 1]) == full[k:]
        assert hasher.hashes(tokens, k) == full[k:]
    assert hasher.hashes(tokens, 0, prefix=hasher.none_hash) == full
    assert hasher.hashes(tokens, 20) == []
    assert hasher.hashes(tokens[:63]) == []
    assert hasher.hashes([]) == []
    # the partial tail is not hashed; a change in chunk 5 changes h_5 onwards only
    changed = list(tokens)
    changed[-1] ^= 1
    assert hasher.hashes(changed) == full
    changed[5 * 64 + 3] ^= 1
    other = hasher.hashes(changed)
    assert other[:5] == full[:5] and all(a != b for a, b in zip(other[5:], full[5:], strict=True))


def test_resume_does_not_read_earlier_tokens() -> None:
    tokens = spread(1024)
    full = native.chunk_hashes(tokens, 256)
    poisoned = [-1] * 512 + tokens[512:]  # invalid, but before start_chunk
    assert native.chunk_hashes(poisoned, 256, "blake3", full[1], start_chunk=2) == full[2:]
    for algorithm in ALGORITHMS:
        hasher = TokenHasher(algorithm, 256)
        ref = hasher.hashes(tokens)
        assert hasher.hashes(poisoned, 2, prefix=ref[1]) == ref[2:]
        with pytest.raises(errors.InvalidArgumentError):
            hasher.hashes(poisoned, 2)  # without a prefix the chain starts at token 0


# ---- input types ----


def test_input_types_agree() -> None:
    np = pytest.importorskip("numpy")
    tokens = spread(700)
    small = [t % 2**31 for t in tokens]  # fits int32 too
    for algorithm in ("blake3", "sha256_cbor"):
        ref = native.chunk_hashes(small, 128, algorithm)
        variants: list[Any] = [
            tuple(small),
            array.array("i", small),
            array.array("I", small),
            array.array("q", small),
            array.array("L", small),
            memoryview(array.array("I", small)),
            np.array(small, dtype=np.int32),
            np.array(small, dtype=np.uint32),
            np.array(small, dtype=np.int64),
            np.array(small, dtype=np.uint64),
            np.array(small + small, dtype=np.int64).reshape(2, -1)[0],
            [np.int64(t) for t in small],
        ]
        for v in variants:
            assert native.chunk_hashes(v, 128, algorithm) == ref, type(v)
            assert TokenHasher(algorithm, 128).hashes(v) == ref, type(v)
        assert native.chunk_hashes(iter(small), 128, algorithm) == ref
        assert TokenHasher(algorithm, 128).hashes(iter(small)) == ref
        strided = np.array([x for t in small for x in (t, -1)], dtype=np.int64)[::2]
        assert native.chunk_hashes(strided, 128, algorithm) == ref
        assert native.chunk_hashes(np.array(small[::-1], dtype=np.uint32)[::-1], 128, algorithm) == ref
        # big ids through 64-bit buffers
        big = np.array(tokens, dtype=np.uint64)
        assert native.chunk_hashes(big, 128, algorithm) == native.chunk_hashes(tokens, 128, algorithm)
    builtin = TokenHasher("builtin", 128)
    assert builtin.hashes(np.array(small, dtype=np.int64)) == builtin.hashes(small)
    assert builtin.hashes(array.array("I", small)) == builtin.hashes(small)


def test_range_and_generator_inputs() -> None:
    assert native.chunk_hashes(range(512), 256) == native.chunk_hashes(list(range(512)), 256)
    assert TokenHasher("builtin", 256).hashes(range(512)) == TokenHasher("builtin", 256).hashes(
        list(range(512))
    )


# ---- errors ----


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("bad", [-1, 2**32, 2**70, -(2**70)])
def test_tokens_outside_uint32_rejected(algorithm: str, bad: int) -> None:
    tokens = list(range(600))
    tokens[300] = bad
    with pytest.raises(errors.InvalidArgumentError, match="index 300"):
        TokenHasher(algorithm, 256).hashes(tokens)
    tokens[300] = UINT32_MAX  # the largest id is fine
    assert len(TokenHasher(algorithm, 256).hashes(tokens)) == 2
    tokens[599] = bad  # in the partial tail: not read
    assert len(TokenHasher(algorithm, 256).hashes(tokens)) == 2


def test_buffer_tokens_outside_uint32_rejected() -> None:
    np = pytest.importorskip("numpy")
    for dtype, bad in ((np.int64, -1), (np.int64, 2**32), (np.int32, -5), (np.uint64, 2**40)):
        arr = np.arange(512, dtype=dtype)
        arr[7] = bad
        with pytest.raises(errors.InvalidArgumentError, match="index 7"):
            native.chunk_hashes(arr, 256, "sha256_cbor")
        with pytest.raises(errors.InvalidArgumentError):
            TokenHasher("blake3", 256).hashes(arr)


def test_invalid_arguments() -> None:
    np = pytest.importorskip("numpy")
    tokens = list(range(512))
    for chunk_size in (0, -1):
        with pytest.raises(errors.InvalidArgumentError, match="chunk_size"):
            native.chunk_hashes(tokens, chunk_size)
    with pytest.raises(errors.InvalidArgumentError, match="unknown hash algorithm"):
        native.chunk_hashes(tokens, 256, "md5")
    with pytest.raises(errors.InvalidArgumentError, match="builtin"):
        native.chunk_hashes(tokens, 256, "builtin")
    with pytest.raises(errors.InvalidArgumentError):
        native.none_hash("xxhash")
    with pytest.raises(errors.InvalidArgumentError, match="32 bytes"):
        native.chunk_hashes(tokens, 256, "blake3", b"short")
    with pytest.raises(errors.InvalidArgumentError, match="prefix"):
        native.chunk_hashes(tokens, 256, "blake3", None, 1)
    with pytest.raises(errors.InvalidArgumentError, match="start_chunk"):
        native.chunk_hashes(tokens, 256, "blake3", b"\0" * 32, -1)
    with pytest.raises(errors.InvalidArgumentError, match="start_chunk"):
        TokenHasher("blake3", 256).hashes(tokens, -1)
    for bad_tokens in (b"\x00" * 512, bytearray(512), "abc", [1.5] * 256, ["a"] * 256, 5):
        with pytest.raises(errors.InvalidArgumentError):
            native.chunk_hashes(bad_tokens, 256)  # type: ignore[arg-type]
    for bad_buffer in (np.zeros((2, 256), dtype=np.int64), np.zeros(512, dtype=np.int16), np.zeros(512)):
        with pytest.raises(errors.InvalidArgumentError):
            native.chunk_hashes(bad_buffer, 256)
        with pytest.raises(errors.InvalidArgumentError):
            TokenHasher("builtin", 256).hashes(bad_buffer)
    with pytest.raises(errors.InvalidArgumentError):
        TokenHasher("builtin", 256).hashes(b"\x00" * 512)


def test_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match="hash-algorithm"):
        TokenHasher("sha256", 256)
    with pytest.raises(errors.ConfigError, match="hash-algorithm"):
        TokenHasher("", 256)
    for chunk_size in (0, -256, True, 2.5):
        with pytest.raises(errors.ConfigError, match="chunk-size"):
            TokenHasher("blake3", chunk_size)  # type: ignore[arg-type]


def test_concurrent_hashing_is_consistent() -> None:
    tokens = spread(256 * 64)
    expected = {a: native.chunk_hashes(tokens, 256, a) for a in ("blake3", "sha256_cbor")}
    failures: list[str] = []

    def work(algorithm: str) -> None:
        for _ in range(10):
            if native.chunk_hashes(tokens, 256, algorithm) != expected[algorithm]:
                failures.append(algorithm)

    threads = [threading.Thread(target=work, args=(a,)) for a in ("blake3", "sha256_cbor") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
