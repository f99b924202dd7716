"""Encoding and decoding of multipart ZMQ messages, exactly as LMCache 0.5.6 frames them.

Request (client -> server; the server's ROUTER socket prepends the peer identity, which is
not part of what this module sees)::

    [uid, op, arg_1, ..., arg_n]

``uid`` is a msgpack integer chosen by the client; ``op`` is the op's frozen legacy integer
ID or its snake_case name as a msgpack string (0.5.6 clients send the ID when there is one;
a server accepts both); each argument is its own msgpack document, in signature order, and
the number of argument frames must equal the op's arity.

Reply (server -> client)::

    [uid, op]                  void result (None), "still pending", or the end of a stream
    [uid, op, result]          a result
    [uid, op, b"", error]      our error reply, only for peers that opted in (see below)

``uid`` and ``op`` are echoed **byte for byte as the client sent them** (an op sent as 24
comes back as 24, one sent as "noop" as "noop").

Stream control (client -> server, for ``subscribe_kv_events``): ``[uid, b"", b"ack"]`` grants
one more item, ``[uid, b"", b"cancel"]`` ends the stream. The last two frames are raw bytes,
not msgpack; ``uid`` is msgpack. The subscribe request itself grants the first credit.

Errors. 0.5.6 never answers a request it cannot decode or serve. Decoding here never raises:
it returns a :class:`RequestError` with a stable code and a message. What goes back is decided
by :func:`failure_reply`: a peer that opted in to ``error_frames`` through our name-only
``hello`` op gets ``[uid, op, b"", msgpack({code, message})]`` (an empty frame is never a
valid msgpack document, so this cannot be mistaken for a result); any other peer gets the
op's ordinary failure value where one exists (``store`` -> ``[b"", false]``, ``commit_*`` ->
``false``, ...), and otherwise no reply, as with 0.5.6.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import msgspec

from lmcache.protocol.ops import (
    OPS_BY_LEGACY_ID,
    OPS_BY_NAME,
    RESERVED_IDS,
    RETIRED_IDS,
    FailureMode,
    KVHandles,
    OpSpec,
)
from lmcache.protocol.types import (
    CAPABILITY_ERROR_FRAMES,
    CAPABILITY_KV_EVENT_STREAM,
    PROTOCOL_VERSION,
    ErrorPayload,
    HelloRequest,
    HelloResponse,
    IPCHandleError,
    decode_device_ipc,
    encode_device_ipc,
)

STREAM_ACK = b"ack"
STREAM_CANCEL = b"cancel"
MAX_ERROR_MESSAGE = 2000

SERVER_CAPABILITIES: tuple[str, ...] = (CAPABILITY_KV_EVENT_STREAM, CAPABILITY_ERROR_FRAMES)
"""Capabilities our server offers (``get_experimental`` and ``hello`` list them)."""

OPT_IN_CAPABILITIES: frozenset[str] = frozenset({CAPABILITY_ERROR_FRAMES})
"""Capabilities that change what a peer receives, so a peer must ask for them in ``hello``."""


class ErrorCode(str, enum.Enum):
    """Stable codes of error replies. The server-side ones match ``lmcache.errors`` codes."""

    # decoding (this module)
    MALFORMED_REQUEST = "malformed_request"
    UNKNOWN_OP = "unknown_op"
    RETIRED_OP = "retired_op"
    ARITY_MISMATCH = "arity_mismatch"
    INVALID_ARGUMENT = "invalid_argument"
    LEGACY_PICKLE_REJECTED = "legacy_pickle_rejected"
    # serving (the server)
    UNSUPPORTED_OP = "unsupported_op"
    TRANSFER_MODE_DISABLED = "transfer_mode_disabled"
    NOT_FOUND = "not_found"
    NO_SPACE = "no_space"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    BUSY = "busy"
    INTERNAL = "internal"


# --------------------------------------------------------------------------- frame codecs


class _FrameError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_ENCODER = msgspec.msgpack.Encoder()
# msgspec raises DecodeError for malformed msgpack, but UnicodeDecodeError (a ValueError) for a
# str with invalid UTF-8; both mean "not a valid document".
_MALFORMED = (msgspec.DecodeError, ValueError)
_ANY_DECODER = msgspec.msgpack.Decoder()
_EXT_LIST_DECODER = msgspec.msgpack.Decoder(list[msgspec.msgpack.Ext])


class FrameCodec:
    """Encodes/decodes one frame (one msgpack document) of a declared type."""

    def encode(self, value: Any) -> bytes:
        return _ENCODER.encode(value)

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError


class _TypedCodec(FrameCodec):
    def __init__(self, tp: Any) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(tp)

    def decode(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise _FrameError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
        except _MALFORMED as exc:
            raise _FrameError(ErrorCode.MALFORMED_REQUEST, f"not a msgpack document: {exc}") from None


class _IntBoolCodec(FrameCodec):
    """A top-level ``int`` or ``bool`` frame: 0.5.6 coerces between the two on both ends."""

    def __init__(self, tp: type[int]) -> None:
        self._tp = tp

    def encode(self, value: Any) -> bytes:
        return _ENCODER.encode(self._tp(value))

    def decode(self, data: bytes) -> Any:
        try:
            value = _ANY_DECODER.decode(data)
        except _MALFORMED as exc:
            raise _FrameError(ErrorCode.MALFORMED_REQUEST, f"not a msgpack document: {exc}") from None
        if not isinstance(value, int):  # bool is an int
            raise _FrameError(
                ErrorCode.INVALID_ARGUMENT, f"Expected `{self._tp.__name__}`, got `{type(value).__name__}`"
            )
        return self._tp(value)


class _KVHandlesCodec(FrameCodec):
    """``list[DeviceIPCData]``: an array of Ext type 1, each a msgpack descriptor."""

    def encode(self, value: Any) -> bytes:
        return _ENCODER.encode([encode_device_ipc(v) for v in value])

    def decode(self, data: bytes) -> Any:
        try:
            exts = _EXT_LIST_DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise _FrameError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
        except _MALFORMED as exc:
            raise _FrameError(ErrorCode.MALFORMED_REQUEST, f"not a msgpack document: {exc}") from None
        handles = []
        for i, ext in enumerate(exts):
            try:
                handles.append(decode_device_ipc(ext))
            except IPCHandleError as exc:
                code = ErrorCode.LEGACY_PICKLE_REJECTED if exc.legacy_pickle else ErrorCode.INVALID_ARGUMENT
                raise _FrameError(code, f"handle {i}: {exc}") from None
        return handles


@cache
def codec_for(tp: Any) -> FrameCodec:
    """The codec of one frame of declared type ``tp`` (cached). NewTypes code as their base."""
    while hasattr(tp, "__supertype__"):
        tp = tp.__supertype__
    if tp is int or tp is bool:
        return _IntBoolCodec(tp)
    if tp == KVHandles:
        return _KVHandlesCodec()
    return _TypedCodec(tp)


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class Request:
    """A decoded, validated request. ``uid_frame``/``op_frame`` are echoed in the reply."""

    uid: int
    op: OpSpec
    args: tuple[Any, ...]
    uid_frame: bytes
    op_frame: bytes
    by_name: bool


@dataclass(frozen=True)
class StreamControl:
    """``[uid, b"", b"ack" | b"cancel"]`` for a stream the peer opened."""

    uid: int
    uid_frame: bytes
    action: Literal["ack", "cancel"]


@dataclass(frozen=True)
class RequestError:
    """A request that cannot be served as sent: the code and message of the rejection, and as
    much of the request as was understood. ``op`` is None when the op itself is the problem."""

    code: ErrorCode
    message: str
    uid_frame: bytes | None = None
    op_frame: bytes | None = None
    op: OpSpec | None = None

    def reply(self, *, error_frames: bool) -> list[bytes] | None:
        """What to send back (see :func:`failure_reply`), or None for no reply."""
        return failure_reply(
            self.uid_frame, self.op_frame, self.op, self.code, self.message, error_frames=error_frames
        )


def _decode_uid(frame: bytes) -> int | None:
    try:
        value = _ANY_DECODER.decode(frame)
    except _MALFORMED:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resolve_op(op_frame: bytes) -> tuple[OpSpec, bool]:
    """The op an op frame names, and whether it was named (not a legacy id); raises _FrameError."""
    try:
        value = _ANY_DECODER.decode(op_frame)
    except _MALFORMED:
        raise _FrameError(
            ErrorCode.MALFORMED_REQUEST, f"op frame is not a msgpack document: {op_frame[:16].hex()}"
        ) from None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _FrameError(
            ErrorCode.MALFORMED_REQUEST,
            f"op frame must be a legacy integer id or a name, got {type(value).__name__}",
        )
    if isinstance(value, str):
        spec = OPS_BY_NAME.get(value)
        if spec is None:
            raise _FrameError(ErrorCode.UNKNOWN_OP, f"unknown op {value!r}")
        return spec, True
    if value in RETIRED_IDS:
        raise _FrameError(ErrorCode.RETIRED_OP, f"legacy op id {value} ({RETIRED_IDS[value]}) is retired")
    if value in RESERVED_IDS:
        raise _FrameError(
            ErrorCode.UNKNOWN_OP, f"legacy op id {value} is reserved ({RESERVED_IDS[value]}), not served"
        )
    spec = OPS_BY_LEGACY_ID.get(value)
    if spec is None:
        raise _FrameError(ErrorCode.UNKNOWN_OP, f"unknown legacy op id {value}")
    return spec, False


def decode_request(frames: Sequence[bytes]) -> Request | StreamControl | RequestError:
    """Decode one inbound message (without the ROUTER identity frame). Never raises."""
    if len(frames) < 2:
        return RequestError(
            ErrorCode.MALFORMED_REQUEST,
            f"expected at least 2 frames [uid, op, *args], got {len(frames)}",
            uid_frame=bytes(frames[0]) if frames else None,
        )
    uid_frame, op_frame = bytes(frames[0]), bytes(frames[1])
    arg_frames = frames[2:]
    uid = _decode_uid(uid_frame)
    if op_frame == b"":
        if uid is not None and len(arg_frames) == 1 and arg_frames[0] in (STREAM_ACK, STREAM_CANCEL):
            action: Literal["ack", "cancel"] = "ack" if arg_frames[0] == STREAM_ACK else "cancel"
            return StreamControl(uid, uid_frame, action)
        return RequestError(
            ErrorCode.MALFORMED_REQUEST,
            "stream control must be [uid, b'', b'ack' | b'cancel']",
            uid_frame=uid_frame,
        )
    if uid is None:
        return RequestError(
            ErrorCode.MALFORMED_REQUEST,
            "frame 0 (uid) is not a msgpack integer",
            uid_frame=uid_frame,
            op_frame=op_frame,
        )
    try:
        spec, by_name = _resolve_op(op_frame)
    except _FrameError as exc:
        return RequestError(exc.code, exc.message, uid_frame=uid_frame, op_frame=op_frame)
    if len(arg_frames) != spec.arity:
        names = ", ".join(a.name for a in spec.args) or "none"
        return RequestError(
            ErrorCode.ARITY_MISMATCH,
            f"{spec.name} takes {spec.arity} argument frame(s) ({names}), got {len(arg_frames)}",
            uid_frame=uid_frame,
            op_frame=op_frame,
            op=spec,
        )
    args = []
    for i, (arg, frame) in enumerate(zip(spec.args, arg_frames, strict=True)):
        try:
            args.append(codec_for(arg.type).decode(bytes(frame)))
        except _FrameError as exc:
            return RequestError(
                exc.code,
                f"{spec.name} argument {i} ({arg.name}): {exc.message}",
                uid_frame=uid_frame,
                op_frame=op_frame,
                op=spec,
            )
        except Exception as exc:  # a validator that raised something unexpected
            return RequestError(
                ErrorCode.INVALID_ARGUMENT,
                f"{spec.name} argument {i} ({arg.name}): {type(exc).__name__}: {exc}",
                uid_frame=uid_frame,
                op_frame=op_frame,
                op=spec,
            )
    return Request(uid, spec, tuple(args), uid_frame, op_frame, by_name)


def encode_reply(uid_frame: bytes, op_frame: bytes, op: OpSpec, value: Any) -> list[bytes]:
    """``[uid, op]`` for None, else ``[uid, op, result]`` encoded as ``op.reply``."""
    if value is None:
        return [uid_frame, op_frame]
    if op.reply is None:
        raise TypeError(f"{op.name} has a void reply, got {type(value).__name__}")
    return [uid_frame, op_frame, codec_for(op.reply).encode(value)]


def encode_error_reply(uid_frame: bytes, op_frame: bytes, code: ErrorCode | str, message: str) -> list[bytes]:
    """``[uid, op, b"", msgpack{code, message}]`` (only for peers that opted in)."""
    code_str = code.value if isinstance(code, ErrorCode) else code
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    return [uid_frame, op_frame, b"", _ENCODER.encode(ErrorPayload(code=code_str, message=message))]


def encode_stream_end(uid_frame: bytes, op_frame: bytes) -> list[bytes]:
    """The end of a stream: a reply without a payload frame."""
    return [uid_frame, op_frame]


def failure_reply(
    uid_frame: bytes | None,
    op_frame: bytes | None,
    op: OpSpec | None,
    code: ErrorCode | str,
    message: str,
    *,
    error_frames: bool,
) -> list[bytes] | None:
    """The reply to a failed request, or None for none (0.5.6's silence).

    * a peer that opted in to ``error_frames`` (and anyone calling an op whose failure mode is
      ``ERROR_FRAME``, i.e. ``hello``): the error reply;
    * otherwise the op's failure value (``FailureMode.VALUE``), or the end of the stream
      (``STREAM_END``), or nothing (``SILENT``, or the op is unknown).
    """
    if uid_frame is None or op_frame is None:
        return None
    if error_frames or (op is not None and op.failure is FailureMode.ERROR_FRAME):
        return encode_error_reply(uid_frame, op_frame, code, message)
    if op is None or op.failure is FailureMode.SILENT:
        return None
    if op.failure is FailureMode.STREAM_END:
        return encode_stream_end(uid_frame, op_frame)
    return encode_reply(uid_frame, op_frame, op, op.failure_reply(message))


# --------------------------------------------------------------------------- client side


def _spec(op: OpSpec | str) -> OpSpec:
    if isinstance(op, OpSpec):
        return op
    spec = OPS_BY_NAME.get(op)
    if spec is None:
        raise ValueError(f"unknown op {op!r}")
    return spec


def encode_request(uid: int, op: OpSpec | str, args: Sequence[Any], *, by_name: bool = False) -> list[bytes]:
    """The frames of one request. The op goes as its legacy ID (as 0.5.6 clients send it)
    unless ``by_name`` or it has none. Raises ``ValueError`` on a wrong argument count."""
    spec = _spec(op)
    if len(args) != spec.arity:
        raise ValueError(f"{spec.name} takes {spec.arity} argument(s), got {len(args)}")
    wire_op: int | str = spec.name if by_name or spec.legacy_id is None else spec.legacy_id
    return [
        _ENCODER.encode(uid),
        _ENCODER.encode(wire_op),
        *(codec_for(arg.type).encode(value) for arg, value in zip(spec.args, args, strict=True)),
    ]


def encode_stream_control(uid: int, action: Literal["ack", "cancel"]) -> list[bytes]:
    """``[uid, b"", b"ack" | b"cancel"]``."""
    return [_ENCODER.encode(uid), b"", STREAM_ACK if action == "ack" else STREAM_CANCEL]


@dataclass(frozen=True)
class Reply:
    """A decoded reply. ``value`` is None for a 2-frame reply (void, pending, stream end)."""

    uid: int
    op: OpSpec
    value: Any
    has_value: bool


@dataclass(frozen=True)
class ErrorReply:
    """A server's error reply (only sent to peers that opted in)."""

    uid: int
    op: OpSpec
    code: str
    message: str


@dataclass(frozen=True)
class ReplyError:
    """A reply that could not be decoded or does not match the request."""

    code: ErrorCode
    message: str
    uid: int | None = None


def reply_uid(frames: Sequence[bytes]) -> int | None:
    """The uid of a reply (to find the pending request), or None if frame 0 is not one."""
    return _decode_uid(bytes(frames[0])) if frames else None


def decode_reply(frames: Sequence[bytes], op: OpSpec | str) -> Reply | ErrorReply | ReplyError:
    """Decode a reply to a request for ``op``. Never raises."""
    spec = _spec(op)
    if len(frames) < 2:
        return ReplyError(ErrorCode.MALFORMED_REQUEST, f"expected at least 2 reply frames, got {len(frames)}")
    uid = _decode_uid(bytes(frames[0]))
    if uid is None:
        return ReplyError(ErrorCode.MALFORMED_REQUEST, "reply frame 0 (uid) is not a msgpack integer")
    try:
        echoed, _ = _resolve_op(bytes(frames[1]))
    except _FrameError as exc:
        return ReplyError(exc.code, f"reply op frame: {exc.message}", uid)
    if echoed is not spec:
        return ReplyError(
            ErrorCode.MALFORMED_REQUEST, f"reply op {echoed.name} does not echo {spec.name}", uid
        )
    if len(frames) == 2:
        return Reply(uid, spec, None, False)
    if len(frames) == 4 and frames[2] == b"":
        try:
            payload = msgspec.msgpack.decode(bytes(frames[3]), type=ErrorPayload)
        except _MALFORMED as exc:
            return ReplyError(ErrorCode.MALFORMED_REQUEST, f"undecodable error reply: {exc}", uid)
        return ErrorReply(uid, spec, payload.code, payload.message)
    if len(frames) != 3:
        return ReplyError(
            ErrorCode.MALFORMED_REQUEST, f"expected 2, 3 or 4 reply frames, got {len(frames)}", uid
        )
    data = bytes(frames[2])
    if spec.reply is None:
        if data == _ENCODER.encode(None):  # an explicit nil is accepted for a void reply
            return Reply(uid, spec, None, True)
        return ReplyError(ErrorCode.INVALID_ARGUMENT, f"{spec.name} has a void reply, got a payload", uid)
    try:
        value = codec_for(spec.reply).decode(data)
    except _FrameError as exc:
        return ReplyError(exc.code, f"{spec.name} reply: {exc.message}", uid)
    except Exception as exc:  # a validator that raised something unexpected
        return ReplyError(ErrorCode.INVALID_ARGUMENT, f"{spec.name} reply: {type(exc).__name__}: {exc}", uid)
    return Reply(uid, spec, value, True)


# --------------------------------------------------------------------------- hello


def negotiate(requested: Iterable[str], offered: Iterable[str] = SERVER_CAPABILITIES) -> list[str]:
    """The opt-in capabilities to enable for a peer: those it asked for that the server offers
    (in the peer's order, without duplicates)."""
    offered_set = set(offered) & OPT_IN_CAPABILITIES
    enabled: list[str] = []
    for cap in requested:
        if cap in offered_set and cap not in enabled:
            enabled.append(cap)
    return enabled


def hello_response(
    request: HelloRequest,
    *,
    chunk_size: int,
    hash_algorithm: str,
    transfer_modes: Sequence[str],
    capabilities: Sequence[str] = SERVER_CAPABILITIES,
    server: str = "",
) -> HelloResponse:
    """The reply to ``hello``: what the server offers and what it enabled for this peer."""
    return HelloResponse(
        protocol_version=PROTOCOL_VERSION,
        capabilities=list(capabilities),
        transfer_modes=list(transfer_modes),
        chunk_size=chunk_size,
        hash_algorithm=hash_algorithm,
        enabled=negotiate(request.capabilities, capabilities),
        server=server,
    )


__all__ = [
    "MAX_ERROR_MESSAGE",
    "OPT_IN_CAPABILITIES",
    "SERVER_CAPABILITIES",
    "STREAM_ACK",
    "STREAM_CANCEL",
    "ErrorCode",
    "ErrorReply",
    "FrameCodec",
    "Reply",
    "ReplyError",
    "Request",
    "RequestError",
    "StreamControl",
    "codec_for",
    "decode_reply",
    "decode_request",
    "encode_error_reply",
    "encode_reply",
    "encode_request",
    "encode_stream_control",
    "encode_stream_end",
    "failure_reply",
    "hello_response",
    "negotiate",
    "reply_uid",
]
