"""Call peers that report what a stress run measures, into one :class:`Ledger`.

:class:`ObservedPeer` is a :class:`media.call_peer.CallPeer` that records

* every epoch it installs (RFC 9420 §8: its number, cause, members and a
  fingerprint of its ``epoch_authenticator``, §8.7, so members can be
  compared without writing the value itself anywhere);
* every commit it submits and the answer of the delivery service;
* when its SFrame sender moved to a new epoch (RFC 9605 §5.2, the end of
  the transition) through :class:`ObservedSession`;
* every frame its receivers fail to decrypt, by kind, and whether the
  failure came before that receiver's first decrypted frame (a joiner, or
  a link to one, has no key yet: RFC 9605 §4.4.4) or after (a key problem)
  through :class:`ObservedReceiverTransform`; of the unknown KIDs before
  the first frame, those no key could ever open (an epoch older than the
  member's first: sent to it before it was added) are counted apart;
* when each of its receivers decrypted its first frame (a joiner's time to
  media from each other member); frames its receivers held for an epoch
  not installed yet and opened (RFC 9605 §4.4.4) or gave up on
  (``FailureKind.HELD_EXPIRED``);
* reconnections of its signaling connection;
* its media traffic on demand (:meth:`ObservedPeer.traffic`): video frames
  its source produced, video frames it decoded from each other member, and
  bytes sent on its RTP transports (every RTCPeerConnection it holds, mesh
  links or SFU connections), for the per-participant figures of
  ``benchmarks/sfu_vs_mesh.py``;

and can be killed without leaving (:meth:`ObservedPeer.crash`), at once or
right after it submitted its next commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.stats import RTCTransportStats
from av import VideoFrame
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from sframe import KeyPending, MLSExporter, MLSKeyManager, MLSUnprotectResult, UnknownKID

from .. import membership as mm
from ..call_peer import CallPeer
from ..counter import CounterVideoTrack
from ..mesh import MediaSources
from ..session import SFrameSession
from ..sfu import AttributingKeys
from ..sinks import VerifyingSink
from ..tracks import ToneAudioTrack
from ..stats import FailureKind
from ..transform import FrameKeys, HoldLimits, SFrameReceiverTransform

logger = logging.getLogger(__name__)

#: "after first decrypt" failures kept one by one (the rest only counted)
MAX_DETAILED_FAILURES = 200
#: width of the failure histogram bins (seconds)
FAILURE_BIN = 0.5
#: the reason :class:`ObservedSession` records for a KID whose epoch was not
#: installed yet (``sframe.KeyPending``): a key that may still come
KEY_PENDING_REASON = "epoch not installed yet"


class Phase(IntEnum):
    """When, for its receiver, a frame failed to decrypt."""

    #: before the receiver's first decrypted frame: a joiner, or a link to
    #: one, has no key yet (RFC 9605 §4.4.4; expected)
    STARTUP = 0
    #: after it: a key problem
    AFTER = 1
    #: after it, but the frame's epoch had been installed and already
    #: evicted (``CallOptions.sframe_retain_epochs``, RFC 9605 §5.2) when
    #: the frame arrived: it was delayed on its way, not keyed wrongly
    LATE = 2


@dataclass(frozen=True)
class EpochRecord:
    """One member installed one epoch."""

    identity: str
    epoch: int
    #: "create", "welcome", "own" or "commit" (media.call_peer.EpochChange)
    cause: str
    at: float
    members: tuple[str, ...]
    #: SHA-256 of the epoch_authenticator, first 8 bytes in hex
    authenticator: str


@dataclass(frozen=True)
class CommitRecord:
    """One commit submitted to the delivery service."""

    identity: str
    #: the epoch it was sent in
    epoch: int
    submitted_at: float
    answered_at: float
    accepted: bool


@dataclass(frozen=True)
class FailureRecord:
    """A frame that failed to decrypt after its receiver had decrypted one."""

    identity: str
    remote: str
    kind: FailureKind
    at: float
    #: the newest epoch the receiving member had installed
    newest_epoch: int | None
    #: for an unknown KID: the frame's epoch modulo 2^E and sender index
    #: (RFC 9605 §5.2), and why no key was found
    kid_epoch: int | None = None
    kid_sender: int | None = None
    reason: str = ""


@dataclass
class Ledger:
    """Everything the peers of one run report; times in seconds after ``origin``."""

    origin: float = field(default_factory=time.monotonic)
    epochs: list[EpochRecord] = field(default_factory=list)
    commits: list[CommitRecord] = field(default_factory=list)
    #: (identity, epoch, at): a member's sender moved to an epoch
    switches: list[tuple[str, int, float]] = field(default_factory=list)
    #: (identity, at): a member's signaling connection came back
    reconnects: list[tuple[str, float]] = field(default_factory=list)
    #: identity -> kind -> failed frames per :class:`Phase`
    failure_counts: dict[str, dict[FailureKind, list[int]]] = field(default_factory=dict)
    #: bin index -> kind -> failures after the first decrypt
    failure_bins: dict[int, dict[FailureKind, int]] = field(default_factory=dict)
    #: bin index -> failures before the first decrypt (joiners)
    startup_bins: dict[int, int] = field(default_factory=dict)
    #: bin index -> frames that arrived after their epoch was evicted
    late_bins: dict[int, int] = field(default_factory=dict)
    key_failures: list[FailureRecord] = field(default_factory=list)
    #: why unknown KIDs after the first decrypt had no key -> count
    unknown_reasons: dict[str, int] = field(default_factory=dict)
    #: identity -> unknown KIDs before a receiver's first decrypted frame
    #: that no key could ever open (an epoch before the member's first)
    never_keyed: dict[str, int] = field(default_factory=dict)
    #: (identity, remote, at): a receiver of ``identity`` decrypted its first
    #: frame from ``remote`` (once per remote and member)
    first_frames: list[tuple[str, str, float]] = field(default_factory=list)
    #: identity -> frames its receivers held and later opened
    held_opened: dict[str, int] = field(default_factory=dict)
    #: a worker's ledger: failures are only counted for :meth:`drain`
    forwarding: bool = False
    _pending: dict[tuple[str, FailureKind, Phase, int], int] = field(default_factory=dict, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def failure(self, identity: str, kind: FailureKind, phase: Phase,
                remote: Callable[[], str], newest_epoch: int | None,
                unknown: tuple[int, int, str] | None = None) -> None:
        at = self.now()
        self._count(identity, kind, phase, int(at // FAILURE_BIN), 1)
        if phase is Phase.STARTUP and kind is FailureKind.UNKNOWN_KID and unknown is not None \
                and unknown[2] != KEY_PENDING_REASON:
            self.never_keyed[identity] = self.never_keyed.get(identity, 0) + 1
        if phase is not Phase.AFTER:
            return
        if unknown is not None and kind is FailureKind.UNKNOWN_KID:
            self.unknown_reasons[unknown[2]] = self.unknown_reasons.get(unknown[2], 0) + 1
        if len(self.key_failures) < MAX_DETAILED_FAILURES:
            kid_epoch, kid_sender, reason = unknown if unknown is not None else (None, None, "")
            self.key_failures.append(FailureRecord(identity, remote(), kind, at, newest_epoch,
                                                   kid_epoch, kid_sender, reason))

    def _count(self, identity: str, kind: FailureKind, phase: Phase, index: int, count: int) -> None:
        if self.forwarding:
            key = (identity, kind, phase, index)
            self._pending[key] = self._pending.get(key, 0) + count
            return
        counts = self.failure_counts.setdefault(identity, {k: [0, 0, 0] for k in FailureKind})
        counts[kind][phase] += count
        if phase is Phase.STARTUP:
            self.startup_bins[index] = self.startup_bins.get(index, 0) + count
        elif phase is Phase.LATE:
            self.late_bins[index] = self.late_bins.get(index, 0) + count
        else:
            bins = self.failure_bins.setdefault(index, {k: 0 for k in FailureKind})
            bins[kind] += count

    def drain(self) -> LedgerBatch:
        """What a forwarding ledger recorded since the last drain, which it
        then forgets (a worker process's, for the run's ledger: :meth:`merge`)."""
        batch = LedgerBatch(self.epochs, self.commits, self.switches, self.reconnects,
                            self.key_failures, self.unknown_reasons, self._pending,
                            self.never_keyed, self.first_frames, self.held_opened)
        self.epochs, self.commits, self.switches, self.reconnects = [], [], [], []
        self.key_failures, self.unknown_reasons, self._pending = [], {}, {}
        self.never_keyed, self.first_frames, self.held_opened = {}, [], {}
        return batch

    def merge(self, batch: LedgerBatch) -> None:
        """Add a worker's :class:`LedgerBatch` (same clock: ``origin`` is shared)."""
        self.epochs.extend(batch.epochs)
        self.commits.extend(batch.commits)
        self.switches.extend(batch.switches)
        self.reconnects.extend(batch.reconnects)
        room = MAX_DETAILED_FAILURES - len(self.key_failures)
        self.key_failures.extend(batch.key_failures[:max(room, 0)])
        for reason, count in batch.unknown_reasons.items():
            self.unknown_reasons[reason] = self.unknown_reasons.get(reason, 0) + count
        for (identity, kind, phase, index), count in batch.failures.items():
            self._count(identity, kind, phase, index, count)
        for totals, more in ((self.never_keyed, batch.never_keyed), (self.held_opened, batch.held_opened)):
            for identity, count in more.items():
                totals[identity] = totals.get(identity, 0) + count
        self.first_frames.extend(batch.first_frames)


