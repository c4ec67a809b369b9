"""The signaling server and MLS delivery service (aiohttp).

One WebSocket per participant carries requests (each answered by ``ack`` or
``error``) and pushed events. The delivery service keeps, per room (one MLS
group), a log of accepted messages numbered by ``seq``: commits sequenced one
per epoch (RFC 9420 §14, the delivery service's ordering role), proposals,
Welcomes routed to the member they add (§12.4.3.1) and application messages
(PrivateMessage, §6.3). One sequencer task per room takes the room's
requests in arrival order, writes each run of them in one store transaction
(group commit), then fans the entries out in ``seq`` order and acknowledges:
every accepted message is durable in the :class:`~signaling.store.Store`
before its ``ack`` is sent, and every member receives a room's log entries in
one order. Joins pass through the same sequencer, so a joiner's catch-up and
the live fan-out meet without gap or duplicate: the sequencer registers the
joiner between two batches and fixes the catch-up's end at the log's last
``seq`` then; the catch-up itself (a task of its own, so that the sequencer
goes on) reads the log up to that ``seq`` in bounded pages, one page after
the previous one has drained from the socket's queue, while every frame the
room produces for the joiner meanwhile is held and sent after the last page.
Each room's log is held to per-epoch quotas and pruned by epochs, size and
age (:class:`~signaling.store.LogPolicy`).

Handshakes are PublicMessages (§6.2) and application messages
PrivateMessages (§6.3) whose header agrees with the request envelope
(:mod:`signaling.mls_header`). The sequencer validates each handshake against
the room's keyless ``mls.PublicGroup`` and the room's tokens
(:mod:`signaling.public_state`: the server is the authentication service of
its rooms) before the store sees it; the view's new state is stored in the
same transaction as the handshake. Application messages are accepted from
the group's members only.

Logging records types, rooms, identities, sequence numbers and sizes only:
never a payload, a token or the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from mls.errors import MLSError
from mls.inspection import ContentType, inspect_key_package

from . import protocol as p
from .config import ServerConfig
from .errors import ErrorCode, SignalingError
from .http_api import (TOO_MANY_CONNECTIONS, TOO_MANY_FROM_ADDRESS, PathAccessLogger, add_http_routes,
                       error_response)
from .mls_header import check_mls_header
from .public_state import PublicState
from .ratelimit import TokenBucket
from .room import (CLOSE_JOIN_TIMEOUT, CLOSE_REPLACED, CLOSE_SLOW_CONSUMER, AbandonCheck, Admission, Append,
                   Member, Room)
from .sqlite_store import SQLiteStore
from .store import (AppendResult, ApplicationRequest, CommitRequest, EntryKind, GroupCreateRequest,
                    LogEntry, Outcome, ProposalRequest, RoomGroup, Store, WelcomeRecord)
from .tokens import TokenAuthority, load_or_create_secret

logger = logging.getLogger("signaling")

Handler = Callable[[Member, Any, dict[str, Any]], Awaitable[None]]

#: Most requests one store transaction takes (group commit).
_MAX_BATCH = 256

#: Seconds before an abandoned-room check that failed (a store error) runs again.
_ABANDON_RETRY = 1.0

#: Claimers whose claim buckets are kept; beyond it they start afresh (full buckets).
_MAX_CLAIMERS = 10_000

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


def event_frame(entry: LogEntry) -> str:
    """The event frame pushing one log entry to a member."""
    frame: dict[str, Any] = {"type": entry.kind.value, "seq": entry.seq, "from": entry.sender,
                             "epoch": entry.epoch}
    if entry.group_id is not None:
        frame["group_id"] = p.b64encode(entry.group_id)
    frame[_BODY_FIELD[entry.kind]] = p.b64encode(entry.body)
    return p.dump_frame(frame)


def resolve_secret(config: ServerConfig) -> bytes:
    """The token secret: given, loaded from (or created in) ``secret_file``, or ephemeral."""
    if config.secret is not None:
        return config.secret
    if config.secret_file is not None:
        return load_or_create_secret(config.secret_file)
    logger.warning("no token secret file: tokens will not outlive this process")
    return secrets.token_bytes(32)


class SignalingServer:
    """Rooms, the delivery service and the WebRTC relay behind one aiohttp application."""

    def __init__(self, config: ServerConfig, store: Store | None = None,
                 tokens: TokenAuthority | None = None) -> None:
        self.config = config
        self.store: Store = store or SQLiteStore(config.db_path, synchronous=config.db_synchronous,
                                                 policy=config.log_policy(), clock=config.clock)
        self.tokens = tokens or TokenAuthority(resolve_secret(config))
        self.rooms: dict[str, Room] = {}
        self.connections: set[Member] = set()
        #: WebSocket upgrades under way: they count against ``max_connections`` like open ones.
        self._handshakes = 0
        #: WebSocket connections (upgrades under way included) by remote address: the
        #: per-address limits; one without an identity has not joined yet.
        self._by_address: dict[str, set[Member]] = {}
        #: when each room lost its last connection (monotonic; rooms never seen: the start)
        self._started = time.monotonic()
        self._empty_since: dict[str, float] = {}
        #: KeyPackage claims per (room, claimer): token buckets
        self._claims: dict[tuple[str, str], TokenBucket] = {}
        self._handlers: dict[str, Handler] = {
            p.JOIN: self._on_join,
            p.LEAVE: self._on_leave,
            p.KEYPACKAGE_PUBLISH: self._on_keypackage_publish,
            p.KEYPACKAGE_CLAIM: self._on_keypackage_claim,
            p.GROUP_CREATE: self._on_group_create,
            p.COMMIT: self._on_commit,
            p.PROPOSAL: self._on_proposal,
            p.APPLICATION: self._on_application,
            **{kind: self._on_relay for kind in p.RELAY_TYPES},
        }

    # -- application -----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application: /ws, the HTTP API (signaling.http_api) and static files."""
        app = web.Application(client_max_size=self.config.max_message_bytes)
        app.router.add_get("/ws", self.handle_ws)
        add_http_routes(app, self)
        static = Path(self.config.static_dir) if self.config.static_dir else None
        if static is not None and static.is_dir() and any(static.iterdir()):
            app.router.add_static("/", static, show_index=False, follow_symlinks=False)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        await self.store.open()

    async def _shutdown(self, _app: web.Application) -> None:
        members = tuple(self.connections)
        for member in members:
            member.close(1001, "server shutdown")
        await asyncio.gather(*(member.wait_closed() for member in members), return_exceptions=True)

    async def _cleanup(self, _app: web.Application) -> None:
        for room in tuple(self.rooms.values()):
            if room.sequencer is not None:
                room.sequencer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await room.sequencer
        await self.store.close()

    # -- one WebSocket connection ----------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        if len(self.connections) + self._handshakes >= cfg.max_connections:
            logger.warning("refused a WebSocket upgrade: %d connections open", len(self.connections))
            return error_response(SignalingError(
                TOO_MANY_CONNECTIONS, "the server has reached its connection limit; retry later",
                limit=cfg.max_connections))
        address = request.remote or ""
        refusal = self._address_refusal(address)
        if refusal is not None:
            return error_response(refusal)
        # Frames up to twice the limit get a too_large reply; larger ones close with 1009.
        ws = web.WebSocketResponse(protocols=(p.SUBPROTOCOL,), heartbeat=cfg.heartbeat,
                                   max_msg_size=2 * cfg.max_message_bytes)
        member = Member(ws, TokenBucket(cfg.rate_per_second, cfg.rate_burst), cfg.max_queued_frames,
                        cfg.max_queued_bytes, transport=request.transport)
        self._by_address.setdefault(address, set()).add(member)
        self._handshakes += 1  # counted from the check on, so concurrent upgrades cannot overshoot
        try:
            await ws.prepare(request)
        except BaseException:
            self._forget_address(address, member)
            raise
        finally:
            self._handshakes -= 1
        self.connections.add(member)
        writer = asyncio.create_task(member.run_writer())
        member.join_deadline = asyncio.get_running_loop().call_later(
            cfg.join_timeout, self._join_deadline_passed, member)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._handle_text(member, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._error(member, None, SignalingError(
                        ErrorCode.BAD_MESSAGE, "protocol version 1 uses text frames only"))
                else:
                    break
        finally:
            member.join_deadline.cancel()
            self._depart(member)
            self.connections.discard(member)
            if not member.closing:
                member.closing = True
                member.progress.set()
                member.queue.put_nowait(None)
            if member.catchup is not None:
                member.catchup.cancel()
            self._forget_address(address, member)
            try:
                await asyncio.wait_for(writer, timeout=5.0)
            except (TimeoutError, ConnectionError):
                writer.cancel()
        return ws

    def _address_refusal(self, address: str) -> SignalingError | None:
        """Why an upgrade from ``address`` is refused (a per-address limit), or None."""
        cfg, peers = self.config, self._by_address.get(address, set())
        if len(peers) >= cfg.max_connections_per_address:
            limit, what = cfg.max_connections_per_address, "open connections"
        elif sum(peer.identity is None for peer in peers) >= cfg.max_unjoined_per_address:
            limit, what = cfg.max_unjoined_per_address, "connections not joined yet"
        else:
            return None
        logger.warning("refused a WebSocket upgrade: %d %s from one address", limit, what)
        return SignalingError(TOO_MANY_FROM_ADDRESS, f"too many {what} from this address; retry later",
                              limit=limit)

    def _forget_address(self, address: str, member: Member) -> None:
        peers = self._by_address.get(address)
        if peers is not None:
            peers.discard(member)
            if not peers:
                del self._by_address[address]

    def _join_deadline_passed(self, member: Member) -> None:
        if member.identity is None and not member.closing:
            self._error(member, None, SignalingError(ErrorCode.UNAUTHORIZED,
                                                     "no join request within the join timeout"))
            member.close(CLOSE_JOIN_TIMEOUT, "join timeout")

    async def _handle_text(self, member: Member, text: str) -> None:
        if member.closing:
            return  # left, replaced or too slow: nothing it sends now is sequenced (or answered)
        limit = self.config.max_message_bytes
        if not member.bucket.allow():
            self._error(member, None, SignalingError(
                ErrorCode.RATE_LIMITED, "too many frames; slow down",
                rate_per_second=self.config.rate_per_second))
            return
        if len(text) > limit or (4 * len(text) > limit and len(text.encode()) > limit):
            self._error(member, None, SignalingError(
                ErrorCode.TOO_LARGE, f"frames are limited to {limit} bytes", limit=limit))
            return
        try:
            message = p.parse_frame(text)
            rid = p.request_id(message)
        except SignalingError as err:
            self._error(member, None, err)
            return
        kind = message["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            self._error(member, rid, SignalingError(ErrorCode.UNKNOWN_TYPE, "unknown message type"))
            return
        if member.room is None and kind != p.JOIN:
            self._error(member, rid, SignalingError(ErrorCode.NOT_JOINED, "join a room first"))
            return
        logger.debug("frame %s (%d bytes) from %s", kind, len(text), member.identity)
        try:
            await handler(member, rid, message)
        except SignalingError as err:
            self._error(member, rid, err)
        except Exception:
            logger.exception("internal error while handling a %s request", kind)
            self._error(member, rid, SignalingError(ErrorCode.INTERNAL, "internal server error"))

    # -- replies ---------------------------------------------------------------------------

    @staticmethod
    def _ack(member: Member, rid: Any, **fields: Any) -> None:
        member.send(p.dump_frame({"type": p.ACK, "re": rid, **fields}))

    @staticmethod
    def _error(member: Member, rid: Any, err: SignalingError) -> None:
        frame = {"type": p.ERROR, "re": rid, "code": str(err.code), "message": err.message,
                 **err.details}
        member.send(p.dump_frame(frame))

    def _presence(self, room: Room, member: Member, event: str) -> None:
        room.broadcast(p.dump_frame({"type": p.PRESENCE, "event": event,
                                     "identity": member.identity}), exclude=member)

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

    async def _sequence(self, room: Room) -> None:
        """Work through ``room.pending`` in order; end (dropping the room) once it is idle and empty."""
        while True:
            if not room.pending:
                if not room.members:
                    if self.rooms.get(room.name) is room:
                        del self.rooms[room.name]
                    return
                room.wakeup.clear()
                await room.wakeup.wait()
                continue
            item = room.pending.popleft()
            if isinstance(item, Admission):
                await self._run_admission(room, item)
                continue
            if isinstance(item, AbandonCheck):
                await self._run_abandon_check(room)
                continue
            run = [item]
            while room.pending and isinstance(room.pending[0], Append) and len(run) < _MAX_BATCH:
                run.append(room.pending.popleft())  # type: ignore[arg-type]
            batch = [append for append in [await self._validate(room, a) for a in run] if append is not None]
            if not batch:
                continue
            try:
                results = await self.store.append(room.name, [a.request for a in batch])
            except Exception:
                logger.exception("store append failed in room %s (%d requests)", room.name, len(batch))
                room.public_loaded = False  # the view ran ahead of the store: read it again
                for append in batch:
                    self._error(append.member, append.rid,
                                SignalingError(ErrorCode.INTERNAL, "internal server error"))
                continue
            for append, result in zip(batch, results):
                if result.outcome is not Outcome.ACCEPTED and not isinstance(append.request, ApplicationRequest):
                    room.public_loaded = False  # another server sharing the store moved the group on
                await self._deliver(room, append, result)

    # -- the room's public view of its group -----------------------------------------------

    async def _public_state(self, room: Room) -> PublicState | None:
        """The room's keyless view of its group, read from the store when not in memory."""
        if not room.public_loaded:
            stored = await self.store.public_group(room.name)
            room.public = None if stored is None else PublicState.load(stored[0])
            room.public_loaded = True
        return room.public

    async def _validate(self, room: Room, append: Append) -> Append | None:
        """``append`` with the view's new state, if the room's view accepts it; else answer the
        refusal (the view unchanged) and None. Runs in the sequencer, in log order."""
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
                encoded = state.commit(request.sender, request.commit, request.welcomes, room.admitted)
            return Append(append.member, append.rid, dataclasses.replace(request, public_group=encoded))
        except SignalingError as err:
            logger.info("%s refused room=%s identity=%s code=%s", type(request).__name__, room.name,
                        request.sender, err.code)
            self._error(append.member, append.rid, err)
        except Exception:
            logger.exception("validation failed in room %s", room.name)
            room.public_loaded = False
            self._error(append.member, append.rid, SignalingError(ErrorCode.INTERNAL, "internal server error"))
        return None

    async def _deliver(self, room: Room, append: Append, result: AppendResult) -> None:
        """Fan out one durable result and answer its sender."""
        request, member = append.request, append.member
        kind = type(request).__name__
        if result.outcome is not Outcome.ACCEPTED:
            logger.info("%s refused room=%s epoch=%d outcome=%s", kind, room.name, request.epoch,
                        result.outcome.value)
            refusal = self._refusal(result)
            if isinstance(request, ApplicationRequest) and result.outcome is Outcome.QUOTA_EXCEEDED:
                room.note_over_quota(request.sender, len(request.ciphertext), refusal)
            self._error(member, append.rid, refusal)
            return
        if isinstance(request, GroupCreateRequest):  # the others here are not members (yet)
            room.waiting = set(room.members) - {member.identity or ""}
            await member.deliver(p.dump_frame({"type": p.ACK, "re": append.rid, "epoch": result.epoch}))
            logger.info("group created room=%s epoch=%d", room.name, request.epoch)
            return
        first, *welcomes = result.entries
        if isinstance(request, ApplicationRequest):
            await room.deliver(event_frame(first), exclude=member)
            await member.deliver(p.dump_frame({"type": p.ACK, "re": append.rid, "seq": first.seq}))
            logger.debug("application room=%s seq=%d size=%d", room.name, first.seq, len(first.body))
            return
        await room.deliver(event_frame(first))
        if isinstance(request, CommitRequest):  # its sender is a member of the group
            room.waiting.discard(member.identity or "")
            room.over_quota.clear()  # a new epoch: fresh quotas
        for entry in welcomes:
            room.waiting.discard(entry.recipient or "")
            recipient = room.members.get(entry.recipient or "")
            if recipient is not None:
                await recipient.deliver(event_frame(entry))
        await member.deliver(p.dump_frame({"type": p.ACK, "re": append.rid, "seq": first.seq,
                                           "epoch": result.epoch}))
        logger.info("%s accepted room=%s epoch=%d seq=%d size=%d welcomes=%d", kind, room.name,
                    request.epoch, first.seq, len(first.body), len(welcomes))

    # -- join and leave --------------------------------------------------------------------

    async def _on_join(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        if member.identity is not None or member.room is not None:
            raise SignalingError(ErrorCode.ALREADY_JOINED, "this connection has joined already")
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

    async def _admit(self, room: Room, item: Admission) -> None:
        """Register a member (in the sequencer, between batches) and queue ack, presence, and
        start its catch-up: entries up to the log's last ``seq`` now come from the store
        (:meth:`_catch_up`), later ones from the live fan-out, held until the catch-up ends."""
        member, identity = item.member, item.identity
        previous = room.members.get(identity)
        if previous is None and len(room.members) >= self.config.max_participants:
            raise SignalingError(ErrorCode.ROOM_FULL, "the room is full",
                                 limit=self.config.max_participants)
        state = await self.store.group_state(room.name)
        waiting, was_orphaned = False, self._orphaned(room)
        after: int | None
        if item.since is None and item.epoch is None:
            if state.group_id is not None and self._orphaned(room) and self._abandoned(room.name):
                state = await self._start_afresh(room)
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
        if member.closing or member.ws.closed:
            raise SignalingError(ErrorCode.CLOSED, "the connection closed while joining")
        if previous is not None:
            self._error(previous, None, SignalingError(ErrorCode.REPLACED,
                                                       "a newer connection joined as this identity"))
            previous.close(CLOSE_REPLACED, "replaced")
        if member.join_deadline is not None:
            member.join_deadline.cancel()
        member.identity, member.room = identity, room
        room.members[identity] = member
        room.admitted.add(identity)
        if waiting:
            room.waiting.add(identity)
        else:
            room.waiting.discard(identity)
        if not self._orphaned(room):
            self._empty_since.pop(room.name, None)
        else:
            if not was_orphaned:  # it replaced the connection of the group's last member here
                self._note_empty(room.name)
            if state.group_id is not None:  # nobody here can add this newcomer
                self._schedule_abandon_check(room)
        reply = {"type": p.ACK, "re": item.rid, "protocol": p.PROTOCOL_VERSION, "room": room.name,
                 "identity": identity, "members": sorted(i for i in room.members if i != identity),
                 "group_id": None if state.group_id is None else p.b64encode(state.group_id),
                 "epoch": state.epoch, "last_seq": state.last_seq}
        if self.config.turn is not None:
            reply["ice_servers"] = [self.config.turn.issue(identity)]
        if after is None or after >= state.last_seq:
            member.send(p.dump_frame({**reply, "backlog": 0}))
            logger.info("join room=%s identity=%s backlog=0", room.name, identity)
        else:
            member.held = []  # from now on the fan-out's frames wait for the catch-up's last page
            member.catchup = asyncio.create_task(self._catch_up(
                room.name, member, reply, after, state.last_seq, item.epoch, state.pruned_seq))
        self._presence(room, member, "join")

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
                    member.enqueue(p.dump_frame({
                        "type": p.ERROR, "re": None, "code": str(ErrorCode.LOG_TRUNCATED),
                        "message": "the room's log pruned what this catch-up still needed; join again",
                        "pruned_seq": state.pruned_seq}))
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

    @staticmethod
    def _orphaned(room: Room) -> bool:
        """Whether none of the group's members is connected: everyone here (if anyone)
        is a newcomer still waiting to be added (no Welcome or commit of theirs seen)."""
        return room.members.keys() <= room.waiting

    def _abandoned(self, name: str) -> bool:
        """Whether ``name`` has had none of its group's members connected for
        ``abandon_after`` seconds: its group has no member left to add anyone to it."""
        return time.monotonic() - self._empty_since.get(name, self._started) >= self.config.abandon_after

    async def _start_afresh(self, room: Room) -> RoomGroup:
        """Drop the abandoned group of ``room`` and tell the newcomers waiting there
        (everyone connected): docs/protocol.md, abandoned rooms."""
        await self.store.reset_group(room.name)
        room.public, room.public_loaded = None, True
        self._empty_since.pop(room.name, None)
        room.waiting.clear()
        room.over_quota.clear()
        logger.info("room=%s: abandoned group dropped; newcomers start afresh", room.name)
        await room.deliver(p.dump_frame({"type": p.GROUP_RESET}))
        return await self.store.group_state(room.name)

    def _schedule_abandon_check(self, room: Room, *, at_least: float = 0.0) -> None:
        """Check ``room`` in its sequencer once its group has had no member connected for
        ``abandon_after`` (and ``at_least`` seconds from now), so that newcomers waiting
        meanwhile are not left waiting."""
        if room.abandon_timer is not None:
            return
        since = self._empty_since.get(room.name, self._started)
        delay = max(at_least, since + self.config.abandon_after - time.monotonic())

        def submit() -> None:
            room.abandon_timer = None
            if self.rooms.get(room.name) is room and room.members:
                room.submit(AbandonCheck())

        room.abandon_timer = asyncio.get_running_loop().call_later(delay, submit)

    async def _run_abandon_check(self, room: Room) -> None:
        """Drop the group if it is still abandoned, and tell the newcomers waiting for it."""
        if not room.members or not self._orphaned(room):
            return  # everyone left, or a member of the group came back
        if not self._abandoned(room.name):
            self._schedule_abandon_check(room)
            return
        try:
            state = await self.store.group_state(room.name)
            if state.group_id is not None:
                await self._start_afresh(room)
        except Exception:
            logger.exception("abandoned group of room %s not dropped; retrying", room.name)
            self._schedule_abandon_check(room, at_least=_ABANDON_RETRY)

    def _note_empty(self, name: str) -> None:
        """Remember since when ``name`` has none of its group's members connected.  Entries
        older than ``abandon_after`` go: a missing entry reads as the server's start, which is
        earlier still, so the answer for that room stays the same."""
        now = time.monotonic()
        self._empty_since = {room: since for room, since in self._empty_since.items()
                             if now - since < self.config.abandon_after}
        self._empty_since[name] = now

    def _depart(self, member: Member) -> None:
        room = member.room
        if room is None:
            return
        member.room = None
        if room.members.get(member.identity or "") is member:
            orphaned = self._orphaned(room)
            del room.members[member.identity or ""]
            room.waiting.discard(member.identity or "")
            if not orphaned and self._orphaned(room):  # the group's last member here left
                self._note_empty(room.name)
                if room.members:
                    self._schedule_abandon_check(room)
            if not room.members and room.abandon_timer is not None:
                room.abandon_timer.cancel()
                room.abandon_timer = None
            self._presence(room, member, "leave")
            logger.info("leave room=%s identity=%s", room.name, member.identity)
        room.wakeup.set()  # an idle sequencer of an empty room ends and drops the room

    async def _on_leave(self, member: Member, rid: Any, msg: dict[str, Any]) -> None:
        self._ack(member, rid)
        self._depart(member)
        member.close(1000, "left")

    # -- KeyPackage directory --------------------------------------------------------------

    async def publish_key_packages(self, room: str, identity: str, raw: object) -> tuple[int, int]:
        """Store the base64 KeyPackages in ``raw``; (stored, available). Shared with HTTP.

        Each must be a KeyPackage (RFC 9420 §10) whose leaf's basic credential names
        ``identity``, the publisher's token identity; otherwise none is stored.
        """
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
        self._ack(member, rid, stored=stored, available=available)

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
        self._ack(member, rid, identity=target, key_package=p.b64encode(body))

    # -- the handshake log and application messages ----------------------------------------

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
        target = room.members.get(target_id)
        if target is None:
            raise SignalingError(ErrorCode.NOT_CONNECTED, "that participant is not connected")
        target.send(p.dump_frame({"type": msg["type"], "from": member.identity, "data": msg["data"]}))
        self._ack(member, rid)
        logger.debug("relay %s room=%s from=%s to=%s", msg["type"], room.name, member.identity, target_id)


@dataclass(slots=True)
class RunningServer:
    """A server listening on ``host:port`` (port resolved when 0 was asked for)."""

    server: SignalingServer
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(config: ServerConfig, *, store: Store | None = None,
                       tokens: TokenAuthority | None = None) -> RunningServer:
    """Start a server on ``config.host:config.port`` inside the running event loop."""
    server = SignalingServer(config, store, tokens)
    # keepalive_timeout runs from each connection's start: the bound on a half-sent request head
    runner = web.AppRunner(server.build_app(), handle_signals=False, access_log_class=PathAccessLogger,
                           keepalive_timeout=config.header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    logger.info("listening on %s:%d", config.host, port)
    return RunningServer(server, runner, config.host, port)
