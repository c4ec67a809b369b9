"""The SFrame context: keys by KID, key derivation, protect/unprotect
(RFC 9605 §4.4, Appendix A).

Each KID maps to a send key or a receive key, never both (§4.4.1).  The key
and salt of a KID are derived once (§4.4.2) and its AEAD object is built
once, so a frame costs one header encoding, one XOR and one AEAD call.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .errors import (
    AuthenticationFailure,
    CounterExhausted,
    InvalidArgumentType,
    InvalidParameter,
    KeyManagementError,
    MalformedHeader,
    SFrameError,
    UnknownKID,
)
from .header import KID_END, MAX_CTR, MAX_KID, decode_header, encode_field, kid_prefixes
from .replay import ReplayWindow
from .suites import AEAD, SFrameCipherSuite, CipherSuiteParams, make_aead, suite_params

_KEY_LABEL = b"SFrame 1.0 Secret key "
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_from_bytes = int.from_bytes
_SALT_LABEL = b"SFrame 1.0 Secret salt "


class UnprotectResult(NamedTuple):
    """What :meth:`SFrameContext.unprotect` returns."""

    kid: int
    ctr: int
    plaintext: bytes


def derive_key_salt(cipher_suite: int, kid: int, base_key: bytes) -> tuple[bytes, bytes]:
    """``derive_key_salt(KID, base_key)`` of RFC 9605 §4.4.2: ``(sframe_key, sframe_salt)``."""
    params = suite_params(cipher_suite)
    if not isinstance(kid, int) or not 0 <= kid <= MAX_KID:
        raise InvalidParameter("KID must be an integer in 0 .. 2^64-1")
    if not isinstance(base_key, (bytes, bytearray, memoryview)) or not base_key:
        raise InvalidParameter("base_key must be non-empty bytes")
    hash_ = params.hash()
    secret = HKDF.extract(hash_, b"", bytes(base_key))
    suffix = kid.to_bytes(8, "big") + int(params.suite).to_bytes(2, "big")
    key = HKDFExpand(hash_, params.nk, _KEY_LABEL + suffix).derive(secret)
    salt = HKDFExpand(params.hash(), params.nn, _SALT_LABEL + suffix).derive(secret)
    return key, salt


class _SendKey:
    """Send state of one KID: AEAD, salt, header templates and the CTR source."""

    __slots__ = ("kid", "aead", "encrypt", "salt", "counter", "small_headers", "ext_headers")

    def __init__(self, aead: AEAD, salt: int, kid: int, initial_counter: int) -> None:
        self.kid = kid
        self.aead = aead
        self.encrypt = aead.encrypt
        self.salt = salt
        # itertools.count hands out each value once, atomically under the GIL,
        # even if senders on several threads share a KID.
        self.counter = itertools.count(initial_counter)
        k_nibble, k_bytes = encode_field(kid)
        self.small_headers = tuple(bytes(((k_nibble << 4) | c,)) + k_bytes for c in range(8))
        # ext_headers[CTR.bit_length() - 4] = (config byte || KID bytes || zero
        # CTR bytes as an integer, header length): the header is (base | CTR).
        self.ext_headers = tuple(
            (_from_bytes(bytes(((k_nibble << 4) | 0x08 | (c_len - 1),)) + k_bytes, "big")
             << (8 * c_len), 1 + len(k_bytes) + c_len)
            for c_len in ((bits + 7) >> 3 for bits in range(4, 65)))

    def __repr__(self) -> str:
        return f"_SendKey(kid={self.kid:#x}, <secret>)"

    def seal(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """SFrame ``encrypt`` (§4.4.3) with the next CTR: ``header ||
        ciphertext || tag``.  The CTR is consumed before encryption
        (store-before-use, §10.1), so it is never reused even if encryption
        then fails."""
        ctr = next(self.counter)
        if ctr < 8:
            header = self.small_headers[ctr]
        else:
            try:
                base, header_len = self.ext_headers[ctr.bit_length() - 4]
            except IndexError:  # CTR > 2^64-1
                raise CounterExhausted(f"KID {self.kid:#x} has used every CTR value") from None
            header = (base | ctr).to_bytes(header_len, "big")
        try:
            return header + self.encrypt((self.salt ^ ctr).to_bytes(12, "big"), plaintext,
                                         header + metadata if metadata else header)
        except TypeError:
            raise InvalidArgumentType("plaintext and metadata must be bytes") from None


# One strict header start of a receive KID: (decrypt, salt, replay window,
# KID, KID end, header end, CTR or minimal CTR); see SFrameContext.unprotect.
_RecvForm = tuple[Callable[[bytes, bytes, bytes], bytes], int, ReplayWindow | None,
                  int, int, int, int]


class _RecvKey:
    """Receive state of one KID: AEAD, salt and the optional replay window."""

    __slots__ = ("aead", "salt", "replay")

    def __init__(self, aead: AEAD, salt: int, replay: ReplayWindow | None) -> None:
        self.aead = aead
        self.salt = salt
        self.replay = replay

    def __repr__(self) -> str:
        return "_RecvKey(<secret>)"


class SFrameContext:
    """An SFrame context (RFC 9605 Appendix A): one cipher suite, keys by KID.

    >>> ctx = SFrameContext(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    >>> ctx.add_send_key(7, b"k" * 16)
    >>> peer = SFrameContext(SFrameCipherSuite.AES_128_GCM_SHA256_128)
    >>> peer.add_recv_key(7, b"k" * 16)
    >>> peer.unprotect(ctx.protect(7, b"frame", b"md"), b"md").plaintext
    b'frame'

    ``replay_window``: if set, each receive KID rejects a CTR it already
    accepted or one ``replay_window`` or more below the highest accepted
    (:class:`ReplayDetected`).  Off by default (§10.3 leaves it optional).
    """

    __slots__ = ("_params", "_send", "_recv", "_recv_by_prefix", "_replay_window")

    def __init__(self, cipher_suite: int = SFrameCipherSuite.AES_128_GCM_SHA256_128, *,
                 replay_window: int | None = None) -> None:
        self._params = suite_params(cipher_suite)
        if replay_window is not None:
            ReplayWindow(replay_window)  # validates the size
        self._replay_window = replay_window
        self._send: dict[int, _SendKey] = {}
        self._recv: dict[int, _RecvKey] = {}
        # Header start (config byte || KID bytes) -> form, for every strict
        # encoding of each receive KID: unprotect finds the key and the CTR
        # layout in one lookup.
        self._recv_by_prefix: dict[bytes, _RecvForm] = {}

    def __repr__(self) -> str:
        return (f"SFrameContext({self._params.suite.name}, send_kids={len(self._send)}, "
                f"recv_kids={len(self._recv)})")

    @property
    def cipher_suite(self) -> SFrameCipherSuite:
        """The suite of every key in this context."""
        return self._params.suite

    @property
    def params(self) -> CipherSuiteParams:
        """The suite's constants (Nk, Nn, Nt, ...)."""
        return self._params

    @property
    def send_kids(self) -> frozenset[int]:
        """KIDs usable with :meth:`protect`."""
        return frozenset(self._send)

    @property
    def recv_kids(self) -> frozenset[int]:
        """KIDs accepted by :meth:`unprotect`."""
        return frozenset(self._recv)

    def _derive(self, kid: int, base_key: bytes) -> tuple[AEAD, int]:
        key, salt = derive_key_salt(self._params.suite, kid, base_key)
        return make_aead(self._params, key), int.from_bytes(salt, "big")

    def add_send_key(self, kid: int, base_key: bytes, *, initial_counter: int = 0) -> None:
        """Provision ``kid`` for sending (§4.4.1); its CTR starts at
        ``initial_counter`` (0, or a value restored from storage, §10.1).

        A KID can hold one send key: remove it first to replace it, and never
        re-add the same ``base_key`` with a CTR already used.
        """
        _check_kid(kid)
        if kid in self._recv or kid in self._send:
            raise KeyManagementError(f"KID {kid:#x} is already provisioned")
        if not isinstance(initial_counter, int) or not 0 <= initial_counter <= MAX_CTR:
            raise InvalidParameter("initial_counter must be in 0 .. 2^64-1")
        aead, salt = self._derive(kid, base_key)
        self._send[kid] = _SendKey(aead, salt, kid, initial_counter)

    def add_recv_key(self, kid: int, base_key: bytes) -> None:
        """Provision (or replace) ``kid`` for receiving (§4.4.1)."""
        _check_kid(kid)
        if kid in self._send:
            raise KeyManagementError(f"KID {kid:#x} is a send key; a key is never used both ways")
        aead, salt = self._derive(kid, base_key)
        replay = ReplayWindow(self._replay_window) if self._replay_window is not None else None
        self._recv[kid] = _RecvKey(aead, salt, replay)
        for prefix, c_len, ctr in kid_prefixes(kid):
            kid_end = len(prefix)
            self._recv_by_prefix[prefix] = (aead.decrypt, salt, replay,
                                            kid, kid_end, kid_end + c_len, ctr)

    def remove_key(self, kid: int) -> None:
        """Forget ``kid`` (send or receive); no error if it is unknown."""
        if not isinstance(kid, int):
            raise InvalidArgumentType(f"KID must be an int, not {type(kid).__name__}")
        self._send.pop(kid, None)
        if self._recv.pop(kid, None) is not None:
            for prefix, _, _ in kid_prefixes(kid):
                del self._recv_by_prefix[prefix]

    def protect(self, kid: int, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """SFrame ``encrypt`` (§4.4.3) with the next CTR of send key ``kid``.

        Returns ``header || ciphertext || tag``.  The CTR is consumed before
        encryption (store-before-use, §10.1), so it is never reused even if
        encryption then fails.  :class:`UnknownKID` if ``kid`` has no send key,
        :class:`CounterExhausted` once CTR 2^64-1 has been used.
        """
        return self.sealer(kid)(plaintext, metadata)

    def sealer(self, kid: int) -> Callable[[bytes, bytes], bytes]:
        """``seal(plaintext, metadata)``: :meth:`protect` bound to send key
        ``kid``, for a caller that seals many frames under one KID.

        It shares the KID's CTR with :meth:`protect`, and keeps sealing under
        that key after :meth:`remove_key` (receivers may no longer accept
        it): fetch a new one when the sending key changes.
        """
        try:
            return self._send[kid].seal
        except (KeyError, TypeError):
            if not isinstance(kid, int):
                raise InvalidArgumentType(f"KID must be an int, not {type(kid).__name__}") from None
            raise UnknownKID(kid, "no send key for this KID") from None

    def unprotect(self, ciphertext: bytes, metadata: bytes = b"") -> UnprotectResult:
        """SFrame ``decrypt`` (§4.4.4): ``(kid, ctr, plaintext)``.

        Raises :class:`MalformedHeader`, :class:`UnknownKID` (no receive key:
        the caller may buffer and retry), :class:`AuthenticationFailure` or
        :class:`ReplayDetected`; nothing else for any byte string.
        """
        if type(ciphertext) is not bytes:
            ciphertext = _as_bytes(ciphertext, "ciphertext")
        try:
            decrypt, salt, replay, kid, kid_end, end, ctr = self._recv_by_prefix[
                ciphertext[:KID_END[ciphertext[0]]]]
        except (IndexError, KeyError):
            raise _header_error(ciphertext) from None
        if end != kid_end:  # CTR in extra bytes; ``ctr`` is its minimal value
            ctr_min, ctr = ctr, _from_bytes(ciphertext[kid_end:end], "big")
            if ctr < ctr_min:  # a truncated field also reads below the minimum
                raise MalformedHeader("truncated or non-minimal CTR")
        if replay is not None:
            replay.check(ctr)
        header = ciphertext[:end]
        try:
            plaintext = decrypt((salt ^ ctr).to_bytes(12, "big"), ciphertext[end:],
                                header + metadata if metadata else header)
        except InvalidTag:
            raise AuthenticationFailure("SFrame authentication failed") from None
        except TypeError:
            raise InvalidArgumentType("metadata must be bytes") from None
        if replay is not None:
            replay.accept(ctr)
        return _new_tuple(UnprotectResult, (kid, ctr, plaintext))


def _check_kid(kid: object) -> None:
    if not isinstance(kid, int) or not 0 <= kid <= MAX_KID:
        raise InvalidParameter("KID must be an integer in 0 .. 2^64-1")


def _as_bytes(value: object, what: str) -> bytes:
    """``value`` as bytes if it is bytes-like, else :class:`InvalidArgumentType`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentType(f"{what} must be bytes, not {type(value).__name__}")


def _header_error(ciphertext: bytes) -> SFrameError:
    """Why ``ciphertext`` matched no receive key: its header is malformed
    (:class:`MalformedHeader`) or its KID is not provisioned (:class:`UnknownKID`)."""
    try:
        kid = decode_header(ciphertext)[0]
    except MalformedHeader as exc:
        return exc
    return UnknownKID(kid)
