"""Typed errors of the SFrame package (RFC 9605).

Every failure of the public API is an :class:`SFrameError`.  ``unprotect``
given any byte string either succeeds or raises one of
:class:`MalformedHeader`, :class:`UnknownKID` (or its subclass
:class:`KeyPending`), :class:`AuthenticationFailure` or
:class:`ReplayDetected`.  Messages never contain key material.
"""

from __future__ import annotations


class SFrameError(Exception):
    """Base class of every error raised by the ``sframe`` package."""


class MalformedHeader(SFrameError):
    """The SFrame header (RFC 9605 §4.3) is truncated or not minimally encoded."""


class UnknownKID(SFrameError):
    """No key is known for this KID (yet): not a forgery.

    RFC 9605 §4.4.4 lets a receiver buffer such a ciphertext and retry once a
    key for the KID arrives (a joiner, or a commit still in flight).
    """

    def __init__(self, kid: int, reason: str = "no key for this KID") -> None:
        super().__init__(f"KID {kid:#x}: {reason}")
        self.kid = kid


class KeyPending(UnknownKID):
    """The KID names an MLS epoch not installed *yet* (RFC 9605 §5.2): a
    joiner before its Welcome, or a member before the commit.

    §4.4.4 lets the receiver hold such a frame and retry once the key
    arrives (:class:`sframe.hold.HoldBuffer`); a frame whose key will never
    come (an epoch older than every retained one) raises plain
    :class:`UnknownKID`.
    """


class AuthenticationFailure(SFrameError):
    """AEAD decryption failed: the frame was forged, corrupted or truncated,
    or the metadata differs from the sender's (RFC 9605 §4.4.4)."""


class CounterExhausted(SFrameError):
    """Every CTR value (0 .. 2^64-1) of this send KID has been used.

    The counter never wraps: (base_key, KID, CTR) must be used at most once
    (RFC 9605 §9.1).  Install a new key under another KID.
    """


class ReplayDetected(SFrameError):
    """The (KID, CTR) pair was already accepted, or is older than the replay
    window (RFC 9605 §9.3, counter-based anti-replay as in RFC 3711 §3.3.2)."""


class InvalidParameter(SFrameError, ValueError):
    """An argument is out of range (KID, CTR, key length, KID bit layout...)."""


class UnsupportedCipherSuite(InvalidParameter):
    """The cipher suite identifier is not one this package implements."""


class KeyManagementError(SFrameError):
    """Key provisioning was misused: a KID used for both sending and
    receiving, a duplicate send KID, a stale MLS epoch, or no sending key."""


class InvalidArgumentType(InvalidParameter, TypeError):
    """An argument has the wrong type (e.g. a str or None where bytes are expected).

    Both an :class:`SFrameError` and a :class:`TypeError`.
    """