@dataclass(frozen=True)
class LedgerBatch:
    """A worker ledger's records since its last drain (picklable)."""

    epochs: list[EpochRecord]
    commits: list[CommitRecord]
    switches: list[tuple[str, int, float]]
    reconnects: list[tuple[str, float]]
    key_failures: list[FailureRecord]
    unknown_reasons: dict[str, int]
    #: (identity, kind, phase, bin index) -> failed frames
    failures: dict[tuple[str, FailureKind, Phase, int], int]
    never_keyed: dict[str, int]
    first_frames: list[tuple[str, str, float]]
    held_opened: dict[str, int]


@dataclass(frozen=True)
class PeerView:
    """What the run's driver needs of a live peer (picklable, so a worker
    process can send it)."""

    identity: str
    #: the MLS epoch it is at, None outside the group
    epoch: int | None
    #: group members: room identity -> leaf index
    members: dict[str, int]
    sending_epoch: int | None
    frames_decrypted: int
    crashed: bool
    #: ledger time of the crash
    crashed_at: float | None


@dataclass(frozen=True)
class PeerTotals:
    """A peer's figures for the report (at its end, or now)."""

    frames_sent: int
    frames_received: int
    frames_decrypted: int
    frames_decoded: int | None
    conflicts: int
    epoch: int | None
    #: video frames missing between decoded counters, and unreadable ones
    video_missing: int = 0
    video_unreadable: int = 0


