"""SFrame keys from MLS (RFC 9605 §5.2).

Each MLS epoch yields one ``base_key = MLS-Exporter("SFrame 1.0 Base Key",
"", AEAD.Nk)`` shared by all members; members differ only by KID::

    KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))

Defaults: ``E = 4`` (16 epochs in flight, far more than the 4 retained) and
``S`` derived per epoch from the group size as §5.2 prescribes (the smallest
S with ``group_size <= 1 << S``), so any group size fits; pass ``index_bits``
to fix S instead.  A group of 64 with context 0 gives KIDs of up to 10 bits:
a header of 3 bytes while CTR < 8, then 4 bytes while CTR < 256.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .context import SFrameContext
from .errors import (
    InvalidArgumentType,
    InvalidParameter,
    KeyManagementError,
    KeyPending,
    SFrameError,
    UnknownKID,
)
from .header import MAX_KID
from .suites import SFrameCipherSuite

BASE_KEY_LABEL = b"SFrame 1.0 Base Key"
_MAX_EPOCH = (1 << 64) - 1  # MLS epochs are uint64 (RFC 9420 §8)
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


class MLSExporter(Protocol):
    """Anything with the MLS exporter (RFC 9420 §8.5), e.g. an MLS group view.

    ``export_secret`` may return the secret as bytes or an object with a
    ``secret`` attribute (the MLS Web API's ``MLSExporterOutput``).
    """

    def export_secret(self, label: bytes, context: bytes, length: int) -> object: ...


class MLSSender(NamedTuple):
    """This member's sending state for one KID context (see
    :meth:`MLSKeyManager.sender`)."""

    epoch: int
    #: :attr:`MLSKeyManager.send_key_generation` when this state was current
    generation: int
    kid: int
    #: ``seal(plaintext, metadata) -> SFrame ciphertext`` (RFC 9605 §4.4.3)
    seal: Callable[[bytes, bytes], bytes]


class MLSUnprotectResult(NamedTuple):
    """A decrypted frame and the KID fields it was sent under."""

    kid: int
    ctr: int
    plaintext: bytes
    epoch: int
    sender_index: int
    context: int


def mls_kid(epoch: int, sender_index: int, context: int, epoch_bits: int, index_bits: int) -> int:
    """``KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))`` (§5.2)."""
    if not all(isinstance(v, int) for v in (epoch, sender_index, context, epoch_bits, index_bits)):
        raise InvalidArgumentType("epoch, sender_index, context and the bit counts must be ints")
    if epoch < 0 or not 0 <= sender_index < (1 << index_bits) or context < 0:
        raise InvalidParameter("sender index does not fit in S bits, or a negative field")
    kid = (context << (index_bits + epoch_bits)) | (sender_index << epoch_bits) | (
        epoch & ((1 << epoch_bits) - 1))
    if kid > MAX_KID:
        raise InvalidParameter("context too large: KID exceeds 64 bits")
    return kid


def index_bits_for(group_size: int) -> int:
    """The smallest S with ``group_size <= 1 << S`` (§5.2)."""
    return max(group_size - 1, 0).bit_length()


@dataclass
class _Epoch:
    epoch: int
    base_key: bytes = field(repr=False)
    own_index: int
    group_size: int
    index_bits: int
    superseded_at: float | None = None
    recv_kids: set[int] = field(default_factory=set)
    send_kids: dict[int, int] = field(default_factory=dict)  # context -> KID


class MLSKeyManager:
    """Per-member SFrame keys for an MLS group (RFC 9605 §5.2).

    * :meth:`install_epoch` derives the epoch's base key; frames of every
      other member in that epoch decrypt at once.  By default this member
      also starts sending in the new epoch; with ``switch_sender=False`` it
      keeps sending under its previous epoch until :meth:`switch_sender`
      (a transition: receivers get the key before anyone sends with it).
    * Past epochs stay decryptable while both fewer than ``retain_epochs``
      newer epochs exist and at most ``retain_seconds`` have passed since the
      next one was installed (``clock`` is injectable for tests).  An epoch is
      dropped at once when a newer one shares its low E bits (§5.2 MUST).
    * ``replay_window`` (off by default) enables per-KID anti-replay.

    ``group_size`` is the number of leaves of the ratchet tree (any bound
    above every leaf index in use).  A member's own KIDs are send-only.
    """

    def __init__(self, cipher_suite: int = SFrameCipherSuite.AES_128_GCM_SHA256_128, *,
                 epoch_bits: int = 4, index_bits: int | None = None,
                 retain_epochs: int = 4, retain_seconds: float = 10.0,
                 replay_window: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not all(isinstance(v, int) for v in (epoch_bits, retain_epochs)) or not (
                index_bits is None or isinstance(index_bits, int)) or not isinstance(retain_seconds, (int, float)):
            raise InvalidArgumentType("epoch_bits, index_bits, retain_epochs must be ints, retain_seconds a number")
        if not 1 <= epoch_bits <= 32:
            raise InvalidParameter("epoch_bits must be in 1 .. 32")
        if index_bits is not None and not 0 <= index_bits <= 64 - epoch_bits:
            raise InvalidParameter("index_bits must be in 0 .. 64 - epoch_bits")
        if retain_epochs < 0 or retain_epochs >= (1 << epoch_bits):
            raise InvalidParameter("retain_epochs must be in 0 .. 2^epoch_bits - 1")
        if retain_seconds < 0:
            raise InvalidParameter("retain_seconds must be >= 0")
        self._ctx = SFrameContext(cipher_suite, replay_window=replay_window)
        self._epoch_bits = epoch_bits
        self._epoch_mask = (1 << epoch_bits) - 1
        self._index_bits = index_bits
        self._retain_epochs = retain_epochs
        self._retain_seconds = retain_seconds
        self._clock = clock
        self._epochs: dict[int, _Epoch] = {}  # by epoch % 2^E
        self._newest: _Epoch | None = None
        self._sending: _Epoch | None = None
        self._send_generation = 0
        self._seen_generation: dict[int, int] = {}
        self._deadline: float | None = None  # when the oldest retained past epoch expires

    def __repr__(self) -> str:
        return (f"MLSKeyManager({self._ctx.cipher_suite.name}, epochs={self.epochs}, "
                f"sending_epoch={self.sending_epoch})")

    # -- configuration and state -------------------------------------------------

    @property
    def cipher_suite(self) -> SFrameCipherSuite:
        return self._ctx.cipher_suite

    @property
    def epoch_bits(self) -> int:
        """E: low epoch bits carried in each KID."""
        return self._epoch_bits

    @property
    def epochs(self) -> tuple[int, ...]:
        """Epochs whose frames currently decrypt, oldest first (after expiry)."""
        self.expire()
        return tuple(sorted(e.epoch for e in self._epochs.values()))

    @property
    def newest_epoch(self) -> int | None:
        """The most recently installed epoch."""
        return None if self._newest is None else self._newest.epoch

    @property
    def sending_epoch(self) -> int | None:
        """The epoch :meth:`protect` encrypts under (None before the first)."""
        return None if self._sending is None else self._sending.epoch

    @property
    def in_transition(self) -> bool:
        """True while a newer epoch is installed but this member still sends
        under an older one."""
        return self._sending is not None and self._sending is not self._newest

    @property
    def send_key_generation(self) -> int:
        """Incremented each time the sending epoch changes."""
        return self._send_generation

    def send_key_changed(self, context: int = 0) -> bool:
        """True once per ``context`` after the sending key changed (and on the
        first call): the sender should then force a keyframe (§7.2)."""
        changed = self._seen_generation.get(context) != self._send_generation
        self._seen_generation[context] = self._send_generation
        return changed

    def kid_for(self, epoch: int, sender_index: int, context: int = 0) -> int:
        """The KID of ``sender_index`` in a retained ``epoch`` (§5.2)."""
        _check_epoch(epoch)
        state = self._epochs.get(epoch & self._epoch_mask)
        if state is None or state.epoch != epoch:
            raise KeyManagementError(f"epoch {epoch} is not retained")
        return mls_kid(epoch, sender_index, context, self._epoch_bits, state.index_bits)

    # -- key schedule ------------------------------------------------------------

    def install_epoch(self, exporter: MLSExporter, epoch: int, own_index: int,
                      group_size: int, *, switch_sender: bool = True) -> None:
        """Install MLS ``epoch``: ``base_key = MLS-Exporter("SFrame 1.0 Base
        Key", "", AEAD.Nk)`` (§5.2).

        Receive keys of the new epoch are usable immediately.  With
        ``switch_sender=False`` this member keeps sending under its current
        epoch until :meth:`switch_sender` (it switches anyway if it had no
        sending epoch, or if the current one is evicted by an E-bit collision).
        Installing an already installed epoch with the same secret is a
        no-op; an older epoch, or the same one with another secret, raises
        :class:`KeyManagementError`.
        """
        _check_epoch(epoch)
        if not isinstance(group_size, int) or group_size < 1:
            raise InvalidParameter("group_size must be a positive integer")
        if not isinstance(own_index, int) or not 0 <= own_index < group_size:
            raise InvalidParameter("own_index must be in 0 .. group_size - 1")
        if self._index_bits is None:
            index_bits = index_bits_for(group_size)
            if index_bits > 64 - self._epoch_bits:
                raise InvalidParameter("group too large for the KID layout")
        else:
            index_bits = self._index_bits
            if group_size > (1 << index_bits):
                raise InvalidParameter(f"group_size {group_size} exceeds 2^{index_bits} (index_bits)")
        nk = self._ctx.params.nk
        secret = exporter.export_secret(BASE_KEY_LABEL, b"", nk)
        base_key = getattr(secret, "secret", secret)
        if not isinstance(base_key, (bytes, bytearray, memoryview)):  # bytes(48) would be 48 zero bytes
            raise KeyManagementError(f"exporter returned {type(base_key).__name__}, not bytes")
        base_key = bytes(base_key)
        if len(base_key) != nk:
            raise KeyManagementError(f"exporter returned {len(base_key)} bytes, expected {nk}")

        newest = self._newest
        if newest is not None and epoch <= newest.epoch:
            same = self._epochs.get(epoch & self._epoch_mask)
            if (same is not None and same.epoch == epoch
                    and hmac.compare_digest(same.base_key, base_key)):
                return
            raise KeyManagementError(f"epoch {epoch} is not newer than epoch {newest.epoch}")

        now = self._clock()
        slot = epoch & self._epoch_mask
        evicted = self._epochs.get(slot)
        if evicted is not None:  # §5.2: drop the old epoch with the same low E bits
            self._drop(evicted)
        sending = self._sending
        if sending is not None and sending.epoch & self._epoch_mask == slot:
            self._drop(sending)  # expired but still sending: its KIDs would collide
        if newest is not None and newest.superseded_at is None:
            newest.superseded_at = now
        state = _Epoch(epoch, base_key, own_index, group_size, index_bits)
        self._epochs[slot] = state
        self._newest = state
        if switch_sender or self._sending is None:
            self._set_sending(state)
        self.expire()

    def switch_sender(self, epoch: int | None = None) -> None:
        """End a transition: send under ``epoch`` (default: the newest).

        Only a retained epoch not older than the current sending one may be
        chosen; the switch is counted by :meth:`send_key_changed`.
        """
        if epoch is not None:
            _check_epoch(epoch)
        if self._newest is None:
            raise KeyManagementError("no epoch installed")
        target = self._newest if epoch is None else self._epochs.get(epoch & self._epoch_mask)
        if target is None or (epoch is not None and target.epoch != epoch):
            raise KeyManagementError(f"epoch {epoch} is not retained")
        if self._sending is not None and target.epoch < self._sending.epoch:
            raise KeyManagementError("cannot switch the sender back to an older epoch")
        self._set_sending(target)

    def expire(self) -> None:
        """Drop past epochs outside the retention count or time window.

        The epoch this member is sending under is kept for sending (its
        receive keys follow the window like any other).
        """
        newest = self._newest
        if newest is None:
            return
        now = self._clock()
        deadline: float | None = None
        for state in list(self._epochs.values()):
            if state is newest or state.superseded_at is None:
                continue
            expires = state.superseded_at + self._retain_seconds
            if newest.epoch - state.epoch > self._retain_epochs or now > expires:
                self._drop(state, keep_sending=state is self._sending)
            elif deadline is None or expires < deadline:
                deadline = expires
        self._deadline = deadline

    def _drop(self, state: _Epoch, *, keep_sending: bool = False) -> None:
        """Forget ``state``'s receive keys; its send keys too unless this
        member still sends under it (``keep_sending``)."""
        for kid in state.recv_kids:
            self._ctx.remove_key(kid)
        state.recv_kids.clear()
        slot = state.epoch & self._epoch_mask
        if self._epochs.get(slot) is state:
            del self._epochs[slot]
        if keep_sending:
            return
        self._release_send_keys(state)
        if self._sending is state:
            self._sending = None
            if self._newest is not None and self._newest is not state:
                self._set_sending(self._newest)

    def _release_send_keys(self, state: _Epoch) -> None:
        for kid in state.send_kids.values():
            self._ctx.remove_key(kid)
        state.send_kids.clear()

    def _set_sending(self, state: _Epoch) -> None:
        previous = self._sending
        if previous is state:
            return
        self._sending = state
        self._send_generation += 1
        if previous is not None and self._epochs.get(previous.epoch & self._epoch_mask) is not previous:
            self._release_send_keys(previous)  # an expired epoch kept only for sending

    # -- frames ------------------------------------------------------------------

    def protect(self, plaintext: bytes, metadata: bytes = b"", *, context: int = 0) -> bytes:
        """Encrypt a frame of this member under the sending epoch.

        ``context`` (§5.2) tells apart this member's uncoordinated streams
        (e.g. audio 0, video 1): each is its own KID with its own CTR.
        :class:`KeyManagementError` before the first epoch.
        """
        return self.sender(context).seal(plaintext, metadata)

    def sender(self, context: int = 0) -> MLSSender:
        """The sending epoch's state for ``context``: what :meth:`protect`
        seals with, for a caller that seals many frames (a media stream).

        Its ``seal`` keeps the KID it was made for: fetch a new sender once
        :attr:`send_key_generation` differs from its ``generation``.
        :class:`KeyManagementError` before the first epoch.
        """
        state = self._sending
        if state is None:
            raise KeyManagementError("no sending epoch installed")
        kid = state.send_kids.get(context)
        if kid is None:
            kid = mls_kid(state.epoch, state.own_index, context, self._epoch_bits, state.index_bits)
            self._ctx.add_send_key(kid, state.base_key)
            state.send_kids[context] = kid
        return _new_tuple(MLSSender, (state.epoch, self._send_generation, kid, self._ctx.sealer(kid)))

    def unprotect(self, ciphertext: bytes, metadata: bytes = b"") -> MLSUnprotectResult:
        """Decrypt a frame of another member.

        :class:`KeyPending` (an :class:`UnknownKID`) if its epoch is not
        installed yet (:meth:`epoch_ahead`: hold the frame and retry after
        the next :meth:`install_epoch`, §4.4.4); :class:`UnknownKID` if its
        epoch was dropped, or its sender index is this member's own or
        beyond the group; otherwise as :meth:`SFrameContext.unprotect`.
        """
        if self._deadline is not None and self._clock() > self._deadline:
            self.expire()
        try:
            kid, ctr, plaintext = self._ctx.unprotect(ciphertext, metadata)
        except UnknownKID as exc:
            self._provision(exc.kid)  # first frame of this KID, or raises UnknownKID
            try:
                kid, ctr, plaintext = self._ctx.unprotect(ciphertext, metadata)
            except SFrameError:  # keep a key only for a KID that authenticated a frame
                self._unprovision(exc.kid)
                raise
        state = self._epochs[kid & self._epoch_mask]
        rest = kid >> self._epoch_bits
        return _new_tuple(MLSUnprotectResult, (
            kid, ctr, plaintext, state.epoch, rest & ((1 << state.index_bits) - 1),
            rest >> state.index_bits))

    def _provision(self, kid: int) -> None:
        """Add the receive key of ``kid`` if its epoch and sender are valid."""
        state = self._epochs.get(kid & self._epoch_mask)
        if state is None:
            if self.epoch_ahead(kid):
                raise KeyPending(kid, "its MLS epoch is not installed yet")
            raise UnknownKID(kid, "no retained MLS epoch for this KID")
        index = (kid >> self._epoch_bits) & ((1 << state.index_bits) - 1)
        if index >= state.group_size:
            raise UnknownKID(kid, "sender index outside the group")
        if index == state.own_index:
            raise UnknownKID(kid, "this member's own KID is send-only")
        self._ctx.add_recv_key(kid, state.base_key)
        state.recv_kids.add(kid)

    def epoch_ahead(self, kid: int) -> bool:
        """Whether ``kid`` names an epoch not installed *yet* (its key may
        still come, RFC 9605 §4.4.4), from its low E epoch bits (§5.2).

        Before the first epoch every KID is ahead (a joiner).  After it, a
        KID whose epoch slot holds no retained epoch is ahead when its epoch
        bits are 1 .. 2^(E-1) - 1 past the newest epoch's (at least 1), and
        hopeless otherwise: read backwards, that is an epoch older than
        every retained one, whose key is gone.  (E = 4: up to 7 epochs ahead,
        up to 8 behind.)
        """
        if not isinstance(kid, int) or not 0 <= kid <= MAX_KID:
            raise InvalidParameter("KID must be an integer in 0 .. 2^64-1")
        newest = self._newest
        if newest is None:
            return True
        if self._deadline is not None and self._clock() > self._deadline:
            self.expire()
        slot = kid & self._epoch_mask
        if slot in self._epochs:
            return False
        ahead = (slot - newest.epoch) & self._epoch_mask
        return 1 <= ahead < max(2, (self._epoch_mask + 1) >> 1)

    def _unprovision(self, kid: int) -> None:
        """Undo :meth:`_provision`: unauthenticated frames must not grow the key set."""
        self._ctx.remove_key(kid)
        state = self._epochs.get(kid & self._epoch_mask)
        if state is not None:
            state.recv_kids.discard(kid)


def _check_epoch(epoch: object) -> None:
    """An MLS epoch is a uint64 (RFC 9420 §8)."""
    if not isinstance(epoch, int) or not 0 <= epoch <= _MAX_EPOCH:
        raise InvalidParameter("epoch must be an integer in 0 .. 2^64-1")
