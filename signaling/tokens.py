"""Room tokens: who may join which room, until when, signed by the server secret.

Format (docs/protocol.md, "Tokens")::

    "mlscall1." base64url(payload) "." base64url(HMAC-SHA256(secret, "mlscall1." base64url(payload)))

with ``payload`` the compact JSON ``{"room": str, "sub": identity, "exp": unix seconds}``.
The HMAC comes from ``cryptography``; the comparison is constant time.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from .errors import ErrorCode, TokenError
from .protocol import validate_identity, validate_room

TOKEN_PREFIX = "mlscall1."
SECRET_BYTES = 32
_MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token grants: ``identity`` may join ``room`` until ``expires``."""

    room: str
    identity: str
    expires: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_secret(path: Path | str) -> bytes:
    """Read the token secret at ``path``, creating it (32 random bytes, mode 0600) if absent."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) < 16:
            raise ValueError(f"token secret file {path} is too short (need at least 16 bytes)")
        return data
    secret = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
        handle.flush()
        os.fsync(handle.fileno())
    return secret


@dataclass(slots=True)
class TokenAuthority:
    """Mints and verifies room tokens under one server secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")

    def _mac(self, signed: str) -> hmac.HMAC:
        mac = hmac.HMAC(self.secret, hashes.SHA256())
        mac.update(signed.encode("ascii"))
        return mac

    def mint(self, room: str, identity: str, ttl: int, *, now: float | None = None) -> str:
        """A token letting ``identity`` join ``room`` for ``ttl`` seconds from ``now``."""
        validate_room(room)
        validate_identity(identity)
        expires = int(time.time() if now is None else now) + int(ttl)
        payload = json.dumps({"room": room, "sub": identity, "exp": expires},
                             separators=(",", ":"), sort_keys=True).encode()
        signed = TOKEN_PREFIX + _b64url(payload)
        return signed + "." + _b64url(self._mac(signed).finalize())

    def verify(self, token: object, room: str, *, now: float | None = None) -> TokenClaims:
        """The claims of ``token`` if it is authentic, unexpired and for ``room``.

        Raises :class:`TokenError` (``unauthorized``, ``token_invalid``,
        ``token_expired`` or ``wrong_room``); the message never echoes the token.
        """
        if token is None or token == "":
            raise TokenError(ErrorCode.UNAUTHORIZED, "a token is required to join a room")
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token is malformed")
        signed, dot, tag_text = token.rpartition(".")
        if not dot or not signed.startswith(TOKEN_PREFIX):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token is malformed")
        try:
            self._mac(signed).verify(_unb64url(tag_text))
        except (ValueError, InvalidSignature):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token signature does not verify") from None
        try:
            payload = json.loads(_unb64url(signed[len(TOKEN_PREFIX):]))
            claims = TokenClaims(room=payload["room"], identity=payload["sub"],
                                 expires=payload["exp"])
        except (ValueError, KeyError, TypeError):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token payload is malformed") from None
        if not (isinstance(claims.room, str) and isinstance(claims.identity, str)
                and isinstance(claims.expires, int)):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token payload is malformed")
        if (time.time() if now is None else now) >= claims.expires:
            raise TokenError(ErrorCode.TOKEN_EXPIRED, "the token has expired", expired_at=claims.expires)
        if claims.room != room:
            raise TokenError(ErrorCode.WRONG_ROOM, "the token is for another room")
        return claims
