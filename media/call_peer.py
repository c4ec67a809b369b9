"""A call peer: MLS group membership through the delivery service, an
SFrame-protected WebRTC mesh, and the key schedule between them.

A :class:`CallPeer` joins a room of the signaling server
(docs/protocol.md) and drives two parts:

* **Membership** (RFC 9420): :class:`media.membership.Membership`, the
  sans-I/O state machine that holds the call's rules (docs/membership.md):
  who creates the room's group (the smallest identity present in a room
  without one, registered with the delivery service by its GroupInfo), who
  commits (the present member with the lowest leaf index), whom to add (in
  one commit, ``add_many``) or remove, conflicts and retries, echoes of our
  own commits, reconnects, self-updates, the ``admit`` policy, abandoned
  rooms, and what members check themselves (a member is a leaf, Welcomes
  only for the room's group, MLS-authenticated chat senders, signature
  keys remembered per identity).  CallPeer feeds it the signaling client's
  events and timer ticks, and carries out its actions: signaling requests
  (whose answers it feeds back), SFrame epoch installs and sender switches,
  trust warnings.
* **Mesh**.  One RTCPeerConnection (:class:`media.mesh.PeerLink`) per other
  participant present, the lexicographically smaller identity offering.
  Links follow presence, not membership, but media flows on a link only
  once its remote is a member, under an epoch it has (from the one its
  Welcome starts): a participant not admitted, not yet added, or removed
  gets no frame, and a joiner's first frame from each member is a keyframe
  it can open.  The remote tracks of a participant whose signature key
  changed (a ``key_changed`` trust warning) reach the sinks only once the
  key is accepted
  (:meth:`CallPeer.accept_key`, or ``CallOptions.accept_key``).
* **SFU** (issue 16).  When the join reply or a ``topology`` event says the
  room goes through an SFU, the mesh links close and
  :class:`media.sfu.SfuLinks` carries the media instead: one publishing and
  one subscribing connection negotiated with the server (``sfu.publish``,
  ``sfu.subscribe`` on each ``sfu.feeds``, ``sfu.start``).  Remote tracks go
  to the sinks under the member of their frames' SFrame KID, never the
  server's word; a relabelled stream is a :class:`media.sfu.StreamRelabelled`
  in :attr:`CallPeer.relabelled`.  ``sfu.down`` marks the links interrupted,
  ``sfu.up`` (or a reconnection) republishes and resubscribes; MLS is
  untouched.
* **Keys** (RFC 9605 §5.2).  Every epoch change goes to one
  :class:`media.session.SFrameSession`: receivers use a new epoch at once;
  this peer's senders move to it ``confirm_delay`` seconds after the
  delivery service acknowledged our own commit, ``switch_delay`` seconds
  after another member's commit, at once after creating or joining.

**Reconnection** (with ``reconnect_timeout``): when the signaling connection
drops the peer rejoins, catching up on the room log after the last ``seq``
it received; given several server addresses (instances sharing one store,
docs/deployment.md) it tries the next one in turn.  Media keeps flowing
meanwhile (the mesh is peer to peer), and links with participants still
reconnecting are kept.  Back, it offers afresh on the links it offers: the
others may have replaced theirs when they saw it come back.

Everything MLS runs in one task, one event at a time, so group state is
never touched concurrently; WebRTC negotiation runs in each link's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCIceServer
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from mls import MLS, GroupView
from mls.errors import MLSError
from sframe import KeyManagementError, MLSKeyManager
from signaling import protocol as signaling_protocol
from signaling.client import SignalingClient
from signaling.errors import ErrorCode, SignalingError

from . import membership as mm
from .mesh import MediaSources, PeerLink
from .session import SFrameSession
from .sfu import SfuLinks, StreamRelabelled
from .sinks import Sink
from .stats import FailureKind, PeerStats
from .verification import verification_code

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallOptions:
    """How a :class:`CallPeer` behaves."""

    #: gather and accept 127.0.0.1 ICE candidates only (local calls)
    loopback: bool = True
    #: STUN/TURN servers (in loopback mode only those on a loopback address); when
    #: empty, those of the signaling server's join reply (``ice_servers``)
    ice_servers: tuple[RTCIceServer, ...] = ()
    #: use TURN relay candidates only (ICE transport policy "relay"; tests of a TURN server)
    relay_only: bool = False
    #: sender transition after our own commit is confirmed (seconds)
    confirm_delay: float = 0.2
    #: sender transition after another member's commit (seconds)
    switch_delay: float = 0.3
    #: SFrame KID epoch bits E (RFC 9605 §5.2), the same for every member of
    #: the call (web/app/call.js uses the same value): 8 rather than the key
    #: manager's default 4, so that a frame held back 16 epochs (aiortc's
    #: jitter buffer can stall that long under load) is not read under a newer
    #: epoch's key, where it would fail as a forgery
    sframe_epoch_bits: int = 8
    #: past SFrame epochs a receiver keeps: under churn several epochs can pass
    #: within one sender transition, so more than the key manager's default 4
    sframe_retain_epochs: int = 8
    #: commit an UpdatePath this often (seconds), None for never
    self_update_interval: float | None = None
    #: while waiting to be added, publish a fresh KeyPackage this often
    #: (seconds; the committer uses the newest one, see ``_claim``)
    key_package_interval: float = 1.0
    #: how often pending membership work is retried (seconds)
    retry_interval: float = 0.25
    #: which participants may be in the group (default: everyone present)
    admit: Callable[[str], bool] | None = None
    #: whether to accept at once another signature key for a known identity
    #: (a ``key_changed`` trust warning); None: not until :meth:`CallPeer.accept_key`
    accept_key: Callable[[str], bool] | None = None
    #: bound of each signaling request (seconds)
    request_timeout: float = 10.0
    #: encode and decode in aiortc's threads (an executor, one decoder per
    #: track) rather than on the event loop: worth it for large pictures on a
    #: machine with idle cores; for small ones the hand-offs cost more CPU
    #: than the codecs, and the loop waits for the GIL they hold
    codec_threads: bool = False

    #: after the signaling connection drops (not replaced by a newer one),
    #: keep trying to rejoin for this long (seconds); None ends the call
    reconnect_timeout: float | None = None
    #: still waiting to be added after this long (seconds), rejoin as a newcomer
    #: (docs/membership.md, "Waiting too long"; only with ``reconnect_timeout``)
    rejoin_after: float | None = 30.0

    def key_manager(self) -> MLSKeyManager:
        """A fresh SFrame key manager with this call's KID layout and retention."""
        return MLSKeyManager(epoch_bits=self.sframe_epoch_bits, retain_epochs=self.sframe_retain_epochs)

    def membership(self) -> mm.MembershipConfig:
        """The membership machine's part of these options."""
        return mm.MembershipConfig(
            confirm_delay=self.confirm_delay, switch_delay=self.switch_delay,
            key_package_interval=self.key_package_interval,
            self_update_interval=self.self_update_interval,
            reconnect_grace=self.reconnect_timeout or 0.0, admit=self.admit,
            rejoin_after=self.rejoin_after)