@dataclass(frozen=True)
class PeerTraffic:
    """A peer's media counters at one moment (picklable): differences of two
    snapshots give its rates over the time between them."""

    identity: str
    #: ledger time of the snapshot
    at: float
    #: video frames its source produced (what it had to send, at 30 frames/s)
    video_produced: int
    #: remote identity -> video frames decoded from it
    video_decoded: dict[str, int]
    #: bytes sent on its RTP transports (DTLS/SRTP datagrams: media and RTCP)
    bytes_sent: int
    #: frames its SFrame senders encrypted (every copy, on every connection)
    frames_encrypted: int
    #: "mesh" or "sfu" (its media through the SFU)
    topology: str
    #: video keyframes its SFrame senders encrypted (each answers a keyframe
    #: request: a receiver that lost a packet, or a new subscriber)
    keyframes_encrypted: int = 0


class CountingVideoTrack(CounterVideoTrack):
    """The test pattern with its counter, counting the frames it produced."""

    def __init__(self, width: int = 96, height: int = 64) -> None:
        super().__init__(width, height)
        self.produced = 0

    def make_frame(self, index: int) -> VideoFrame:
        self.produced += 1
        return super().make_frame(index)


def counting_sources() -> MediaSources:
    """:meth:`MediaSources.synthetic` whose video counts the frames it produced."""
    return MediaSources(ToneAudioTrack(), CountingVideoTrack())


