"""Live rooms: who is connected here, each member's ordered outbound queue, the sequencer's work.

A :class:`Room` is one instance's part of a room (RFC 9420 §14, the delivery
service's ordering role): the members connected to this instance, the work
its sequencer has queued, and the room's feed (:class:`~signaling.store.FeedItem`)
as it arrives from the store, with the last ``seq`` delivered to the members here.
A :class:`Member` writes to any socket with aiohttp's ``send_str``/``close``
shape (:class:`Socket`), so this module imports no transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import SignalingError
from .public_state import PublicState
from .ratelimit import TokenBucket
from .store import AppendRequest, FeedItem

logger = logging.getLogger("signaling")

#: WebSocket close codes of the application range (RFC 6455 §7.4.2).
CLOSE_REPLACED = 4001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_JOIN_TIMEOUT = 4009

#: Seconds a closing connection gets to take its queued frames, then again to take the close frame.
FLUSH_TIMEOUT = 5.0

#: Largest frame :meth:`Member.deliver` writes itself (aiohttp writes, and compresses, frames this
#: small without waiting); larger ones always go through the writer task.
INLINE_FRAME_BYTES = 4096


class Socket(Protocol):
    """What a :class:`Member` writes to: a WebSocket (aiohttp's ``WebSocketResponse``)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int, message: bytes) -> bool: ...


@dataclass(eq=False, slots=True)
class Member:
    """One WebSocket connection; a room member once it has joined.

    Every frame for this connection (replies and pushed events) goes through
    ``queue``, written by one writer task, so the member sees frames in the
    order the server produced them. ``transport`` is the TCP connection under
    ``ws``, aborted when a peer takes not even the close frame. ``queued_bytes``
    counts the frames queued or being written: frames are ASCII JSON
    (:func:`signaling.protocol.dump_frame`), so characters are bytes.

    :meth:`deliver` is the room sequencer's fast path: with nothing queued or
    being written and room in the socket's buffer, the frame is written at
    once, saving the writer task a wake-up per frame; the order is the same.

    While a join's catch-up runs (``catchup``), every other frame for the
    connection is ``held`` (counted against the same limits) and queued after
    the catch-up's last page (:meth:`release_held`): the catch-up's own frames
    go through :meth:`enqueue`, a page at a time, each once the one before it
    has drained (:meth:`wait_drained`).
    """

    ws: Socket
    bucket: TokenBucket
    max_queued: int
    max_queued_bytes: int
    identity: str | None = None
    room: Room | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    closing: bool = False
    join_deadline: asyncio.TimerHandle | None = None
    transport: asyncio.WriteTransport | None = None
    queued_bytes: int = 0
    #: A frame is being written (by the writer task or by :meth:`deliver`); set when one is done.
    writing: bool = False
    written: asyncio.Event = field(default_factory=asyncio.Event)
    #: Frames held back while a catch-up runs (None: none runs), and their bytes.
    held: list[str] | None = None
    held_bytes: int = 0
    #: The join's catch-up task, while it runs.
    catchup: asyncio.Task[None] | None = None
    #: Set whenever the writer has taken a frame off the queue, and when the connection closes.
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    _close_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or its socket closed."""
        return self.closing or self.ws.closed

    def send(self, text: str) -> None:
        """Queue one frame (held while a catch-up runs); a member too slow to drain its queue
        is disconnected."""
        if self.held is None:
            self.enqueue(text)
        elif self._fits(text):
            self.queued_bytes += len(text)
            self.held_bytes += len(text)
            self.held.append(text)

    def enqueue(self, text: str) -> None:
        """Queue one frame now, ahead of any held ones (the catch-up's frames)."""
        if self._fits(text):
            self.queued_bytes += len(text)
            self.queue.put_nowait(text)

    def _fits(self, text: str) -> bool:
        """Whether one more frame is within the limits; if not, the connection is closed."""
        if self.closing:
            return False
        frames = self.queue.qsize() + len(self.held or ())
        if frames >= self.max_queued or self.queued_bytes + len(text) > self.max_queued_bytes:
            logger.warning("closing slow consumer %s in room %s (%d frames, %d bytes queued)", self.identity,
                           self.room.name if self.room else None, frames, self.queued_bytes)
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def release_held(self) -> None:
        """End the catch-up: queue the frames held back during it, in order."""
        held, self.held, self.held_bytes, self.catchup = self.held or [], None, 0, None
        if not self.closing:
            for text in held:
                self.queue.put_nowait(text)

    async def wait_drained(self, limit: int) -> None:
        """Until at most ``limit`` bytes of queued frames wait for the socket, or the connection closes."""
        while not self.closing and self.queued_bytes - self.held_bytes > limit:
            self.progress.clear()
            await self.progress.wait()

    async def deliver(self, text: str) -> None:
        """Write one frame now if nothing waits before it and the socket takes it at once; else queue it."""
        transport = self.transport
        if (self.writing or self.closing or transport is None or self.held is not None
                or len(text) > INLINE_FRAME_BYTES or self.queue.qsize() or self.ws.closed):
            self.send(text)
            return
        low, high = transport.get_write_buffer_limits()
        buffered = transport.get_write_buffer_size()
        if buffered > low or buffered + len(text) > high:  # flow control could make the write wait
            self.send(text)
            return
        self.writing = True
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self.closing = True
        finally:
            self.writing = False
            self.written.set()

    def close(self, code: int, reason: str) -> None:
        """Close the connection after the frames already queued."""
        if self.closing:
            return
        self.closing = True
        self.progress.set()
        self.queue.put_nowait(None)
        self._close_task = asyncio.ensure_future(self._close_after_flush(code, reason))

    async def wait_closed(self) -> None:
        """Until the close begun by :meth:`close` is done (at most twice ``FLUSH_TIMEOUT``)."""
        if self._close_task is not None:
            await self._close_task

    async def _close_after_flush(self, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=FLUSH_TIMEOUT)
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), timeout=FLUSH_TIMEOUT)
        except TimeoutError:
            # A peer that reads nothing cannot take the close frame either, and a plain transport
            # close would wait for its full send buffer forever: drop the TCP connection.
            if self.transport is not None:
                self.transport.abort()

    async def run_writer(self) -> None:
        """Write queued frames until ``None`` or a dead socket."""
        while True:
            text = await self.queue.get()
            try:
                if text is None:
                    return
                while self.writing:  # a frame of deliver() is still being written: it goes first
                    self.written.clear()
                    await self.written.wait()
                if not self.ws.closed:
                    self.writing = True
                    try:
                        await self.ws.send_str(text)
                    finally:
                        self.writing = False
            except (ConnectionError, RuntimeError):
                self.closing = True
            finally:
                if text is not None:
                    self.queued_bytes -= len(text)
                self.queue.task_done()
                self.progress.set()


