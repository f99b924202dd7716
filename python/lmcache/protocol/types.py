"""Wire types of the LMCache 0.5.6 multiprocess protocol, as msgspec Structs.

Every struct here travels as a msgpack **map keyed by field name**, with the same field
names, order and defaults as LMCache 0.5.6 (``v1/multiprocess/custom_types.py``,
``group_view.py``, ``platform/base/ipc_wire.py`` and friends), so that what we encode is
byte-identical to what 0.5.6 encodes and what 0.5.6 sends decodes here. The captured
sessions under ``tests/python/fixtures/wire`` pin this down.

Decoding rules (as in 0.5.6, which decodes with msgspec too): a field missing from the map
takes its default, unknown keys are ignored (except inside KV-handle descriptors, which
forbid them), ``int`` and ``bool`` are distinct inside structs.

KV-cache handles (0.5.6's ``DeviceIPCWrapper`` and subclasses) travel as msgpack **Ext type
1** whose data is itself a msgpack document: a struct tagged by its ``type`` field
(``cpu_shm``, ``cuda``, ``cuda_raw``, ``cuda_vmm``, ``musa``, ``npu``), with ``version: 1``
and a ``metadata`` block. :func:`encode_device_ipc` / :func:`decode_device_ipc` convert
between the descriptor structs and the Ext. Earlier LMCache releases put a pickle there;
that form is rejected **without ever being unpickled** (nothing in this package calls
``pickle``).

Where we are stricter than 0.5.6 it is noted at the field: token ids must fit in uint32,
``world_size`` is at least 1, ``start``/``end`` are non-negative.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, NewType, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

# --------------------------------------------------------------------------- typed ids

RequestUid = NewType("RequestUid", int)
"""Frame 0 of every request: chosen by the client, unique among its outstanding requests."""

InstanceId = NewType("InstanceId", int)
"""A worker (engine process) instance; vLLM and the bench use the worker's pid."""

SessionId = NewType("SessionId", str)
"""``IPCCacheServerKey.request_id``: one session per inference request."""

ChunkHash = NewType("ChunkHash", bytes)
"""A chunk's 32-byte prefix hash (blake3 by default; see ``lmcache.protocol.hashing``)."""

TaskId = NewType("TaskId", int)
"""A p2p lookup task id."""

NonNegative: TypeAlias = Annotated[int, msgspec.Meta(ge=0)]
TokenId: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
CacheSalt: TypeAlias = Annotated[str, msgspec.Meta(max_length=128, pattern="^[^@/\\\\\x00]*$")]

CACHE_SALT_MAX_LEN = 128
CACHE_SALT_FORBIDDEN = frozenset("@/\\\x00")

# --------------------------------------------------------------------------- keys


class IPCCacheServerKey(msgspec.Struct, frozen=True):
    """The request key of every data op (0.5.6 ``IPCCacheServerKey``, a dataclass there).

    ``token_ids`` is always the request's **full** token list; ``[start, end)`` selects the
    chunk-aligned range an op is about. ``worker_id`` is the caller's KV rank, ``None`` for
    lookups (a lookup covers every rank). ``request_id`` names the session and, like
    ``request_configs`` and ``num_kv_readers``, is not part of the key's identity (use
    :meth:`identity` to compare keys the way 0.5.6 does). ``num_kv_readers`` 0 means an old
    client that never sent the field; lookups must reject it (:meth:`require_num_kv_readers`).
    """

    model_name: str
    world_size: Annotated[int, msgspec.Meta(ge=1)]  # 0.5.6 does not check
    worker_id: NonNegative | None
    token_ids: tuple[TokenId, ...]  # 0.5.6 does not check; its hash needs uint32
    start: NonNegative
    end: NonNegative
    request_id: SessionId
    cache_salt: CacheSalt = ""
    request_configs: dict[str, Any] | None = None
    num_kv_readers: NonNegative = 0

    def identity(self) -> tuple[str, int, int | None, tuple[int, ...], int, int, str]:
        """The fields 0.5.6 compares and hashes (everything but the session metadata)."""
        return (
            self.model_name,
            self.world_size,
            self.worker_id,
            self.token_ids,
            self.start,
            self.end,
            self.cache_salt,
        )

    def require_num_kv_readers(self) -> int:
        """The declared reader count; raises ``ValueError`` for a client that did not send it."""
        if self.num_kv_readers < 1:
            raise ValueError(
                f"num_kv_readers={self.num_kv_readers}: this server requires clients that send "
                "IPCCacheServerKey.num_kv_readers. Upgrade the LMCache client."
            )
        return self.num_kv_readers

    def without_worker_id(self) -> IPCCacheServerKey:
        """A copy for lookups (``worker_id`` = None)."""
        return msgspec.structs.replace(self, worker_id=None)


