"""One member's SFrame media session: MLS-keyed SFrame on aiortc peers.

:class:`SFrameSession` wraps an ``sframe.MLSKeyManager`` (RFC 9605 §5.2)
for use from aiortc, where encoders may run in executor threads
(``codec_threads``) and decryption runs on the event loop: every key
manager call goes through one lock.  Senders
seal outside it, with the ``seal`` of their sending key
(:meth:`SFrameSession.sender`), whose CTR comes from one atomic counter per
key, so ``(key, KID, CTR)`` is never reused by two threads (RFC 9605 §9.1).
Once a manager is handed to a session, change its keys through the session.

Key schedule (RFC 9605 §5.2, §7.2):

* :meth:`SFrameSession.install_epoch` installs a new MLS epoch as soon as
  its commit is processed: frames of that epoch decrypt at once, but this
  member keeps *sending* under the previous epoch;
* frames of an epoch not installed yet are held by each receiver
  (:class:`media.transform.HoldLimits`, RFC 9605 §4.4.4) and opened as soon
  as :meth:`SFrameSession.install_epoch` installs it;
* the sender switches only through a transition: :meth:`switch_sender`
  (e.g. once the delivery service confirmed the commit) or
  ``install_epoch(..., switch_after=seconds)``; the first epoch is used for
  sending at once.  Each protected video sender forces a keyframe after
  every switch;
* a connection's senders send nothing the remote cannot open
  (:meth:`PeerProtection.remote_keys_from`: it is no member yet, or our
  sending epoch is older than the one its Welcome starts), and start with a
  keyframe once it can.

Attaching to aiortc (per object; unprotected peers in the same process are
untouched)::

    session = SFrameSession(MLSKeyManager())
    session.install_epoch(group, epoch, own_index, group_size)
    pc.addTrack(track)
    peer = session.protect_peer_connection(pc)   # before negotiation
    ...
    peer.stats()      # per sender / receiver / peer counters

or :meth:`SFrameSession.protect_sender` / :meth:`protect_receiver` for
single objects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from sframe import KeyManagementError, MLSExporter, MLSKeyManager, MLSSender, MLSUnprotectResult

from . import seams
from .stats import PeerStats
from .transform import FrameKeys, HoldLimits, SFrameReceiverTransform, SFrameSenderTransform

logger = logging.getLogger(__name__)


class SFrameSession:
    """Thread-safe MLS SFrame keys plus the transforms that use them."""

    def __init__(
        self,
        key_manager: MLSKeyManager,
        *,
        pli_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        hold: HoldLimits | None = HoldLimits(),
        codec_threads: bool = False,
    ) -> None:
        """``hold``: how each receiver holds frames of an epoch not installed
        yet (None: drop them at once as unknown KIDs); ``codec_threads``:
        senders encode and receivers decode in aiortc's threads rather than
        on the event loop (:mod:`media.seams`, "codec threads")."""
        seams.check_aiortc()
        self._km = key_manager
        self._lock = threading.Lock()
        self._pli_interval = pli_interval
        self._clock = clock
        self._hold = hold
        self._codec_threads = codec_threads
        #: the receivers to tell when an epoch is installed
        self._receivers: weakref.WeakSet[SFrameReceiverTransform] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: one pending timed switch per epoch: a burst of commits must not
        #: keep postponing the switch (each epoch's own delay counts)
        self._switch_timers: dict[int, asyncio.TimerHandle] = {}
        self._last_rekey: float | None = None
        #: the key manager's send_key_generation, kept here so that senders
        #: read it once per frame without the lock
        self._generation = key_manager.send_key_generation

    def __repr__(self) -> str:
        return f"SFrameSession({self._km!r})"

    # -- keys ------------------------------------------------------------------

    @property
    def sending_epoch(self) -> int | None:
        with self._lock:
            return self._km.sending_epoch

    @property
    def newest_epoch(self) -> int | None:
        with self._lock:
            return self._km.newest_epoch

    @property
    def send_key_generation(self) -> int:
        """Changes with each change of this member's sending key."""
        return self._generation

    @property
    def last_rekey(self) -> float | None:
        """Wall-clock time of the last change of this member's sending key."""
        return self._last_rekey

    def install_epoch(
        self,
        exporter: MLSExporter,
        epoch: int,
        own_index: int,
        group_size: int,
        *,
        switch_after: float | None = None,
    ) -> None:
        """Install MLS ``epoch`` for receiving now; send under it after the
        transition (:meth:`switch_sender`, or ``switch_after`` seconds).
        Receivers then open the frames they held for it."""
        with self._lock:
            self._km.install_epoch(exporter, epoch, own_index, group_size, switch_sender=False)
            self._note_generation()
        self._release_held()
        if switch_after is not None and epoch not in self._switch_timers:
            loop = asyncio.get_running_loop()
            self._switch_timers[epoch] = loop.call_later(switch_after, self._timed_switch, epoch)

    def _release_held(self) -> None:
        """Have each receiver open what it held, on the event loop (where
        receivers run; from another thread, through ``call_soon_threadsafe``)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        here = loop is None or running is loop or (running is None and not loop.is_running())
        for receiver in list(self._receivers):
            if here:
                receiver.key_installed()
            else:
                assert loop is not None
                loop.call_soon_threadsafe(receiver.key_installed)

    def _timed_switch(self, epoch: int) -> None:
        self._switch_timers.pop(epoch, None)
        with self._lock:
            if self._km.sending_epoch is not None and self._km.sending_epoch >= epoch:
                return
        try:
            self.switch_sender(epoch)
        except KeyManagementError as exc:  # the epoch was evicted meanwhile
            logger.warning("SFrame: timed switch to epoch %d skipped: %s", epoch, exc)

    def _cancel_timers(self) -> None:
        for timer in self._switch_timers.values():
            timer.cancel()
        self._switch_timers.clear()

    def switch_sender(self, epoch: int | None = None) -> None:
        """End the transition: send under ``epoch`` (default: the newest)."""
        with self._lock:
            self._km.switch_sender(epoch)
            self._note_generation()

    def _note_generation(self) -> None:
        """After a key change (holding the lock): note a new sending key."""
        generation = self._km.send_key_generation
        if generation != self._generation:
            self._generation = generation
            self._last_rekey = time.time()

    def sender(self, context: int) -> MLSSender:
        """The sending key of KID ``context`` (any thread): its ``seal``
        protects frames until :attr:`send_key_generation` changes."""
        with self._lock:
            return self._km.sender(context)

    def unprotect(self, ciphertext: bytes, metadata: bytes) -> MLSUnprotectResult:
        """SFrame-unprotect a frame of another member (any thread)."""
        with self._lock:
            return self._km.unprotect(ciphertext, metadata)

    def close(self) -> None:
        """Cancel the pending timed switches; receivers forget held frames."""
        self._cancel_timers()
        for receiver in list(self._receivers):
            receiver.close()

    # -- attaching -------------------------------------------------------------

    def protect_sender(self, sender: RTCRtpSender, *, context: int = 0) -> SFrameSenderTransform:
        """Seal every frame ``sender`` sends; ``context`` is the KID context
        (RFC 9605 §5.2) of this stream."""
        return SFrameSenderTransform(sender, self, context=context, codec_threads=self._codec_threads)

    def protect_receiver(self, receiver: RTCRtpReceiver, *, keys: FrameKeys | None = None) -> SFrameReceiverTransform:
        """Open every frame ``receiver`` receives before it is decoded;
        ``keys``: this session's keys seen through a wrapper (e.g. one that
        attributes each frame to its sender, media.sfu), default the session."""
        return self._track(SFrameReceiverTransform(
            receiver, self if keys is None else keys, pli_interval=self._pli_interval,
            clock=self._clock, hold=self._hold, codec_threads=self._codec_threads
        ))

    def _track(self, transform: SFrameReceiverTransform) -> SFrameReceiverTransform:
        """Remember ``transform`` (weakly) for epoch installs, and the event
        loop it will run on."""
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._receivers.add(transform)
        return transform

    @property
    def hold(self) -> HoldLimits | None:
        """How receivers hold frames awaiting their epoch (None: they do not)."""
        return self._hold

    def protect_peer_connection(self, pc: RTCPeerConnection) -> PeerProtection:
        """Protect every sender and receiver of ``pc``, including receivers
        of transceivers a later offer creates (its ``track`` event)."""
        return PeerProtection(self, pc)


class PeerProtection:
    """The transforms of one RTCPeerConnection, and their stats."""

    def __init__(self, session: SFrameSession, pc: RTCPeerConnection) -> None:
        self._session = session
        self._pc = pc
        self.senders: list[SFrameSenderTransform] = []
        self.receivers: list[SFrameReceiverTransform] = []
        #: see remote_keys_from (0: every epoch, the default of a sender transform)
        self._remote_from: int | None = 0
        self.update()
        pc.on("track", lambda track: self.update())

    def update(self) -> None:
        """Protect transceivers added since the last call (idempotent)."""
        mine = {id(t.sender) for t in self.senders} | {id(t.receiver) for t in self.receivers}
        for transceiver in self._pc.getTransceivers():
            if id(transceiver.sender) not in mine:
                sender = self._session.protect_sender(transceiver.sender)
                sender.remote_keys_from(self._remote_from)
                self.senders.append(sender)
            if id(transceiver.receiver) not in mine:
                self.receivers.append(self._session.protect_receiver(transceiver.receiver))

    def remote_keys_from(self, epoch: int | None) -> None:
        """Every sender of this connection, current or future, sends only
        under ``epoch`` or later (None: nothing, the remote is no member);
        see :meth:`SFrameSenderTransform.remote_keys_from`."""
        self._remote_from = epoch
        for sender in self.senders:
            sender.remote_keys_from(epoch)

    def stats(self) -> PeerStats:
        return PeerStats(
            senders=tuple(t.stats() for t in self.senders),
            receivers=tuple(t.stats() for t in self.receivers),
            sending_epoch=self._session.sending_epoch,
            newest_epoch=self._session.newest_epoch,
            last_rekey=self._session.last_rekey,
        )