def ice_servers_from_reply(reply: dict[str, Any]) -> list[RTCIceServer]:
    """The STUN/TURN servers of a join reply's ``ice_servers`` (docs/protocol.md);
    a malformed entry is left out."""
    entries = reply.get("ice_servers")
    servers = []
    for entry in entries if isinstance(entries, list) else ():
        fields = entry if isinstance(entry, dict) else {}
        urls, username, credential = fields.get("urls"), fields.get("username"), fields.get("credential")
        if isinstance(urls, str):
            urls = [urls]
        if (not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls)
                or not isinstance(username, (str, type(None)))
                or not isinstance(credential, (str, type(None)))):
            logger.warning("ignoring a malformed ice_servers entry in the join reply")
            continue
        servers.append(RTCIceServer(urls=urls, username=username, credential=credential))
    return servers


@dataclass(frozen=True)
class EpochChange:
    """One epoch this peer installed."""

    epoch: int
    members: int
    #: "create", "welcome", "own" (our confirmed commit) or "commit"
    cause: str
    at: float


@dataclass(frozen=True)
class CallStatus:
    """A snapshot of one peer's call."""

    identity: str
    present: tuple[str, ...]
    members: tuple[str, ...]
    epoch: int | None
    sending_epoch: int | None
    frames_sent: int
    frames_received: int
    frames_decrypted: int
    frames_decoded: int | None
    failures: dict[FailureKind, int]
    epochs: tuple[EpochChange, ...]
    removed: bool
    #: our commits refused because another commit won the epoch
    conflicts: int
    #: the epoch's code to compare with other members (media.verification)
    verification: str | None = None
    #: trust warnings so far (media.membership.TrustWarning)
    warnings: tuple[mm.TrustWarning, ...] = ()
    #: "mesh" or "sfu"
    topology: str = "mesh"
    #: SFU streams that carried another member's frames (media.sfu.StreamRelabelled)
    relabelled: tuple[StreamRelabelled, ...] = ()

    @property
    def failures_total(self) -> int:
        return sum(self.failures.values())

    def line(self) -> str:
        """One status line for a terminal."""
        epoch = "-" if self.epoch is None else str(self.epoch)
        decoded = "" if self.frames_decoded is None else f" decoded {self.frames_decoded}"
        failures = ", ".join(f"{k.value} {v}" for k, v in self.failures.items() if v) or "none"
        return (f"{self.identity}: {len(self.present) + 1} in room, {len(self.members)} in group, "
                f"epoch {epoch} | frames sent {self.frames_sent} received {self.frames_received} "
                f"decrypted {self.frames_decrypted}{decoded} | failures {failures}"
                f" | code {self.verification or '-'}")




