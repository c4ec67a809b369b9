"""The signaling wire protocol, version 1 (docs/protocol.md is its specification).

Frames are WebSocket text frames holding one JSON object each. MLS bytes
(KeyPackages, commits, proposals, Welcomes, PrivateMessages, group ids) travel
as standard base64 strings in the fields listed in :data:`BINARY_FIELDS`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from .errors import ErrorCode, SignalingError

PROTOCOL_VERSION = 1
#: WebSocket subprotocol the server offers (clients may omit it).
SUBPROTOCOL = "mlscall.v1"

# Requests a client sends (each answered by an ``ack`` or an ``error`` frame).
JOIN = "join"
LEAVE = "leave"
KEYPACKAGE_PUBLISH = "keypackage.publish"
KEYPACKAGE_CLAIM = "keypackage.claim"
#: The creator registers the room's group: its signed GroupInfo and ratchet tree (RFC 9420 §12.4.3).
GROUP_CREATE = "group.create"
COMMIT = "commit"
PROPOSAL = "proposal"
APPLICATION = "application"
OFFER = "offer"
ANSWER = "answer"
CANDIDATE = "candidate"
#: WebRTC signaling kinds relayed verbatim between two participants.
RELAY_TYPES = frozenset({OFFER, ANSWER, CANDIDATE})
#: SFU rooms (docs/protocol.md, "SFU"): negotiation with the server's SFU, answered by the server.
SFU_PUBLISH = "sfu.publish"
SFU_SUBSCRIBE = "sfu.subscribe"
SFU_START = "sfu.start"
SFU_TYPES = frozenset({SFU_PUBLISH, SFU_SUBSCRIBE, SFU_START})

# Frames the server sends.
ACK = "ack"
ERROR = "error"
PRESENCE = "presence"
WELCOME = "welcome"
#: The room's group was dropped (abandoned rooms, docs/protocol.md): start afresh.
GROUP_RESET = "group_reset"
#: A live room moved from mesh to SFU.
TOPOLOGY = "topology"
#: The room's published SFU feeds changed; the SFU was lost; the SFU is back.
SFU_FEEDS = "sfu.feeds"
SFU_DOWN = "sfu.down"
SFU_UP = "sfu.up"

#: Fields whose values are base64 strings on the wire and bytes in Python.
BINARY_FIELDS = frozenset({"group_id", "commit", "proposal", "welcome", "ciphertext",
                           "key_package"})

_ROOM_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_MAX_IDENTITY = 128
_MAX_REQUEST_ID = 64
#: Deepest nesting of arrays and objects a frame may have (the frame object is level 1). SDP and
#: ICE payloads are shallow; the bound keeps every JSON encoder and decoder on the path (server,
#: relayed-to clients) far from its recursion limit.
MAX_DEPTH = 32
_TOO_DEEP = f"arrays and objects may nest at most {MAX_DEPTH} levels deep"


def validate_room(room: object) -> str:
    """``room`` if it is 1-64 characters of ``[A-Za-z0-9._~-]``."""
    if not isinstance(room, str) or not _ROOM_RE.fullmatch(room):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "room must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
    return room


def validate_identity(identity: object) -> str:
    """``identity`` if it is 1-128 printable characters."""
    if not isinstance(identity, str) or not 0 < len(identity) <= _MAX_IDENTITY or not identity.isprintable():
        raise SignalingError(ErrorCode.BAD_MESSAGE, "identity must be 1-128 printable characters")
    return identity


def b64decode_field(message: dict[str, Any], name: str) -> bytes:
    """The bytes of the base64 field ``name`` of ``message`` (non-empty)."""
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"field {name!r} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"field {name!r} is not valid base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def int_field(message: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    """The non-negative integer field ``name`` (``None`` when optional and absent)."""
    value = message.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"field {name!r} must be a non-negative integer")
    return value


def request_id(message: dict[str, Any]) -> int | str | None:
    """The request ``id`` echoed as ``re`` in the reply (an int or a short string)."""
    rid = message.get("id")
    if rid is None or (isinstance(rid, int) and not isinstance(rid, bool)):
        return rid
    if isinstance(rid, str) and len(rid) <= _MAX_REQUEST_ID:
        return rid
    raise SignalingError(ErrorCode.BAD_MESSAGE, "id must be an integer or a string of at most 64 characters")


def _refuse_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 §6): browsers cannot read them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one beyond the double range (``1e400``, which
    Python reads as infinity and would write back as ``Infinity``) is refused (RFC 8259 §6)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number beyond the double range")
    return value


def _within_depth(value: object, limit: int) -> bool:
    """Whether no array or object in ``value`` lies more than ``limit`` levels deep (iteratively)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


#: One decoder and one encoder for every frame and HTTP body (``json.loads``/``json.dumps`` with
#: options build a new one per call); neither reads nor writes a non-finite number.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def parse_json_object(text: str) -> dict[str, Any]:
    """``text`` as a JSON object (RFC 8259) nested at most :data:`MAX_DEPTH` levels deep.

    ``bad_json`` when it is not JSON (``NaN``, ``Infinity`` and numbers beyond the double
    range such as ``1e400`` included), ``bad_message``
    when it is not an object or nests too deeply. Never a ``RecursionError``.
    """
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise SignalingError(ErrorCode.BAD_MESSAGE, _TOO_DEEP) from None
    except ValueError:
        raise SignalingError(ErrorCode.BAD_JSON, "not valid JSON") from None
    if not isinstance(value, dict):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "a JSON object is required")
    if not _within_depth(value, MAX_DEPTH):
        raise SignalingError(ErrorCode.BAD_MESSAGE, _TOO_DEEP)
    return value


def parse_frame(text: str) -> dict[str, Any]:
    """One client frame as a dict, checking the JSON shape and the protocol version."""
    message = parse_json_object(text)
    version = message.get("v", PROTOCOL_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise SignalingError(ErrorCode.UNSUPPORTED_VERSION,
                             f"this server speaks protocol version {PROTOCOL_VERSION}",
                             supported=[PROTOCOL_VERSION])
    if not isinstance(message.get("type"), str):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "field 'type' must be a string")
    return message


def dump_frame(frame: dict[str, Any]) -> str:
    """Compact JSON of a frame whose values are already wire-ready (base64 strings).

    ``bad_message`` when a value is not JSON: a non-finite float, or a type JSON lacks.
    """
    try:
        return _ENCODER.encode(frame)
    except (ValueError, TypeError):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "a frame holds a value that is not JSON "
                             "(NaN, Infinity or a non-JSON type)") from None


def decode_binary_fields(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` with every :data:`BINARY_FIELDS` value turned from base64 into bytes (client side)."""
    for name in BINARY_FIELDS.intersection(frame):
        value = frame[name]
        if isinstance(value, str):
            try:
                frame[name] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SignalingError(ErrorCode.BAD_MESSAGE, f"field {name!r} is not valid base64") from None
    return frame


def encode_binary_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` with every bytes value turned into base64 (client side)."""
    return {k: b64encode(v) if isinstance(v, (bytes, bytearray, memoryview)) else v
            for k, v in fields.items()}