class ObjectKey(msgspec.Struct, frozen=True):
    """A storage object key (p2p ops carry lists of them). ``chunk_hash`` is msgpack bin."""

    chunk_hash: ChunkHash
    model_name: str
    kv_rank: int
    object_group_id: int = 0
    cache_salt: CacheSalt = ""

    def __post_init__(self) -> None:
        if "@" in self.model_name:
            raise ValueError("ObjectKey.model_name must not contain '@'")


class MemoryLayoutDesc(msgspec.Struct, frozen=True):
    """Layout of one memory object: parallel lists of shapes and dtype names (``"float16"``)."""

    shapes: list[list[int]]
    dtypes: list[str]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.dtypes):
            raise ValueError("MemoryLayoutDesc: shapes and dtypes must have the same length")


class TransferChannelAddress(msgspec.Struct, frozen=True):
    """A p2p transfer address: byte offset against the peer's L1 base, and size."""

    offset: int
    size: int


# --------------------------------------------------------------------------- registration


class EngineType(enum.Enum):
    """Which serving engine produced a KV cache; travels as its value."""

    VLLM = "vllm"
    ATOM = "atom"
    SGLANG = "sglang"
    TRTLLM = "trtllm"
    MOCK = "mock"


KVLayoutName: TypeAlias = Literal["NHD", "HND", "BLHNC", "BLNHC"]


class LayoutHints(msgspec.Struct, frozen=True):
    """Engine hints for KV format detection (a ``TypedDict(total=False)`` in 0.5.6).

    Every key is optional; absent keys stay absent on the wire (``UNSET``).
    """

    kv_layout: KVLayoutName | UnsetType = UNSET
    num_kv_heads: int | UnsetType = UNSET
    tokens_per_block: int | UnsetType = UNSET
    kv_list_layout: Literal["k_v", "unified"] | UnsetType = UNSET
    head_dim: int | UnsetType = UNSET


class EngineGroupInfo(msgspec.Struct, frozen=True):
    """One KV group: layers of one engine group that share a copy kernel.

    ``tokens_per_block`` 0 = not reported; ``sw_size_tokens`` -1 = no sliding window;
    ``extra_object_group_tag`` > 0 marks an extra (connector-private) object group;
    ``recurrent_state`` marks Mamba/GDN state pages.
    """

    engine_group_id: int
    layer_indices: tuple[int, ...] = ()
    tokens_per_block: int = 0
    sw_size_tokens: int = -1
    extra_object_group_tag: int = 0
    recurrent_state: bool = False


class RegisterEngineDrivenContextPayload(msgspec.Struct):
    """Argument of ``register_kv_cache_engine_driven_context``.

    ``num_physical_slots`` None is the legacy protocol (one slot per logical token, i.e. the
    server's chunk size).
    """

    instance_id: InstanceId
    model_name: str
    world_size: int
    block_size: int
    num_layers: int
    hidden_dim_size: int
    dtype_str: str
    use_mla: bool
    num_physical_slots: int | None = None


