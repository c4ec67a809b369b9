"""Short-lived TURN credentials from a secret shared with the TURN server.

The "TURN REST API" scheme (draft-uberti-behave-turn-rest-00, §2.2), which
coturn implements as ``use-auth-secret`` with ``static-auth-secret``:

- username = ``"<expiry>:<identity>"``, ``expiry`` the Unix time (seconds)
  after which the TURN server refuses the credential;
- credential = ``base64(HMAC-SHA1(secret, username))``.

The TURN server recomputes the credential from the username alone, so the
signaling server hands each admitted participant a pair valid for ``ttl``
seconds and the TURN server needs no account per user. The secret never
appears in a repr, a log line or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def turn_credential(secret: bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))`` (draft-uberti-behave-turn-rest-00, §2.2)."""
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def load_turn_secret(path: Path | str) -> bytes:
    """The shared secret in ``path`` (surrounding whitespace stripped, as coturn's
    ``static-auth-secret`` has none); ``ValueError`` naming only the path when the
    file is missing, unreadable or empty."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as err:
        raise ValueError(f"cannot read the TURN secret file {path}: {err.strerror}") from None
    if not secret:
        raise ValueError(f"the TURN secret file {path} is empty")
    return secret


@dataclass(frozen=True)
class TurnCredentials:
    """Issues the ``ice_servers`` entry of a join reply: ``uris`` with a username
    and credential valid for ``ttl`` seconds from ``clock()``."""

    uris: tuple[str, ...]
    secret: bytes = field(repr=False)
    ttl: int = 3600
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if not self.uris:
            raise ValueError("TURN credentials need at least one TURN URI")
        for uri in self.uris:
            if not uri.startswith(("turn:", "turns:")):
                raise ValueError(f"not a TURN URI (turn: or turns:): {uri!r}")
        if not self.secret:
            raise ValueError("the TURN secret is empty")
        if self.ttl < 1:
            raise ValueError("the TURN credential lifetime must be at least 1 second")

    def issue(self, identity: str) -> dict[str, Any]:
        """One RTCIceServer dictionary (``urls``, ``username``, ``credential``) for ``identity``."""
        username = f"{int(self.clock()) + self.ttl}:{identity}"
        return {"urls": list(self.uris), "username": username,
                "credential": turn_credential(self.secret, username)}
