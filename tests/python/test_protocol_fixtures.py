"""Captured LMCache 0.5.6 traffic decodes with our types and re-encodes to the same bytes.

The fixtures (tests/python/fixtures/wire/*.json, see the README there) were recorded by
scripts/capture_wire.py between a real 0.5.6 server and real 0.5.6 clients.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lmcache.protocol import framing, types
from lmcache.protocol.framing import ErrorCode, Reply, Request, RequestError, StreamControl

WIRE = Path(__file__).parent / "fixtures" / "wire"
SCENARIOS = ("probe", "lmcache_driven", "engine_driven_shm", "engine_driven_pickle")


@dataclass
class Message:
    seq: int
    dir: str
    peer: int
    frames: list[bytes]


def load(name: str) -> tuple[dict[str, Any], list[Message]]:
    data = json.loads((WIRE / f"{name}.json").read_text())
    msgs = [
        Message(m["seq"], m["dir"], m["peer"], [bytes.fromhex(f) for f in m["frames"]])
        for m in data["messages"]
    ]
    return data, msgs


@dataclass
class Exchange:
    request: Request
    replies: list[Message]


def exchanges(msgs: list[Message]) -> tuple[list[Exchange], list[tuple[Message, RequestError]]]:
    """Pair every decoded request with the replies of the same peer and uid."""
    pending: dict[tuple[int, int], Exchange] = {}
    done: list[Exchange] = []
    errors: list[tuple[Message, RequestError]] = []
    for m in msgs:
        if m.dir == "c2s":
            r = framing.decode_request(m.frames)
            if isinstance(r, Request):
                ex = Exchange(r, [])
                pending[(m.peer, r.uid)] = ex
                done.append(ex)
            elif isinstance(r, RequestError):
                errors.append((m, r))
        else:
            uid = framing.reply_uid(m.frames)
            assert uid is not None
            pending[(m.peer, uid)].replies.append(m)
    return done, errors


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_request_round_trips_byte_for_byte(name: str) -> None:
    _, msgs = load(name)
    for m in msgs:
        if m.dir != "c2s":
            continue
        r = framing.decode_request(m.frames)
        if isinstance(r, RequestError):
            assert name == "probe", f"{name} #{m.seq}: {r.code} {r.message}"
            continue
        if isinstance(r, StreamControl):
            assert framing.encode_stream_control(r.uid, r.action) == m.frames
            continue
        again = framing.encode_request(r.uid, r.op, r.args, by_name=r.by_name)
        assert again == m.frames, f"{name} #{m.seq} {r.op.name}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_reply_decodes_and_round_trips_byte_for_byte(name: str) -> None:
    _, msgs = load(name)
    done, _ = exchanges(msgs)
    n = 0
    for ex in done:
        for m in ex.replies:
            rep = framing.decode_reply(m.frames, ex.request.op)
            assert isinstance(rep, Reply), f"{name} #{m.seq}: {rep}"
            again = framing.encode_reply(ex.request.uid_frame, ex.request.op_frame, ex.request.op, rep.value)
            assert again == m.frames, f"{name} #{m.seq} {ex.request.op.name}"
            n += 1
    assert n > 0


def test_replies_echo_uid_and_op_frames_as_sent() -> None:
    for name in SCENARIOS:
        _, msgs = load(name)
        done, _ = exchanges(msgs)
        for ex in done:
            for m in ex.replies:
                assert m.frames[0] == ex.request.uid_frame
                assert m.frames[1] == ex.request.op_frame


def test_probe_answers_by_legacy_id_and_by_name_alike() -> None:
    _, msgs = load("probe")
    done, _ = exchanges(msgs)
    seen: dict[tuple[str, bool], list[Any]] = {}  # distinct replies per (op, sent by name)
    for ex in done:
        if ex.request.op.streaming or not ex.replies:
            continue
        rep = framing.decode_reply(ex.replies[0].frames, ex.request.op)
        assert isinstance(rep, Reply)
        got = seen.setdefault((ex.request.op.name, ex.request.by_name), [])
        if (rep.has_value, rep.value) not in got:
            got.append((rep.has_value, rep.value))
    assert seen[("noop", False)] == seen[("noop", True)] == [(True, "OK")]
    assert seen[("get_chunk_size", False)] == seen[("get_chunk_size", True)] == [(True, 256)]
    assert seen[("get_experimental", False)] == [(True, ["kv_event_stream"])]
    assert seen[("ping", False)] == seen[("ping", True)] == [(True, True)]
    assert seen[("query_prefetch_status", False)] == seen[("query_prefetch_status", True)] == [(True, 0)]
    # void replies: exactly two frames
    for op in ("end_session", "clear"):
        assert seen[(op, False)] == seen[(op, True)] == [(False, None)]
    for op in ("unregister_kv_cache", "unregister_kv_cache_engine_driven_context", "report_block_allocation"):
        assert seen[(op, False)] == [(False, None)]


def test_probe_requests_0_5_6_leaves_unanswered_are_the_ones_we_reject() -> None:
    data, msgs = load("probe")
    done, errors = exchanges(msgs)
    codes = {m.seq: r.code for m, r in errors}
    assert sorted(set(codes.values()), key=str) == sorted(
        {
            ErrorCode.UNKNOWN_OP,
            ErrorCode.ARITY_MISMATCH,
            ErrorCode.RETIRED_OP,
            ErrorCode.INVALID_ARGUMENT,
            ErrorCode.MALFORMED_REQUEST,
        },
        key=str,
    )
    # 0.5.6 answered none of them (nor cb_protocol_handshake: no blend module loaded).
    replied = {m.frames[0] for m in msgs if m.dir == "s2c"}
    assert len(errors) == 13
    for m, _ in errors:
        assert m.frames[0] not in replied
    unanswered = [ex.request.op.name for ex in done if not ex.replies]
    assert unanswered == ["cb_protocol_handshake"]
    assert any("no reply" in n for n in data["notes"])


def test_subscribe_stream_framing() -> None:
    _, msgs = load("probe")
    sub = [
        m for m in msgs if len(m.frames) >= 2 and m.frames[1] == msgspec.msgpack.encode("subscribe_kv_events")
    ]
    uid_frame = sub[0].frames[0]
    stream = [m for m in msgs if m.frames[0] == uid_frame]
    kinds = []
    for m in stream:
        if m.dir == "c2s":
            r = framing.decode_request(m.frames)
            kinds.append(("c2s", r.action if isinstance(r, StreamControl) else r.op.name))  # type: ignore[union-attr]
        else:
            kinds.append(("s2c", len(m.frames)))
    # The request grants one credit: one batch comes before any ack; the stream ends with [uid, op].
    assert kinds == [
        ("c2s", "subscribe_kv_events"),
        ("s2c", 3),
        ("c2s", "ack"),
        ("c2s", "cancel"),
        ("s2c", 2),
    ]
    first = framing.decode_reply(stream[1].frames, "subscribe_kv_events")
    assert isinstance(first, Reply) and isinstance(first.value, types.KVEventBatch)
    assert first.value.enabled and first.value.events == [] and first.value.next_cursor == 0
    # the control frames: uid is msgpack, the other two are raw bytes
    assert stream[2].frames == [uid_frame, b"", b"ack"]
    assert stream[3].frames == [uid_frame, b"", b"cancel"]


def test_kv_events_carry_real_chunk_hashes() -> None:
    _, msgs = load("lmcache_driven")
    done, _ = exchanges(msgs)
    sub = next(ex for ex in done if ex.request.op.name == "subscribe_kv_events")
    events = []
    for m in sub.replies:
        rep = framing.decode_reply(m.frames, sub.request.op)
        assert isinstance(rep, Reply)
        if rep.value is not None:
            events += rep.value.events
    stored = [e for e in events if e.kind == types.KV_EVENT_KIND_STORED]
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    # chunk 1's parent is chunk 0's hash; chunk 0 has none
    assert stored[0].parent_block_hash is None
    assert stored[1].parent_block_hash == stored[0].block_hashes[0]
    assert all(len(h) == 32 for e in stored for h in e.block_hashes)
    assert all(len(e.token_ids) == 256 and e.medium == "CPU" for e in stored)
    # blake3 prefix chain (compat reference section 6.1), as the 0.5.6 server computed it
    assert (
        stored[0].block_hashes[0].hex() == "d65391f7dcbfb7f8472e8942ce76f5ca70a3ab0ffd0978c0640a27d07a9a336f"
    )
    assert stored[0].token_ids == [0] + [9906] * 255


def test_register_kv_cache_carries_cpu_shm_ext1_handles() -> None:
    _, msgs = load("lmcache_driven")
    done, _ = exchanges(msgs)
    reg = next(ex for ex in done if ex.request.op.name == "register_kv_cache")
    assert not reg.request.by_name and reg.request.op_frame == msgspec.msgpack.encode(1)
    instance_id, handles, model, world, engine, hints, groups = reg.request.args
    assert (instance_id, model, world, engine) == (1000, "test-model", 1, types.EngineType.VLLM)
    assert hints == types.LayoutHints(kv_layout="NHD")
    assert groups == [types.EngineGroupInfo(engine_group_id=0, layer_indices=(0, 1), tokens_per_block=16)]
    assert len(handles) == 2
    h = handles[0]
    assert isinstance(h, types.CpuShmIPCData)
    assert h.shm_name.startswith("/lmcache_kv_") and h.nbytes == 2 * 64 * 16 * 1 * 32 * 2
    assert h.metadata == types.TensorMetadata(
        dtype="float16",
        shape=(2, 64, 16, 1, 32),
        stride=(32768, 512, 32, 32, 1),
        storage_offset=0,
        device_uuid="cpu",
    )
    # the raw Ext: code 1, data = msgpack map {type, shm_name, nbytes, version, metadata}
    raw = msgspec.msgpack.decode(msgs[reg_index(msgs, reg)].frames[3])
    ext = raw[0]
    assert isinstance(ext, msgspec.msgpack.Ext) and ext.code == 1
    assert list(msgspec.msgpack.decode(ext.data)) == ["type", "shm_name", "nbytes", "version", "metadata"]


def reg_index(msgs: list[Message], ex: Exchange) -> int:
    for i, m in enumerate(msgs):
        if m.dir == "c2s" and m.frames[:2] == [ex.request.uid_frame, ex.request.op_frame]:
            return i
    raise AssertionError("request not found")


def test_store_and_retrieve_arguments_and_replies() -> None:
    _, msgs = load("lmcache_driven")
    done, _ = exchanges(msgs)
    stores = [ex for ex in done if ex.request.op.name == "store"]
    retrieves = [ex for ex in done if ex.request.op.name == "retrieve"]
    assert len(stores) == len(retrieves) == 2
    key, instance_id, block_ids, event = stores[0].request.args
    assert instance_id == 1000
    assert isinstance(key, types.IPCCacheServerKey)
    assert (key.worker_id, key.start, key.end, key.num_kv_readers) == (0, 0, 512, 1)
    assert len(key.token_ids) == 513  # the full token list, not just [start, end)
    assert block_ids == [list(range(32))] and event == b"stub_ipc_handle"
    # retrieve: the store arguments plus skip_first_n_tokens, last
    assert len(retrieves[0].request.args) == 5 and retrieves[0].request.args[4] == 0
    for ex in stores + retrieves:
        rep = framing.decode_reply(ex.replies[0].frames, ex.request.op)
        assert isinstance(rep, Reply) and rep.value == (b"stub_ipc_handle", True)
    lookups = [ex for ex in done if ex.request.op.name == "lookup"]
    assert all(ex.request.args[0].worker_id is None for ex in lookups)
    assert all(len(ex.replies[0].frames) == 2 for ex in lookups)


def test_engine_driven_shm_path() -> None:
    _, msgs = load("engine_driven_shm")
    done, _ = exchanges(msgs)
    by_op: dict[str, list[tuple[Exchange, Any]]] = {}
    for ex in done:
        rep = framing.decode_reply(ex.replies[0].frames, ex.request.op)
        assert isinstance(rep, Reply)
        by_op.setdefault(ex.request.op.name, []).append((ex, rep.value))
    (reg, reg_reply), *_ = by_op["register_kv_cache_engine_driven_context"]
    payload = reg.request.args[0]
    assert payload == types.RegisterEngineDrivenContextPayload(
        instance_id=types.InstanceId(1000), model_name="test-model", world_size=1, block_size=16,
        num_layers=2, hidden_dim_size=32, dtype_str="float16", use_mla=False, num_physical_slots=256,
    )  # fmt: skip
    assert reg_reply == types.RegisterEngineDrivenContextResponse("lmcache_l1_pool_capture", 1 << 30)
    _, prep = by_op["prepare_store"][0]
    assert prep.context.chunk_indices == [0, 1]
    assert prep.context.slots[0] == types.ShmSlotDescriptor(0, 65536, [2, 2, 256, 32], "float16")
    commit, ok = by_op["commit_store"][0]
    assert commit.request.args[2] == b"" and ok is True  # data is empty on the SHM path
    _, pr = by_op["prepare_retrieve"][0]
    assert pr.success and pr.data == b"" and len(pr.context.slots) == 2
    assert pr.context.chunk_indices is msgspec.UNSET  # prepare_retrieve sends slots only
    assert [v for _, v in by_op["commit_retrieve"]] == [True, True]


def test_engine_driven_pickle_path_is_only_bytes_to_us() -> None:
    _, msgs = load("engine_driven_pickle")
    done, _ = exchanges(msgs)
    reg = next(ex for ex in done if ex.request.op.name == "register_kv_cache_engine_driven_context")
    rep = framing.decode_reply(reg.replies[0].frames, reg.request.op)
    assert isinstance(rep, Reply) and rep.value == types.RegisterEngineDrivenContextResponse("", 0)
    prep = next(ex for ex in done if ex.request.op.name == "prepare_store")
    rep = framing.decode_reply(prep.replies[0].frames, prep.request.op)
    assert isinstance(rep, Reply) and rep.value == types.PrepareStoreResponse()  # context {}
    commit = next(ex for ex in done if ex.request.op.name == "commit_store")
    data = commit.request.args[2]
    assert isinstance(data, bytes) and types.looks_like_pickle(data)  # recognised, never loaded


def test_mutated_captures_never_make_the_decoders_raise() -> None:
    """Byte flips and truncations of real 0.5.6 frames: always a structured result."""
    rng = random.Random(56)
    done: list[Exchange] = []
    originals: list[list[bytes]] = []
    for name in SCENARIOS:
        _, msgs = load(name)
        originals += [
            m.frames for m in msgs if m.dir == "c2s" and len(m.frames) > 2 and len(m.frames[2]) < 20000
        ]
        done += exchanges(msgs)[0]
    for _ in range(1500):
        mutable = [bytearray(f) for f in rng.choice(originals)]
        target = mutable[rng.randrange(2, len(mutable))]
        for _ in range(rng.randrange(1, 4)):
            if target and rng.random() < 0.8:
                target[rng.randrange(len(target))] = rng.randrange(256)
            else:
                del target[rng.randrange(len(target) + 1) :]
        r = framing.decode_request([bytes(f) for f in mutable])
        assert isinstance(r, (Request, RequestError))
    for _ in range(500):
        ex = rng.choice([ex for ex in done if ex.replies and len(ex.replies[0].frames) == 3])
        reply = ex.replies[0].frames
        body = bytearray(reply[2])
        body[rng.randrange(len(body))] = rng.randrange(256)
        rep = framing.decode_reply([*reply[:2], bytes(body)], ex.request.op)
        assert isinstance(rep, (Reply, framing.ReplyError))
