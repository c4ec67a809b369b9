"""Room tokens: who may join which room, until when, signed by the server secret.

Format (docs/protocol.md, "Tokens")::

    "mlscall1." base64url(payload) "." base64url(HMAC-SHA256(secret, "mlscall1." base64url(payload)))

with ``payload`` the compact JSON ``{"room": str, "sub": identity, "exp": unix seconds}``.
The HMAC comes from ``cryptography``; its ``verify`` compares in constant time.

Decoding is strict: both parts must be canonical unpadded base64url (RFC 4648 §5,
§3.5: no ``=``, no characters of another alphabet, no non-zero trailing bits; each
part re-encodes to itself), so one token has exactly one spelling; and the claims
pass the same room and identity rules as a ``join`` request
(:func:`signaling.protocol.validate_room`, :func:`~signaling.protocol.validate_identity`),
so a token naming an identity no join could carry is refused even when signed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from .errors import ErrorCode, SignalingError, TokenError
from .protocol import dump_frame, parse_json_object, validate_identity, validate_room

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


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64url(text: str) -> bytes:
    """The bytes of canonical unpadded base64url ``text``; ``ValueError`` for any other spelling."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(data) != text:  # non-zero trailing bits: another spelling of the same bytes
        raise ValueError("not canonical base64url")
    return data


def load_or_create_secret(path: Path | str) -> bytes:
    """Read the token secret at ``path``, creating it (32 random bytes, mode 0600) if absent.

    Several instances may start together on a missing file: each writes a secret of its own
    to a temporary file beside ``path`` and links it there (``os.link`` fails if ``path``
    exists), so the file appears whole, exactly one secret wins and every instance reads it.
    """
    path = Path(path)
    if not path.exists():
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:  # mkstemp creates it with mode 0600
                handle.write(secrets.token_bytes(SECRET_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another instance's secret won
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    data = path.read_bytes()
    if len(data) < 16:
        raise ValueError(f"token secret file {path} is too short (need at least 16 bytes)")
    return data


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
        payload = dump_frame({"exp": expires, "room": room, "sub": identity}).encode()
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
            payload = parse_json_object(_unb64url(signed[len(TOKEN_PREFIX):]).decode("utf-8"))
            claims = TokenClaims(room=payload["room"], identity=payload["sub"],
                                 expires=payload["exp"])
        except (ValueError, KeyError, SignalingError):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token payload is malformed") from None
        if not (isinstance(claims.expires, int) and not isinstance(claims.expires, bool)):
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token payload is malformed")
        try:  # the rules a join applies to what it names
            validate_room(claims.room)
            validate_identity(claims.identity)
        except SignalingError:
            raise TokenError(ErrorCode.TOKEN_INVALID, "the token names an invalid room or identity") from None
        if (time.time() if now is None else now) >= claims.expires:
            raise TokenError(ErrorCode.TOKEN_EXPIRED, "the token has expired", expired_at=claims.expires)
        if claims.room != room:
            raise TokenError(ErrorCode.WRONG_ROOM, "the token is for another room")
        return claims
