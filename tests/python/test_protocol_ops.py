"""The op table matches LMCache 0.5.6 (compat reference section 3)."""

from __future__ import annotations

import msgspec
import pytest

from lmcache.protocol import framing, ops, types
from lmcache.protocol.ops import OPS, OPS_BY_LEGACY_ID, OPS_BY_NAME, Area, FailureMode, HandlerKind

# Section 3.1 of the compat reference, and 0.5.6's transport/zmq_impl/wire.py.
LEGACY_IDS = {
    1: "register_kv_cache",
    2: "unregister_kv_cache",
    3: "register_q_cache",
    4: "unregister_q_cache",
    5: "store_q",
    6: "store",
    7: "retrieve",
    8: "lookup",
    9: "query_prefetch_status",
    10: "wait_prefetch_status",
    12: "free_lookup_locks",
    13: "end_session",
    14: "register_kv_cache_engine_driven_context",
    15: "unregister_kv_cache_engine_driven_context",
    16: "prepare_store",
    17: "commit_store",
    18: "prepare_retrieve",
    19: "commit_retrieve",
    20: "clear",
    21: "get_chunk_size",
    22: "ping",
    23: "report_block_allocation",
    24: "noop",
    25: "cb_register_rope",
    26: "cb_unregister_rope",
    27: "cb_retrieve_pre_computed",
    28: "cb_unified_lookup",
    29: "p2p_lookup_and_lock",
    30: "p2p_query_lookup_results",
    31: "p2p_unlock_objects",
    32: "get_experimental",
    33: "cb_protocol_handshake",
}


def test_every_legacy_id_except_11_is_present() -> None:
    assert set(LEGACY_IDS) == set(range(1, 34)) - {11}
    assert {i: op.name for i, op in OPS_BY_LEGACY_ID.items()} == LEGACY_IDS


def test_retired_and_reserved_ids_are_never_assigned() -> None:
    assert dict(ops.RETIRED_IDS) == {11: "query_prefetch_lookup_hits"}
    assert 34 in ops.RESERVED_IDS
    assert not set(OPS_BY_LEGACY_ID) & {11, 34}


def test_names_are_unique_snake_case() -> None:
    names = [op.name for op in OPS]
    assert len(names) == len(set(names)) == len(OPS_BY_NAME)
    assert all(n.isidentifier() and n == n.lower() for n in names)


def test_name_only_ops() -> None:
    assert set(ops.NAME_ONLY_OPS) == {"subscribe_kv_events", "server_module_call", "cb_reorder_plan", "hello"}
    assert OPS_BY_NAME["hello"].area is Area.EXTENSION
    assert "debug" not in OPS_BY_NAME  # 0.5.6's `debug` method serves `noop`; there is no debug op


@pytest.mark.parametrize(
    ("name", "arity"),
    [
        ("register_kv_cache", 7),
        ("store", 4),
        ("retrieve", 5),
        ("lookup", 2),
        ("commit_store", 3),
        ("clear", 1),
        ("noop", 0),
        ("get_chunk_size", 0),
        ("cb_register_rope", 8),
        ("subscribe_kv_events", 4),
        ("hello", 1),
    ],
)
def test_arity(name: str, arity: int) -> None:
    assert OPS_BY_NAME[name].arity == arity


def test_retrieve_takes_skip_first_n_tokens_last() -> None:
    names = [a.name for a in OPS_BY_NAME["retrieve"].args]
    assert names == ["key", "instance_id", "block_ids", "event_ipc_handle", "skip_first_n_tokens"]
    assert [a.name for a in OPS_BY_NAME["store"].args] == names[:4]


