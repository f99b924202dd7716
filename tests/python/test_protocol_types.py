"""Wire types: KV handles as Ext type 1 (and the rejected pickle form), keys, optional maps."""

from __future__ import annotations

import contextlib
import os
import pickle
import random

import msgspec
import pytest

from lmcache.protocol import framing, types
from lmcache.protocol.framing import ErrorCode, Request, RequestError
from lmcache.protocol.types import (
    CpuShmIPCData,
    CudaIPCData,
    IPCHandleError,
    MusaIPCData,
    NpuIPCData,
    NpuPlaneData,
    RawCudaIPCData,
    TensorMetadata,
    VmmCudaIPCData,
    decode_device_ipc,
    encode_device_ipc,
)

enc = msgspec.msgpack.encode


def meta(
    shape: tuple[int, ...] = (2, 64, 16, 1, 32), dtype: str = "float16", device: str = "cpu"
) -> TensorMetadata:
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return TensorMetadata(
        dtype=dtype, shape=shape, stride=tuple(reversed(strides)), storage_offset=0, device_uuid=device
    )


def cpu_shm(nbytes: int = 131072) -> CpuShmIPCData:
    return CpuShmIPCData(shm_name="/lmcache_kv_1234_0", nbytes=nbytes, version=1, metadata=meta())


def register_frames(handles: list[msgspec.msgpack.Ext]) -> list[bytes]:
    return [
        enc(1), enc(1), enc(1000), enc(handles), enc("m"), enc(1), enc("vllm"), enc({}),
        enc([types.EngineGroupInfo(engine_group_id=0, layer_indices=(0,))]),
    ]  # fmt: skip


# --------------------------------------------------------------------------- Ext type 1


def test_cpu_shm_round_trip() -> None:
    h = cpu_shm()
    ext = encode_device_ipc(h)
    assert ext.code == 1
    # the descriptor is a msgpack map: tag first, own fields, then version and metadata (as 0.5.6)
    assert list(msgspec.msgpack.decode(ext.data)) == ["type", "shm_name", "nbytes", "version", "metadata"]
    assert msgspec.msgpack.decode(ext.data)["type"] == "cpu_shm"
    assert decode_device_ipc(ext) == h
    # and through a whole register_kv_cache request
    r = framing.decode_request(register_frames([ext, ext]))
    assert isinstance(r, Request)
    assert r.args[1] == [h, h]
    assert framing.encode_request(1, r.op, r.args) == register_frames([ext, ext])


def test_other_handle_variants_round_trip() -> None:
    g = meta(shape=(4, 8), device="GPU-1234")
    variants: list[types.DeviceIPCData] = [
        CudaIPCData(handle=(0, b"h" * 64, 64, 0, b"r", 0, b"e", True), version=1, metadata=g),
        RawCudaIPCData(ipc_handle=b"\x01" * 64, alloc_offset=128, nbytes=64, version=1, metadata=g),
        VmmCudaIPCData(
            export_id=b"\x02" * 16,
            kind="posix_fd",
            fabric_blob=None,
            alloc_size=1 << 21,
            alloc_offset=0,
            nbytes=64,
            version=1,
            metadata=g,
        ),
        MusaIPCData(handle={"a": [1, b"x", None]}, version=1, metadata=g),
        NpuIPCData(version=1, bare=True, planes=(NpuPlaneData(handle=(1, b"x"), metadata=g),)),
    ]
    tags = []
    for v in variants:
        ext = encode_device_ipc(v)
        tags.append(msgspec.msgpack.decode(ext.data)["type"])
        assert decode_device_ipc(ext) == v
    assert tags == ["cuda", "cuda_raw", "cuda_vmm", "musa", "npu"]


def test_encode_rejects_non_descriptors() -> None:
    with pytest.raises(TypeError):
        encode_device_ipc(meta())  # type: ignore[arg-type]


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> object:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


