"""Request/reply framing, structured decode errors, error frames and hello."""

from __future__ import annotations

import random

import msgspec
import pytest

from lmcache.protocol import framing, types
from lmcache.protocol.framing import (
    ErrorCode,
    ErrorReply,
    Reply,
    ReplyError,
    Request,
    RequestError,
    StreamControl,
    decode_reply,
    decode_request,
    encode_request,
    failure_reply,
)
from lmcache.protocol.ops import OPS_BY_NAME

enc = msgspec.msgpack.encode


def key(**kw: object) -> types.IPCCacheServerKey:
    base: dict[str, object] = dict(
        model_name="m", world_size=1, worker_id=0, token_ids=tuple(range(512)), start=0, end=512,
        request_id="r1", num_kv_readers=1,
    )  # fmt: skip
    base.update(kw)
    return types.IPCCacheServerKey(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- forms of the op


def test_legacy_id_and_name_decode_to_the_same_op() -> None:
    by_id = decode_request([enc(7), enc(24)])
    by_name = decode_request([enc(8), enc("noop")])
    assert isinstance(by_id, Request) and isinstance(by_name, Request)
    assert by_id.op is by_name.op is OPS_BY_NAME["noop"]
    assert (by_id.by_name, by_name.by_name) == (False, True)
    assert (by_id.uid, by_name.uid) == (7, 8)


def test_encode_request_uses_the_legacy_id_unless_asked() -> None:
    assert encode_request(1, "noop", []) == [enc(1), enc(24)]
    assert encode_request(1, "noop", [], by_name=True) == [enc(1), enc("noop")]
    # name-only ops always go by name
    frames = encode_request(2, "subscribe_kv_events", [1, "m", 0, 16])
    assert frames[1] == enc("subscribe_kv_events")


def test_reply_echoes_the_op_frame_as_sent() -> None:
    for op_frame in (enc(24), enc("noop")):
        r = decode_request([enc(3), op_frame])
        assert isinstance(r, Request)
        assert framing.encode_reply(r.uid_frame, r.op_frame, r.op, "OK") == [enc(3), op_frame, enc("OK")]


def test_void_reply_has_two_frames() -> None:
    r = decode_request(encode_request(5, "end_session", ["sess"]))
    assert isinstance(r, Request) and r.args == ("sess",)
    frames = framing.encode_reply(r.uid_frame, r.op_frame, r.op, None)
    assert frames == [enc(5), enc(13)]
    rep = decode_reply(frames, "end_session")
    assert rep == Reply(5, OPS_BY_NAME["end_session"], None, False)


def test_pending_reply_is_two_frames_and_explicit_nil_is_accepted() -> None:
    op = OPS_BY_NAME["query_prefetch_status"]
    assert framing.encode_reply(enc(1), enc(9), op, None) == [enc(1), enc(9)]
    rep = decode_reply([enc(1), enc(9), enc(None)], op)
    assert isinstance(rep, Reply) and rep.value is None and rep.has_value
    void = decode_reply([enc(1), enc(13), enc(None)], "end_session")
    assert isinstance(void, Reply) and void.value is None


def test_void_op_cannot_encode_a_value() -> None:
    with pytest.raises(TypeError):
        framing.encode_reply(enc(1), enc(13), OPS_BY_NAME["end_session"], 5)


def test_round_trip_of_data_ops() -> None:
    k = key(cache_salt="tenant-a")
    frames = encode_request(9, "store", [k, 1000, [[1, 2, 3]], b"evt"])
    r = decode_request(frames)
    assert isinstance(r, Request)
    assert r.args == (k, 1000, [[1, 2, 3]], b"evt")
    reply = framing.encode_reply(r.uid_frame, r.op_frame, r.op, (b"evt2", True))
    assert decode_reply(reply, "store") == Reply(9, r.op, (b"evt2", True), True)


def test_int_and_bool_frames_are_coerced_like_0_5_6() -> None:
    r = decode_request([enc(1), enc(20), enc(0)])  # clear(force) sent as an int
    assert isinstance(r, Request) and r.args == (False,)
    r = decode_request([enc(1), enc(2), enc(True)])  # unregister_kv_cache(instance_id) sent as a bool
    assert isinstance(r, Request) and r.args == (1,) and type(r.args[0]) is int
    assert encode_request(1, "clear", [0])[2] == enc(False)
    # but a string is not an int (0.5.6 would call int("5"))
    r = decode_request([enc(1), enc(2), enc("5")])
    assert isinstance(r, RequestError) and r.code is ErrorCode.INVALID_ARGUMENT


def test_encode_request_checks_arity() -> None:
    with pytest.raises(ValueError, match="takes 1"):
        encode_request(1, "end_session", [])
    with pytest.raises(ValueError, match="unknown op"):
        encode_request(1, "bogus", [])


# --------------------------------------------------------------------------- structured errors


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ([enc(1), enc("bogus")], ErrorCode.UNKNOWN_OP, "unknown op 'bogus'"),
        ([enc(1), enc(11)], ErrorCode.RETIRED_OP, "retired"),
        ([enc(1), enc(34)], ErrorCode.UNKNOWN_OP, "reserved"),
        ([enc(1), enc(99)], ErrorCode.UNKNOWN_OP, "unknown legacy op id 99"),
        ([enc(1), enc(24), enc(1)], ErrorCode.ARITY_MISMATCH, "noop takes 0"),
        ([enc(1), enc(9)], ErrorCode.ARITY_MISMATCH, "query_prefetch_status takes 1"),
        ([enc(1), enc(9), enc(5)], ErrorCode.INVALID_ARGUMENT, "argument 0 (request_id): Expected `str`"),
        ([enc(1), enc(22), enc("x")], ErrorCode.INVALID_ARGUMENT, "ping argument 0 (instance_id)"),
        ([enc(1), b"\xc1"], ErrorCode.MALFORMED_REQUEST, "op frame is not a msgpack document"),
        ([enc(1), enc(3.5)], ErrorCode.MALFORMED_REQUEST, "got float"),
        ([enc(1), enc(True)], ErrorCode.MALFORMED_REQUEST, "got bool"),
        ([enc("u"), enc(24)], ErrorCode.MALFORMED_REQUEST, "uid"),
        ([enc(1)], ErrorCode.MALFORMED_REQUEST, "at least 2 frames"),
        ([], ErrorCode.MALFORMED_REQUEST, "at least 2 frames"),
        ([enc(1), enc(9), b"\xc1"], ErrorCode.MALFORMED_REQUEST, "not a msgpack document"),
        ([enc(1), b"", b"nack"], ErrorCode.MALFORMED_REQUEST, "stream control"),
    ],
)
def test_decode_errors_are_structured(frames: list[bytes], code: ErrorCode, words: str) -> None:
    r = decode_request(frames)
    assert isinstance(r, RequestError)
    assert r.code is code
    assert words in r.message


