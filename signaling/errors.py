"""Every error the signaling server replies with, and the exceptions carrying them.

The server raises :class:`SignalingError` inside a request handler; the
dispatcher turns it into an ``error`` frame (docs/protocol.md, "Errors"). The
client raises the same class when an ``error`` frame answers one of its
requests. Messages never carry payloads, tokens or secrets.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The ``code`` field of an ``error`` frame."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    WRONG_ROOM = "wrong_room"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    ROOM_FULL = "room_full"
    TOO_MANY_ROOMS = "too_many_rooms"
    TOO_MANY_KEY_PACKAGES = "too_many_key_packages"
    CONFLICT = "conflict"
    WRONG_GROUP = "wrong_group"
    NO_GROUP = "no_group"
    INVALID_HANDSHAKE = "invalid_handshake"
    NOT_MEMBER = "not_member"
    IDENTITY_MISMATCH = "identity_mismatch"
    DUPLICATE_IDENTITY = "duplicate_identity"
    NOT_ADMITTED = "not_admitted"
    INVALID_WELCOME = "invalid_welcome"
    NOT_FOUND = "not_found"
    LOG_TRUNCATED = "log_truncated"
    #: An application message or proposal beyond its sender's or its room's per-epoch quota.
    QUOTA_EXCEEDED = "quota_exceeded"
    NOT_CONNECTED = "not_connected"
    #: HTTP 503: a WebSocket upgrade beyond ``max_connections``.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    #: HTTP 429: a WebSocket upgrade beyond a per-address limit (``max_connections_per_address``,
    #: ``max_unjoined_per_address``).
    TOO_MANY_FROM_ADDRESS = "too_many_from_address"
    #: HTTP 421: a ``Host`` the server does not serve.
    HOST_NOT_ALLOWED = "host_not_allowed"
    #: HTTP 403: a foreign ``Origin`` on /ws, /token or the KeyPackage routes.
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    #: HTTP 403: ``POST /token`` from a client that is not on loopback, or with the endpoint off.
    FORBIDDEN = "forbidden"
    #: HTTP 415: a ``POST /token`` whose body is not ``application/json``.
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    REPLACED = "replaced"
    CLOSED = "closed"
    #: Client side: the transport failed under a request (reset, or dropped without a close
    #: frame); the request may or may not have reached the server.
    CONNECTION_LOST = "connection_lost"
    #: HTTP 503: this instance has lost its store (Redis) for now; another instance of the
    #: deployment takes the request (docs/deployment.md, "Failures").
    STORE_UNAVAILABLE = "store_unavailable"
    #: The room has no SFU, or the server lost its SFU (Janus) for now.
    SFU_UNAVAILABLE = "sfu_unavailable"
    #: The SFU (Janus) refused a request; ``janus_code`` says why.
    SFU_REFUSED = "sfu_refused"
    INTERNAL = "internal"


class SignalingError(Exception):
    """A refused request: a machine-readable ``code``, a human ``message`` and extra fields.

    ``details`` holds the extra fields of the error frame, e.g. ``{"epoch": 5}``
    for a :attr:`ErrorCode.CONFLICT`.
    """

    def __init__(self, code: ErrorCode | str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code
        self.message = message
        self.details = details


class TokenError(SignalingError):
    """A room token is missing, malformed, forged, expired or for another room."""
