"""The MLS delivery service (RFC 9420 §14), apart from any transport.

Per room (one MLS group) the service keeps a log of accepted messages
numbered by ``seq``: commits sequenced one per epoch (the epoch
compare-and-set of the :class:`~signaling.store.Store`), proposals, Welcomes
routed to the member they add (§12.4.3.1) and application messages
(PrivateMessage, §6.3). Several instances may share one store; each runs,
per room that has members connected to it, one sequencer task
(:class:`~signaling.room.Room`) that takes the room's requests in arrival
order, validates each handshake against the room's keyless
``mls.PublicGroup`` (:mod:`signaling.public_state`: the server is the
authentication service of its rooms) and writes each run of them in one
store call (group commit).

Fan-out goes through the store's feed: every instance with members in the
room subscribes to it and delivers each log entry to its members from the
feed only, in ``seq`` order and once (the last ``seq`` delivered here; a gap
is filled with ``read_entries``). A request's ``ack`` goes out once the feed
has delivered its entries here, so a sender sees its own commit before its
ack and every accepted message is durable before it is acknowledged. A
joiner is registered between two batches and catches up from the store up
to the ``seq`` delivered here at that moment, in bounded pages (its own
task), while what the feed delivers meanwhile is held for it; so catch-up
and live fan-out meet without gap or duplicate.

What must hold across instances goes through the store too: who is
connected where, and who waits to be added (presence, with the heartbeat of
each instance), the identities admitted to each room, since when a room's
group has had no member connected (abandoned rooms start afresh), and the
signals of the feed: presence events, WebRTC relay to a member connected to
another instance, ``replaced`` (the newer connection of an identity closes
the older one wherever it is) and group resets. A handshake of another
instance arriving on the feed makes the room's view stale here; a request
validated against a view another instance has since changed is refused by
the store (``STALE_VIEW``), and is validated again against the stored view.

Members are reached through :class:`~signaling.room.Member` only; the
WebSocket and HTTP transport lives in :mod:`signaling.server` and
:mod:`signaling.http_api`. Logging records types, rooms, identities,
sequence numbers and sizes only: never a payload, a token or the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mls.errors import MLSError
from mls.inspection import ContentType, inspect_key_package

from . import protocol as p
from .config import ServerConfig
from .errors import ErrorCode, SignalingError
from .eventloop import cancel_and_wait
from .mls_header import check_mls_header
from .public_state import PublicState
from .ratelimit import TokenBucket
from .room import (CLOSE_REPLACED, CLOSE_SLOW_CONSUMER, AbandonCheck, Admission, Append, Departure, Member,
                   Room)
from .store import (AppendResult, ApplicationRequest, CommitRequest, EntryKind, GroupCreateRequest,
                    LogEntry, Outcome, Presence, ProposalRequest, RoomGroup, Store, WelcomeRecord)
from .sfu import MESH, SIGNALS as SFU_SIGNALS, SfuBridge
from .tokens import TokenAuthority

logger = logging.getLogger("signaling")

Handler = Callable[[Member, Any, dict[str, Any]], Awaitable[None]]

#: Most requests one store call takes (group commit).
_MAX_BATCH = 256

#: Times a request refused for a stale view is validated again before it is refused.
_STALE_RETRIES = 3

#: Seconds before an abandoned-room check that failed (a store error) runs again.
_ABANDON_RETRY = 1.0

#: Claimers whose claim buckets are kept; beyond it they start afresh (full buckets).
_MAX_CLAIMERS = 10_000

#: Seconds the sequencer waits for the feed to bring the entries of its own append before
#: it reads them from the store (the feed lost them); and how often, and for how long, an
#: instance tells the store it is alive.
FEED_WAIT = 1.0
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL = 5.0
#: Seconds without a heartbeat the store took after which an instance counts itself cut off
#: from its store: it closes its members' connections (:data:`CLOSE_STORE_UNAVAILABLE`) so
#: that they move to another instance, and refuses joins (``store_unavailable``) until a
#: heartbeat goes through again. Shorter than the ttl, so that its members are back through
#: another instance (a resumed join) before the others sweep their presence as dead.
STORE_LOST_AFTER = HEARTBEAT_TTL - 2 * HEARTBEAT_INTERVAL

#: The WebSocket close code (RFC 6455 §7.4.2 registry: 1013 "Try Again Later") of members
#: whose instance lost its store: clients go on through their next address.
CLOSE_STORE_UNAVAILABLE = 1013

#: A catch-up page: at most this many entries, and no more entries once this many bytes of
#: MLS message are in it. The next page is read once at most a page's bytes wait for the socket.
CATCHUP_PAGE_ENTRIES = 256
CATCHUP_PAGE_BYTES = 1024 * 1024

#: Sequence numbers one count of a catch-up's entries (the join reply's ``backlog``) covers.
_COUNT_SPAN = 50_000

#: The field of an event frame that carries the entry's MLS bytes.
_BODY_FIELD = {
    EntryKind.COMMIT: "commit",
    EntryKind.PROPOSAL: "proposal",
    EntryKind.WELCOME: "welcome",
    EntryKind.APPLICATION: "ciphertext",
}

#: The ``type`` of each signal between instances (FeedItem.signal).
_SIGNAL_PRESENCE = "presence"
_SIGNAL_RELAY = "relay"
_SIGNAL_REPLACE = "replace"
_SIGNAL_GROUP_RESET = "group_reset"
_SIGNAL_GROUP_CREATED = "group_created"


def event_frame(entry: LogEntry) -> str:
    """The event frame pushing one log entry to a member."""
    frame: dict[str, Any] = {"type": entry.kind.value, "seq": entry.seq, "from": entry.sender,
                             "epoch": entry.epoch}
    if entry.group_id is not None:
        frame["group_id"] = p.b64encode(entry.group_id)
    frame[_BODY_FIELD[entry.kind]] = p.b64encode(entry.body)
    return p.dump_frame(frame)


def error_frame(rid: Any, err: SignalingError) -> str:
    """The ``error`` frame answering request ``rid`` (None: no request) with ``err``."""
    return p.dump_frame({"type": p.ERROR, "re": rid, "code": str(err.code), "message": err.message,
                         **err.details})


def send_error(member: Member, rid: Any, err: SignalingError) -> None:
    member.send(error_frame(rid, err))


def _ack(member: Member, rid: Any, **fields: Any) -> None:
    member.send(p.dump_frame({"type": p.ACK, "re": rid, **fields}))


def _orphaned(present: dict[str, Presence]) -> bool:
    """Whether none of the group's members is connected: everyone present (if anyone) is a
    newcomer still waiting to be added (no Welcome or commit of theirs seen)."""
    return all(presence.waiting for presence in present.values())


class DeliveryService:
    """Rooms, their sequencers, admission and catch-up, the KeyPackage directory and the relay
    of one instance over a :class:`~signaling.store.Store` shared with the other instances."""

    def __init__(self, config: ServerConfig, store: Store, tokens: TokenAuthority) -> None:
        self.config = config
        self.store = store
        self.tokens = tokens
        #: this instance's id: the origin of what it publishes, the holder of its members' presence
        self.instance = config.instance_id
        self.rooms: dict[str, Room] = {}
        #: rooms never seen empty count as empty since this instance started (config clock)
        self._started = config.clock()
        #: KeyPackage claims per (room, claimer): token buckets
        self._claims: dict[tuple[str, str], TokenBucket] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        #: False while this instance is cut off from its store (``STORE_LOST_AFTER``)
        self.store_reachable = True
        #: what each request type runs (the transport dispatches to these)
        self.handlers: dict[str, Handler] = {
            p.JOIN: self._on_join,
            p.LEAVE: self._on_leave,
            p.KEYPACKAGE_PUBLISH: self._on_keypackage_publish,
            p.KEYPACKAGE_CLAIM: self._on_keypackage_claim,
            p.GROUP_CREATE: self._on_group_create,
            p.COMMIT: self._on_commit,
            p.PROPOSAL: self._on_proposal,
            p.APPLICATION: self._on_application,
            **{kind: self._on_relay for kind in p.RELAY_TYPES},
            **{kind: self._on_sfu for kind in p.SFU_TYPES},
        }
        #: the bridge to the SFU (Janus) when the server has one (``sfu_url``; signaling.sfu)
        self.sfu = None if config.sfu_url is None else SfuBridge(config.sfu_url, config.sfu_above,
                                                                 self._send_sfu_frame, store, self.instance)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start telling it this instance is alive."""
        await self.store.open()
        await self.store.heartbeat(self.instance, HEARTBEAT_TTL)
        self._heartbeat = asyncio.create_task(self._beat())
        if self.sfu is not None:
            await self.sfu.start()
        logger.info("delivery service instance=%s started", self.instance)

    async def _beat(self) -> None:
        """Tell the store this instance is alive, and sweep the presence of dead instances
        from the rooms live here, every ``HEARTBEAT_INTERVAL``; without a heartbeat through
        for ``STORE_LOST_AFTER``, send the members here elsewhere (:meth:`_store_lost`)."""
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:  # a store that does not answer (a partition) counts as failing
                await asyncio.wait_for(self.store.heartbeat(self.instance, HEARTBEAT_TTL), STORE_LOST_AFTER)
            except Exception:
                logger.exception("heartbeat of instance %s failed", self.instance)
                if self.store_reachable and loop.time() - last_beat >= STORE_LOST_AFTER:
                    self._store_lost()
                continue
            last_beat = loop.time()
            if not self.store_reachable:
                self.store_reachable = True
                logger.warning("instance %s reaches its store again; joins are taken again", self.instance)
            for room in tuple(self.rooms.values()):
                if room.members:
                    await self._sweep(room)

    async def _sweep(self, room: Room) -> None:
        """Announce the leave of the members of ``room`` whose instance died (no heartbeat for
        its ttl, so a member back through another instance before is a resumed join instead):
        the store drops each dead presence for one sweeping instance only, which announces it."""
        try:
            gone = await self.store.sweep_presence(room.name)
            if not gone:
                return
            present = await self.store.presence(room.name)
            for identity in gone:
                if identity in present:  # back through a live instance just now: not gone
                    continue
                logger.info("leave room=%s identity=%s (its instance stopped)", room.name, identity)
                room.broadcast(p.dump_frame({"type": p.PRESENCE, "event": "leave", "identity": identity,
                                             "dropped": True}))
                await self.store.signal(room.name, {"type": _SIGNAL_PRESENCE, "event": "leave",
                                                    "identity": identity, "dropped": True}, self.instance)
            if self.sfu is not None:  # their feeds in the room's Janus room went with their instance
                await self.sfu.dropped(room.name, [identity for identity in gone if identity not in present])
            if _orphaned(present):  # the group's last members were there
                if await self.store.empty_since(room.name) is None:
                    await self.store.set_empty_since(room.name, self.config.clock())
                await self._schedule_abandon_check(room)
        except Exception:
            logger.exception("room %s: sweeping the presence of dead instances failed", room.name)

    def _store_lost(self) -> None:
        """This instance is cut off from its store: whatever its members send is refused
        and nothing reaches them, so close their connections (they reconnect through another
        instance and catch up from their cursor there) and refuse joins until it is back."""
        self.store_reachable = False
        members = [member for room in self.rooms.values() for member in room.members.values()]
        logger.error("instance %s lost its store for %.0f s: closing %d members' connections, "
                     "refusing joins until it is back", self.instance, STORE_LOST_AFTER, len(members))
        for member in members:
            member.close(CLOSE_STORE_UNAVAILABLE, "store unavailable")

    def require_store(self) -> None:
        """Refuse a request needing the store while this instance is cut off from it."""
        if not self.store_reachable:
            raise SignalingError(ErrorCode.STORE_UNAVAILABLE,
                                 "this server has lost its store; try another server")

    async def stop(self) -> None:
        """End the sequencers and the heartbeat, then close the store."""
        if self.sfu is not None:
            await self.sfu.close()
        tasks = [room.sequencer for room in self.rooms.values() if room.sequencer is not None]
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
        await cancel_and_wait(*tasks)
        await self.store.close()

    # -- rooms and their sequencers --------------------------------------------------------

    def _room(self, name: str) -> Room:
        """The live room ``name``, created with its sequencer task when absent."""
        room = self.rooms.get(name)
        if room is None:
            if len(self.rooms) >= self.config.max_rooms:
                raise SignalingError(ErrorCode.TOO_MANY_ROOMS, "the server has reached its room limit",
                                     limit=self.config.max_rooms)
            room = self.rooms[name] = Room(name)
            room.sequencer = asyncio.create_task(self._sequence(room))
        return room

    def _submit(self, room: Room, item: Append | Admission) -> None:
        if len(room.pending) >= self.config.max_pending_per_room:
            raise SignalingError(ErrorCode.RATE_LIMITED, "the room is busy; retry later")
        room.submit(item)

    async def _open_feed(self, room: Room) -> None:
        """Subscribe to the room's feed; entries already in the log count as delivered (nobody
        here was there to get them), and the view is read again before its next use."""
        await self.store.subscribe(room.name, room.take_feed)
        state = await self.store.group_state(room.name)
        room.delivered_seq = max(room.delivered_seq, state.last_seq)
        room.public_loaded = False

    async def _sequence(self, room: Room) -> None:
        """Work through the feed and ``room.pending`` in order; end (dropping the room) once it is
        idle and has no member here."""
        try:
            await self._open_feed(room)
        except Exception:
            logger.exception("room %s: subscribing to its feed failed", room.name)
            for item in room.pending:
                if isinstance(item, Admission) and not item.done.done():
                    item.done.set_exception(SignalingError(ErrorCode.INTERNAL, "internal server error"))
            room.pending.clear()
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            return
        while True:
            await self._drain_feed(room)
            if not room.pending:
                if not room.members:
                    try:
                        await self.store.unsubscribe(room.name)
                    except Exception:  # the room goes anyway
                        logger.exception("room %s: unsubscribing from its feed failed", room.name)
                    if room.pending or room.members:  # someone joined meanwhile
                        await self._reopen_feed(room)
                        continue
                    if self.rooms.get(room.name) is room:
                        del self.rooms[room.name]
                    return
                room.wakeup.clear()
                if not room.inbox:
                    await room.wakeup.wait()
                continue
            item = room.pending.popleft()
            try:
                await self._step(room, item)
            except Exception:  # a store fault: the room goes on with its next item
                logger.exception("room %s: a sequencer step failed", room.name)

    async def _reopen_feed(self, room: Room) -> None:
        try:
            await self._open_feed(room)
        except Exception:
            logger.exception("room %s: subscribing to its feed again failed", room.name)

    async def _step(self, room: Room, item: Append | Admission | AbandonCheck | Departure) -> None:
        """One item of ``room.pending`` (with the appends queued right after an append)."""
        if isinstance(item, Admission):
            await self._run_admission(room, item)
            return
        if isinstance(item, AbandonCheck):
            await self._run_abandon_check(room)
            return
        if isinstance(item, Departure):
            await self._run_departure(room, item)
            return
        run = [item]
        while room.pending and isinstance(room.pending[0], Append) and len(run) < _MAX_BATCH:
            run.append(room.pending.popleft())  # type: ignore[arg-type]
        for _ in range(_STALE_RETRIES):
            run = await self._append_run(room, run)
            if not run:
                return
            room.public_loaded = False  # another instance changed the view: read it again
        logger.warning("room=%s: %d requests on a view still stale after %d tries", room.name, len(run),
                       _STALE_RETRIES)
        for append in run:
            send_error(append.member, append.rid, SignalingError(
                ErrorCode.CONFLICT, "the group changed meanwhile; try again"))

    async def _append_run(self, room: Room, run: list[Append]) -> list[Append]:
        """Validate ``run`` and write it in one store call; queue the replies and deliver what
        the feed brings until they can go. Returns the requests refused for a stale view."""
        batch = [append for append in [await self._validate(room, a) for a in run] if append is not None]
        if not batch:
            return []
        try:
            results = await self.store.append(room.name, [a.request for a in batch], origin=self.instance)
        except Exception:
            logger.exception("store append failed in room %s (%d requests)", room.name, len(batch))
            room.public_loaded = False  # the view ran ahead of the store: read it again
            for append in batch:
                send_error(append.member, append.rid, SignalingError(ErrorCode.INTERNAL, "internal server error"))
            return []
        stale: list[Append] = []
        due = 0
        for append, result in zip(batch, results):
            if result.outcome is Outcome.STALE_VIEW:
                stale.append(append)
                continue
            if result.outcome is not Outcome.ACCEPTED and not isinstance(append.request, ApplicationRequest):
                room.public_loaded = False  # another instance moved the group on
            if result.entries:
                due = result.entries[-1].seq
            frame = await self._result(room, append, result)
            if frame is not None:
                room.replies.append((due, append.member, frame))
        await self._await_delivered(room, due)
        return stale

    # -- the feed: fan-out and signals -------------------------------------------------------

    async def _drain_feed(self, room: Room) -> None:
        """Take every item the feed has brought, in order, then send the replies now due."""
        while room.inbox:
            item = room.inbox.popleft()
            try:
                if item.resync:  # the feed lost what was published while it reconnected
                    last_seq = (await self.store.group_state(room.name)).last_seq
                    if last_seq > room.delivered_seq:
                        await self._fill(room, last_seq)
                elif item.signal is not None:
                    if item.origin != self.instance:  # this instance did its own part already
                        await self._on_signal(room, item.signal)
                else:
                    await self._fan_out(room, item.entries, item.origin)
            except Exception:
                logger.exception("room %s: a feed item failed", room.name)
            await self._send_replies(room)
        await self._send_replies(room)

    async def _fan_out(self, room: Room, entries: Iterable[LogEntry], origin: str) -> None:
        """Deliver ``entries`` (one append's, in seq order) to the members here, each seq once;
        entries missing before them (a lost feed item) are read from the store first."""
        fresh = [entry for entry in entries if entry.seq > room.delivered_seq]
        if not fresh:
            return
        if fresh[0].seq > room.delivered_seq + 1:
            await self._fill(room, fresh[0].seq - 1)
        for entry in fresh:
            if entry.seq > room.delivered_seq:
                await self._deliver_entry(room, entry, origin)

    async def _fill(self, room: Room, up_to: int) -> None:
        """Deliver the entries after ``delivered_seq`` up to ``up_to`` from the store."""
        logger.info("room=%s: feed gap after seq %d, reading up to %d from the store", room.name,
                    room.delivered_seq, up_to)
        while room.delivered_seq < up_to:
            page = await self.store.read_entries(room.name, after_seq=room.delivered_seq, up_to_seq=up_to,
                                                 limit=CATCHUP_PAGE_ENTRIES)
            if not page:  # pruned meanwhile: nothing left to deliver there
                break
            for entry in page:
                await self._deliver_entry(room, entry, "")
        room.delivered_seq = max(room.delivered_seq, up_to)

    async def _deliver_entry(self, room: Room, entry: LogEntry, origin: str) -> None:
        """One log entry to the members here who may see it (as ``Store.read_log`` says)."""
        frame = event_frame(entry)
        if entry.kind is EntryKind.APPLICATION:
            await room.deliver(frame, exclude=entry.sender)
        elif entry.kind is EntryKind.WELCOME:
            recipient = room.members.get(entry.recipient or "")
            if recipient is not None:
                await recipient.deliver(frame)
            await self._added(room, entry.recipient or "")
        else:
            await room.deliver(frame)
            if origin != self.instance:
                room.public_loaded = False  # the view here no longer is the stored one
            if entry.kind is EntryKind.COMMIT:
                room.over_quota.clear()  # a new epoch: fresh quotas
                await self._added(room, entry.sender)  # its sender is a member of the group
        room.delivered_seq = entry.seq

    async def _added(self, room: Room, identity: str) -> None:
        """``identity`` is a member of the group: if it waited here, it waits no more."""
        if identity in room.waiting:
            room.waiting.discard(identity)
            if identity in room.members:
                await self.store.set_presence(room.name, identity, self.instance, False)

    async def _send_replies(self, room: Room) -> None:
        """Send the queued replies whose entries the feed has delivered here, in order."""
        while room.replies and room.replies[0][0] <= room.delivered_seq:
            _, member, frame = room.replies.popleft()
            await member.deliver(frame)

    async def _await_delivered(self, room: Room, seq: int) -> None:
        """Take the feed until it has delivered ``seq`` here; read the rest from the store if
        it does not within ``FEED_WAIT`` (its item was lost)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FEED_WAIT
        while True:
            await self._drain_feed(room)
            if room.delivered_seq >= seq:
                return
            room.fed.clear()
            if room.inbox:
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self._fill(room, seq)
                await self._send_replies(room)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.fed.wait(), remaining)

    async def _on_signal(self, room: Room, signal: dict[str, Any]) -> None:
        """What another instance told the instances with members in ``room``."""
        kind = signal.get("type")
        if kind == _SIGNAL_PRESENCE:
            identity = signal.get("identity")
            frame = {"type": p.PRESENCE, "event": signal.get("event"), "identity": identity}
            if signal.get("event") == "join":
                frame["resumed"] = signal.get("resumed") is True
            else:
                frame["dropped"] = signal.get("dropped") is True
            room.broadcast(p.dump_frame(frame), exclude=identity)
            if signal.get("event") == "leave" and room.waiting:
                await self._schedule_abandon_check(room)
        elif kind == _SIGNAL_RELAY and signal.get("instance") == self.instance:
            target = room.members.get(signal.get("to") or "")
            if target is not None and isinstance(signal.get("frame"), str):
                target.send(signal["frame"])
        elif kind == _SIGNAL_REPLACE and signal.get("instance") != self.instance:
            previous = room.members.get(signal.get("identity") or "")
            if previous is not None:
                self._replace(previous)
        elif kind == _SIGNAL_GROUP_RESET:
            await self._reset_here(room)
        elif kind == _SIGNAL_GROUP_CREATED:
            room.public_loaded = False
            await self._wait_for_adding(room, signal.get("creator"))
        elif kind in SFU_SIGNALS and self.sfu is not None:
            await self.sfu.on_signal(room.name, signal)

    async def _wait_for_adding(self, room: Room, creator: object) -> None:
        """A group was created: everyone here but its creator waits to be added to it."""
        for identity in tuple(room.members):
            if identity != creator and identity not in room.waiting:
                room.waiting.add(identity)
                await self.store.set_presence(room.name, identity, self.instance, True)

    # -- the room's public view of its group -----------------------------------------------

    async def _public_state(self, room: Room) -> PublicState | None:
        """The room's keyless view of its group, read from the store when not in memory."""
        if not room.public_loaded:
            stored = await self.store.public_group(room.name)
            if stored is None:
                room.public = None
                room.public_version = (await self.store.group_state(room.name)).public_version
            else:
                room.public = PublicState.load(stored[0])
                room.public_version = stored[1]
            room.public_loaded = True
        return room.public

    async def _validate(self, room: Room, append: Append) -> Append | None:
        """``append`` with the view's new state and version, if the room's view accepts it; else
        answer the refusal (the view unchanged) and None. Runs in the sequencer, in log order."""
        if not self.config.validate_handshakes:
            return append
        request = append.request
        try:
            state = await self._public_state(room)
            if isinstance(request, ApplicationRequest):
                if state is None or not state.is_member(request.sender):
                    raise SignalingError(ErrorCode.NOT_MEMBER,
                                         "application messages come from members of the room's group")
                if append.group_id != state.group.group_id:
                    raise SignalingError(ErrorCode.WRONG_GROUP, "this room carries another group",
                                         epoch=state.group.epoch)
                return append
            if isinstance(request, GroupCreateRequest):
                if state is not None:
                    raise SignalingError(ErrorCode.WRONG_GROUP, "this room carries a group already",
                                         epoch=state.group.epoch)
                assert append.created is not None
                room.public = append.created
                room.public_version += 1
                return Append(append.member, append.rid,
                              dataclasses.replace(request, public_group=append.created.encoded))
            if state is None:
                raise SignalingError(ErrorCode.NO_GROUP, "no group yet: its creator registers it first")
            if request.group_id != state.group.group_id:
                raise SignalingError(ErrorCode.WRONG_GROUP, "this room carries another group",
                                     epoch=state.group.epoch)
            if request.epoch != state.group.epoch:
                raise SignalingError(ErrorCode.CONFLICT,
                                     f"conflict, the group is now at epoch {state.group.epoch}",
                                     epoch=state.group.epoch)
            if isinstance(request, ProposalRequest):
                encoded = state.proposal(request.sender, request.proposal)
            else:
                encoded = await self._commit(room, state, request)
            version = room.public_version
            room.public_version += 1
            return Append(append.member, append.rid,
                          dataclasses.replace(request, public_group=encoded, public_version=version))
        except SignalingError as err:
            logger.info("%s refused room=%s identity=%s code=%s", type(request).__name__, room.name,
                        request.sender, err.code)
            send_error(append.member, append.rid, err)
        except Exception:
            logger.exception("validation failed in room %s", room.name)
            room.public_loaded = False
            send_error(append.member, append.rid, SignalingError(ErrorCode.INTERNAL, "internal server error"))
        return None

    async def _commit(self, room: Room, state: PublicState, request: CommitRequest) -> bytes:
        """The view's state after ``request``, which may add only identities admitted to the
        room: those known here, read again from the store if the commit names another (it may
        have joined through another instance)."""
        fresh = room.admitted is None
        if room.admitted is None:
            room.admitted = set(await self.store.admitted(room.name))
        try:
            return state.commit(request.sender, request.commit, request.welcomes, room.admitted)
        except SignalingError as err:
            if err.code is not ErrorCode.NOT_ADMITTED or fresh:
                raise
        room.admitted = set(await self.store.admitted(room.name))
        return state.commit(request.sender, request.commit, request.welcomes, room.admitted)

    async def _result(self, room: Room, append: Append, result: AppendResult) -> str | None:
        """The reply to one durable result (its entries reach the members through the feed)."""
        request, member = append.request, append.member
        kind = type(request).__name__
        if result.outcome is not Outcome.ACCEPTED:
            logger.info("%s refused room=%s epoch=%d outcome=%s", kind, room.name, request.epoch,
                        result.outcome.value)
            refusal = self._refusal(result)
            if isinstance(request, ApplicationRequest) and result.outcome is Outcome.QUOTA_EXCEEDED:
                room.note_over_quota(request.sender, len(request.ciphertext), refusal)
            return error_frame(append.rid, refusal)
        if isinstance(request, GroupCreateRequest):  # the others here are not members (yet)
            await self._wait_for_adding(room, member.identity)
            await self.store.signal(room.name, {"type": _SIGNAL_GROUP_CREATED, "creator": member.identity},
                                    self.instance)
            logger.info("group created room=%s epoch=%d", room.name, request.epoch)
            return p.dump_frame({"type": p.ACK, "re": append.rid, "epoch": result.epoch})
        first, *welcomes = result.entries
        if isinstance(request, ApplicationRequest):
            logger.debug("application room=%s seq=%d size=%d", room.name, first.seq, len(first.body))
            return p.dump_frame({"type": p.ACK, "re": append.rid, "seq": first.seq})
        logger.info("%s accepted room=%s epoch=%d seq=%d size=%d welcomes=%d", kind, room.name,
                    request.epoch, first.seq, len(first.body), len(welcomes))
        return p.dump_frame({"type": p.ACK, "re": append.rid, "seq": first.seq, "epoch": result.epoch})

    @staticmethod
    def _refusal(result: AppendResult) -> SignalingError:
        if result.outcome is Outcome.CONFLICT:
            return SignalingError(ErrorCode.CONFLICT,
                                  f"conflict, the group is now at epoch {result.epoch}", epoch=result.epoch)
        if result.outcome is Outcome.WRONG_GROUP:
            return SignalingError(ErrorCode.WRONG_GROUP, "this room carries another group",
                                  epoch=result.epoch)
        if result.outcome is Outcome.QUOTA_EXCEEDED:
            assert result.quota is not None
            quota = result.quota
            return SignalingError(ErrorCode.QUOTA_EXCEEDED,
                                  f"the {quota.scope}'s quota of {quota.limit} {quota.unit} in this epoch "
                                  "is used up; wait for the next commit", scope=quota.scope, unit=quota.unit,
                                  limit=quota.limit, epoch=result.epoch)
        return SignalingError(ErrorCode.NO_GROUP, "no group yet: its creator registers it first")

    # -- join and leave --------------------------------------------------------------------

    async def _on_join(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        if member.identity is not None or member.room is not None:
            raise SignalingError(ErrorCode.ALREADY_JOINED, "this connection has joined already")
        self.require_store()
        name = p.validate_room(msg.get("room"))
        claims = self.tokens.verify(msg.get("token"), name)
        since = p.int_field(msg, "since", required=False)
        epoch = p.int_field(msg, "epoch", required=False)
        room = self._room(name)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(room, Admission(member, rid, claims.identity, since, epoch, done))
        await done

    async def _run_admission(self, room: Room, item: Admission) -> None:
        try:
            await self._admit(room, item)
        except SignalingError as err:
            item.done.set_exception(err)
        except Exception:
            logger.exception("join failed in room %s", room.name)
            item.done.set_exception(SignalingError(ErrorCode.INTERNAL, "internal server error"))
        else:
            item.done.set_result(None)

    def _replace(self, previous: Member) -> None:
        send_error(previous, None, SignalingError(ErrorCode.REPLACED, "a newer connection joined as this identity"))
        previous.close(CLOSE_REPLACED, "replaced")

    async def _admit(self, room: Room, item: Admission) -> None:
        """Register a member (in the sequencer, between batches) and queue ack, presence, and
        start its catch-up: entries up to the ``seq`` delivered here now come from the store
        (:meth:`_catch_up`), later ones from the feed, held until the catch-up ends."""
        member, identity = item.member, item.identity
        present = await self.store.presence(room.name)
        previous = room.members.get(identity)
        if identity not in present and previous is None and len(present) >= self.config.max_participants:
            raise SignalingError(ErrorCode.ROOM_FULL, "the room is full",
                                 limit=self.config.max_participants)
        state = await self.store.group_state(room.name)
        waiting, was_orphaned = False, _orphaned(present)
        after: int | None
        if item.since is None and item.epoch is None:
            if state.group_id is not None and was_orphaned and await self._abandon_delay(room) <= 0:
                state = await self._start_afresh(room)
                present = await self.store.presence(room.name)
            # A newcomer: replay from its latest Welcome, if one is waiting for it.
            welcome_seq = await self.store.latest_welcome_seq(room.name, identity)
            after = None if welcome_seq is None else welcome_seq - 1
            waiting = state.group_id is not None and welcome_seq is None
        else:
            if state.group_id is not None and (
                    item.since < state.pruned_seq if item.since is not None
                    else item.epoch is not None and item.epoch <= state.pruned_epoch):
                raise SignalingError(ErrorCode.LOG_TRUNCATED, "the room's log no longer holds what "
                                     "this catch-up needs; join as a newcomer",
                                     pruned_seq=state.pruned_seq)
            after = item.since or 0
        if member.closed:
            raise SignalingError(ErrorCode.CLOSED, "the connection closed while joining")
        # what the store holds goes out here before the join (the feed may be behind)
        await self._await_delivered(room, state.last_seq)
        if previous is not None:
            self._replace(previous)
        elif identity in present and present[identity].instance != self.instance:
            await self.store.signal(room.name, {"type": _SIGNAL_REPLACE, "identity": identity,
                                                "instance": self.instance}, self.instance)
        if member.join_deadline is not None:
            member.join_deadline.cancel()
        member.identity, member.room = identity, room
        room.members[identity] = member
        await self.store.admit(room.name, identity)
        if room.admitted is not None:
            room.admitted.add(identity)
        await self.store.set_presence(room.name, identity, self.instance, waiting)
        present[identity] = Presence(self.instance, waiting)
        if waiting:
            room.waiting.add(identity)
        else:
            room.waiting.discard(identity)
        if not _orphaned(present):
            await self.store.set_empty_since(room.name, None)
        else:
            if not was_orphaned:  # it replaced the connection of the group's last member
                await self.store.set_empty_since(room.name, self.config.clock())
            if state.group_id is not None:  # nobody can add this newcomer
                await self._schedule_abandon_check(room)
        last = room.delivered_seq
        reply = {"type": p.ACK, "re": item.rid, "protocol": p.PROTOCOL_VERSION, "room": room.name,
                 "identity": identity, "members": sorted(i for i in present if i != identity),
                 "group_id": None if state.group_id is None else p.b64encode(state.group_id),
                 "epoch": state.epoch, "last_seq": last}
        if self.config.turn is not None:
            reply["ice_servers"] = [self.config.turn.issue(identity)]
        reply["topology"] = MESH if self.sfu is None else await self.sfu.joined(room.name, identity, len(present))
        if after is None or after >= last:
            member.send(p.dump_frame({**reply, "backlog": 0}))
            logger.info("join room=%s identity=%s backlog=0", room.name, identity)
        else:
            member.held = []  # from now on the feed's frames wait for the catch-up's last page
            member.catchup = asyncio.create_task(self._catch_up(
                room.name, member, reply, after, last, item.epoch, state.pruned_seq))
        # resumed: it catches up from its cursor (it kept its group state), docs/protocol.md
        resumed = item.since is not None or item.epoch is not None
        room.broadcast(p.dump_frame({"type": p.PRESENCE, "event": "join", "identity": identity,
                                     "resumed": resumed}), exclude=identity)
        await self.store.signal(room.name, {"type": _SIGNAL_PRESENCE, "event": "join", "identity": identity,
                                            "resumed": resumed}, self.instance)

    async def _catch_up(self, room: str, member: Member, reply: dict[str, Any], after: int, last: int,
                        min_epoch: int | None, pruned_seq: int) -> None:
        """Send the join reply, then the entries ``member`` may see in ``(after, last]`` a page
        at a time, then the frames held meanwhile. Stops as soon as the connection closes;
        a catch-up overtaken by pruning gets ``log_truncated`` and is closed (4008)."""
        identity = member.identity or ""
        try:
            backlog = 0
            for low in range(after, last, _COUNT_SPAN):
                backlog += await self.store.count_log(room, identity, after_seq=low,
                                                      up_to_seq=min(low + _COUNT_SPAN, last),
                                                      min_epoch=min_epoch)
            member.enqueue(p.dump_frame({**reply, "backlog": backlog}))
            cursor, pages = after, 0
            while not member.closing:
                await member.wait_drained(CATCHUP_PAGE_BYTES)
                if member.closing:
                    break
                page = await self.store.read_log(room, identity, after_seq=cursor, min_epoch=min_epoch,
                                                 up_to_seq=last, limit=CATCHUP_PAGE_ENTRIES,
                                                 max_bytes=CATCHUP_PAGE_BYTES)
                state = await self.store.group_state(room)
                if state.pruned_seq > max(cursor, pruned_seq):  # entries this page needed are gone
                    logger.info("catch-up overtaken by pruning room=%s identity=%s", room, identity)
                    member.enqueue(error_frame(None, SignalingError(
                        ErrorCode.LOG_TRUNCATED, "the room's log pruned what this catch-up still needed; "
                        "join again", pruned_seq=state.pruned_seq)))
                    member.close(CLOSE_SLOW_CONSUMER, "catch-up overtaken by pruning")
                    return
                if not page:
                    break
                for entry in page:
                    member.enqueue(event_frame(entry))
                cursor, pages = page[-1].seq, pages + 1
            logger.info("join room=%s identity=%s backlog=%d pages=%d", room, identity, backlog, pages)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("catch-up failed in room %s", room)
            member.close(1011, "internal server error")
        finally:
            member.release_held()

    # -- abandoned rooms -------------------------------------------------------------------

    async def _abandon_delay(self, room: Room) -> float:
        """Seconds until the room's group has had none of its members connected for
        ``abandon_after`` (zero or less: it has, and has no member left to add anyone)."""
        since = await self.store.empty_since(room.name)
        return (self._started if since is None else since) + self.config.abandon_after - self.config.clock()

    async def _start_afresh(self, room: Room) -> RoomGroup:
        """Drop the abandoned group of ``room`` and tell the newcomers waiting for it (everyone
        connected, here and elsewhere): docs/protocol.md, abandoned rooms."""
        present = await self.store.presence(room.name)
        await self.store.reset_group(room.name)
        for identity in present:  # they joined with valid tokens: the new group may add them
            await self.store.admit(room.name, identity)
        await self.store.set_empty_since(room.name, None)
        logger.info("room=%s: abandoned group dropped; newcomers start afresh", room.name)
        await self._reset_here(room)
        await self.store.signal(room.name, {"type": _SIGNAL_GROUP_RESET}, self.instance)
        return await self.store.group_state(room.name)

    async def _reset_here(self, room: Room) -> None:
        """The room's group was dropped: nobody here waits for it, the members here are told."""
        room.public, room.public_loaded, room.admitted = None, False, None
        for identity in tuple(room.waiting):
            room.waiting.discard(identity)
            if identity in room.members:
                await self.store.set_presence(room.name, identity, self.instance, False)
        room.over_quota.clear()
        await room.deliver(p.dump_frame({"type": p.GROUP_RESET}))

    async def _schedule_abandon_check(self, room: Room, *, at_least: float = 0.0) -> None:
        """Check ``room`` in its sequencer once its group has had no member connected for
        ``abandon_after`` (and ``at_least`` seconds from now), so that newcomers waiting
        meanwhile are not left waiting."""
        if room.abandon_timer is not None:
            return
        delay = max(at_least, await self._abandon_delay(room))
        if room.abandon_timer is not None:
            return

        def submit() -> None:
            room.abandon_timer = None
            if self.rooms.get(room.name) is room and room.members:
                room.submit(AbandonCheck())

        room.abandon_timer = asyncio.get_running_loop().call_later(delay, submit)

    async def _run_abandon_check(self, room: Room) -> None:
        """Drop the group if it is still abandoned, and tell the newcomers waiting for it."""
        try:
            if not room.members or not _orphaned(await self.store.presence(room.name)):
                return  # everyone left, or a member of the group came back
            if await self._abandon_delay(room) > 0:
                await self._schedule_abandon_check(room)
                return
            state = await self.store.group_state(room.name)
            if state.group_id is not None:
                await self._start_afresh(room)
        except Exception:
            logger.exception("abandoned group of room %s not dropped; retrying", room.name)
            await self._schedule_abandon_check(room, at_least=_ABANDON_RETRY)

    def depart(self, member: Member, *, dropped: bool = True) -> None:
        """``member``'s connection is gone (``dropped``) or it left (a ``leave`` request): it
        is no longer in its room here; its presence leaves the store in the room's sequencer
        (:meth:`_run_departure`)."""
        room = member.room
        if room is None:
            return
        member.room = None
        identity = member.identity or ""
        if room.members.get(identity) is member:
            del room.members[identity]
            room.waiting.discard(identity)
            if not room.members and room.abandon_timer is not None:
                room.abandon_timer.cancel()
                room.abandon_timer = None
            room.submit(Departure(identity, dropped))
            if self.sfu is not None:
                self.sfu.left(room.name, identity)
            logger.info("leave room=%s identity=%s", room.name, identity)
        room.wakeup.set()  # an idle sequencer of an empty room ends and drops the room

    async def _run_departure(self, room: Room, item: Departure) -> None:
        identity = item.identity
        if identity in room.members:
            return  # back already (a newer connection here holds the presence)
        try:
            was_orphaned = _orphaned(await self.store.presence(room.name))
            await self.store.drop_presence(room.name, identity, self.instance)
            present = await self.store.presence(room.name)
            if identity in present:
                return  # its newer connection is on another instance: it has not left
            # dropped: the connection ended without a leave request, it may come back (docs/protocol.md)
            room.broadcast(p.dump_frame({"type": p.PRESENCE, "event": "leave", "identity": identity,
                                         "dropped": item.dropped}))
            await self.store.signal(room.name, {"type": _SIGNAL_PRESENCE, "event": "leave",
                                                "identity": identity, "dropped": item.dropped}, self.instance)
            if not was_orphaned and _orphaned(present):  # the group's last member left
                await self.store.set_empty_since(room.name, self.config.clock())
                if room.members:
                    await self._schedule_abandon_check(room)
            if not present and self.sfu is not None:  # nobody left on any instance
                await self.sfu.vacated(room.name)
        except Exception:
            logger.exception("departure of %s from room %s not recorded", identity, room.name)

    async def _on_leave(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        _ack(member, rid)
        self.depart(member, dropped=False)
        member.close(1000, "left")

    # -- SFU (signaling.sfu) -------------------------------------------------------------------

    async def _on_sfu(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        if self.sfu is None:
            raise SignalingError(ErrorCode.SFU_UNAVAILABLE, "this server has no SFU")
        assert member.room is not None and member.identity is not None
        _ack(member, rid, **await self.sfu.handle(member.room.name, member.identity, msg))

    async def _send_sfu_frame(self, room: str, identity: str | None, frame: dict[str, Any]) -> None:
        """The bridge's events: to ``identity`` in ``room``, or to every member there (None)."""
        live = self.rooms.get(room)
        if live is None:
            return
        text = p.dump_frame(frame)
        if identity is None:
            live.broadcast(text)
        elif identity in live.members:
            live.members[identity].send(text)

    # -- KeyPackage directory --------------------------------------------------------------

    async def publish_key_packages(self, room: str, identity: str, raw: object) -> tuple[int, int]:
        """Store the base64 KeyPackages in ``raw``; (stored, available). Shared with HTTP.

        Each must be a KeyPackage (RFC 9420 §10) whose leaf's basic credential names
        ``identity``, the publisher's token identity; otherwise none is stored.
        """
        self.require_store()
        if not isinstance(raw, list) or not raw:
            raise SignalingError(ErrorCode.BAD_MESSAGE, "key_packages must be a non-empty list")
        bodies = [p.b64decode_field({"key_package": item}, "key_package") for item in raw]
        for body in bodies:
            try:
                credential = inspect_key_package(body).credential
            except MLSError:
                raise SignalingError(ErrorCode.BAD_MESSAGE, "key_packages: not an MLS KeyPackage") from None
            if credential.identity != identity.encode():
                raise SignalingError(ErrorCode.IDENTITY_MISMATCH,
                                     "a KeyPackage's credential must name its publisher's token identity")
        available = await self.store.publish_key_packages(room, identity, bodies,
                                                          self.config.max_key_packages)
        if available is None:
            raise SignalingError(ErrorCode.TOO_MANY_KEY_PACKAGES,
                                 f"at most {self.config.max_key_packages} KeyPackages per participant",
                                 limit=self.config.max_key_packages)
        logger.info("keypackages published room=%s identity=%s count=%d", room, identity, len(bodies))
        return len(bodies), available

    async def claim_key_package(self, room: str, claimer: str, identity: object) -> tuple[str, bytes]:
        """Atomically take one KeyPackage of ``identity`` for ``claimer``, a member of the room's
        group, within its claim rate (``claim_rate``, ``claim_burst``). Shared with HTTP."""
        self.require_store()
        target = p.validate_identity(identity)
        bucket = self._claims.get((room, claimer))
        if bucket is None:
            if len(self._claims) >= _MAX_CLAIMERS:
                self._claims.clear()
            bucket = self._claims[room, claimer] = TokenBucket(self.config.claim_rate, self.config.claim_burst)
        if not bucket.allow():
            raise SignalingError(ErrorCode.RATE_LIMITED, "too many KeyPackage claims; slow down",
                                 rate_per_second=self.config.claim_rate)
        if self.config.validate_handshakes and not await self._is_member(room, claimer):
            raise SignalingError(ErrorCode.NOT_MEMBER, "only members of the room's group claim KeyPackages")
        body = await self.store.claim_key_package(room, target)
        if body is None:
            raise SignalingError(ErrorCode.NOT_FOUND, "no KeyPackage available for this identity")
        logger.info("keypackage claimed room=%s identity=%s", room, target)
        return target, body

    async def _on_keypackage_publish(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        assert member.room is not None and member.identity is not None
        stored, available = await self.publish_key_packages(member.room.name, member.identity,
                                                            msg.get("key_packages"))
        _ack(member, rid, stored=stored, available=available)

    async def _is_member(self, room: str, identity: str) -> bool:
        """Whether ``identity`` has a leaf in the group of ``room`` (as the store holds it)."""
        live = self.rooms.get(room)
        if live is not None and live.public_loaded:
            return live.public is not None and live.public.is_member(identity)
        stored = await self.store.public_group(room)
        return stored is not None and PublicState.load(stored[0]).is_member(identity)

    async def _on_keypackage_claim(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        assert member.room is not None and member.identity is not None
        target, body = await self.claim_key_package(member.room.name, member.identity, msg.get("identity"))
        _ack(member, rid, identity=target, key_package=p.b64encode(body))

    # -- the handshake log and application messages ----------------------------------------

    def _welcomes(self, raw: object) -> tuple[WelcomeRecord, ...]:
        """The Welcomes of a commit: one per added member (§12.4.3.1), so distinct and at most a roomful."""
        if raw is None:
            return ()
        limit = self.config.max_participants
        if not isinstance(raw, list) or len(raw) > limit:
            raise SignalingError(ErrorCode.BAD_MESSAGE, f"welcomes must be a list of at most {limit}",
                                 limit=limit)
        records: dict[str, WelcomeRecord] = {}
        for item in raw:
            if not isinstance(item, dict):
                raise SignalingError(ErrorCode.BAD_MESSAGE, "each welcome must be an object {to, welcome}")
            recipient = p.validate_identity(item.get("to"))
            if recipient in records:
                raise SignalingError(ErrorCode.BAD_MESSAGE, "two welcomes for one recipient")
            records[recipient] = WelcomeRecord(recipient, p.b64decode_field(item, "welcome"))
        return tuple(records.values())

    @staticmethod
    def _epoch(msg: dict[str, Any]) -> int:
        epoch = p.int_field(msg, "epoch")
        assert epoch is not None
        return epoch

    async def _on_group_create(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        """The creator registers the room's group: its GroupInfo (and ratchet tree unless the
        GroupInfo carries it, §12.4.3.3) describe a group of one leaf, the creator's."""
        assert member.room is not None and member.identity is not None
        group_id, epoch = p.b64decode_field(msg, "group_id"), self._epoch(msg)
        tree = p.b64decode_field(msg, "ratchet_tree") if msg.get("ratchet_tree") is not None else None
        created = None
        if self.config.validate_handshakes:
            created = PublicState.create(member.identity, group_id, epoch,
                                         p.b64decode_field(msg, "group_info"), tree)
        request = GroupCreateRequest(member.identity, group_id, epoch)
        self._submit(member.room, Append(member, rid, request, created=created))

    async def _on_commit(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        assert member.room is not None and member.identity is not None
        request = CommitRequest(member.identity, p.b64decode_field(msg, "group_id"), self._epoch(msg),
                                p.b64decode_field(msg, "commit"), self._welcomes(msg.get("welcomes")))
        check_mls_header(request.commit, "commit", ContentType.COMMIT, request.epoch, request.group_id)
        self._submit(member.room, Append(member, rid, request))

    async def _on_proposal(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        assert member.room is not None and member.identity is not None
        request = ProposalRequest(member.identity, p.b64decode_field(msg, "group_id"), self._epoch(msg),
                                  p.b64decode_field(msg, "proposal"))
        check_mls_header(request.proposal, "proposal", ContentType.PROPOSAL, request.epoch, request.group_id)
        self._submit(member.room, Append(member, rid, request))

    async def _on_application(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        assert member.room is not None and member.identity is not None
        encoded = msg.get("ciphertext")
        if isinstance(encoded, str) and member.room.over_quota:  # refused before decoding, if known
            refusal = member.room.quota_refusal(member.identity, len(encoded) * 3 // 4 - encoded[-2:].count("="))
            if refusal is not None:
                raise refusal
        request = ApplicationRequest(member.identity, self._epoch(msg), p.b64decode_field(msg, "ciphertext"))
        group_id = check_mls_header(request.ciphertext, "ciphertext", ContentType.APPLICATION, request.epoch)
        self._submit(member.room, Append(member, rid, request, group_id=group_id))

    # -- WebRTC signaling relay ------------------------------------------------------------

    async def _on_relay(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        room = member.room
        assert room is not None
        target_id = p.validate_identity(msg.get("to"))
        if "data" not in msg:
            raise SignalingError(ErrorCode.BAD_MESSAGE, "field 'data' is required")
        frame = p.dump_frame({"type": msg["type"], "from": member.identity, "data": msg["data"]})
        target = room.members.get(target_id)
        if target is not None:
            target.send(frame)
        else:
            holder = (await self.store.presence(room.name)).get(target_id)
            if holder is None or holder.instance == self.instance:
                raise SignalingError(ErrorCode.NOT_CONNECTED, "that participant is not connected")
            await self.store.signal(room.name, {"type": _SIGNAL_RELAY, "instance": holder.instance,
                                                "to": target_id, "frame": frame}, self.instance)
        _ack(member, rid)
        logger.debug("relay %s room=%s from=%s to=%s", msg["type"], room.name, member.identity, target_id)