def test_error_keeps_what_was_understood() -> None:
    r = decode_request([enc(4), enc(6), enc({"model_name": "m"}), enc(1), enc([[1]]), enc(b"")])
    assert isinstance(r, RequestError) and r.code is ErrorCode.INVALID_ARGUMENT
    assert r.op is OPS_BY_NAME["store"] and r.uid_frame == enc(4) and r.op_frame == enc(6)
    assert "store argument 0 (key)" in r.message and "world_size" in r.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cache_salt", "a@b"),
        ("cache_salt", "a/b"),
        ("cache_salt", "a\\b"),
        ("cache_salt", "a\x00b"),
        ("cache_salt", "x" * 129),
        ("token_ids", [1, -1]),
        ("token_ids", [2**32]),
        ("world_size", 0),
        ("start", -256),
        ("worker_id", "0"),
    ],
)
def test_key_validation(field: str, value: object) -> None:
    raw = msgspec.to_builtins(key())
    raw[field] = value
    r = decode_request([enc(1), enc(8), enc(raw), enc(1)])
    assert isinstance(r, RequestError) and r.code is ErrorCode.INVALID_ARGUMENT, r
    assert field in r.message


def test_key_defaults_for_old_clients_and_unknown_keys() -> None:
    raw = msgspec.to_builtins(key())
    for f in ("cache_salt", "request_configs", "num_kv_readers"):
        del raw[f]
    raw["from_the_future"] = 1
    r = decode_request([enc(1), enc(8), enc(raw), enc(1)])
    assert isinstance(r, Request)
    k = r.args[0]
    assert (k.cache_salt, k.request_configs, k.num_kv_readers) == ("", None, 0)
    with pytest.raises(ValueError, match="Upgrade the LMCache client"):
        k.require_num_kv_readers()


