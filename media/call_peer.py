"""A call peer: MLS group membership through the delivery service, an
SFrame-protected WebRTC mesh, and the key schedule between them.

A :class:`CallPeer` joins a room of the signaling server
(docs/protocol.md) and then:

* **MLS membership** (RFC 9420).  It either creates the room's group (the
  smallest identity present in a room without one, §11; registered with the
  delivery service by its GroupInfo, §12.4.3, which validates every later
  handshake against it) or publishes KeyPackages (§10), a fresh one every
  ``key_package_interval`` while it waits for a Welcome (§12.4.3.1).  The
  group converges to "every admitted participant present in the room": one
  *committer* at a time, the present member with the lowest leaf index,
  commits Adds for participants not yet in the group (their newest
  KeyPackages; one Welcome for all) and Removes for members who left, or
  who reconnected (a new connection may have lost its MLS state: the old
  leaf goes, the member is added again).  The delivery service accepts one
  commit per epoch (§14): on ``conflict`` the pending commit is discarded,
  the winning commit is processed from the log and the work is retried if
  still needed.  A self-update (an UpdatePath commit, §12.4), periodic or
  on request, gives post-compromise security.
* **Mesh**.  One RTCPeerConnection (:class:`media.mesh.PeerLink`) per other
  participant present, the lexicographically smaller identity offering.
  Links follow presence, not membership: media flows as soon as keys allow,
  and a participant without the group's keys (not admitted, not yet added,
  or removed) receives only frames it cannot decrypt.
* **Keys** (RFC 9605 §5.2).  Every epoch change goes to one
  :class:`media.session.SFrameSession`: ``install_epoch(group view, epoch,
  own leaf index, leaf count)``.  Receivers use a new epoch at once; this
  peer's senders move to it after a transition: ``confirm_delay`` seconds
  after the delivery service acknowledged our own commit, ``switch_delay``
  seconds after processing another member's commit, at once after joining
  from a Welcome.  The delays give the other members time to process the
  commit before frames under the new key reach them.
* **Reconnection** (with ``reconnect_timeout``).  When the signaling
  connection drops (say the server restarts) the peer rejoins, catching up
  on the room log after the last ``seq`` it received.  Media keeps flowing
  meanwhile (the mesh is peer to peer).  Participants present before the
  outage count as still present for ``reconnect_timeout`` while they
  reconnect too: their links and leaves are kept, and a link whose
  negotiation the outage cut is offered again.  A commit of ours left
  without an answer is discarded if the room's epoch shows it was not
  accepted (otherwise the log brings its echo).

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
from mls.inspection import inspect_credential, inspect_key_package
from sframe import KeyManagementError, MLSKeyManager
from signaling import protocol as signaling_protocol
from signaling.client import SignalingClient
from signaling.errors import ErrorCode, SignalingError

from .mesh import MediaSources, PeerLink
from .session import SFrameSession
from .sinks import Sink
from .stats import FailureKind, PeerStats
from .verification import verification_code

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallOptions:
    """How a :class:`CallPeer` behaves."""

    #: gather and accept 127.0.0.1 ICE candidates only (local calls)
    loopback: bool = True
    #: STUN/TURN servers when not in loopback mode
    ice_servers: tuple[RTCIceServer, ...] = ()
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
    #: bound of each signaling request (seconds)
    request_timeout: float = 10.0

    def key_manager(self) -> MLSKeyManager:
        """A fresh SFrame key manager with this call's KID layout and retention."""
        return MLSKeyManager(epoch_bits=self.sframe_epoch_bits, retain_epochs=self.sframe_retain_epochs)
    #: after the signaling connection drops (not replaced by a newer one),
    #: keep trying to rejoin for this long (seconds); None ends the call
    reconnect_timeout: float | None = None


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


def credential_identity(credential: bytes) -> str | None:
    """The room identity a basic credential (RFC 9420 §5.3) carries, or None."""
    try:
        identity = inspect_credential(credential).identity
        return None if identity is None else identity.decode()
    except (MLSError, UnicodeDecodeError):
        return None


def key_package_identity(key_package: bytes) -> str | None:
    """The identity in a KeyPackage's leaf credential (RFC 9420 §10), or None."""
    try:
        credential = inspect_key_package(key_package).credential
    except MLSError:
        return None
    return credential_identity(credential.encoded)


