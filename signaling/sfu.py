"""The server's bridge to its SFU: each room's topology, Janus room, feeds and members' handles.

Issue 16 (docs/protocol.md, "SFU"): a room is a mesh until more than
``sfu_above`` participants are connected, then it goes through Janus for as
long as it is live.  Janus forwards SFrame ciphertext it cannot read (RFC 9605
§4.1, §9.1) and its API stays private to the server: members negotiate through
the signaling connection with ``sfu.publish``, ``sfu.subscribe`` and
``sfu.start``, and learn ``sfu.feeds``, ``sfu.down`` and ``sfu.up`` as pushed
events.  The bridge creates each room's Janus room in end-to-end-encrypted mode
(``require_e2ee``, a random numeric id and a random secret it keeps) on first
use, detaches a member's handles when it leaves and destroys the Janus room
when the last member has left.  Who sent a frame is decided by the SFrame KID
at the receivers; ``from`` here is only what the server believes.

When the Janus session dies (Janus crashed, restarted, or stopped answering)
every member of an SFU room gets ``sfu.down``; the bridge polls Janus until a
new session can be created, re-creates the Janus rooms of live SFU rooms and
pushes ``sfu.up``, after which members republish and resubscribe (MLS is
untouched).

Several instances (issue 17) share one Janus and the room's SFU state
through the store (:class:`~signaling.store.Store`): the Janus room and its
secret (claimed once, set-if-absent: the loser uses the winner's; its
generation counted up when a restarted Janus lost it and an instance
created it again, under the same id and secret), the topology switch
(decided once, by the connected count of every instance) and the published
feeds (each instance writes its members').  An instance tells the others
through the room's feed (:meth:`~signaling.store.Store.signal`): the switch
(:data:`SIGNAL_TOPOLOGY`), a change of the feeds (:data:`SIGNAL_FEEDS`: every
instance reads them and pushes ``sfu.feeds`` to its members when they
changed) and a new generation (:data:`SIGNAL_GENERATION`: the instances
write their members' live feeds again).  The instance whose departure
empties the room on every instance destroys its Janus room
(:meth:`SfuBridge.vacated`).

The server calls :meth:`SfuBridge.joined`, :meth:`SfuBridge.left`,
:meth:`SfuBridge.vacated`, :meth:`SfuBridge.on_signal` and
:meth:`SfuBridge.handle`; the bridge pushes frames through the ``send``
callback it was given.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ErrorCode, SignalingError
from .janus import (KEEPALIVE_INTERVAL, NO_SUCH_ROOM, JanusSession, Jsep, SfuError, SfuRefused, SfuUnavailable,
                    VideoRoomHandle)
from .protocol import SFU_DOWN, SFU_FEEDS, SFU_PUBLISH, SFU_START, SFU_SUBSCRIBE, SFU_UP, TOPOLOGY
from .store import SfuRoomRecord, Store

logger = logging.getLogger("signaling.sfu")

MESH = "mesh"
SFU = "sfu"
#: publishers a Janus room admits (one per member; far above what a room holds)
ROOM_PUBLISHERS = 256
#: seconds between attempts to reach a lost Janus
RECOVERY_INTERVAL = 0.5
#: seconds a publisher has to bring its PeerConnection up before its feed is given up
PUBLISH_BOUND = 60.0
#: largest feed id a client may name (Janus's ids are random 53-bit integers)
MAX_FEED = 2**53
#: Janus VideoRoom's error for a create of a room it has already
ROOM_EXISTS = 427
#: the signals instances send each other through the room's feed (``{"type": ...}``)
SIGNAL_TOPOLOGY = "sfu_topology"
SIGNAL_FEEDS = "sfu_feeds"
SIGNAL_GENERATION = "sfu_generation"
SIGNALS = frozenset({SIGNAL_TOPOLOGY, SIGNAL_FEEDS, SIGNAL_GENERATION})

#: ``send(room, identity or None for every member, frame)``
Send = Callable[[str, str | None, dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class SfuMember:
    """One member's Janus handles: its publisher (and feed) and its multistream subscriber."""

    publisher: VideoRoomHandle | None = None
    feed: int | None = None
    subscriber: VideoRoomHandle | None = None
    #: feeds the subscriber handle receives, as the bridge asked Janus
    subscribed: set[int] = field(default_factory=set)
    #: Janus's description of the subscriber's streams (mid, type, feed_id, active)
    streams: list[dict[str, Any]] = field(default_factory=list)
    #: an offer Janus pushed on its own (a watched feed went away), for the next sfu.subscribe
    pending_offer: Jsep | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class SfuRoom:
    """A room live here: its topology, members here and, once used, its (shared) Janus room."""

    topology: str = MESH
    members: dict[str, SfuMember] = field(default_factory=dict)
    janus_room: int | None = None
    secret: str = field(default="", repr=False)
    #: the generation of the store's record this instance uses
    generation: int = 0
    #: published feeds of every instance whose PeerConnection is up (the store's, as last
    #: read and pushed here): feed -> identity
    feeds: dict[int, str] = field(default_factory=dict)
    #: members were told ``sfu.down`` (or the room went SFU while Janus was down) and await ``sfu.up``
    down: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: one read-and-push of the feeds at a time (the last read is the newest)
    feeds_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SfuBridge:
    """Rooms' topologies and their Janus state, for one signaling instance and the Janus it
    shares with the other instances of ``store``."""

    def __init__(self, url: str, above: int, send: Send, store: Store, instance: str,
                 keepalive: float = KEEPALIVE_INTERVAL) -> None:
        if above < 0:
            raise ValueError("sfu_above must be 0 or more")
        self.url = url
        self.store = store
        self.instance = instance
        self.keepalive = keepalive
        self.above = above
        self.send = send
        self.rooms: dict[str, SfuRoom] = {}
        self.janus: JanusSession | None = None
        self._recovery: asyncio.Task[None] | None = None
        #: Janus rooms (id, secret) of emptied rooms not destroyed (Janus was down): destroyed on
        #: recovery if Janus still has them
        self._orphans: list[tuple[int, str]] = []
        self._tasks: set[asyncio.Future[None]] = set()
        #: departed members' handles being detached (and emptied rooms destroyed)
        self._releases: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def up(self) -> bool:
        """True while the bridge holds a live Janus session."""
        return self.janus is not None and self.janus.alive

    async def start(self) -> None:
        """Connect to Janus; if it does not answer, keep trying in the background."""
        try:
            await self._connect()
        except SfuUnavailable:
            logger.warning("Janus at the configured URL does not answer; SFU rooms wait for it")
            self._recovery = asyncio.create_task(self._recover())

    async def close(self) -> None:
        """Destroy the Janus rooms nobody on another instance uses, then the session; stop
        background work."""
        self._closed = True
        for task in [self._recovery, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._releases, return_exceptions=True)
        if self.up:
            for room in list(self.rooms):  # a snapshot: releases still under way pop rooms
                try:
                    present = await self.store.presence(room)
                    if all(holder.instance == self.instance for holder in present.values()):
                        await self.vacated(room)
                except Exception:
                    logger.exception("room %s: its Janus room was not destroyed on close", room)
        if self.janus is not None:
            await self.janus.destroy()

    def topology(self, room: str) -> str:
        """``"sfu"`` or ``"mesh"`` for a live room (``"mesh"`` for an unknown one)."""
        state = self.rooms.get(room)
        return state.topology if state is not None else MESH

    async def joined(self, room: str, identity: str, count: int) -> str:
        """``identity`` joined ``room``, which now has ``count`` participants connected to any
        instance: its topology.

        A room goes SFU once ``count`` exceeds ``sfu_above`` (or once the store says
        another instance switched it) and stays SFU while live; the members already
        here get a ``topology`` event, those on other instances through
        :data:`SIGNAL_TOPOLOGY`.  A joiner of an SFU room with published feeds gets
        them (``sfu.feeds``) after its join reply.
        """
        state = self.rooms.setdefault(room, SfuRoom())
        state.members.setdefault(identity, SfuMember())
        if state.topology == MESH:
            if count > self.above:
                if await self.store.switch_to_sfu(room):
                    await self.store.signal(room, {"type": SIGNAL_TOPOLOGY}, self.instance)
                switched = True
            else:
                switched = await self.store.sfu_switched(room)
            if switched:
                await self._go_sfu(room, state, exclude=identity)
        if state.topology == SFU:
            await self._refresh_feeds(room, state, exclude=identity)
            if state.feeds:
                self._spawn(self.send(room, identity, self._feeds_frame(state)))
        return state.topology

    async def _go_sfu(self, room: str, state: SfuRoom, exclude: str | None = None) -> None:
        """The room goes through the SFU: tell its members here (but ``exclude``)."""
        if state.topology == SFU:
            return
        state.topology = SFU
        state.down = not self.up
        for other in [m for m in state.members if m != exclude]:
            await self.send(room, other, {"type": TOPOLOGY, "topology": SFU})

    async def on_signal(self, room: str, signal: dict[str, Any]) -> None:
        """What another instance said about ``room`` through the store's feed (:data:`SIGNALS`)."""
        state = self.rooms.get(room)
        if state is None:
            return
        kind = signal.get("type")
        if kind == SIGNAL_TOPOLOGY:
            await self._go_sfu(room, state)
        elif kind == SIGNAL_FEEDS:
            await self._refresh_feeds(room, state)
        elif kind == SIGNAL_GENERATION:
            generation = signal.get("generation")
            if type(generation) is int and state.janus_room is not None and generation > state.generation:
                state.generation = generation
                await self._announce_again(room, state)

    async def vacated(self, room: str) -> None:
        """Nobody is connected to ``room`` on any instance: destroy its Janus room and forget
        its SFU state (called by the instance whose departure emptied it)."""
        record = await self.store.sfu_room(room)
        await self.store.clear_sfu(room)
        if record is None:
            return
        if not self.up:
            self._orphans.append((record.janus_room, record.secret))
            return
        try:
            handle = await self._attach()
            try:
                await handle.destroy_room(record.janus_room, record.secret)
            finally:
                await self._detach(handle)
        except SfuRefused as err:
            logger.info("room %s: Janus no longer had its room (%s)", room, err.janus_code)
        except SfuUnavailable:
            self._orphans.append((record.janus_room, record.secret))

    async def dropped(self, room: str, identities: Collection[str]) -> None:
        """``identities`` left ``room`` with the instance that held them (it died; the delivery
        service swept their presence): their feeds, which that instance can no longer withdraw,
        go from the store."""
        feeds = await self.store.sfu_feeds(room)
        gone = [feed for feed, identity in feeds.items() if identity in identities]
        changed = False
        for feed in gone:
            changed = await self.store.drop_sfu_feed(room, feed) or changed
        state = self.rooms.get(room)
        if changed and state is not None:
            await self._feeds_changed(room, state)
        elif changed:
            await self.store.signal(room, {"type": SIGNAL_FEEDS}, self.instance)

    def left(self, room: str, identity: str) -> None:
        """``identity`` left ``room`` here (or its connection closed): in the background
        (:meth:`close` waits for it), its feed is withdrawn and its handles are detached.
        The Janus room stays for the members on other instances (:meth:`vacated`)."""
        state = self.rooms.get(room)
        if state is None or identity not in state.members:
            return
        member = state.members.pop(identity)
        if not state.members:
            self.rooms.pop(room, None)
        release = asyncio.ensure_future(self._release(room, state, member))
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)

    async def _release(self, room: str, state: SfuRoom, member: SfuMember) -> None:
        try:
            if member.feed is not None:  # at once, not after a request still under way
                await self._withdraw(room, state, member.feed)
            async with member.lock:  # after a request of the member still under way
                if await self._unpublish(room, member):
                    await self._feeds_changed(room, state)
                await self._detach(member.subscriber)
                member.subscriber = None
        except Exception:
            logger.exception("room %s: a departed member's SFU state was not released", room)

    async def handle(self, room: str, identity: str, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one ``sfu.*`` request of a joined member: the fields of its ack."""
        state = self.rooms.get(room)
        member = state.members.get(identity) if state is not None else None
        if state is None or member is None:
            raise SignalingError(ErrorCode.NOT_MEMBER, "only a joined member of this room may use its SFU")
        if state.topology != SFU:
            raise SignalingError(ErrorCode.SFU_UNAVAILABLE, "this room is a mesh")
        if not self.up:
            raise SfuUnavailable("the SFU is down; wait for sfu.up")
        kind = message.get("type")
        async with member.lock:
            if kind == SFU_PUBLISH:
                return await self._publish(room, state, identity, member, _jsep(message, "offer"))
            if kind == SFU_SUBSCRIBE:
                if message.get("restart") is True:  # the member's subscribing connection is gone
                    await self._detach(member.subscriber)
                    member.subscriber, member.subscribed, member.streams = None, set(), []
                    member.pending_offer = None
                return await self._subscribe(room, state, member, _feeds(message))
            if kind == SFU_START:
                return await self._start(member, _jsep(message, "answer"))
        raise SignalingError(ErrorCode.UNKNOWN_TYPE, f"unknown SFU request {str(kind)[:40]!r}")

    # -- requests ---------------------------------------------------------

    async def _publish(self, room: str, state: SfuRoom, identity: str, member: SfuMember,
                       offer: Jsep) -> dict[str, Any]:
        janus_room = await self._janus_room(room, state)
        if await self._unpublish(room, member):  # a republish replaces the member's feed
            await self._feeds_changed(room, state)
        try:
            handle, feed, answer = await self._publish_to(janus_room, offer)
        except SfuRefused as err:
            if err.janus_code != NO_SUCH_ROOM:
                raise
            # another instance saw the room empty and destroyed it as this member joined
            janus_room = await self._janus_room(room, state, gone=janus_room)
            handle, feed, answer = await self._publish_to(janus_room, offer)
        member.publisher, member.feed = handle, feed
        handle.on_event = lambda event: self._on_publisher_event(room, state, member, handle, event)
        self._spawn(self._announce_when_up(room, state, identity, member, handle, feed))
        return {"jsep": answer, "feed": feed}

    async def _publish_to(self, janus_room: int, offer: Jsep) -> tuple[VideoRoomHandle, int, Jsep]:
        """A new publisher handle in ``janus_room``: (handle, feed, Janus's answer)."""
        handle = await self._attach()
        try:
            feed, answer = await handle.publish(janus_room, offer)
        except SfuError:
            await self._detach(handle)
            raise
        return handle, feed, answer

    async def _subscribe(self, room: str, state: SfuRoom, member: SfuMember, wanted: set[int]) -> dict[str, Any]:
        if member.feed is not None and member.feed in wanted:
            raise SignalingError(ErrorCode.BAD_MESSAGE, "a member does not subscribe to its own feed")
        wanted &= set(state.feeds)  # feeds gone since the client's sfu.feeds are dropped
        janus_room = await self._janus_room(room, state)
        offer: Jsep | None
        if member.subscriber is None:
            if not wanted:
                return {"jsep": None, "streams": []}
            handle = await self._attach()
            try:
                streams, offer = await handle.join_subscriber(janus_room, sorted(wanted))
            except SfuError:
                await self._detach(handle)
                raise
            member.subscriber = handle
            handle.on_event = lambda event: self._on_subscriber_event(member, handle, event)
        else:
            member.subscribed &= set(state.feeds)
            add, drop = wanted - member.subscribed, member.subscribed - wanted
            if add or drop:
                streams, offer = await member.subscriber.update(sorted(add), sorted(drop))
            else:
                streams, offer = [], member.pending_offer
                if offer is None:
                    return {"jsep": None, "streams": self._streams(state, member.streams)}
        member.subscribed = wanted
        if offer is None:  # Janus queued the update behind an offer of its own: give that one
            offer = member.pending_offer
        member.pending_offer = None
        if streams:
            member.streams = streams
        return {"jsep": offer, "streams": self._streams(state, member.streams)}

    async def _start(self, member: SfuMember, answer: Jsep) -> dict[str, Any]:
        if member.subscriber is None:
            raise SignalingError(ErrorCode.BAD_MESSAGE, "sfu.start answers an offer from sfu.subscribe")
        await member.subscriber.start(answer)
        return {}

    @staticmethod
    def _streams(state: SfuRoom, streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Janus's subscriber streams as the ack lists them (active audio and video of known feeds)."""
        return [{"mid": str(s["mid"]), "feed": int(s["feed_id"]), "from": state.feeds[int(s["feed_id"])],
                 "kind": s["type"]}
                for s in streams
                if s.get("active", True) and s.get("type") in ("audio", "video")
                and int(s.get("feed_id", 0)) in state.feeds]

    # -- Janus state --------------------------------------------------------

    async def _connect(self) -> None:
        session = JanusSession(self.url, on_lost=self._on_lost, keepalive=self.keepalive)
        await session.create()
        self.janus = session

    async def _attach(self) -> VideoRoomHandle:
        if self.janus is None:
            raise SfuUnavailable("the SFU is down; wait for sfu.up")
        return await self.janus.attach()

    async def _janus_room(self, room: str, state: SfuRoom, gone: int | None = None) -> int:
        """The room's Janus room (shared through the store), created in Janus on first use;
        ``gone``: Janus no longer has that one (adopt or claim the store's again)."""
        async with state.lock:
            if state.janus_room is None or state.janus_room == gone:
                record = await self._adopt(room)
                state.janus_room, state.secret, state.generation = (record.janus_room, record.secret,
                                                                    record.generation)
            return state.janus_room

    async def _adopt(self, room: str) -> SfuRoomRecord:
        """The store's Janus room of ``room`` (claimed here if it has none), made sure Janus has
        it: created in end-to-end-encrypted mode if not.  Creating the room of a record another
        instance used means Janus lost it (it restarted): the record's generation goes up (the
        old Janus's feeds go with it) and the other instances hear of it."""
        record = await self.store.sfu_room(room)
        claimed = False
        if record is None:
            candidate = SfuRoomRecord(1 + secrets.randbelow(MAX_FEED - 1), secrets.token_hex(16), 1)
            record = await self.store.claim_sfu_room(room, candidate)
            claimed = record == candidate
        if await self._create(record) and not claimed:
            bumped = await self.store.claim_sfu_room(room, replace(record, generation=record.generation + 1))
            if bumped.janus_room != record.janus_room:  # emptied and claimed afresh meanwhile
                await self._create(bumped)
            elif bumped.generation == record.generation + 1:
                logger.info("room %s: Janus room re-created (generation %d)", room, bumped.generation)
                await self.store.signal(room, {"type": SIGNAL_GENERATION, "generation": bumped.generation},
                                        self.instance)
            record = bumped
        return record

    async def _create(self, record: SfuRoomRecord) -> bool:
        """Create ``record``'s room in Janus; False if Janus has it already."""
        handle = await self._attach()
        try:
            await handle.create_room(record.janus_room, record.secret, publishers=ROOM_PUBLISHERS)
            return True
        except SfuRefused as err:
            if err.janus_code == ROOM_EXISTS:
                return False
            raise
        finally:
            await self._detach(handle)

    async def _unpublish(self, room: str, member: SfuMember) -> bool:
        """Detach the member's publisher; True if the room's published feeds changed."""
        feed, handle = member.feed, member.publisher
        member.feed, member.publisher = None, None
        await self._detach(handle)
        return feed is not None and await self.store.drop_sfu_feed(room, feed)

    async def _withdraw(self, room: str, state: SfuRoom, feed: int) -> None:
        """``feed`` is no longer published: tell every instance if the store had it."""
        if await self.store.drop_sfu_feed(room, feed):
            await self._feeds_changed(room, state)

    async def _detach(self, handle: VideoRoomHandle | None) -> None:
        if handle is None:
            return
        handle.on_event = None
        try:
            await handle.detach()
        except SfuError:
            pass  # Janus lost it already

    async def _announce_when_up(self, room: str, state: SfuRoom, identity: str, member: SfuMember,
                                handle: VideoRoomHandle, feed: int) -> None:
        """Announce ``feed`` once Janus has its media (subscribing earlier fails with "no such feed")."""
        try:
            await asyncio.wait_for(handle.webrtc_up.wait(), PUBLISH_BOUND)
        except asyncio.TimeoutError:
            return  # the publisher never connected (or Janus was lost): nothing to announce
        # (not for a member gone meanwhile, whose publish was still under way when it
        # left: its release withdraws the feed without telling anyone)
        if member.publisher is handle and self.rooms.get(room) is state \
                and state.members.get(identity) is member:
            await self.store.set_sfu_feed(room, feed, identity)
            if member.publisher is not handle or state.members.get(identity) is not member:
                await self.store.drop_sfu_feed(room, feed)  # replaced or gone meanwhile
                return
            # a member publishes one feed: one it left behind on an instance that died (it came
            # back here) is no longer published
            for old, who in (await self.store.sfu_feeds(room)).items():
                if who == identity and old != feed:
                    await self.store.drop_sfu_feed(room, old)
            await self._feeds_changed(room, state)

    async def _announce_again(self, room: str, state: SfuRoom) -> None:
        """A new generation dropped the feeds from the store: write back those of the members
        here whose publishers are up (they are in the same Janus room, same id)."""
        for identity, member in list(state.members.items()):
            if member.feed is not None and member.publisher is not None and member.publisher.webrtc_up.is_set():
                await self.store.set_sfu_feed(room, member.feed, identity)
        await self._feeds_changed(room, state)

    async def _feeds_changed(self, room: str, state: SfuRoom) -> None:
        """The store's feeds of ``room`` changed here: every instance reads and pushes them."""
        await self.store.signal(room, {"type": SIGNAL_FEEDS}, self.instance)
        await self._refresh_feeds(room, state)

    async def _refresh_feeds(self, room: str, state: SfuRoom, exclude: str | None = None) -> None:
        """Read the room's feeds from the store; if they changed, push ``sfu.feeds`` to the
        members here (but ``exclude``)."""
        async with state.feeds_lock:
            if state.down:
                return  # read again once Janus is back (sfu.up)
            feeds = await self.store.sfu_feeds(room)
            if feeds == state.feeds:
                return
            state.feeds = feeds
            if self.rooms.get(room) is not state:
                return  # nobody here any more
            frame = self._feeds_frame(state)
            if exclude is None:
                await self.send(room, None, frame)
                return
            for identity in [m for m in state.members if m != exclude]:
                await self.send(room, identity, frame)

    @staticmethod
    def _feeds_frame(state: SfuRoom) -> dict[str, Any]:
        return {"type": SFU_FEEDS, "feeds": [{"feed": feed, "from": who} for feed, who in sorted(state.feeds.items())]}

    def _on_publisher_event(self, room: str, state: SfuRoom, member: SfuMember, handle: VideoRoomHandle,
                            event: dict[str, Any]) -> None:
        if event.get("janus") == "hangup" and member.publisher is handle and member.feed is not None:
            self._spawn(self._withdraw(room, state, member.feed))

    @staticmethod
    def _on_subscriber_event(member: SfuMember, handle: VideoRoomHandle, event: dict[str, Any]) -> None:
        jsep = event.get("jsep")
        if member.subscriber is handle and isinstance(jsep, dict) and jsep.get("type") == "offer":
            member.pending_offer = jsep
            streams = event.get("plugindata", {}).get("data", {}).get("streams")
            if isinstance(streams, list):
                member.streams = streams

    # -- loss and recovery ---------------------------------------------------

    def _on_lost(self, reason: str) -> None:
        if self._closed:
            return
        logger.warning("the SFU is down (%s)", reason)
        self.janus = None
        down = []
        for name, state in self.rooms.items():
            state.janus_room, state.secret = None, ""
            state.feeds = {}
            lost = [member.feed for member in state.members.values() if member.feed is not None]
            for member in state.members.values():
                member.publisher = member.subscriber = None
                member.feed, member.pending_offer = None, None
                member.subscribed = set()
                member.streams = []
            for feed in lost:  # the feeds of the members here went with the session
                self._spawn(self._withdraw(name, state, feed))
            if state.topology == SFU:
                state.down = True
                down.append(name)
        for name in down:
            self._spawn(self.send(name, None, {"type": SFU_DOWN}))
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """Poll Janus until a session can be created; re-create the Janus rooms of SFU
        rooms told ``sfu.down``; push ``sfu.up`` to them.  Lost again meanwhile: start over."""
        while not self._closed:
            try:
                if not self.up:
                    await self._connect()
                    logger.info("the SFU is back")
                await self._destroy_orphans()
                for name, state in list(self.rooms.items()):
                    if state.down and self.rooms.get(name) is state:
                        await self._janus_room(name, state)
                        state.down = False
                        await self.send(name, None, {"type": SFU_UP})
                        await self._refresh_feeds(name, state)  # those of members elsewhere
                return
            except SfuError as err:
                logger.debug("the SFU is still down: %s", err.code)
                await asyncio.sleep(RECOVERY_INTERVAL)

    async def _destroy_orphans(self) -> None:
        """Destroy the Janus rooms of rooms emptied while Janus was down, if Janus still has
        them (it did not restart: the loss was the network's or a timeout's)."""
        if not self._orphans:
            return
        handle = await self._attach()
        try:
            while self._orphans:
                room_id, secret = self._orphans[-1]
                try:
                    await handle.destroy_room(room_id, secret)
                except SfuRefused:
                    pass  # gone with a restarted Janus
                self._orphans.pop()
        finally:
            await self._detach(handle)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Awaitable[None]) -> None:
        """Background work whose failure (a store or Janus fault) is logged, not lost."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("SFU background work failed")


def _jsep(message: dict[str, Any], kind: str) -> Jsep:
    jsep = message.get("jsep")
    if not (isinstance(jsep, dict) and jsep.get("type") == kind and isinstance(jsep.get("sdp"), str)
            and jsep["sdp"]):
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"jsep must be an {kind} with its sdp")
    return {"type": kind, "sdp": jsep["sdp"]}


def _feeds(message: dict[str, Any]) -> set[int]:
    feeds = message.get("feeds")
    if not (isinstance(feeds, list) and len(feeds) <= ROOM_PUBLISHERS
            and all(type(f) is int and 0 < f < MAX_FEED for f in feeds)):
        raise SignalingError(ErrorCode.BAD_MESSAGE, "feeds must be a list of feed ids")
    return set(feeds)