def test_decode_request_never_raises_on_garbage() -> None:
    rng = random.Random(1234)
    samples = [b"", b"\x00", b"\xc1", b"\x80\x04", enc(None), enc([]), enc({}), enc(-1), enc(2**63)]
    samples += [rng.randbytes(rng.randrange(1, 40)) for _ in range(200)]
    ops = [enc(i) for i in range(0, 40)] + [enc(op) for op in OPS_BY_NAME] + samples
    for _ in range(3000):
        frames = [rng.choice([*samples, enc(rng.randrange(100))]), rng.choice(ops)]
        frames += [rng.choice(samples) for _ in range(rng.randrange(0, 8))]
        r = decode_request(frames)
        assert isinstance(r, (Request, RequestError, StreamControl))


def test_decode_reply_errors() -> None:
    op = OPS_BY_NAME["store"]
    assert isinstance(decode_reply([enc(1)], op), ReplyError)
    assert isinstance(decode_reply([b"\xc1", enc(6)], op), ReplyError)
    wrong_op = decode_reply([enc(1), enc(7), enc([b"", True])], op)
    assert isinstance(wrong_op, ReplyError) and "does not echo store" in wrong_op.message
    bad_value = decode_reply([enc(1), enc(6), enc("nope")], op)
    assert isinstance(bad_value, ReplyError) and bad_value.code is ErrorCode.INVALID_ARGUMENT
    assert isinstance(decode_reply([enc(1), enc(6), enc(1), enc(2), enc(3)], op), ReplyError)
    assert isinstance(decode_reply([enc(1), enc(13), enc(5)], "end_session"), ReplyError)


# --------------------------------------------------------------------------- error frames


def test_error_frames_only_for_peers_that_opted_in() -> None:
    r = decode_request([enc(1), enc("bogus")])
    assert isinstance(r, RequestError)
    assert r.reply(error_frames=False) is None  # 0.5.6 behaviour: silence
    frames = r.reply(error_frames=True)
    assert frames is not None and len(frames) == 4
    assert frames[:3] == [enc(1), enc("bogus"), b""]
    payload = msgspec.msgpack.decode(frames[3], type=types.ErrorPayload)
    assert payload.code == "unknown_op" and "bogus" in payload.message


def test_error_frame_decodes_as_an_error_reply() -> None:
    frames = framing.encode_error_reply(enc(3), enc(6), ErrorCode.NO_SPACE, "L1 full")
    rep = decode_reply(frames, "store")
    assert rep == ErrorReply(3, OPS_BY_NAME["store"], "no_space", "L1 full")
    # an empty frame is never a msgpack document, so a 0.5.6-style decoder cannot take it for a result
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(frames[2])


def test_long_error_messages_are_truncated() -> None:
    frames = framing.encode_error_reply(enc(3), enc(6), "internal", "x" * 10_000)
    payload = msgspec.msgpack.decode(frames[3], type=types.ErrorPayload)
    assert len(payload.message) == framing.MAX_ERROR_MESSAGE and payload.message.endswith("...")


def test_old_peers_get_the_ops_failure_value() -> None:
    r = decode_request([enc(2), enc(6), enc({"bad": 1}), enc(1), enc([[1]]), enc(b"")])
    assert isinstance(r, RequestError)
    frames = r.reply(error_frames=False)
    assert frames == [enc(2), enc(6), enc([b"", False])]
    commit = failure_reply(
        enc(2), enc("commit_store"), OPS_BY_NAME["commit_store"], "no_space", "", error_frames=False
    )
    assert commit == [enc(2), enc("commit_store"), enc(False)]
    status = failure_reply(enc(2), enc(9), OPS_BY_NAME["query_prefetch_status"], "x", "", error_frames=False)
    assert status == [enc(2), enc(9), enc(0)]
    pr = failure_reply(enc(2), enc(18), OPS_BY_NAME["prepare_retrieve"], "x", "", error_frames=False)
    assert pr is not None
    assert msgspec.msgpack.decode(pr[2]) == {"success": False, "data": b"", "context": {}}