def test_handler_kinds_match_0_5_6() -> None:
    affinity = {op.name for op in OPS if op.kind is HandlerKind.AFFINITY}
    assert affinity == {
        "store", "retrieve", "store_q", "prepare_store", "commit_store", "prepare_retrieve",
        "commit_retrieve", "cb_retrieve_pre_computed",
    }  # fmt: skip
    sync = {op.name for op in OPS if op.kind is HandlerKind.SYNC}
    assert {
        "register_kv_cache", "unregister_kv_cache", "register_kv_cache_engine_driven_context",
        "unregister_kv_cache_engine_driven_context", "get_chunk_size", "noop", "get_experimental",
        "subscribe_kv_events", "hello",
    } <= sync  # fmt: skip
    for name in (
        "lookup",
        "query_prefetch_status",
        "wait_prefetch_status",
        "free_lookup_locks",
        "end_session",
    ):
        assert OPS_BY_NAME[name].kind is HandlerKind.NORMAL
    for name in ("ping", "clear", "report_block_allocation", "server_module_call"):
        assert OPS_BY_NAME[name].kind is HandlerKind.NORMAL


def test_only_subscribe_streams() -> None:
    assert [op.name for op in OPS if op.streaming] == ["subscribe_kv_events"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("store", (b"", False)),
        ("retrieve", (b"", False)),
        ("commit_store", False),
        ("commit_retrieve", False),
        ("query_prefetch_status", 0),
        ("wait_prefetch_status", 0),
        ("prepare_retrieve", types.PrepareRetrieveResponse(success=False)),
        ("lookup", None),
    ],
)
def test_failure_values(name: str, value: object) -> None:
    op = OPS_BY_NAME[name]
    assert op.failure is FailureMode.VALUE
    assert op.failure_reply("boom") == value


def test_failure_values_encode_as_their_reply_type() -> None:
    for op in OPS:
        if op.failure is FailureMode.VALUE:
            frames = framing.encode_reply(
                b"\x01", msgspec.msgpack.encode(op.wire_id), op, op.failure_reply("why")
            )
            rep = framing.decode_reply(frames, op)
            assert isinstance(rep, framing.Reply), op.name
            assert rep.value == op.failure_reply("why")


def test_prepare_store_failure_is_not_a_skip() -> None:
    """Empty slot lists mean "already stored"; a failure must never look like that."""
    value = OPS_BY_NAME["prepare_store"].failure_reply("")
    assert value.context.slots is msgspec.UNSET and value.context.chunk_indices is msgspec.UNSET


def test_server_module_call_failure_carries_the_message() -> None:
    value = OPS_BY_NAME["server_module_call"].failure_reply("no such module")
    assert value == types.ServerModuleCallResponse(success=False, payload=b"", error="no such module")


def test_ops_without_a_failure_value() -> None:
    op = OPS_BY_NAME["register_kv_cache"]
    assert op.failure is FailureMode.SILENT
    with pytest.raises(ValueError, match="no failure value"):
        op.failure_reply()
    assert OPS_BY_NAME["subscribe_kv_events"].failure is FailureMode.STREAM_END
    assert OPS_BY_NAME["hello"].failure is FailureMode.ERROR_FRAME


def test_wire_id_is_what_a_0_5_6_client_sends() -> None:
    assert OPS_BY_NAME["noop"].wire_id == 24
    assert OPS_BY_NAME["subscribe_kv_events"].wire_id == "subscribe_kv_events"


def test_every_arg_and_reply_type_has_a_codec() -> None:
    for op in OPS:
        for arg in op.args:
            framing.codec_for(arg.type)
        if op.reply is not None:
            framing.codec_for(op.reply)


def test_ops_in_area() -> None:
    names = {op.name for op in ops.ops_in(Area.ENGINE_DRIVEN)}
    assert names == {
        "register_kv_cache_engine_driven_context", "unregister_kv_cache_engine_driven_context",
        "prepare_store", "commit_store", "prepare_retrieve", "commit_retrieve",
    }  # fmt: skip
    assert ops.op_by_name("noop") is OPS_BY_NAME["noop"] and ops.op_by_legacy_id(24) is OPS_BY_NAME["noop"]
    assert ops.op_by_name("bogus") is None and ops.op_by_legacy_id(11) is None