class RegisterEngineDrivenContextResponse(msgspec.Struct):
    """Reply of the engine-driven registration: the server's L1 SHM pool.

    An empty ``shm_name`` tells a 0.5.6 client to use the pickle data path, which we never
    serve (we always advertise a pool).
    """

    shm_name: str = ""
    pool_size: int = 0


# --------------------------------------------------------------------------- engine-driven


class ShmSlotDescriptor(msgspec.Struct, frozen=True):
    """One tensor slot in the server's SHM pool: byte offset/length, logical shape, dtype name."""

    offset: int
    length: int
    shape: list[int]
    dtype: str


class SlotContext(msgspec.Struct):
    """The ``context`` map of the prepare replies (an untyped dict in 0.5.6).

    Observed shapes: ``prepare_store`` on the SHM path ``{slots, chunk_indices}`` (both empty =
    nothing to store, the client skips the store); ``prepare_retrieve`` on the SHM path
    ``{slots}`` only; the pickle path and failures ``{}``. Absent keys stay absent.
    ``chunk_indices[i]`` is the position, in ``[start, end)``, of the chunk ``slots[i]`` holds.
    """

    slots: list[ShmSlotDescriptor] | UnsetType = UNSET
    chunk_indices: list[int] | UnsetType = UNSET


class PrepareStoreResponse(msgspec.Struct):
    """Reply of ``prepare_store``."""

    context: SlotContext = msgspec.field(default_factory=SlotContext)


class PrepareRetrieveResponse(msgspec.Struct):
    """Reply of ``prepare_retrieve``; ``success`` false = not servable (release nothing)."""

    success: bool
    data: bytes = b""
    context: SlotContext = msgspec.field(default_factory=SlotContext)


# --------------------------------------------------------------------------- scheduler side


class BlockAllocationRecord(msgspec.Struct):
    """One per-request block allocation delta reported by the vLLM scheduler."""

    req_id: str
    new_block_ids: list[int]
    new_token_ids: list[int]


RequestAllocationRecord = BlockAllocationRecord
"""Later LMCache releases renamed the record; 0.5.6's connector imports it under both names."""

KV_EVENT_KIND_STORED = "stored"
KV_EVENT_KIND_REMOVED = "removed"
KV_EVENT_MEDIUM_CPU = "CPU"


class KVEventRecord(msgspec.Struct):
    """One sequenced cache change. A ``stored`` record carries one chunk's tokens and parent."""

    seq: int
    kind: str
    medium: str
    model_name: str
    block_hashes: list[ChunkHash]
    parent_block_hash: ChunkHash | None
    token_ids: list[int]


class KVEventBatch(msgspec.Struct):
    """One item of the ``subscribe_kv_events`` stream.

    A new ``incarnation`` or ``lost`` = true tells the subscriber to withdraw earlier
    announcements; ``enabled`` false ends the stream. Resume at ``next_cursor``.
    """

    enabled: bool
    incarnation: int
    next_cursor: int
    lost: bool
    events: list[KVEventRecord]


class ServerModuleCallRequest(msgspec.Struct):
    """Opaque envelope for out-of-tree server modules (``server_module_call``)."""

    method: str
    payload: bytes


class ServerModuleCallResponse(msgspec.Struct):
    """Reply envelope of ``server_module_call``; ``error`` is set when ``success`` is false."""

    success: bool
    payload: bytes
    error: str


# --------------------------------------------------------------------------- CacheBlend


class CBMatchResult(msgspec.Struct):
    """A CacheBlend sub-sequence match (stored range, query range, chunk hash)."""

    old_st: int
    old_ed: int
    cur_st: int
    cur_ed: int
    hash: bytes


class CBUnifiedLookupResult(msgspec.Struct):
    """Resolved reply of ``cb_unified_lookup``."""

    prefix_coverage_tokens: int
    non_prefix_segments: list[CBMatchResult]
    segmented_prefix_segments: list[CBMatchResult] = msgspec.field(default_factory=list)


# --------------------------------------------------------------------------- our extension


PROTOCOL_VERSION = 1
"""Version of the protocol extensions we add on top of 0.5.6 (the ``hello`` op)."""