class CallPeer:
    """One participant of an MLS-keyed, SFrame-encrypted mesh call."""

    def __init__(
        self,
        ws_url: str,
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
        self.session = SFrameSession(self.options.key_manager())
        self.identity = ""
        self.group: GroupView | None = None
        self.links: dict[str, PeerLink] = {}
        self.present: set[str] = set()
        self.epochs: list[EpochChange] = []
        self.removed = False
        #: our commits refused because another one won the epoch
        self.conflicts = 0
        self._update_wanted = False
        #: members who reconnected: removed, then added again
        self._stale: set[str] = set()
        #: participants present before our reconnection, not back yet -> deadline
        self._resuming: dict[str, float] = {}
        self._published_at = 0.0
        #: set when the call ended on its own (connection lost, replaced)
        self.ended = asyncio.Event()
        self._client_id = b""
        self._credential = b""
        self._room_group: bytes | None = None
        self._closed_stats: list[PeerStats] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        #: with several sinks, each gets its own copy of every remote track
        self._relay = MediaRelay() if len(self.sinks) > 1 else None

    def __repr__(self) -> str:
        epoch = None if self.group is None else self.group.epoch
        return f"CallPeer({self.identity or '?'!r}, room={self.client.room!r}, epoch={epoch})"

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Join the room, publish KeyPackages, create the group if first."""
        self._client_id = self.mls.generate_identity().content
        reply = await self.client.connect()
        self.identity = reply["identity"]
        self._credential = self.mls.generate_credential(self.identity).content
        self._room_group = reply.get("group_id")
        self.present = set(reply.get("members", ()))
        if self._room_group is None and all(self.identity < other for other in self.present):
            # the smallest identity present creates the group (as after a group_reset): someone
            # already here without a group may be waiting for a creator, or never create one
            await self._create_group()
        else:
            await self._publish_key_package()
        if self._room_group is not None and not self.present:
            logger.warning("%s: the room's group has no member present to add us; waiting",
                           self.identity)
        for remote in sorted(self.present):
            self._open_link(remote)
        self._tasks = [
            asyncio.ensure_future(self._pump()),
            asyncio.ensure_future(self._run()),
            asyncio.ensure_future(self._ticker("tick", self.options.retry_interval)),
        ]
        if self.options.self_update_interval:
            self._tasks.append(asyncio.ensure_future(
                self._ticker("self_update", self.options.self_update_interval)))

    async def stop(self) -> None:
        """Leave the room and release every connection, sink and source (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.client.connected:
            with contextlib.suppress(SignalingError, asyncio.TimeoutError):
                async with asyncio.timeout(self.options.request_timeout):
                    await self.client.leave()
        await self.client.close()
        for remote in list(self.links):
            await self._close_link(remote)
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

    # -- status ------------------------------------------------------------------

    def member_identities(self) -> dict[str, int]:
        """Room identity -> leaf index of every group member (empty if none)."""
        if self.group is None:
            return {}
        members: dict[str, int] = {}
        for member in self.group.details().members:
            identity = credential_identity(member.credential)
            if identity is not None:
                members[identity] = member.leaf_index
        return members

    def link_stats(self) -> list[PeerStats]:
        """SFrame stats of every link, closed ones included."""
        return self._closed_stats + [link.stats() for link in self.links.values()]

    def status(self) -> CallStatus:
        stats = self.link_stats()
        failures = {kind: 0 for kind in FailureKind}
        for peer in stats:
            for kind, count in peer.failures.items():
                failures[kind] += count
        decrypted = sum(peer.frames_decrypted for peer in stats)
        decoded = [getattr(sink, "total_frames", None) for sink in self.sinks]
        counted = [d for d in decoded if isinstance(d, int)]
        return CallStatus(
            identity=self.identity,
            present=tuple(sorted(self.present)),
            members=tuple(sorted(self.member_identities())),
            epoch=None if self.group is None else self.group.epoch,
            sending_epoch=self.session.sending_epoch,
            frames_sent=sum(peer.frames_encrypted for peer in stats),
            frames_received=decrypted + sum(failures.values()),
            frames_decrypted=decrypted,
            frames_decoded=counted[0] if counted else None,
            failures=failures,
            epochs=tuple(self.epochs),
            removed=self.removed,
            conflicts=self.conflicts,
            verification=None if self.group is None else verification_code(self.group.epoch_authenticator()),
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
            reply = await self._reconnect(self.options.reconnect_timeout)
            self._inbox.put_nowait({"type": "closed"} if reply is None
                                   else {"type": "reconnected", "reply": reply})
            if reply is None:
                return

    async def _reconnect(self, timeout: float) -> dict[str, Any] | None:
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
                    return None
                logger.info("%s: reconnection failed: %s", self.identity, type(exc).__name__)
                delay = min(2 * delay, 2.0)
                continue
            logger.info("%s: reconnected, catching up after seq %d", self.identity,
                        self.client.last_seq)
            return reply
        return None

    async def _ticker(self, kind: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._inbox.put_nowait({"type": kind})

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
        kind = event.get("type")
        if kind == "presence":
            await self._on_presence(event["event"], event["identity"])
        elif kind == "commit":
            await self._on_commit(event)
        elif kind == "welcome":
            self._on_welcome(event)
        elif kind == signaling_protocol.GROUP_RESET:
            await self._on_group_reset()
        elif kind in ("offer", "answer", "candidate"):
            await self._on_signal(kind, event["from"], event.get("data"))
        elif kind == "tick":
            await self._maintain()
        elif kind == "self_update":
            self._update_wanted = True
            await self._maintain()
        elif kind == "reconnected":
            await self._on_reconnected(event["reply"])
        elif kind == "closed" or (kind == "error" and event.get("code") == ErrorCode.REPLACED):
            logger.info("%s: the signaling connection ended (%s)", self.identity, kind)
            self.ended.set()

    # -- presence and mesh -------------------------------------------------------

    async def _on_reconnected(self, reply: dict[str, Any]) -> None:
        """Back after an outage: which group the room carries, who is here, and
        whether our last commit got in."""
        room_group = reply.get("group_id")
        if self.group is not None and room_group is not None and room_group != self.group.group_id:
            # the room was started afresh while we were away (docs/protocol.md, abandoned
            # rooms) and carries another group now: wait to be added to that one
            logger.info("%s: the room carries another group now; waiting to be added", self.identity)
            self.group.delete_state()
            self.group = None
            await self._publish_key_package()
        self._room_group = room_group
        here = set(reply.get("members", ()))
        deadline = time.monotonic() + (self.options.reconnect_timeout or 0.0)
        for remote in self.present - here:
            self._resuming[remote] = deadline
        group = self.group
        if group is not None and group.has_pending_commit and reply.get("epoch") == group.epoch:
            group.discard_pending_commit()  # the room is still at its epoch: not accepted
        for remote in sorted(here):
            if remote in self.present:
                await self._resume(remote)
            else:
                await self._on_presence("join", remote)

    async def _resume(self, remote: str) -> None:
        """``remote`` is back after an outage with its state: keep its link,
        offering afresh if the outage cut the negotiation."""
        self._resuming.pop(remote, None)
        link = self.links.get(remote)
        if link is not None and not link.negotiated and self.identity < remote:
            await self._close_link(remote)
            self._open_link(remote)

    async def _on_presence(self, what: str, remote: str) -> None:
        if remote == self.identity:
            return
        if what == "join" and remote in self._resuming:
            await self._resume(remote)
            await self._reconcile()
            return
        if what == "join":
            self.present.add(remote)
            if remote in self.links:  # a rejoin replaced its old connection
                await self._close_link(remote)
            if remote in self.member_identities():
                # a member back with a new connection may have lost its state:
                # its old leaf is removed, then it is added again
                self._stale.add(remote)
            self._open_link(remote)
        elif what == "leave":
            self._resuming.pop(remote, None)
            self.present.discard(remote)
            await self._close_link(remote)
            if self.group is None and self._room_group is None and not self.removed \
                    and all(self.identity < other for other in self.present):
                await self._create_group()  # whoever would have created the group left first
        await self._reconcile()

    async def _on_group_reset(self) -> None:
        """The server dropped the room's group, none of whose members was left to add us
        (docs/protocol.md, abandoned rooms): start afresh as in an empty room."""
        if self.group is not None:
            return  # (only newcomers waiting to be added are told)
        self._room_group = None
        if all(self.identity < other for other in self.present):
            await self._create_group()
        else:
            await self._publish_key_package()  # the old group's KeyPackages went with it
        await self._reconcile()

    def _open_link(self, remote: str, *, offerer: bool | None = None) -> PeerLink:
        """The link with ``remote``; by default the smaller identity offers."""
        async def signal(kind: str, data: Any) -> None:
            try:
                async with asyncio.timeout(self.options.request_timeout):
                    await self.client.signal(kind, remote, data)
            except SignalingError as exc:
                logger.info("%s: %s to %s not relayed: %s", self.identity, kind, remote, exc.code)

        def on_track(track: MediaStreamTrack) -> None:
            consumers = [track] if self._relay is None else [
                self._relay.subscribe(track) for _ in self.sinks]
            for sink, consumer in zip(self.sinks, consumers):
                sink.attach(remote, consumer)

        link = PeerLink(
            remote,
            offerer=self.identity < remote if offerer is None else offerer,
            session=self.session,
            tracks=self.sources.subscribe(lambda: self.session.sending_epoch is not None),
            signal=signal,
            on_track=on_track,
            loopback=self.options.loopback,
            ice_servers=list(self.options.ice_servers),
        )
        self.links[remote] = link
        return link

    async def _close_link(self, remote: str) -> None:
        link = self.links.pop(remote, None)
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

    # -- MLS membership ----------------------------------------------------------

    async def _publish_key_package(self) -> None:
        """Publish one fresh KeyPackage (RFC 9420 §10) for the committer to claim."""
        self._published_at = time.monotonic()
        package = self.mls.generate_key_package(self._client_id, self._credential)
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.publish_key_packages([package.content])
        except SignalingError as exc:
            if exc.code != ErrorCode.TOO_MANY_KEY_PACKAGES:  # plenty left: fine
                raise

    async def _create_group(self) -> None:
        """Create the room's group and register it with the delivery service: its GroupInfo
        (with the ratchet tree, §12.4.3.3) lets the server validate every later handshake.
        When another participant's group got there first, wait to be added to that one."""
        group = self.mls.group_create(self._client_id, self._credential)
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.create_group(group.group_id, group.epoch, group.group_info())
        except SignalingError as exc:
            if exc.code != ErrorCode.WRONG_GROUP:
                raise
            logger.info("%s: the room has a group already; waiting to be added", self.identity)
            group.delete_state()
            await self._publish_key_package()
            return
        self.group = group
        self._room_group = group.group_id
        self._epoch_changed("create")

    def _admitted(self, identity: str) -> bool:
        return self.options.admit is None or self.options.admit(identity)

    async def _on_commit(self, event: dict[str, Any]) -> None:
        group_id = event.get("group_id")
        if self._room_group is None:
            self._room_group = group_id
        group = self.group
        if group is None or group_id != group.group_id:
            return  # not (yet) a member: the Welcome will bring us in
        epoch = event.get("epoch")
        if not isinstance(epoch, int) or epoch < group.epoch:
            return  # our own commit, already applied when it was acknowledged
        if epoch > group.epoch:
            logger.error("%s: missed commits (group at epoch %d, commit for %d)",
                         self.identity, group.epoch, epoch)
            return
        received = group.receive(event["commit"])
        if received.removed:
            self._on_removed()
        elif received.type == "commit-processed":
            self._epoch_changed("own" if received.own else "commit")

    def _on_welcome(self, event: dict[str, Any]) -> None:
        if self.group is not None:
            return
        try:
            group = self.mls.group_join(self._client_id, event["welcome"])
        except MLSError as exc:  # e.g. a Welcome for a KeyPackage of an earlier run
            logger.info("%s: Welcome not usable: %s", self.identity, exc)
            return
        self.group = group
        self._room_group = group.group_id
        self.removed = False
        self._epoch_changed("welcome")

    def _on_removed(self) -> None:
        assert self.group is not None
        logger.info("%s: removed from the group at epoch %d", self.identity, self.group.epoch)
        self.group.delete_state()
        self.group = None
        self.removed = True

    def _epoch_changed(self, cause: str) -> None:
        """Give the group's new epoch to the SFrame key manager (RFC 9605 §5.2)."""
        group = self.group
        assert group is not None
        details = group.details()
        own = next(m.leaf_index for m in details.members if m.client_id == self._client_id)
        size = max(m.leaf_index for m in details.members) + 1
        delay = {"own": self.options.confirm_delay, "commit": self.options.switch_delay}.get(cause)
        self.session.install_epoch(group, details.epoch, own, size, switch_after=delay)
        self._stale &= {credential_identity(m.credential) or "" for m in details.members}
        if delay is None and self.session.sending_epoch != details.epoch:
            self.session.switch_sender(details.epoch)
        self.epochs.append(EpochChange(details.epoch, len(details.members), cause, time.time()))
        logger.info("%s: epoch %d (%s), %d members", self.identity, details.epoch, cause,
                    len(details.members))

    def _is_committer(self, members: dict[str, int]) -> bool:
        here = {identity: leaf for identity, leaf in members.items()
                if identity == self.identity or identity in self.present}
        return bool(here) and min(here, key=here.__getitem__) == self.identity

    async def _reconcile(self) -> None:
        """As the committer, bring the group to the admitted participants present."""
        if self.group is None or self.group.has_pending_commit:
            return
        members = self.member_identities()
        if not self._is_committer(members):
            return
        for identity in sorted(members):
            if identity != self.identity and (identity not in self.present or identity in self._stale
                                              or not self._admitted(identity)):
                await self._commit_remove(identity)
                return  # one epoch at a time; the next tick continues
        joiners = sorted(x for x in self.present if x not in members and self._admitted(x))
        if joiners:
            await self._commit_adds(joiners)

    async def _commit_remove(self, identity: str) -> None:
        group = self.group
        assert group is not None
        client_id = next(m.client_id for m in group.details().members
                         if credential_identity(m.credential) == identity)
        await self._submit(group.remove(client_id), {})

    async def _commit_adds(self, joiners: list[str]) -> None:
        group = self.group
        assert group is not None
        claimed: dict[str, bytes] = {}
        for identity in joiners:
            package = await self._claim(identity)
            if package is None:
                continue  # not published yet: the next tick retries
            if key_package_identity(package) != identity:
                logger.warning("%s: KeyPackage of %r names someone else; skipped",
                               self.identity, identity)
                continue
            claimed[identity] = package
        if not claimed:
            return
        output = group.add_many(list(claimed.values()))
        assert output.welcome is not None
        await self._submit(output, {identity: output.welcome for identity in claimed})

    async def _claim(self, identity: str) -> bytes | None:
        """The newest KeyPackage of ``identity``, or None.

        The directory hands out the oldest first; older ones may belong to
        an earlier run of that participant (whose private keys are gone), so
        every available one is claimed and the newest used.  A waiting
        participant keeps publishing (``key_package_interval``).
        """
        newest = None
        while True:
            try:
                async with asyncio.timeout(self.options.request_timeout):
                    newest = await self.client.claim_key_package(identity)
            except SignalingError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                return newest

    async def _maintain(self) -> None:
        """Membership work, then a wanted self-update (retried each tick
        until accepted: a conflict means another commit won the epoch)."""
        if self.ended.is_set() or not self.client.connected:
            return
        now = time.monotonic()
        for remote in [r for r, deadline in self._resuming.items() if deadline <= now]:
            await self._on_presence("leave", remote)  # did not come back in time
        await self._reconcile()
        group = self.group
        if group is None and time.monotonic() - self._published_at >= self.options.key_package_interval:
            await self._publish_key_package()  # still waiting: a fresh one, to be added
        if self._update_wanted and group is not None and not group.has_pending_commit:
            if await self._submit(group.update(), {}):
                self._update_wanted = False

    async def _submit(self, output: Any, welcomes: dict[str, bytes]) -> bool:
        """Send our pending commit; apply it once the delivery service accepted it.

        A refusal discards it (on ``conflict`` the winning commit is next in
        the log, and the work is retried if still needed).  Without an
        answer the outcome is unknown: the commit stays pending, and the log
        brings either its echo (which merges it) or the winner (which
        replaces it).
        """
        group = self.group
        assert group is not None
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await self.client.commit(group.group_id, group.epoch, output.commit,
                                         welcomes=welcomes)
        except TimeoutError:
            logger.warning("%s: no answer to our commit; waiting for the log", self.identity)
            return False
        except SignalingError as exc:
            if exc.code in (ErrorCode.CLOSED, ErrorCode.CONNECTION_LOST):  # outcome unknown
                return False
            group.discard_pending_commit()
            if exc.code == ErrorCode.CONFLICT:
                self.conflicts += 1
            elif exc.code == ErrorCode.WRONG_GROUP and self._room_group != group.group_id:
                # another participant's group won the room: wait to be added to it
                group.delete_state()
                self.group = None
            else:
                raise
            return False
        group.apply_pending_commit()
        self._room_group = group.group_id
        self._epoch_changed("own")
        return True
