"""Frames held until the key of their KID arrives (RFC 9605 §4.4.4).

§4.4.4: "If a ciphertext fails to decrypt because there is no key available
for the KID in the SFrame header, the client MAY buffer the ciphertext and
retry decryption once a key with that KID is received."  With MLS keys
(§5.2) that happens to every joiner (frames sealed under the epoch its
Welcome starts reach it before the Welcome does) and to every member that
receives frames of the next epoch before it processes the commit;
:class:`sframe.MLSKeyManager` tells such frames apart by raising
:class:`sframe.KeyPending`.

:class:`HoldBuffer` keeps them, per receiver, in arrival order, bounded in
age, count and bytes (the oldest goes first).  It is sans-I/O: it reads no
clock, callers pass the times.  It holds opaque items (a ciphertext, or a
media frame with its codec): the caller retries them with
:meth:`HoldBuffer.take` once a key is installed and holds again, with
their arrival time, those still waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, NamedTuple, TypeVar

from .errors import InvalidArgumentType, InvalidParameter

T = TypeVar("T")

#: defaults: about one second of media, 256 frames, 2 MiB per receiver
DEFAULT_MAX_AGE = 1.0
DEFAULT_MAX_FRAMES = 256
DEFAULT_MAX_BYTES = 2 * 1024 * 1024


class HeldFrame(NamedTuple, Generic[T]):
    """One held item, its size in bytes and when it arrived."""

    item: T
    size: int
    arrived: float


class HoldBuffer(Generic[T]):
    """Items waiting for a key, oldest first (RFC 9605 §4.4.4).

    An item is *expired* once more than ``max_age`` seconds passed since it
    arrived (:meth:`expire`), and *evicted* when holding another one would
    exceed ``max_frames`` or ``max_bytes`` (:meth:`hold`); ``max_frames=0``
    holds nothing.
    """

    __slots__ = ("_max_age", "_max_frames", "_max_bytes", "_held", "_bytes")

    def __init__(self, *, max_age: float = DEFAULT_MAX_AGE, max_frames: int = DEFAULT_MAX_FRAMES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not isinstance(max_age, (int, float)) or isinstance(max_age, bool) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in (max_frames, max_bytes)):
            raise InvalidArgumentType("max_age must be a number, max_frames and max_bytes ints")
        if not max_age >= 0 or max_frames < 0 or max_bytes < 0:
            raise InvalidParameter("max_age, max_frames and max_bytes must be >= 0")
        self._max_age = float(max_age)
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._held: deque[HeldFrame[T]] = deque()
        self._bytes = 0

    def __repr__(self) -> str:
        return f"HoldBuffer(frames={len(self._held)}, bytes={self._bytes})"

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[HeldFrame[T]]:
        return iter(tuple(self._held))

    @property
    def max_age(self) -> float:
        return self._max_age

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes

    @property
    def deadline(self) -> float | None:
        """When the oldest held item expires (None if nothing is held):
        :meth:`expire` after this time gives it back."""
        return self._held[0].arrived + self._max_age if self._held else None

    def hold(self, item: T, size: int, arrived: float) -> list[HeldFrame[T]]:
        """Hold ``item`` (``size`` bytes, arrived at ``arrived``) after every
        held one; returns what no longer fits, oldest first.  An item that
        alone exceeds a bound is returned at once, the held ones kept."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidParameter("size must be a non-negative int")
        if not isinstance(arrived, (int, float)) or isinstance(arrived, bool):
            raise InvalidArgumentType("arrived must be a number")
        held = HeldFrame(item, size, float(arrived))
        if size > self._max_bytes or self._max_frames == 0:
            return [held]
        self._held.append(held)
        self._bytes += size
        evicted: list[HeldFrame[T]] = []
        while self._held and (len(self._held) > self._max_frames or self._bytes > self._max_bytes):
            evicted.append(self._pop())
        return evicted

    def expire(self, now: float) -> list[HeldFrame[T]]:
        """Remove and return the items held more than ``max_age`` at ``now``,
        oldest first."""
        expired: list[HeldFrame[T]] = []
        limit = now - self._max_age
        while self._held and self._held[0].arrived < limit:
            expired.append(self._pop())
        return expired

    def take(self) -> list[HeldFrame[T]]:
        """Remove and return every held item, oldest first (to retry them:
        hold again, with their ``arrived``, those still without a key)."""
        taken = list(self._held)
        self._held.clear()
        self._bytes = 0
        return taken

    def _pop(self) -> HeldFrame[T]:
        held = self._held.popleft()
        self._bytes -= held.size
        return held