CAPABILITY_ERROR_FRAMES = "error_frames"
CAPABILITY_KV_EVENT_STREAM = "kv_event_stream"


class HelloRequest(msgspec.Struct):
    """Argument of our name-only ``hello`` op. ``capabilities`` lists what the client opts in
    to (e.g. ``"error_frames"``); every field has a default, so ``{}`` is a valid hello."""

    protocol_version: int = PROTOCOL_VERSION
    capabilities: list[str] = msgspec.field(default_factory=list)
    client: str = ""


class HelloResponse(msgspec.Struct):
    """Reply of ``hello``: what the server is and supports, and what it enabled for this peer."""

    protocol_version: int
    capabilities: list[str]
    transfer_modes: list[str]
    chunk_size: int
    hash_algorithm: str
    enabled: list[str] = msgspec.field(default_factory=list)
    server: str = ""


class ErrorPayload(msgspec.Struct):
    """The last frame of an error reply (sent only to peers that opted in to error frames)."""

    code: str
    message: str


# --------------------------------------------------------------------------- KV handles (Ext 1)

DEVICE_IPC_EXT_CODE = 1

# Element sizes of the dtype names torch 2.x prints (``str(dtype)`` without ``torch.``);
# 0.5.6 accepts exactly the names its torch knows.
DTYPE_ITEMSIZE: dict[str, int] = {
    "bfloat16": 2, "bits16": 2, "bits1x8": 1, "bits2x4": 1, "bits4x2": 1, "bits8": 1,
    "bool": 1, "complex128": 16, "complex32": 4, "complex64": 8, "float16": 2,
    "float32": 4, "float4_e2m1fn_x2": 1, "float64": 8, "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1,
    "int1": 1, "int16": 2, "int2": 1, "int3": 1, "int32": 4, "int4": 1, "int5": 1,
    "int6": 1, "int64": 8, "int7": 1, "int8": 1, "qint32": 4, "qint8": 1, "quint2x4": 1,
    "quint4x2": 1, "quint8": 1, "uint1": 1, "uint16": 2, "uint2": 1, "uint3": 1,
    "uint32": 4, "uint4": 1, "uint5": 1, "uint6": 1, "uint64": 8, "uint7": 1, "uint8": 1,
}  # fmt: skip