async def bytes_sent(connection: RTCPeerConnection) -> int:
    """Bytes sent on the transports of ``connection`` (its ``transport`` stats)."""
    report = await connection.getStats()
    return sum(stats.bytesSent for stats in report.values() if isinstance(stats, RTCTransportStats))


def fingerprint(authenticator: bytes) -> str:
    """A short public digest of an epoch_authenticator, for comparison only."""
    return hashlib.sha256(authenticator).digest()[:8].hex()


class ObservedReceiverTransform(SFrameReceiverTransform):
    """A receiver transform that reports each failure with its :class:`Phase`
    (before its first decrypted frame, after it, or after it but late), its
    first decrypted frame, and the held frames it opened."""

    def __init__(self, receiver: RTCRtpReceiver, session: ObservedSession,
                 keys: FrameKeys | None = None) -> None:
        """``keys``: the session's keys seen through a wrapper (an SFU
        receiver's :class:`media.sfu.AttributingKeys`), default the session."""
        self.opened = False
        self._session = session
        #: who sent its frames, by their KID (SFU receivers; None on a mesh link)
        self.attribution = keys.attribution if isinstance(keys, AttributingKeys) else None
        super().__init__(receiver, session if keys is None else keys,
                         pli_interval=session.pli_interval, hold=session.hold)

    def handle(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> bool:
        if super().handle(codec, frame):
            if not self.opened:
                self._first_frame()
            return True
        return False

    def key_installed(self) -> None:
        opened = self.stats().frames_held_opened
        super().key_installed()
        released = self.stats().frames_held_opened - opened
        if released:
            self._session.report_held_opened(self, released)
            if not self.opened:
                self._first_frame()

    def _first_frame(self) -> None:
        self.opened = True
        self._session.report_first_frame(self)

    def _fail(self, kind: FailureKind, count: int = 1) -> None:
        super()._fail(kind, count)
        phase = Phase.STARTUP if not self.opened else Phase.AFTER
        if phase is Phase.AFTER and kind is FailureKind.UNKNOWN_KID and self._epoch is not None \
                and self._session.evicted(self._epoch):
            phase = Phase.LATE
        for _ in range(count):
            self._session.report_failure(self, kind, phase)


class ObservedSession(SFrameSession):
    """An SFrame session that reports sender switches and receiver failures."""

    def __init__(self, on_switch: Callable[[int], None],
                 on_failure: Callable[[ObservedReceiverTransform, FailureKind, Phase], None],
                 key_manager: MLSKeyManager, *,
                 on_first_frame: Callable[[ObservedReceiverTransform], None] = lambda transform: None,
                 on_held_opened: Callable[[ObservedReceiverTransform, int], None] = (
                     lambda transform, count: None),
                 hold: HoldLimits | None = HoldLimits()) -> None:
        super().__init__(key_manager, hold=hold)
        self._on_switch = on_switch
        self.report_failure = on_failure
        self.report_first_frame = on_first_frame
        self.report_held_opened = on_held_opened
        #: (KID epoch bits, KID sender index, reason) of the last unknown KID
        self.last_unknown: tuple[int, int, str] | None = None

    def unprotect(self, ciphertext: bytes, metadata: bytes) -> MLSUnprotectResult:
        try:
            return super().unprotect(ciphertext, metadata)
        except UnknownKID as exc:
            bits = self._km.epoch_bits
            reason = KEY_PENDING_REASON if isinstance(exc, KeyPending) else str(exc).partition(": ")[2]
            self.last_unknown = (exc.kid & ((1 << bits) - 1), exc.kid >> bits, reason)
            raise

    def evicted(self, last_epoch: int) -> bool:
        """Whether the last unknown KID named an epoch this member had
        installed and already evicted, given the newest epoch ``last_epoch``
        decrypted on that frame's receiver.  One sender's frames arrive in
        order, so the KID's epoch (known modulo 2^E, RFC 9605 §5.2) is the
        first at or after ``last_epoch`` with those bits: older than every
        retained epoch means evicted (the frame came late), newer than the
        newest means not yet installed (a key problem)."""
        if self.last_unknown is None:
            return False
        with self._lock:
            modulus = 1 << self._km.epoch_bits
            retained = self._km.epochs
        epoch = last_epoch + (self.last_unknown[0] - last_epoch) % modulus
        return bool(retained) and epoch < min(retained)

    def install_epoch(self, exporter: MLSExporter, epoch: int, own_index: int, group_size: int,
                      *, switch_after: float | None = None) -> None:
        before = self.sending_epoch  # the first epoch is used for sending at once
        super().install_epoch(exporter, epoch, own_index, group_size, switch_after=switch_after)
        self._switched_from(before)

    def switch_sender(self, epoch: int | None = None) -> None:
        before = self.sending_epoch
        super().switch_sender(epoch)
        self._switched_from(before)

    def _switched_from(self, before: int | None) -> None:
        after = self.sending_epoch
        if after is not None and after != before:
            self._on_switch(after)

    @property
    def pli_interval(self) -> float:
        return self._pli_interval

    def protect_receiver(self, receiver: RTCRtpReceiver, *,
                         keys: FrameKeys | None = None) -> SFrameReceiverTransform:
        return self._track(ObservedReceiverTransform(receiver, self, keys))


class ObservedPeer(CallPeer):
    """A call peer reporting to a :class:`Ledger` (see the module docstring)."""

    def __init__(self, ledger: Ledger, *args: Any, name: str = "",
                 hold: HoldLimits | None = HoldLimits(), **kwargs: Any) -> None:
        """``hold``: how receivers hold frames of an epoch not installed yet
        (None: not at all, as before RFC 9605 §4.4.4 buffering)."""
        super().__init__(*args, **kwargs)
        self.ledger = ledger
        #: the identity its token names (``identity`` is known once connected)
        self.name = name
        self.session = ObservedSession(self._switched, self._failed, self.options.key_manager(),
                                       on_first_frame=self._first_frame,
                                       on_held_opened=self._held_opened, hold=hold)
        #: remotes a receiver of this member decrypted a frame from
        self._first_from: set[str] = set()
        self.crashed = False
        self.leaving = False
        #: ledger time of the crash
        self.crashed_at: float | None = None
        self._crash_on_commit = False
        #: request number -> (epoch, ledger time) of our commits awaiting their answer
        self._submitted: dict[int, tuple[int, float]] = {}
        self.membership.observer = self._observe

    def view(self) -> PeerView:
        return PeerView(self.identity or self.name, None if self.group is None else self.group.epoch,
                        self.member_identities(), self.session.sending_epoch,
                        sum(peer.frames_decrypted for peer in self.link_stats()),
                        self.crashed, self.crashed_at)

    def totals(self) -> PeerTotals:
        status = self.status()
        missing = unreadable = 0
        for sink in self.sinks:
            if isinstance(sink, VerifyingSink):
                for _, report in sink.all_reports():
                    if report.kind == "video":
                        missing += report.missing
                        unreadable += report.unreadable
        return PeerTotals(status.frames_sent, status.frames_received, status.frames_decrypted,
                          status.frames_decoded, status.conflicts, status.epoch, missing, unreadable)

    def connections(self) -> list[RTCPeerConnection]:
        """Every RTCPeerConnection this peer holds now."""
        sfu = [] if self.sfu is None else self.sfu.connections()
        return [link.pc for link in self.links.values()] + sfu

    async def traffic(self) -> PeerTraffic:
        """Its media counters now (:class:`PeerTraffic`)."""
        video = self.sources.video
        produced = video.produced if isinstance(video, CountingVideoTrack) else 0
        decoded: dict[str, int] = {}
        for sink in self.sinks:
            if isinstance(sink, VerifyingSink):
                for remote, report in sink.all_reports():
                    if report.kind == "video":
                        decoded[remote] = decoded.get(remote, 0) + report.frames
        sent = sum([await bytes_sent(connection) for connection in self.connections()])
        stats = self.link_stats()
        return PeerTraffic(self.identity or self.name, self.ledger.now(), produced, decoded, sent,
                           sum(peer.frames_encrypted for peer in stats),
                           "mesh" if self.sfu is None else "sfu",
                           sum(sender.keyframes_encrypted for peer in stats for sender in peer.senders))

    async def end(self, how: str, timeout: float) -> PeerTotals:
        """Crash (``how == "crash"``) or stop, within ``timeout`` seconds; the totals.
        Frames that fail to decrypt from now on are not counted: this member
        left the call (and is removed from the group) while they still arrive."""
        self.leaving = True
        try:
            await asyncio.wait_for(self.crash() if how == "crash" else self.stop(), timeout)
        except TimeoutError:
            logger.warning("%s did not stop within %g s", self.identity, timeout)
        return self.totals()

    def _switched(self, epoch: int) -> None:
        self.ledger.switches.append((self.identity, epoch, self.ledger.now()))

    def _remote_of(self, transform: ObservedReceiverTransform) -> str:
        if transform.attribution is not None:  # through the SFU: the member of its KID
            return transform.attribution.first or "?"
        for name, link in self.links.items():
            if transform in link.protection.receivers:
                return name
        return "?"

    def _first_frame(self, transform: ObservedReceiverTransform) -> None:
        remote = self._remote_of(transform)
        if remote not in self._first_from:
            self._first_from.add(remote)
            self.ledger.first_frames.append((self.identity, remote, self.ledger.now()))

    def _held_opened(self, transform: ObservedReceiverTransform, count: int) -> None:
        self.ledger.held_opened[self.identity] = self.ledger.held_opened.get(self.identity, 0) + count

    def _failed(self, transform: ObservedReceiverTransform, kind: FailureKind, phase: Phase) -> None:
        if self.leaving or self.crashed:
            return
        def remote() -> str:
            return self._remote_of(transform)
        session = self.session
        assert isinstance(session, ObservedSession)
        self.ledger.failure(self.identity, kind, phase, remote, session.newest_epoch,
                            session.last_unknown)

    # -- what CallPeer does, recorded ----------------------------------------------

    def _observe(self, item: mm.Event | mm.Action) -> None:
        """The membership machine's events and actions (its observer hook), recorded."""
        if isinstance(item, mm.InstallEpoch):
            self.ledger.epochs.append(EpochRecord(
                self.identity, item.epoch, item.cause, self.ledger.now(), item.members,
                fingerprint(item.exporter.epoch_authenticator())))
        elif isinstance(item, mm.SubmitCommit):
            self._submitted[item.request] = (item.epoch, self.ledger.now())
        elif isinstance(item, (mm.RequestAccepted, mm.RequestRefused, mm.RequestUnanswered)):
            submitted = self._submitted.pop(item.request, None)
            if submitted is not None:
                self.ledger.commits.append(CommitRecord(self.identity, submitted[0], submitted[1],
                                                        self.ledger.now(),
                                                        isinstance(item, mm.RequestAccepted)))
        elif isinstance(item, mm.Reconnected):
            self.ledger.reconnects.append((self.identity, self.ledger.now()))

    async def perform(self, action: mm.Action) -> mm.Event | None:
        if self._crash_on_commit and isinstance(action, mm.SubmitCommit):
            await self._submit_and_crash(action)
        return await super().perform(action)

    async def rejoin(self, timeout: float) -> dict[str, Any] | None:
        if self.crashed:
            return None
        return await super().rejoin(timeout)

    # -- crashing ------------------------------------------------------------------

    def crash_after_next_commit(self) -> None:
        """Die right after submitting the next commit (a self-update is asked
        for, so there is one soon)."""
        self._crash_on_commit = True
        self.request_self_update()

    async def _submit_and_crash(self, action: mm.SubmitCommit) -> None:
        welcomes = {w.to: w.welcome for w in action.welcomes}
        sent = asyncio.ensure_future(self.client.commit(action.group_id, action.epoch, action.commit,
                                                        welcomes=welcomes))
        sent.add_done_callback(lambda task: task.cancelled() or task.exception())
        await asyncio.sleep(0.01)  # the frame is written; the answer is never read
        logger.info("%s: crashing right after submitting a commit for epoch %d", self.identity,
                    action.epoch)
        asyncio.ensure_future(self.crash())
        await asyncio.Future()  # handle nothing more: the crash cancels this task

    async def crash(self) -> None:
        """End abruptly: no ``leave``; the server sees the connection drop and
        the others lose the media links (as when the process is killed)."""
        if self.crashed:
            return
        self.crashed = True
        self.crashed_at = self.ledger.now()
        with contextlib.suppress(Exception):
            await self.client.close()
        await self.stop()
