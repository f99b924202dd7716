"""The operation table of the multiprocess protocol (LMCache 0.5.6 plus our ``hello``).

One :class:`OpSpec` per operation: its snake_case name, its frozen legacy integer ID (only
ops that had one in 0.5.6's ``RequestType``), its arguments in wire (frame) order with their
types, its reply type (``None`` = void: a 2-frame reply), the handler kind (where 0.5.6 runs
it, and where our server must run it to keep the same ordering guarantees), and how a
failure can be told to a peer that did not opt in to error frames.

Facts, all read in the 0.5.6 sources (``transport/base.py`` ``RequestClient`` is the
contract; ``transport/zmq_impl/wire.py`` the ID table; the ``@request_handler`` decorators
the kinds) and checked against captured traffic (``tests/python/fixtures/wire``):

* legacy IDs 1..33 except 11; 11 (``query_prefetch_lookup_hits``) is retired and must never
  be reused; 34 is reserved (later upstream releases use it for ``poll_kv_events``);
* name-only ops: ``subscribe_kv_events``, ``server_module_call``, ``cb_reorder_plan`` and our
  ``hello``. (0.5.6 has no ``debug`` op: ``debug`` is the Python name of its ``noop`` handler.)
* every argument is always sent, defaults included (``clear`` has 1 frame, ``cb_register_rope``
  8), because 0.5.6's client binds defaults before encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NewType

from lmcache.protocol.types import (
    BlockAllocationRecord,
    CBMatchResult,
    CBUnifiedLookupResult,
    DeviceIPCData,
    EngineGroupInfo,
    EngineType,
    HelloRequest,
    HelloResponse,
    InstanceId,
    IPCCacheServerKey,
    KVEventBatch,
    LayoutHints,
    MemoryLayoutDesc,
    ObjectKey,
    PrepareRetrieveResponse,
    PrepareStoreResponse,
    RegisterEngineDrivenContextPayload,
    RegisterEngineDrivenContextResponse,
    ServerModuleCallRequest,
    ServerModuleCallResponse,
    SessionId,
    TaskId,
    TransferChannelAddress,
)

OpName = NewType("OpName", str)

KVHandles = list[DeviceIPCData]
"""A list of KV handles: on the wire a msgpack array of Ext type 1 (see ``types``)."""


class HandlerKind(enum.Enum):
    """Where a handler runs (0.5.6's pools; our server must give the same guarantees)."""

    SYNC = "sync"
    """Inline on the socket thread, in arrival order (cheap ops, registrations, streams)."""
    AFFINITY = "affinity"
    """Worker pool pinned by client identity: one client's data ops run in arrival order."""
    NORMAL = "normal"
    """Any worker of the general pool (lookups, sessions, management)."""


class Area(enum.Enum):
    """What an op belongs to; a server that lacks an area answers its ops as unsupported."""

    CORE = "core"
    LMCACHE_DRIVEN = "lmcache_driven"
    ENGINE_DRIVEN = "engine_driven"
    KV_EVENTS = "kv_events"
    QSTORE = "qstore"
    BLEND = "blend"
    P2P = "p2p"
    PLUGIN = "plugin"
    EXTENSION = "extension"
    """Ours, not in 0.5.6."""


class FailureMode(enum.Enum):
    """How a failed request is answered to a peer that did not opt in to error frames."""

    SILENT = "silent"
    """No failure value exists: 0.5.6 behaviour, no reply (the server logs and counts it)."""
    VALUE = "value"
    """The op's ordinary reply can say "failed": send :meth:`OpSpec.failure_reply`."""
    STREAM_END = "stream_end"
    """A stream: end it at once (a 2-frame ``[uid, op]``); 0.5.6 clients see the end."""
    ERROR_FRAME = "error_frame"
    """Only our own clients send this op, so an error frame is always understood."""


@dataclass(frozen=True)
class Arg:
    """One argument frame: its name (from 0.5.6's ``RequestClient``) and decoded type."""

    name: str
    type: Any


@dataclass(frozen=True)
class OpSpec:
    """One operation. ``reply`` None = void (2-frame reply)."""

    name: OpName
    legacy_id: int | None
    args: tuple[Arg, ...]
    reply: Any
    kind: HandlerKind
    area: Area
    summary: str
    streaming: bool = False
    failure: FailureMode = FailureMode.SILENT
    failure_value: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def arity(self) -> int:
        return len(self.args)

    @property
    def wire_id(self) -> int | str:
        """What a 0.5.6 client sends in frame 1: the legacy ID if the op has one, else the name."""
        return self.legacy_id if self.legacy_id is not None else self.name

    def failure_reply(self, message: str = "") -> Any:
        """The ordinary reply that tells an old peer this request failed (``FailureMode.VALUE``)."""
        if self.failure is not FailureMode.VALUE or self.failure_value is None:
            raise ValueError(f"op {self.name} has no failure value")
        return self.failure_value(message)


def _op(
    name: str,
    legacy_id: int | None,
    args: list[tuple[str, Any]],
    reply: Any,
    kind: HandlerKind,
    area: Area,
    summary: str,
    *,
    streaming: bool = False,
    failure: FailureMode = FailureMode.SILENT,
    failure_value: Callable[[str], Any] | None = None,
) -> OpSpec:
    if failure is FailureMode.VALUE and failure_value is None:
        raise ValueError(f"{name}: FailureMode.VALUE needs a failure_value")
    return OpSpec(
        name=OpName(name),
        legacy_id=legacy_id,
        args=tuple(Arg(n, t) for n, t in args),
        reply=reply,
        kind=kind,
        area=area,
        summary=summary,
        streaming=streaming,
        failure=failure,
        failure_value=failure_value,
    )


def _transfer_failed(_: str) -> tuple[bytes, bool]:
    return (b"", False)


def _false(_: str) -> bool:
    return False


def _zero(_: str) -> int:
    return 0


def _void(_: str) -> None:
    return None


Key = IPCCacheServerKey
S, A, N = HandlerKind.SYNC, HandlerKind.AFFINITY, HandlerKind.NORMAL
_REGISTER_ARGS: list[tuple[str, Any]] = [
    ("instance_id", InstanceId),
    ("kv_cache", KVHandles),
    ("model_name", str),
    ("world_size", int),
    ("engine_type", EngineType),
    ("layout_hints", LayoutHints),
    ("engine_group_infos", list[EngineGroupInfo]),
]
_STORE_ARGS: list[tuple[str, Any]] = [
    ("key", Key),
    ("instance_id", InstanceId),
    ("block_ids", list[list[int]]),
    ("event_ipc_handle", bytes),
]

OPS: tuple[OpSpec, ...] = (
    # ---- lmcache_driven: the server copies between the worker's paged KV and L1
    _op(
        "register_kv_cache",
        1,
        _REGISTER_ARGS,
        None,
        S,
        Area.LMCACHE_DRIVEN,
        "Register a worker's paged KV tensors (Ext 1 handles); re-registering refreshes liveness.",
    ),
    _op(
        "unregister_kv_cache",
        2,
        [("instance_id", InstanceId)],
        None,
        S,
        Area.LMCACHE_DRIVEN,
        "Unregister a worker's KV tensors and release every mapping.",
    ),
    # ---- experimental QStore (--enable transfer_query)
    _op(
        "register_q_cache",
        3,
        [("instance_id", InstanceId), ("q_cache", KVHandles), *_REGISTER_ARGS[2:]],
        None,
        S,
        Area.QSTORE,
        "Register paged Q ring tensors (experimental).",
    ),
    _op(
        "unregister_q_cache",
        4,
        [("instance_id", InstanceId)],
        None,
        S,
        Area.QSTORE,
        "Unregister paged Q ring tensors (experimental).",
    ),
    _op(
        "store_q",
        5,
        _STORE_ARGS,
        tuple[bytes, bool],
        A,
        Area.QSTORE,
        "Store Q blocks (experimental); reply [event_handle, ok].",
        failure=FailureMode.VALUE,
        failure_value=_transfer_failed,
    ),
    _op(
        "store",
        6,
        _STORE_ARGS,
        tuple[bytes, bool],
        A,
        Area.LMCACHE_DRIVEN,
        "Copy the chunks [key.start, key.end) from the registered paged KV into L1; reply [event, ok].",
        failure=FailureMode.VALUE,
        failure_value=_transfer_failed,
    ),
    _op(
        "retrieve",
        7,
        [*_STORE_ARGS, ("skip_first_n_tokens", int)],
        tuple[bytes, bool],
        A,
        Area.LMCACHE_DRIVEN,
        "Copy L1 objects into the paged KV, consuming one lookup read lock per object; reply [event, ok].",
        failure=FailureMode.VALUE,
        failure_value=_transfer_failed,
    ),
    # ---- lookup and sessions
    _op(
        "lookup",
        8,
        [("key", Key), ("tp_size", int)],
        None,
        N,
        Area.CORE,
        "Start a prefix lookup/prefetch for key.request_id (tp_size is ignored); reply at once.",
        failure=FailureMode.VALUE,
        failure_value=_void,
    ),
    _op(
        "query_prefetch_status",
        9,
        [("request_id", SessionId)],
        int | None,
        N,
        Area.CORE,
        "Chunks servable for the session's lookup; void while running; 0 if unknown; final value once.",
        failure=FailureMode.VALUE,
        failure_value=_zero,
    ),
    _op(
        "wait_prefetch_status",
        10,
        [("request_id", SessionId), ("timeout", float)],
        int | None,
        N,
        Area.CORE,
        "As query_prefetch_status, but waits up to timeout seconds; void on timeout.",
        failure=FailureMode.VALUE,
        failure_value=_zero,
    ),
    _op(
        "free_lookup_locks",
        12,
        [("key", Key), ("tp_size", int)],
        None,
        N,
        Area.CORE,
        "Release the read locks the lookup took on [key.start, key.end) that no retrieve will consume.",
    ),
    _op(
        "end_session",
        13,
        [("request_id", SessionId)],
        None,
        N,
        Area.CORE,
        "Drop the session and touch (LRU) every key it used.",
    ),
    # ---- engine_driven: the worker copies through the server's SHM pool
    _op(
        "register_kv_cache_engine_driven_context",
        14,
        [("payload", RegisterEngineDrivenContextPayload)],
        RegisterEngineDrivenContextResponse,
        S,
        Area.ENGINE_DRIVEN,
        "Register an engine-driven worker; reply {shm_name, pool_size} of the L1 SHM pool.",
    ),
    _op(
        "unregister_kv_cache_engine_driven_context",
        15,
        [("instance_id", InstanceId)],
        None,
        S,
        Area.ENGINE_DRIVEN,
        "Unregister an engine-driven worker and release what it staged or pinned.",
    ),
    _op(
        "prepare_store",
        16,
        [("key", Key), ("instance_id", InstanceId)],
        PrepareStoreResponse,
        A,
        Area.ENGINE_DRIVEN,
        "Reserve staging objects in the pool; reply {context: {slots, chunk_indices}} (empty = skip).",
        failure=FailureMode.VALUE,
        # Not "empty slots" (that means "already stored, skip": a 0.5.6 client would then report
        # a failed store as ok). An unset context makes it fall back, and its commit gets false.
        failure_value=lambda _: PrepareStoreResponse(),
    ),
    _op(
        "commit_store",
        17,
        [("key", Key), ("instance_id", InstanceId), ("data", bytes)],
        bool,
        A,
        Area.ENGINE_DRIVEN,
        "Publish what prepare_store staged; data must be empty (0.5.6 unpickles non-empty data; we refuse).",
        failure=FailureMode.VALUE,
        failure_value=_false,
    ),
    _op(
        "prepare_retrieve",
        18,
        [("key", Key), ("instance_id", InstanceId)],
        PrepareRetrieveResponse,
        A,
        Area.ENGINE_DRIVEN,
        "Pin the objects; reply {success, data: b'', context: {slots}}.",
        failure=FailureMode.VALUE,
        failure_value=lambda _: PrepareRetrieveResponse(success=False),
    ),
    _op(
        "commit_retrieve",
        19,
        [("key", Key), ("instance_id", InstanceId)],
        bool,
        A,
        Area.ENGINE_DRIVEN,
        "Release what prepare_retrieve pinned.",
        failure=FailureMode.VALUE,
        failure_value=_false,
    ),
    # ---- management
    _op(
        "clear",
        20,
        [("force", bool)],
        None,
        N,
        Area.CORE,
        "Clear L1; force also drops read-locked and live staging objects.",
    ),
    _op("get_chunk_size", 21, [], int, S, Area.CORE, "The server's chunk size in tokens."),
    _op(
        "ping",
        22,
        [("instance_id", InstanceId | None)],
        bool,
        N,
        Area.CORE,
        "Liveness; with an instance id refreshes that worker. Always true.",
    ),
    _op(
        "report_block_allocation",
        23,
        [("instance_id", InstanceId), ("model_name", str), ("records", list[BlockAllocationRecord])],
        None,
        N,
        Area.CORE,
        "The scheduler reports which blocks and tokens requests got (feeds KV events).",
    ),
    _op("noop", 24, [], str, S, Area.CORE, 'Always "OK".'),
    # ---- CacheBlend (--engine-type blend)
    _op(
        "cb_register_rope",
        25,
        [
            ("instance_id", InstanceId),
            ("cos_sin_caches_ipc", KVHandles),
            ("head_size", int),
            ("is_neox_style", bool),
            ("group_to_cache", list[int]),
            ("group_rot", list[list[int]]),
            ("group_head_size", list[int]),
            ("kv_quant", str),
        ],
        None,
        S,
        Area.BLEND,
        "CacheBlend: register RoPE caches.",
    ),
    _op(
        "cb_unregister_rope", 26, [("instance_id", InstanceId)], None, S, Area.BLEND, "CacheBlend: drop RoPE."
    ),
    _op(
        "cb_retrieve_pre_computed",
        27,
        [
            ("key", Key),
            ("match_results", list[CBMatchResult]),
            ("block_ids", list[list[int]]),
            ("instance_id", InstanceId),
            ("event_ipc_handle", bytes),
        ],
        tuple[bytes, bool],
        A,
        Area.BLEND,
        "CacheBlend: retrieve matched segments.",
        failure=FailureMode.VALUE,
        failure_value=_transfer_failed,
    ),
    _op(
        "cb_unified_lookup",
        28,
        [("key", Key), ("tp_size", int)],
        CBUnifiedLookupResult | None,
        N,
        Area.BLEND,
        "CacheBlend: prefix and non-prefix lookup; void while loading.",
    ),
    # ---- p2p L2
    _op(
        "p2p_lookup_and_lock",
        29,
        [("keys", list[ObjectKey]), ("group_layout_descs", dict[int, MemoryLayoutDesc])],
        int,
        N,
        Area.P2P,
        "Peer-to-peer: look up and lock keys; reply a task id.",
    ),
    _op(
        "p2p_query_lookup_results",
        30,
        [("task_id", TaskId)],
        list[TransferChannelAddress] | None,
        N,
        Area.P2P,
        "Peer-to-peer: the task's addresses; void while running.",
    ),
    _op(
        "p2p_unlock_objects", 31, [("keys", list[ObjectKey])], None, N, Area.P2P, "Peer-to-peer: unlock keys."
    ),
    _op(
        "get_experimental",
        32,
        [],
        list[str],
        S,
        Area.CORE,
        'Capability names; 0.5.6 answers ["kv_event_stream"].',
    ),
    _op(
        "cb_protocol_handshake",
        33,
        [("client_version", int)],
        tuple[int, bool],
        S,
        Area.BLEND,
        "CacheBlend: version check; reply [server_version, compatible].",
        failure=FailureMode.VALUE,
        failure_value=lambda _: (0, False),
    ),
    # ---- name-only ops
    _op(
        "subscribe_kv_events",
        None,
        [("instance_id", InstanceId), ("model_name", str), ("cursor", int), ("max_events", int)],
        KVEventBatch,
        S,
        Area.KV_EVENTS,
        "Credit-based stream of KV events after cursor (max_events in 1..1024).",
        streaming=True,
        failure=FailureMode.STREAM_END,
    ),
    _op(
        "server_module_call",
        None,
        [("request", ServerModuleCallRequest)],
        ServerModuleCallResponse,
        N,
        Area.PLUGIN,
        "Dispatch to a server plugin module.",
        failure=FailureMode.VALUE,
        failure_value=lambda msg: ServerModuleCallResponse(success=False, payload=b"", error=msg),
    ),
    _op(
        "cb_reorder_plan",
        None,
        [("key", Key), ("keep_prefix", int), ("budget_ms", int)],
        list[int],
        N,
        Area.BLEND,
        "CacheBlend: reorder plan.",
    ),
    _op(
        "hello",
        None,
        [("request", HelloRequest)],
        HelloResponse,
        S,
        Area.EXTENSION,
        "Ours: protocol version and capabilities; opts the peer in to error frames.",
        failure=FailureMode.ERROR_FRAME,
    ),
)

RETIRED_IDS: Mapping[int, str] = MappingProxyType({11: "query_prefetch_lookup_hits"})
"""Legacy IDs that once existed and must never be reused; requests with them are rejected."""

RESERVED_IDS: Mapping[int, str] = MappingProxyType({34: "poll_kv_events"})
"""Legacy IDs later upstream releases use; never assign them, reject them as unknown."""

OPS_BY_NAME: Mapping[str, OpSpec] = MappingProxyType({op.name: op for op in OPS})
OPS_BY_LEGACY_ID: Mapping[int, OpSpec] = MappingProxyType(
    {op.legacy_id: op for op in OPS if op.legacy_id is not None}
)
NAME_ONLY_OPS: tuple[str, ...] = tuple(op.name for op in OPS if op.legacy_id is None)

if len(OPS_BY_NAME) != len(OPS) or len(OPS_BY_LEGACY_ID) != sum(op.legacy_id is not None for op in OPS):
    raise RuntimeError("duplicate op name or legacy id")  # pragma: no cover
if set(OPS_BY_LEGACY_ID) & (set(RETIRED_IDS) | set(RESERVED_IDS)):
    raise RuntimeError("a retired or reserved legacy id is in use")  # pragma: no cover


def op_by_name(name: str) -> OpSpec | None:
    return OPS_BY_NAME.get(name)


def op_by_legacy_id(legacy_id: int) -> OpSpec | None:
    return OPS_BY_LEGACY_ID.get(legacy_id)


def ops_in(area: Area) -> Iterator[OpSpec]:
    return (op for op in OPS if op.area is area)


__all__ = [
    "NAME_ONLY_OPS",
    "OPS",
    "OPS_BY_LEGACY_ID",
    "OPS_BY_NAME",
    "RESERVED_IDS",
    "RETIRED_IDS",
    "Area",
    "Arg",
    "FailureMode",
    "HandlerKind",
    "KVHandles",
    "OpName",
    "OpSpec",
    "op_by_legacy_id",
    "op_by_name",
    "ops_in",
]
