"""Wire-level definitions shared by the server and the client (LMCache 0.5.6 compatible)."""

# Wire types, the op table and the framing are pure Python (msgspec); importing them never
# loads the native module (``hashing`` does, so it is imported on its own).
from lmcache.protocol import framing, ops, types
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
    encode_error_reply,
    encode_reply,
    encode_request,
    encode_stream_control,
    encode_stream_end,
    failure_reply,
)
from lmcache.protocol.ops import OPS, OPS_BY_LEGACY_ID, OPS_BY_NAME, FailureMode, HandlerKind, OpSpec
from lmcache.protocol.types import PROTOCOL_VERSION, IPCCacheServerKey

__all__ = [
    "OPS",
    "OPS_BY_LEGACY_ID",
    "OPS_BY_NAME",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ErrorReply",
    "FailureMode",
    "HandlerKind",
    "IPCCacheServerKey",
    "OpSpec",
    "Reply",
    "ReplyError",
    "Request",
    "RequestError",
    "StreamControl",
    "decode_reply",
    "decode_request",
    "encode_error_reply",
    "encode_reply",
    "encode_request",
    "encode_stream_control",
    "encode_stream_end",
    "failure_reply",
    "framing",
    "ops",
    "types",
]