@dataclass(eq=False, slots=True)
class Append:
    """A request waiting for the room's sequencer to append it to the log.

    ``group_id`` is the MLS header's (application messages, whose envelope has
    none); ``created`` the view a group creation registers, built from the
    creator's GroupInfo before it was queued.
    """

    member: Member
    rid: Any
    request: AppendRequest
    group_id: bytes | None = None
    created: PublicState | None = None


@dataclass(eq=False, slots=True)
class Admission:
    """A join waiting for the sequencer, so that catch-up and live fan-out meet without gap or overlap."""

    member: Member
    rid: Any
    identity: str
    since: int | None
    epoch: int | None
    done: asyncio.Future[None]


@dataclass(eq=False, slots=True)
class AbandonCheck:
    """A check, in the sequencer, whether the room's group has had none of its members
    connected for ``abandon_after`` seconds while newcomers wait to be added to it."""


@dataclass(eq=False, slots=True)
class Departure:
    """The connection of ``identity`` here has gone: its presence leaves the store (and the
    other members are told) in the sequencer, in order with the room's other work.
    ``dropped``: the connection ended without a ``leave`` request (it may come back)."""

    identity: str
    dropped: bool


@dataclass(eq=False, slots=True)
class Room:
    """The members connected to one room (one MLS group) here and the work its sequencer has queued.

    One sequencer task per room takes ``pending`` in order: each run of
    consecutive :class:`Append` items becomes one store transaction. Between
    items it takes the room's feed (``inbox``, filled by the store's reader):
    log entries go to the members here in ``seq`` order, each once
    (``delivered_seq``), and a request's reply waits in ``replies`` until the
    feed has delivered its entries here.
    """

    name: str
    members: dict[str, Member] = field(default_factory=dict)
    #: identities connected here that joined as newcomers while none of the group's members
    #: was connected: they wait for someone to add them (their presence says so in the store)
    waiting: set[str] = field(default_factory=set)
    #: the pending :class:`AbandonCheck` while newcomers wait
    abandon_timer: asyncio.TimerHandle | None = None
    pending: deque[Append | Admission | AbandonCheck | Departure] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    sequencer: asyncio.Task[None] | None = None
    #: the room's feed as the store hands it over, not yet taken by the sequencer; ``fed`` is
    #: set whenever an item arrives
    inbox: deque[FeedItem] = field(default_factory=deque)
    fed: asyncio.Event = field(default_factory=asyncio.Event)
    #: the last ``seq`` delivered to the members here (entries up to it never go out again)
    delivered_seq: int = 0
    #: replies (the ``seq`` they wait for, the member, the frame) in the order they go out
    replies: deque[tuple[int, Member, str]] = field(default_factory=deque)
    #: the group's keyless view, as the store holds it, and the version it was read at (plus
    #: the handshakes validated since); read from the store on first use (``public_loaded``)
    #: and again after the store refused what the view had accepted or another instance
    #: changed it
    public: PublicState | None = None
    public_version: int = 0
    public_loaded: bool = False
    #: identities admitted to the room (the only ones a commit may add), as last read from the
    #: store plus those admitted here since; None: read them on next use
    admitted: set[str] | None = None
    #: Application messages the store refused this epoch for a quota: by sender ("" for the
    #: room's own quota), the smallest refused size (0: any size, an entry quota) and the error.
    #: Usage only grows within an epoch, so as large a message is refused here, before its
    #: base64 is decoded or the sequencer sees it; a commit clears it.
    over_quota: dict[str, tuple[int, SignalingError]] = field(default_factory=dict)

    def quota_refusal(self, sender: str, size: int) -> SignalingError | None:
        """The ``quota_exceeded`` error an application message of ``size`` bytes from
        ``sender`` would get from the store this epoch, if known already."""
        for key in (sender, ""):
            known = self.over_quota.get(key)
            if known is not None and size >= known[0]:
                return known[1]
        return None

    def note_over_quota(self, sender: str, size: int, error: SignalingError) -> None:
        """Remember that the store refused ``size`` bytes from ``sender`` for ``error``'s quota."""
        key = sender if error.details.get("scope") == "sender" else ""
        smallest = 0 if error.details.get("unit") == "entries" else size
        known = self.over_quota.get(key)
        if known is None or smallest < known[0]:
            self.over_quota[key] = (smallest, error)

    def submit(self, item: Append | Admission | AbandonCheck | Departure) -> None:
        self.pending.append(item)
        self.wakeup.set()

    def take_feed(self, item: FeedItem) -> None:
        """The store's feed handler: keep ``item`` for the sequencer and wake it."""
        self.inbox.append(item)
        self.fed.set()
        self.wakeup.set()

    def broadcast(self, text: str, *, exclude: str | None = None) -> None:
        """Queue ``text`` for every member here but the identity ``exclude``."""
        for identity, member in tuple(self.members.items()):
            if identity != exclude:
                member.send(text)

    async def deliver(self, text: str, *, exclude: str | None = None) -> None:
        """:meth:`broadcast` through :meth:`Member.deliver` (the sequencer's fan-out)."""
        for identity, member in tuple(self.members.items()):
            if identity != exclude:
                await member.deliver(text)