class CallPeer:
    """One participant of an MLS-keyed, SFrame-encrypted mesh call."""

    def __init__(
        self,
        ws_url: str | Sequence[str],
        room: str,
        token: str,
        *,
        sources: MediaSources | None = None,
        sinks: Sequence[Sink] = (),
        options: CallOptions | None = None,
        mls: MLS | None = None,
    ) -> None:
        self.options = options or CallOptions()
        self.client = SignalingClient(ws_url, room, token)
        self.sources = sources if sources is not None else MediaSources.synthetic()
        self.sinks = list(sinks)
        self.mls = mls or MLS()
        #: the membership rules (docs/membership.md); its ``observer`` sees every event and action
        self.membership = mm.Membership(self.mls, self.options.membership())
        self.session = SFrameSession(self.options.key_manager(), codec_threads=self.options.codec_threads)
        self.identity = ""
        self.links: dict[str, PeerLink] = {}
        self.epochs: list[EpochChange] = []
        self.warnings: list[mm.TrustWarning] = []
        #: chat messages received, each with its MLS-authenticated sender
        self.chat: list[mm.ChatReceived] = []
        #: set when the call ended on its own (connection lost, replaced)
        self.ended = asyncio.Event()
        self._closed_stats: list[PeerStats] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        #: the epoch installed by the last InstallEpoch, waiting for its SwitchSendingKey
        self._installing: mm.InstallEpoch | None = None
        #: remote tracks held back from the sinks while their sender is not trusted
        self._held_tracks: dict[str, list[MediaStreamTrack]] = {}
        #: per linked member: (group id, the first epoch its link saw it a member in)
        self._member_since: dict[str, tuple[bytes, int]] = {}
        #: with several sinks, each gets its own copy of every remote track
        self._relay = MediaRelay() if len(self.sinks) > 1 else None
        #: the media links of an SFU room (None in a mesh room)
        self.sfu: SfuLinks | None = None
        #: SFU streams whose frames carried another member's KID
        self.relabelled: list[StreamRelabelled] = []
        #: per installed epoch still kept by the SFrame keys: leaf index -> member shown
        self._leaf_identities: dict[int, dict[int, str]] = {}

    def __repr__(self) -> str:
        return f"CallPeer({self.identity or '?'!r}, room={self.client.room!r}, epoch={self.membership.epoch})"

    @property
    def group(self) -> GroupView | None:
        """The MLS group (None while not a member)."""
        return self.membership.group

    @property
    def present(self) -> set[str]:
        return self.membership.present

    @property
    def removed(self) -> bool:
        return self.membership.removed

    @property
    def conflicts(self) -> int:
        """Our commits refused because another one won the epoch."""
        return self.membership.conflicts

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Join the room, publish KeyPackages, create the group if first."""
        reply = await self.client.connect()
        self.identity = reply["identity"]
        await self._feed(mm.RoomJoined(self.identity, tuple(reply.get("members", ())), reply.get("group_id"),
                                   reply.get("epoch")))
        if reply.get("group_id") is not None and not self.present:
            logger.warning("%s: the room's group has no member present to add us; waiting",
                           self.identity)
        if reply.get("topology") == "sfu":
            await self._enter_sfu()
        for remote in sorted(self.present) if self.sfu is None else ():
            self._open_link(remote)
        self._tasks = [
            asyncio.ensure_future(self._pump()),
            asyncio.ensure_future(self._run()),
            asyncio.ensure_future(self._ticker(self.options.retry_interval)),
        ]

    async def stop(self) -> None:
        """Leave the room and release every connection, sink and source (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        # cancel until done: a cancellation arriving while a task awaits a link's or
        # a sink's own cancelled task (close, detach) can be absorbed there
        while pending := {task for task in self._tasks if not task.done()}:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if not task.cancelled():
                task.result()  # what a task raised, if it ended by itself
        if self.client.connected:
            with contextlib.suppress(SignalingError, asyncio.TimeoutError):
                async with asyncio.timeout(self.options.request_timeout):
                    await self.client.leave()
        await self.client.close()
        for remote in list(self.links):
            await self._close_link(remote)
        if self.sfu is not None:
            await self.sfu.close()
        for sink in self.sinks:
            await sink.close()
        self.sources.stop()
        self.session.close()

    async def __aenter__(self) -> CallPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reconcile_soon(self) -> None:
        """Re-check membership now (e.g. after the ``admit`` policy changed)."""
        self._inbox.put_nowait({"type": "tick"})

    def request_self_update(self) -> None:
        """Commit a fresh UpdatePath (RFC 9420 §12.4) as soon as possible,
        retrying after conflicts until one is accepted."""
        self._inbox.put_nowait({"type": "self_update"})

    def accept_key(self, identity: str) -> None:
        """Accept the changed signature key of ``identity``: its media is shown again."""
        self._inbox.put_nowait({"type": "accept_key", "identity": identity})

    def send_chat(self, text: str) -> None:
        """Send a chat message to the group (an MLS application message, RFC 9420 §6.3)."""
        self._inbox.put_nowait({"type": "chat", "text": text})

    # -- status ------------------------------------------------------------------

    def member_identities(self) -> dict[str, int]:
        """Room identity -> leaf index of every member shown (empty if none): flagged
        leaves (a second leaf of an identity, an identity never present) are left out."""
        return self.membership.members()

    def link_stats(self) -> list[PeerStats]:
        """SFrame stats of every link (the SFU's connections too), closed ones included."""
        sfu = [] if self.sfu is None else self.sfu.stats()
        return self._closed_stats + [link.stats() for link in self.links.values()] + sfu

    def status(self) -> CallStatus:
        stats = self.link_stats()
        failures = {kind: 0 for kind in FailureKind}
        for peer in stats:
            for kind, count in peer.failures.items():
                failures[kind] += count
        decrypted = sum(peer.frames_decrypted for peer in stats)
        decoded = [getattr(sink, "total_frames", None) for sink in self.sinks]
        counted = [d for d in decoded if isinstance(d, int)]
        group = self.group
        return CallStatus(
            identity=self.identity,
            present=tuple(sorted(self.present)),
            members=tuple(sorted(self.member_identities())),
            epoch=None if group is None else group.epoch,
            sending_epoch=self.session.sending_epoch,
            frames_sent=sum(peer.frames_encrypted for peer in stats),
            frames_received=decrypted + sum(failures.values()),
            frames_decrypted=decrypted,
            frames_decoded=counted[0] if counted else None,
            failures=failures,
            epochs=tuple(self.epochs),
            removed=self.removed,
            conflicts=self.conflicts,
            verification=None if group is None else verification_code(group.epoch_authenticator()),
            warnings=tuple(self.warnings),
            topology="mesh" if self.sfu is None else "sfu",
            relabelled=tuple(self.relabelled),
        )

    # -- event loop --------------------------------------------------------------

    async def _pump(self) -> None:
        """Signaling events to the inbox; rejoin after an outage if enabled."""
        while True:
            replaced = False
            async for event in self.client:
                kind = event.get("type")
                replaced = replaced or (kind == "error" and event.get("code") == ErrorCode.REPLACED)
                if kind == "closed" and not replaced and self.options.reconnect_timeout is not None:
                    if self.client.connected:
                        continue  # from an attempt that connected but failed to join
                    break
                self._inbox.put_nowait(event)
            else:
                return
            reply = await self.rejoin(self.options.reconnect_timeout)
            self._inbox.put_nowait({"type": "closed"} if reply is None
                                   else {"type": "reconnected", "reply": reply})
            if reply is None:
                return

    async def rejoin(self, timeout: float) -> dict[str, Any] | None:
        """Rejoin with catch-up after the last ``seq`` (backing off), or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.1
        while loop.time() + delay < deadline:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(self.options.request_timeout):
                    # a member catches up; a participant not (yet) in the group joins as a
                    # newcomer, which the server counts as waiting to be added
                    reply = await self.client.reconnect(catch_up=self.group is not None)
            except (SignalingError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                if isinstance(exc, SignalingError) and exc.code == ErrorCode.LOG_TRUNCATED:
                    # away too long: the log lost what our state needs (docs/protocol.md)
                    logger.warning("%s: the room's log moved on without us; leaving", self.identity)
                    self._inbox.put_nowait({"type": "reconnect_refused", "code": str(exc.code)})
                    return None
                logger.info("%s: reconnection failed: %s", self.identity, type(exc).__name__)
                delay = min(2 * delay, 2.0)
                continue
            logger.info("%s: reconnected, catching up after seq %d", self.identity,
                        self.client.last_seq)
            return reply
        return None

    async def _ticker(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._inbox.put_nowait({"type": "tick"})

    async def _run(self) -> None:
        while True:
            event = await self._inbox.get()
            try:
                await self._handle(event)
            except asyncio.CancelledError:
                raise
            except (MLSError, SignalingError, KeyManagementError, asyncio.TimeoutError) as exc:
                logger.warning("%s: %s while handling %s", self.identity, exc, event.get("type"))

    async def _handle(self, event: dict[str, Any]) -> None:
        """One signaling or timer event: links follow presence here, the rest goes to the machine."""
        kind = event.get("type")
        if kind == "presence":
            await self._on_presence(event["event"], event["identity"], resumed=event.get("resumed") is True,
                                    dropped=event.get("dropped") is True)
        elif kind == "commit":
            await self._feed(mm.CommitDelivered(event.get("seq", 0), event.get("from", ""),
                                                event.get("group_id", b""), event.get("epoch", -1),
                                                event["commit"]))
        elif kind == "proposal":
            await self._feed(mm.ProposalDelivered(event.get("seq", 0), event.get("from", ""),
                                                  event.get("group_id", b""), event.get("epoch", -1),
                                                  event["proposal"]))
        elif kind == "welcome":
            await self._feed(mm.WelcomeDelivered(event.get("seq", 0), event.get("from", ""),
                                                 event.get("group_id", b""), event.get("epoch", -1),
                                                 event["welcome"]))
        elif kind == "application":
            await self._feed(mm.ApplicationDelivered(event.get("seq", 0), event.get("from", ""),
                                                     event.get("epoch", -1), event["ciphertext"]))
        elif kind == signaling_protocol.GROUP_RESET:
            await self._feed(mm.GroupReset())
        elif kind in ("offer", "answer", "candidate"):
            if self.sfu is None:
                await self._on_signal(kind, event["from"], event.get("data"))
        elif kind == "topology":
            if event.get("topology") == "sfu":
                await self._enter_sfu()
        elif kind == "sfu.feeds":
            if self.sfu is not None:
                entries = event.get("feeds")
                self.sfu.want([entry.get("feed") for entry in entries if isinstance(entry, dict)]
                              if isinstance(entries, list) else [])
        elif kind == "sfu.down":
            if self.sfu is not None:
                self.sfu.interrupt()
        elif kind == "sfu.up":
            if self.sfu is not None:
                self.sfu.resume()
        elif kind == "tick":
            if not self.ended.is_set() and self.client.connected:
                await self._feed(mm.Tick(time.monotonic()))
        elif kind == "self_update":
            await self._feed(mm.SelfUpdateWanted())
        elif kind == "accept_key":
            await self._feed(mm.KeyAccepted(event["identity"]))
        elif kind == "chat":
            await self._feed(mm.SendChat(event["text"].encode()))
        elif kind == "reconnected":
            await self._on_reconnected(event["reply"])
        elif kind == "reconnect_refused":
            await self._feed(mm.ReconnectRefused(event["code"]))
        elif kind == "closed" or (kind == "error" and event.get("code") == ErrorCode.REPLACED):
            logger.info("%s: the signaling connection ended (%s)", self.identity, kind)
            self.ended.set()

    async def _feed(self, event: mm.Event) -> None:
        """Give ``event`` to the machine and carry out its actions, feeding answers back."""
        for action in self.membership.handle(event):
            answer = await self.perform(action)
            if answer is not None:
                await self._feed(answer)
        await self._sync_links()

    # -- actions -----------------------------------------------------------------

    async def perform(self, action: mm.Action) -> mm.Event | None:
        """Carry out one action of the membership machine; the answer of a request, if any."""
        if isinstance(action, mm.PublishKeyPackage):
            await self._publish(action.key_package)
        elif isinstance(action, mm.ClaimKeyPackages):
            return await self._claim(action)
        elif isinstance(action, mm.CreateGroup):
            return await self._request(action.request, self.client.create_group(
                action.group_id, action.epoch, action.group_info))
        elif isinstance(action, mm.SubmitCommit):
            welcomes = {w.to: w.welcome for w in action.welcomes}
            return await self._request(action.request, self.client.commit(
                action.group_id, action.epoch, action.commit, welcomes=welcomes))
        elif isinstance(action, mm.InstallEpoch):
            self._installing = action
            self._leaf_identities[action.epoch] = {leaf: identity for identity, leaf
                                                   in self.membership.members().items()}
            for old in sorted(self._leaf_identities)[:-(self.options.sframe_retain_epochs + 1)]:
                del self._leaf_identities[old]
            self.epochs.append(EpochChange(action.epoch, len(action.members), action.cause, time.time()))
            logger.info("%s: epoch %d (%s), %d members", self.identity, action.epoch, action.cause,
                        len(action.members))
        elif isinstance(action, mm.SwitchSendingKey):
            self._install(action)
        elif isinstance(action, mm.MediaTrust):
            await self._release_tracks()
        elif isinstance(action, mm.TrustWarning):
            self._warn(action)
        elif isinstance(action, mm.ChatReceived):
            self.chat.append(action)
        elif isinstance(action, mm.SendApplication):
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.send_application(action.epoch, action.ciphertext)
        elif isinstance(action, mm.GroupLeft):
            logger.info("%s: no longer in the group (%s)", self.identity, action.reason)
        elif isinstance(action, mm.Rejoin):
            await self._rejoin_for(action)
        elif isinstance(action, mm.CallEnded):
            logger.info("%s: the call ended (%s)", self.identity, action.reason)
        return None

    async def _rejoin_for(self, action: mm.Rejoin) -> None:
        """Leave this connection; the outage path rejoins (with catch-up when we hold the
        group, else as a newcomer). Without ``reconnect_timeout`` the call would end: only logged."""
        logger.warning("%s: rejoining the room: %s", self.identity, action.reason)
        if self.options.reconnect_timeout is None or not self.client.connected:
            return
        with contextlib.suppress(SignalingError, asyncio.TimeoutError):
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.leave()

    async def _publish(self, key_package: bytes) -> None:
        """Publish one fresh KeyPackage (RFC 9420 §10) for the committer to claim."""
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.publish_key_packages([key_package])
        except SignalingError as exc:
            if exc.code != ErrorCode.TOO_MANY_KEY_PACKAGES:  # plenty left: fine
                raise

    async def _claim(self, action: mm.ClaimKeyPackages) -> mm.Event:
        """Every KeyPackage the directory has for each identity, oldest first."""
        claimed: list[tuple[str, tuple[bytes, ...]]] = []
        for identity in action.identities:
            packages: list[bytes] = []
            while True:
                try:
                    async with asyncio.timeout(self.options.request_timeout):
                        packages.append(await self.client.claim_key_package(identity))
                except TimeoutError:
                    return mm.RequestUnanswered(action.request)
                except SignalingError as exc:
                    if exc.code == ErrorCode.NOT_FOUND:
                        break
                    if exc.code in (ErrorCode.CLOSED, ErrorCode.CONNECTION_LOST):
                        return mm.RequestUnanswered(action.request)
                    return mm.RequestRefused(action.request, str(exc.code))
            claimed.append((identity, tuple(packages)))
        return mm.KeyPackagesClaimed(action.request, tuple(claimed))

    async def _request(self, number: int, request: Any) -> mm.Event:
        """Await one request; its outcome as the machine's answer event."""
        try:
            async with asyncio.timeout(self.options.request_timeout):
                reply = await request
        except TimeoutError:
            logger.warning("%s: no answer to request %d; waiting for the log", self.identity, number)
            return mm.RequestUnanswered(number)
        except SignalingError as exc:
            if exc.code in (ErrorCode.CLOSED, ErrorCode.CONNECTION_LOST):  # outcome unknown
                return mm.RequestUnanswered(number)
            if exc.code not in (ErrorCode.CONFLICT, ErrorCode.WRONG_GROUP):
                logger.warning("%s: request %d refused: %s", self.identity, number, exc)
            epoch = exc.details.get("epoch")
            return mm.RequestRefused(number, str(exc.code), epoch if isinstance(epoch, int) else None)
        epoch = reply.get("epoch")
        return mm.RequestAccepted(number, epoch if isinstance(epoch, int) else None)

    def _install(self, switch: mm.SwitchSendingKey) -> None:
        """Give the epoch to the SFrame keys (RFC 9605 §5.2): receive now, send after the delay."""
        install, self._installing = self._installing, None
        if install is None or install.epoch != switch.epoch:
            return
        delay = switch.after if switch.after > 0 else None
        self.session.install_epoch(install.exporter, install.epoch, install.own_index, install.leaf_count,
                                   switch_after=delay)
        if delay is None and self.session.sending_epoch != install.epoch:
            self.session.switch_sender(install.epoch)

    def _warn(self, warning: mm.TrustWarning) -> None:
        self.warnings.append(warning)
        logger.warning("%s: trust warning %s about %r (leaf %s) %s", self.identity, warning.kind,
                       warning.identity, warning.leaf_index, warning.detail)
        if warning.kind == "key_changed" and self.options.accept_key is not None \
                and self.options.accept_key(warning.identity):
            self.accept_key(warning.identity)

    # -- presence and mesh -------------------------------------------------------

    async def _on_reconnected(self, reply: dict[str, Any]) -> None:
        """Back after an outage: which group the room carries, who is here, and
        whether our last commit got in."""
        before = set(self.present)
        here = set(reply.get("members", ())) - {self.identity}
        await self._feed(mm.Reconnected(tuple(sorted(here)), reply.get("group_id"), reply.get("epoch"),
                                        time.monotonic()))
        if reply.get("topology") == "sfu" and self.sfu is None:
            await self._enter_sfu()
        elif self.sfu is not None:  # the server let go of our SFU connections with the old one
            self.sfu.resume()
        for remote in sorted(here) if self.sfu is None else ():
            if remote in before and self.identity > remote:
                await self._resume(remote)  # it offers afresh if it replaced our link
            else:
                # it may have replaced our link when it saw us come back (a presence join
                # after our leave, or our connection replaced on another instance): as the
                # offerer, offer afresh (a remote that kept its link takes the offer too)
                await self._replace_link(remote)

    async def _resume(self, remote: str) -> None:
        """``remote`` is back after an outage with its state: keep its link,
        offering afresh if the outage cut the negotiation."""
        link = self.links.get(remote)
        if link is None:
            self._open_link(remote)
        elif not link.negotiated and self.identity < remote:
            await self._close_link(remote)
            self._open_link(remote)

    async def _replace_link(self, remote: str) -> None:
        if remote in self.links:  # a rejoin replaced its old connection
            await self._close_link(remote)
        self._open_link(remote)

    async def _on_presence(self, what: str, remote: str, *, resumed: bool, dropped: bool) -> None:
        if remote == self.identity:
            return
        if what == "join":
            resuming = remote in self.membership.resuming
            await self._feed(mm.PresenceJoined(remote, resumed))
            if self.sfu is not None:
                return
            if resuming:
                await self._resume(remote)
            else:
                await self._replace_link(remote)
        elif what == "leave":
            await self._feed(mm.PresenceLeft(remote, dropped))
            if self.sfu is not None:
                self._held_tracks.pop(remote, None)
                self.sfu.release(remote)
                for sink in self.sinks:
                    await sink.detach(remote)

    async def _enter_sfu(self) -> None:
        """The room goes through the SFU (for good): close the mesh links, publish."""
        if self.sfu is not None:
            return
        for remote in list(self.links):
            await self._close_link(remote)

        def identify(leaf_index: int, epoch: int) -> str | None:
            leaves = self._leaf_identities.get(epoch)
            if leaves is None:  # (not an epoch of ours: the current members)
                leaves = {leaf: identity for identity, leaf in self.membership.members().items()}
            return leaves.get(leaf_index)

        self.sfu = SfuLinks(
            session=self.session, sources=self.sources,
            ready=lambda: self.session.sending_epoch is not None,
            request=self._sfu_request, identify=identify, on_track=self._remote_track,
            on_relabelled=self.relabelled.append, loopback=self.options.loopback,
            ice_servers=list(self.options.ice_servers) or ice_servers_from_reply(self.client.join_reply),
            relay_only=self.options.relay_only)
        self.sfu.start()
        logger.info("%s: media through the SFU", self.identity)

    async def _sfu_request(self, type_: str, **fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(self.options.request_timeout):
            return await self.client.request(type_, **fields)

    def _remote_track(self, remote: str, track: MediaStreamTrack) -> None:
        """A track of ``remote`` (by KID in SFU rooms): to the sinks, or held while its key is not trusted."""
        if self._untrusted(remote):
            self._held_tracks.setdefault(remote, []).append(track)  # shown once the key is accepted
        else:
            self._attach(remote, track)

    async def _sync_links(self) -> None:
        """Links follow presence: close those of participants gone; the others
        send only what their remote can open."""
        for remote in [r for r in self.links if r not in self.present]:
            await self._close_link(remote)
        members = self.membership.members()
        for remote, link in self.links.items():
            self._gate_link(remote, link, members)

    def _gate_link(self, remote: str, link: PeerLink, members: dict[str, int]) -> None:
        """``link`` sends only under epochs ``remote`` has: none while it is no
        member, then from the epoch in which this link first saw it a member
        (its Welcome's, or a later one), so a joiner never gets a frame it
        cannot open."""
        group = self.group
        if group is None or remote not in members:
            self._member_since.pop(remote, None)
            link.protection.remote_keys_from(None)
            return
        since = self._member_since.get(remote)
        if since is None or since[0] != group.group_id:
            since = self._member_since[remote] = (group.group_id, group.epoch)
        link.protection.remote_keys_from(since[1])

    def _untrusted(self, remote: str) -> bool:
        """Whether a leaf of ``remote`` has a changed signature key not accepted yet."""
        return any(leaf.identity == remote and leaf.flag == "key_changed" for leaf in self.membership.leaves())

    async def _release_tracks(self) -> None:
        for remote in [r for r in self._held_tracks if not self._untrusted(r)]:
            for track in self._held_tracks.pop(remote):
                self._attach(remote, track)

    def _attach(self, remote: str, track: MediaStreamTrack) -> None:
        consumers = [track] if self._relay is None else [self._relay.subscribe(track) for _ in self.sinks]
        for sink, consumer in zip(self.sinks, consumers):
            sink.attach(remote, consumer)

    def _open_link(self, remote: str, *, offerer: bool | None = None) -> PeerLink:
        """The link with ``remote``; by default the smaller identity offers."""
        async def signal(kind: str, data: Any) -> None:
            try:
                async with asyncio.timeout(self.options.request_timeout):
                    await self.client.signal(kind, remote, data)
            except SignalingError as exc:
                logger.info("%s: %s to %s not relayed: %s", self.identity, kind, remote, exc.code)

        def on_track(track: MediaStreamTrack) -> None:
            self._remote_track(remote, track)

        link = PeerLink(
            remote,
            offerer=self.identity < remote if offerer is None else offerer,
            session=self.session,
            tracks=self.sources.subscribe(lambda: self.session.sending_epoch is not None),
            signal=signal,
            on_track=on_track,
            loopback=self.options.loopback,
            ice_servers=list(self.options.ice_servers) or ice_servers_from_reply(self.client.join_reply),
            relay_only=self.options.relay_only,
        )
        self.links[remote] = link
        self._gate_link(remote, link, self.membership.members())
        return link

    async def _close_link(self, remote: str) -> None:
        link = self.links.pop(remote, None)
        self._held_tracks.pop(remote, None)
        self._member_since.pop(remote, None)
        if link is None:
            return
        self._closed_stats.append(link.stats())
        await link.close()
        for sink in self.sinks:
            await sink.detach(remote)

    async def _on_signal(self, kind: str, remote: str, data: Any) -> None:
        link = self.links.get(remote)
        if kind == "offer" and (link is None or link.negotiated):
            if link is not None:  # the remote restarted: negotiate afresh
                await self._close_link(remote)
            link = self._open_link(remote, offerer=False)
        if link is not None:
            link.deliver(kind, data)
