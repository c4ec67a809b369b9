"""Pre-shared keys for the group engine (RFC 9420 §8.4, §8.6).

External PSKs are looked up by ``psk_id`` in a ``PskStore``; resumption PSKs
of this group come from the epochs the state retains, those of other groups
(ReInit, branching) from the caller's resolver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from mls.crypto import CipherSuite
from mls.errors import MissingPSKError
from mls.group.state import GroupState
from mls.psk import psk_secret
from mls.wire.enums import PSKType
from mls.wire.psk import PreSharedKeyID

__all__ = ["PskResolver", "PskStore", "gather_psks", "psk_secret_of"]

#: Returns the PSK a PreSharedKeyID names, or None if unknown.
PskResolver = Callable[[PreSharedKeyID], "bytes | None"]


class PskStore:
    """External PSKs by ``psk_id`` (§8.4); callable as a ``PskResolver``."""

    def __init__(self, psks: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._psks: dict[bytes, bytes] = dict(psks)

    def __repr__(self) -> str:
        return f"PskStore({len(self._psks)} PSKs)"

    def add(self, psk_id: bytes, psk: bytes) -> None:
        self._psks[psk_id] = psk

    def __call__(self, psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype == PSKType.EXTERNAL and psk_id.psk_id is not None:
            return self._psks.get(psk_id.psk_id)
        return None


def gather_psks(
    state: GroupState | None, psk_ids: Sequence[PreSharedKeyID], resolver: PskResolver | None
) -> list[tuple[PreSharedKeyID, bytes]]:
    """Each PSK named by ``psk_ids``, in order; ``MissingPSKError`` if one is not held (§12.4.2)."""
    found: list[tuple[PreSharedKeyID, bytes]] = []
    for psk_id in psk_ids:
        secret: bytes | None = None
        if psk_id.psktype == PSKType.RESUMPTION and state is not None and psk_id.psk_group_id == state.group_id:
            secret = state.resumption_psks.get(psk_id.psk_epoch if psk_id.psk_epoch is not None else -1)
        if secret is None and resolver is not None:
            secret = resolver(psk_id)
        if secret is None:
            raise MissingPSKError("a PreSharedKeyID names a PSK this client does not hold")
        found.append((psk_id, secret))
    return found


def psk_secret_of(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes | None:
    """``psk_secret`` (§8.4), or None (the all-zero vector) without PSKs."""
    return psk_secret(suite, psks) if psks else None
