"""Optional receiver anti-replay (RFC 9605 §9.3, §10.3).

A sliding window over the CTR values of one KID, adapted from SRTP's
counter-based replay list (RFC 3711 §3.3.2).
"""

from __future__ import annotations

from .errors import InvalidParameter, ReplayDetected


class ReplayWindow:
    """Accepts each CTR at most once; CTRs more than ``size - 1`` below the
    highest accepted one are rejected as too old."""

    __slots__ = ("size", "_highest", "_bitmap", "_mask")

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise InvalidParameter("replay window size must be a positive integer")
        self.size = size
        self._highest = -1
        self._bitmap = 0  # bit i set <=> CTR (highest - i) was accepted
        self._mask = (1 << size) - 1

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, highest={self._highest})"

    def check(self, ctr: int) -> None:
        """Raise :class:`ReplayDetected` if ``ctr`` is a replay or too old."""
        behind = self._highest - ctr
        if behind < 0:
            return
        if behind >= self.size:
            raise ReplayDetected(f"CTR {ctr} is older than the replay window")
        if (self._bitmap >> behind) & 1:
            raise ReplayDetected(f"CTR {ctr} was already received")

    def accept(self, ctr: int) -> None:
        """Record ``ctr`` as received (call only after authentication)."""
        ahead = ctr - self._highest
        if ahead > 0:
            self._bitmap = ((self._bitmap << ahead) | 1) & self._mask if ahead < self.size else 1
            self._highest = ctr
        else:
            self._bitmap |= 1 << -ahead