class TensorMetadata(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The tensor view a KV handle describes (element units; ``device_uuid`` "cpu" on CPU)."""

    dtype: str
    shape: tuple[NonNegative, ...]
    stride: tuple[NonNegative, ...]
    storage_offset: NonNegative
    device_uuid: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_ITEMSIZE:
            raise ValueError(f"unsupported IPC tensor dtype {self.dtype!r}")
        if len(self.shape) != len(self.stride):
            raise ValueError("IPC shape and stride ranks must match")

    @property
    def itemsize(self) -> int:
        return DTYPE_ITEMSIZE[self.dtype]

    def byte_span(self) -> int:
        """The exclusive byte end of the view within its storage (0 for an empty tensor)."""
        if 0 in self.shape:
            return 0
        last = sum((size - 1) * stride for size, stride in zip(self.shape, self.stride, strict=True))
        return self.itemsize * (self.storage_offset + 1 + last)


class _IPCData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    # kw_only puts these two after each subclass's own fields on the wire, as in 0.5.6:
    # {"type": ..., <own fields>..., "version": 1, "metadata": {...}}.
    version: Literal[1]
    metadata: TensorMetadata


class CpuShmIPCData(_IPCData, frozen=True, tag="cpu_shm"):
    """A CPU tensor in a named POSIX SHM segment (``/lmcache_kv_<pid>_<n>``); ``nbytes`` is the
    segment length = the receiver's mmap length."""

    shm_name: str
    nbytes: NonNegative

    def __post_init__(self) -> None:
        if self.metadata.byte_span() > self.nbytes:
            raise ValueError("IPC view exceeds CPU shared-memory segment")


class CudaIPCData(_IPCData, frozen=True, tag="cuda"):
    """PyTorch shared CUDA storage: ``(device, mem handle, storage bytes, storage offset bytes,
    ref-counter handle, ref-counter offset, event handle, event sync required)``."""

    handle: tuple[int, bytes | None, NonNegative, NonNegative, bytes | None, NonNegative, bytes | None, bool]

    def __post_init__(self) -> None:
        if self.metadata.byte_span() > self.handle[2]:
            raise ValueError("IPC view exceeds CUDA storage")


class RawCudaIPCData(_IPCData, frozen=True, tag="cuda_raw"):
    """A driver ``cudaIpcMemHandle`` (64 bytes) of the allocation base, plus the byte range."""

    ipc_handle: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    alloc_offset: NonNegative
    nbytes: NonNegative

    def __post_init__(self) -> None:
        if self.metadata.byte_span() > self.nbytes:
            raise ValueError("IPC view exceeds raw CUDA byte range")


class VmmCudaIPCData(_IPCData, frozen=True, tag="cuda_vmm"):
    """A ``cuMemCreate`` allocation: 16-byte export id (the fd travels out of band) or fabric
    handle, and the byte range inside the allocation."""

    export_id: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    kind: Literal["posix_fd", "fabric"]
    fabric_blob: bytes | None
    alloc_size: NonNegative
    alloc_offset: NonNegative
    nbytes: NonNegative

    def __post_init__(self) -> None:
        if self.metadata.byte_span() > self.nbytes:
            raise ValueError("IPC view exceeds VMM byte range")
        if self.alloc_offset + self.nbytes > self.alloc_size:
            raise ValueError("IPC view exceeds VMM allocation")
        if (self.kind == "fabric") != (self.fabric_blob is not None):
            raise ValueError("IPC fabric handle does not match allocation kind")


def _check_primitive(value: object) -> None:
    if type(value) in (type(None), bool, int, float, str, bytes):
        return
    if type(value) is list:
        for item in value:
            _check_primitive(item)
        return
    if type(value) is dict and all(type(k) is str for k in value):
        for item in value.values():
            _check_primitive(item)
        return
    raise ValueError("IPC handles must contain only msgpack primitive values")


class MusaIPCData(_IPCData, frozen=True, tag="musa"):
    """A MUSA handle made of msgpack primitives only."""

    handle: object

    def __post_init__(self) -> None:
        _check_primitive(self.handle)


class NpuPlaneData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One NPU storage handle (scalars only) and its tensor view."""

    handle: tuple[object, ...]
    metadata: TensorMetadata

    def __post_init__(self) -> None:
        if not self.handle or any(type(v) not in (int, bytes, str, bool, type(None)) for v in self.handle):
            raise ValueError("NPU IPC handles must contain only scalar values")


class NpuIPCData(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="npu"):
    """An NPU layer: one bare tensor (``bare``) or a sequence of planes on one device."""

    version: Literal[1]
    bare: bool
    planes: tuple[NpuPlaneData, ...]

    def __post_init__(self) -> None:
        if not self.planes or (self.bare and len(self.planes) != 1):
            raise ValueError("invalid NPU IPC plane count")
        device = self.planes[0].metadata.device_uuid
        if any(p.metadata.device_uuid != device for p in self.planes):
            raise ValueError("NPU IPC planes must share a device")


DeviceIPCData: TypeAlias = (
    CpuShmIPCData | CudaIPCData | RawCudaIPCData | VmmCudaIPCData | MusaIPCData | NpuIPCData
)
"""A decoded KV handle (0.5.6 ``DeviceIPCWrapper``), selected by its ``type`` tag."""

DEVICE_IPC_TYPES: tuple[type[msgspec.Struct], ...] = (
    CpuShmIPCData,
    CudaIPCData,
    RawCudaIPCData,
    VmmCudaIPCData,
    MusaIPCData,
    NpuIPCData,
)

_IPC_DECODER: msgspec.msgpack.Decoder[DeviceIPCData] = msgspec.msgpack.Decoder(DeviceIPCData)
_ENCODER = msgspec.msgpack.Encoder()


class IPCHandleError(ValueError):
    """A KV handle that cannot be accepted. ``legacy_pickle`` marks the rejected pickle form."""

    def __init__(self, message: str, *, legacy_pickle: bool = False) -> None:
        super().__init__(message)
        self.legacy_pickle = legacy_pickle


def looks_like_pickle(data: bytes) -> bool:
    """True for a pickle stream of protocol 2 or later (``0x80 <proto>``), the form earlier
    LMCache releases sent in Ext 1. It is only recognised, never loaded."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def encode_device_ipc(data: DeviceIPCData) -> msgspec.msgpack.Ext:
    """The Ext type 1 that carries ``data`` (its msgpack encoding)."""
    if not isinstance(data, DEVICE_IPC_TYPES):
        raise TypeError(f"not a KV handle descriptor: {type(data).__name__}")
    return msgspec.msgpack.Ext(DEVICE_IPC_EXT_CODE, _ENCODER.encode(data))


def decode_device_ipc(ext: msgspec.msgpack.Ext) -> DeviceIPCData:
    """Decode and validate one Ext type 1 KV handle.

    Raises :class:`IPCHandleError` for another Ext code, the legacy pickled form (never
    unpickled), an unknown ``type`` tag, or a descriptor that fails validation.
    """
    if ext.code != DEVICE_IPC_EXT_CODE:
        raise IPCHandleError(f"unsupported msgpack ext code {ext.code} (KV handles use ext code 1)")
    data = bytes(ext.data)
    if looks_like_pickle(data):
        raise IPCHandleError(
            "legacy pickled KV handle rejected: this server never unpickles data from the network; "
            "upgrade the client to LMCache 0.5.6 or later, which sends msgpack descriptors",
            legacy_pickle=True,
        )
    try:
        return _IPC_DECODER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: invalid UTF-8 in a str
        raise IPCHandleError(f"invalid KV handle descriptor: {exc}") from None


__all__ = [
    "CACHE_SALT_FORBIDDEN",
    "CACHE_SALT_MAX_LEN",
    "CAPABILITY_ERROR_FRAMES",
    "CAPABILITY_KV_EVENT_STREAM",
    "DEVICE_IPC_EXT_CODE",
    "DEVICE_IPC_TYPES",
    "DTYPE_ITEMSIZE",
    "KV_EVENT_KIND_REMOVED",
    "KV_EVENT_KIND_STORED",
    "KV_EVENT_MEDIUM_CPU",
    "PROTOCOL_VERSION",
    "BlockAllocationRecord",
    "CBMatchResult",
    "CBUnifiedLookupResult",
    "CacheSalt",
    "ChunkHash",
    "CpuShmIPCData",
    "CudaIPCData",
    "DeviceIPCData",
    "EngineGroupInfo",
    "EngineType",
    "ErrorPayload",
    "HelloRequest",
    "HelloResponse",
    "IPCCacheServerKey",
    "IPCHandleError",
    "InstanceId",
    "KVEventBatch",
    "KVEventRecord",
    "KVLayoutName",
    "LayoutHints",
    "MemoryLayoutDesc",
    "MusaIPCData",
    "NpuIPCData",
    "NpuPlaneData",
    "ObjectKey",
    "PrepareRetrieveResponse",
    "PrepareStoreResponse",
    "RawCudaIPCData",
    "RegisterEngineDrivenContextPayload",
    "RegisterEngineDrivenContextResponse",
    "RequestAllocationRecord",
    "RequestUid",
    "ServerModuleCallRequest",
    "ServerModuleCallResponse",
    "SessionId",
    "ShmSlotDescriptor",
    "SlotContext",
    "TaskId",
    "TensorMetadata",
    "TransferChannelAddress",
    "VmmCudaIPCData",
    "decode_device_ipc",
    "encode_device_ipc",
    "looks_like_pickle",
]