class _Boom:
    """Unpickling this would run os.system; the test proves nothing unpickles it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/lmcache-protocol-test-pwned",))


@pytest.mark.usefixtures("no_unpickling")
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_pickled_handle_is_rejected_without_unpickling(protocol: int) -> None:
    data = pickle.dumps(_Boom(), protocol=protocol)
    ext = msgspec.msgpack.Ext(1, data)
    with pytest.raises(IPCHandleError, match="legacy pickled KV handle rejected") as info:
        decode_device_ipc(ext)
    assert info.value.legacy_pickle
    r = framing.decode_request(register_frames([encode_device_ipc(cpu_shm()), ext]))
    assert isinstance(r, RequestError)
    assert r.code is ErrorCode.LEGACY_PICKLE_REJECTED
    assert "register_kv_cache argument 1 (kv_cache): handle 1" in r.message
    assert not os.path.exists("/tmp/lmcache-protocol-test-pwned")


@pytest.mark.parametrize(
    ("ext", "words"),
    [
        (msgspec.msgpack.Ext(2, b"\x80"), "ext code 2"),
        (msgspec.msgpack.Ext(1, b"\xc1"), "invalid KV handle descriptor"),
        (msgspec.msgpack.Ext(1, enc({"type": "opencl", "version": 1})), "opencl"),
        (msgspec.msgpack.Ext(1, enc({"type": "cpu_shm", "version": 1})), "missing required field"),
    ],
)
def test_bad_handles(ext: msgspec.msgpack.Ext, words: str) -> None:
    with pytest.raises(IPCHandleError, match=words) as info:
        decode_device_ipc(ext)
    assert not info.value.legacy_pickle


def _descriptor(**changes: object) -> msgspec.msgpack.Ext:
    raw = msgspec.to_builtins(cpu_shm())
    raw["type"] = "cpu_shm"
    for k, v in changes.items():
        if k.startswith("metadata."):
            raw["metadata"][k.split(".", 1)[1]] = v
        else:
            raw[k] = v
    return msgspec.msgpack.Ext(1, enc(raw))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nbytes": 1024}, "exceeds CPU shared-memory segment"),
        ({"version": 2}, "version"),
        ({"unexpected": 1}, "unexpected"),
        ({"metadata.dtype": "float17"}, "dtype"),
        ({"metadata.stride": [1]}, "ranks must match"),
        ({"metadata.storage_offset": -1}, "storage_offset"),
        ({"metadata.extra": 1}, "extra"),
    ],
)
def test_descriptor_validation(changes: dict[str, object], words: str) -> None:
    with pytest.raises(IPCHandleError, match=words):
        decode_device_ipc(_descriptor(**changes))


def test_descriptor_without_version_or_with_bad_ranges() -> None:
    raw = msgspec.to_builtins(cpu_shm())
    raw["type"] = "cpu_shm"
    del raw["version"]
    with pytest.raises(IPCHandleError, match="version"):
        decode_device_ipc(msgspec.msgpack.Ext(1, enc(raw)))
    vmm = {
        "type": "cuda_vmm", "export_id": b"\x02" * 16, "kind": "posix_fd", "fabric_blob": None,
        "alloc_size": 1 << 21, "alloc_offset": (1 << 21) - 8, "nbytes": 64, "version": 1,
        "metadata": msgspec.to_builtins(meta(shape=(4, 8), device="GPU-0")),
    }  # fmt: skip
    with pytest.raises(IPCHandleError, match="exceeds VMM allocation"):
        decode_device_ipc(msgspec.msgpack.Ext(1, enc(vmm)))
    vmm.update(alloc_offset=0, kind="fabric")
    with pytest.raises(IPCHandleError, match="fabric handle"):
        decode_device_ipc(msgspec.msgpack.Ext(1, enc(vmm)))
    vmm.update(kind="posix_fd", export_id=b"short")
    with pytest.raises(IPCHandleError, match="export_id"):
        decode_device_ipc(msgspec.msgpack.Ext(1, enc(vmm)))


def test_byte_span() -> None:
    m = TensorMetadata(dtype="bfloat16", shape=(2, 3), stride=(3, 1), storage_offset=5, device_uuid="cpu")
    assert m.byte_span() == 2 * (5 + 1 + 1 * 3 + 2 * 1)
    empty = TensorMetadata(dtype="float32", shape=(0, 3), stride=(3, 1), storage_offset=9, device_uuid="cpu")
    assert empty.byte_span() == 0


def test_looks_like_pickle() -> None:
    assert types.looks_like_pickle(pickle.dumps({"a": 1}, protocol=4))
    assert not types.looks_like_pickle(enc({"type": "cpu_shm"}))
    assert not types.looks_like_pickle(b"\x80")  # an empty msgpack map


# --------------------------------------------------------------------------- keys and maps


def test_key_identity_ignores_session_metadata() -> None:
    a = types.IPCCacheServerKey("m", 1, 0, (1, 2), 0, 2, types.SessionId("req-a"), num_kv_readers=1)
    b = msgspec.structs.replace(a, request_id="req-b", request_configs={"x": 1}, num_kv_readers=2)
    assert a != b and a.identity() == b.identity()
    assert a.without_worker_id().worker_id is None
    assert a.require_num_kv_readers() == 1


def test_key_encodes_every_field_in_0_5_6_order() -> None:
    k = types.IPCCacheServerKey("m", 1, None, (1,), 0, 256, types.SessionId("r"))
    assert list(msgspec.msgpack.decode(enc(k))) == [
        "model_name", "world_size", "worker_id", "token_ids", "start", "end", "request_id", "cache_salt",
        "request_configs", "num_kv_readers",
    ]  # fmt: skip


def test_layout_hints_absent_keys_stay_absent() -> None:
    assert enc(types.LayoutHints()) == enc({})
    assert enc(types.LayoutHints(kv_layout="HND", head_dim=128)) == enc({"kv_layout": "HND", "head_dim": 128})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(enc({"kv_layout": "XYZ"}), type=types.LayoutHints)


def test_engine_group_info_defaults() -> None:
    g = msgspec.msgpack.decode(enc({"engine_group_id": 3}), type=types.EngineGroupInfo)
    assert g == types.EngineGroupInfo(3, (), 0, -1, 0, False)


def test_engine_type_values() -> None:
    assert {e.value for e in types.EngineType} == {"vllm", "sglang", "trtllm", "atom", "mock"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(enc("tensorrt"), type=types.EngineType)


def test_engine_driven_payload_legacy_form() -> None:
    raw = {
        "instance_id": 1, "model_name": "m", "world_size": 1, "block_size": 16, "num_layers": 2,
        "hidden_dim_size": 32, "dtype_str": "float16", "use_mla": False,
    }  # fmt: skip
    p = msgspec.msgpack.decode(enc(raw), type=types.RegisterEngineDrivenContextPayload)
    assert p.num_physical_slots is None


def test_slot_context_shapes() -> None:
    assert enc(types.PrepareStoreResponse()) == enc({"context": {}})
    assert enc(types.PrepareRetrieveResponse(success=False)) == enc(
        {"success": False, "data": b"", "context": {}}
    )
    ctx = types.SlotContext(slots=[types.ShmSlotDescriptor(0, 8, [2], "float32")], chunk_indices=[0])
    assert msgspec.msgpack.decode(enc(ctx)) == {
        "slots": [{"offset": 0, "length": 8, "shape": [2], "dtype": "float32"}],
        "chunk_indices": [0],
    }


def test_object_key_and_layout_desc_validation() -> None:
    with pytest.raises(msgspec.ValidationError, match="@"):
        msgspec.msgpack.decode(
            enc({"chunk_hash": b"h", "model_name": "a@b", "kv_rank": 1}), type=types.ObjectKey
        )
    with pytest.raises(msgspec.ValidationError, match="same length"):
        msgspec.msgpack.decode(enc({"shapes": [[1]], "dtypes": []}), type=types.MemoryLayoutDesc)


def test_request_allocation_record_is_the_block_allocation_record() -> None:
    assert types.RequestAllocationRecord is types.BlockAllocationRecord


def test_mutated_descriptors_only_raise_ipc_handle_error() -> None:
    rng = random.Random(7)
    good = encode_device_ipc(cpu_shm()).data
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(IPCHandleError):
            decode_device_ipc(msgspec.msgpack.Ext(1, bytes(data)))