def test_old_peers_get_silence_where_no_failure_value_exists() -> None:
    r = decode_request([enc(2), enc(1), enc(1)])  # register_kv_cache with 1 of 7 frames
    assert isinstance(r, RequestError) and r.code is ErrorCode.ARITY_MISMATCH
    assert r.reply(error_frames=False) is None
    assert r.reply(error_frames=True) is not None


def test_streams_end_for_old_peers() -> None:
    r = decode_request([enc(2), enc("subscribe_kv_events"), enc(1), enc("m"), enc(-1), enc(5)])
    assert isinstance(r, Request)  # cursor range is the handler's business
    frames = failure_reply(
        r.uid_frame, r.op_frame, r.op, ErrorCode.INVALID_ARGUMENT, "cursor", error_frames=False
    )
    assert frames == [enc(2), enc("subscribe_kv_events")]


def test_hello_errors_always_use_error_frames() -> None:
    r = decode_request([enc(2), enc("hello")])
    assert isinstance(r, RequestError) and r.code is ErrorCode.ARITY_MISMATCH
    frames = r.reply(error_frames=False)
    assert frames is not None and frames[2] == b""


def test_unreplyable_errors() -> None:
    for frames in ([], [enc(1), b"", b"nack"]):
        r = decode_request(frames)
        assert isinstance(r, RequestError)
        assert r.reply(error_frames=True) is None


# --------------------------------------------------------------------------- streams


def test_stream_control() -> None:
    assert framing.encode_stream_control(7, "ack") == [enc(7), b"", b"ack"]
    assert decode_request([enc(7), b"", b"ack"]) == StreamControl(7, enc(7), "ack")
    assert decode_request([enc(7), b"", b"cancel"]) == StreamControl(7, enc(7), "cancel")
    assert framing.encode_stream_end(enc(7), enc("subscribe_kv_events")) == [
        enc(7),
        enc("subscribe_kv_events"),
    ]
    batch = types.KVEventBatch(enabled=True, incarnation=5, next_cursor=2, lost=False, events=[])
    frames = framing.encode_reply(
        enc(7), enc("subscribe_kv_events"), OPS_BY_NAME["subscribe_kv_events"], batch
    )
    assert decode_reply(frames, "subscribe_kv_events") == Reply(
        7, OPS_BY_NAME["subscribe_kv_events"], batch, True
    )


# --------------------------------------------------------------------------- hello


def test_hello_round_trip_and_opt_in() -> None:
    frames = encode_request(1, "hello", [types.HelloRequest(capabilities=["error_frames", "future_thing"])])
    assert frames[1] == enc("hello")
    r = decode_request(frames)
    assert isinstance(r, Request)
    resp = framing.hello_response(
        r.args[0], chunk_size=256, hash_algorithm="blake3", transfer_modes=["lmcache_driven", "engine_driven"]
    )
    assert resp.enabled == ["error_frames"]
    assert resp.protocol_version == types.PROTOCOL_VERSION
    assert set(resp.capabilities) == {"error_frames", "kv_event_stream"}
    rep = decode_reply(framing.encode_reply(r.uid_frame, r.op_frame, r.op, resp), "hello")
    assert isinstance(rep, Reply) and rep.value == resp


def test_hello_accepts_an_empty_map() -> None:
    r = decode_request([enc(1), enc("hello"), enc({})])
    assert isinstance(r, Request) and r.args[0] == types.HelloRequest()
    assert framing.negotiate(r.args[0].capabilities) == []


def test_negotiate_only_enables_opt_in_capabilities_that_are_offered() -> None:
    assert framing.negotiate(["kv_event_stream", "error_frames", "error_frames"]) == ["error_frames"]
    assert framing.negotiate(["error_frames"], offered=["kv_event_stream"]) == []
