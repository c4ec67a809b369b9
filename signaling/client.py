"""An asyncio client of the signaling protocol (used by media/ peers and the tests).

::

    async with SignalingClient(ws_url, room, token) as client:     # connects and joins
        await client.publish_key_packages([kp1, kp2])
        reply = await client.commit(group_id, epoch, commit, welcomes={"bob": welcome})
        event = await client.next_event("commit", "application")

Requests carry an ``id``; :meth:`request` awaits the ``ack`` with the same
``re`` and raises :class:`~signaling.errors.SignalingError` for an ``error``
reply, and for a connection that fails under it (``connection_lost``: the
socket was reset or dropped before a reply, so the request may or may not have
reached the server; ``closed``: the server closed the connection first); a
request never outlives its reply, its error or its cancellation in the pending
map. Frames are strict JSON both ways: no ``NaN``, ``Infinity`` or numbers beyond
the double range (RFC 8259 §6). Everything else the server pushes (presence, log entries, relayed
WebRTC signaling, errors without ``re``) lands in an event queue, read with
:meth:`next_event` or ``async for event in client``. Fields carrying MLS bytes
are ``bytes`` in replies and events. :meth:`reconnect` rejoins and asks for
everything after the last ``seq`` received (and, when given, from an epoch on).

**Failover.** The client takes one WebSocket address or several (instances of
one deployment sharing a store, docs/deployment.md). A connection the server
or the network ended moves the client to the next address, round robin, and
opening a connection tries each address once from the current one, so
:meth:`reconnect` after a dropped connection reaches another instance and
catches up there from its cursor. An instance cut off from its store closes
its connections (1013), refuses upgrades (HTTP 503) and refuses joins
(``store_unavailable``, after which the next attempt goes to the next address). Backing off between attempts is the
caller's (``CallPeer.rejoin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from . import protocol as p
from .errors import ErrorCode, SignalingError


class SignalingClient:
    """One participant's connection to one room."""

    def __init__(self, ws_url: str | Sequence[str], room: str, token: str, *,
                 session: aiohttp.ClientSession | None = None) -> None:
        urls = (ws_url,) if isinstance(ws_url, str) else tuple(ws_url)
        if not urls or not all(isinstance(url, str) and url for url in urls):
            raise ValueError("ws_url must be one WebSocket address or a non-empty sequence of them")
        #: the addresses tried in turn (one instance each, or one load balancer)
        self.ws_urls = urls
        self._current = 0
        self.room = room
        self._token = token
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: Highest log ``seq`` received (events and catch-up); the reconnect cursor.
        self.last_seq = 0
        self.identity: str | None = None
        self.join_reply: dict[str, Any] = {}

    @property
    def ws_url(self) -> str:
        """The address in use (or tried next)."""
        return self.ws_urls[self._current]

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.ws_urls)

    def __repr__(self) -> str:
        return f"SignalingClient(room={self.room!r}, identity={self.identity!r}, last_seq={self.last_seq})"

    # -- connection ------------------------------------------------------------------------

    async def connect(self, *, since: int | None = None, epoch: int | None = None) -> dict[str, Any]:
        """Open the WebSocket and join; the join ``ack`` (catch-up events follow in the queue)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._ws = await self._open(self._session)
        self._reader = asyncio.create_task(self._read_loop(self._ws))
        fields: dict[str, Any] = {"room": self.room, "token": self._token}
        if since is not None:
            fields["since"] = since
        if epoch is not None:
            fields["epoch"] = epoch
        try:
            self.join_reply = await self.request(p.JOIN, **fields)
        except SignalingError as err:
            if err.code == ErrorCode.STORE_UNAVAILABLE:  # that instance lost its store: the next one
                self._rotate()
            raise
        self.identity = self.join_reply["identity"]
        if since is None and epoch is None:  # a newcomer: its cursor starts at the log's end
            self.last_seq = max(self.last_seq, self.join_reply.get("last_seq") or 0)
        return self.join_reply

    async def _open(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the current address, else to each next one in turn (one round);
        the last address's failure when none answers."""
        for _ in range(len(self.ws_urls) - 1):
            with contextlib.suppress(aiohttp.ClientError, OSError):
                return await session.ws_connect(self.ws_url, protocols=(p.SUBPROTOCOL,), max_msg_size=0)
            self._rotate()
        return await session.ws_connect(self.ws_url, protocols=(p.SUBPROTOCOL,), max_msg_size=0)

    async def reconnect(self, *, epoch: int | None = None, catch_up: bool = True) -> dict[str, Any]:
        """Drop the connection if open and rejoin, catching up after :attr:`last_seq`
        (``catch_up=False``: as a newcomer, e.g. one still waiting to be added)."""
        await self._drop()
        return await self.connect(since=self.last_seq if catch_up else None, epoch=epoch)

    async def close(self) -> None:
        """Close the WebSocket (the server announces the departure) and the owned session."""
        await self._drop()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _drop(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None  # before closing: the reader sees an end we chose
        if ws is not None:
            await ws.close()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def __aenter__(self) -> SignalingClient:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                try:
                    self._dispatch(p.parse_json_object(msg.data))
                except SignalingError:
                    self.events.put_nowait({"type": p.ERROR, "re": None, "code": ErrorCode.BAD_MESSAGE,
                                            "message": "the server sent an unreadable frame"})
        finally:
            # an abnormal closure (no close frame: reset, killed server) is a lost connection
            error = (SignalingError(ErrorCode.CONNECTION_LOST, "the connection to the server was lost")
                     if ws.close_code in (None, 1006) else
                     SignalingError(ErrorCode.CLOSED, "the connection closed"))
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            if ws is self._ws:  # ended by the server or the network: the next attempt goes elsewhere
                self._rotate()
            self.events.put_nowait({"type": "closed", "code": ws.close_code})

    def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != p.ERROR:
            p.decode_binary_fields(frame)
        rid = frame.get("re")
        future = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if future is not None:
            if future.done():
                return
            if frame.get("type") == p.ERROR:
                details = {k: v for k, v in frame.items() if k not in ("type", "re", "code", "message")}
                future.set_exception(SignalingError(frame.get("code", ErrorCode.INTERNAL),
                                                    frame.get("message", ""), **details))
            else:
                future.set_result(frame)
            return
        seq = frame.get("seq")
        if isinstance(seq, int) and "re" not in frame:
            self.last_seq = max(self.last_seq, seq)
        self.events.put_nowait(frame)

    # -- requests --------------------------------------------------------------------------

    async def send_raw(self, text: str) -> None:
        """Send one frame verbatim (tests use it for malformed input)."""
        if self._ws is None:
            raise SignalingError(ErrorCode.CLOSED, "not connected")
        await self._send(self._ws, text)

    @staticmethod
    async def _send(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        """Write one frame; a transport failing under it is ``connection_lost``."""
        try:
            await ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, OSError):
            raise SignalingError(ErrorCode.CONNECTION_LOST,
                                 "the connection to the server was lost") from None

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a request and await its ``ack`` (``SignalingError`` on an ``error`` reply,
        or with ``connection_lost`` or ``closed`` when the connection fails first)."""
        ws = self._ws
        if ws is None or ws.closed:
            raise SignalingError(ErrorCode.CLOSED, "not connected")
        rid = next(self._ids)
        text = p.dump_frame({"v": p.PROTOCOL_VERSION, "type": type_, "id": rid,
                             **p.encode_binary_fields(fields)})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._send(ws, text)
            return await future
        finally:
            self._pending.pop(rid, None)

    async def leave(self) -> None:
        await self.request(p.LEAVE)

    async def publish_key_packages(self, key_packages: list[bytes]) -> dict[str, Any]:
        return await self.request(p.KEYPACKAGE_PUBLISH,
                                  key_packages=[p.b64encode(kp) for kp in key_packages])

    async def claim_key_package(self, identity: str) -> bytes:
        return (await self.request(p.KEYPACKAGE_CLAIM, identity=identity))["key_package"]

    async def create_group(self, group_id: bytes, epoch: int, group_info: bytes,
                           ratchet_tree: bytes | None = None) -> dict[str, Any]:
        """Register the room's group from its creator's GroupInfo (and tree, unless the GroupInfo
        carries it); ``wrong_group`` when the room has a group already."""
        fields: dict[str, Any] = {"group_id": group_id, "epoch": epoch, "group_info": group_info}
        if ratchet_tree is not None:
            fields["ratchet_tree"] = ratchet_tree
        return await self.request(p.GROUP_CREATE, **fields)

    async def commit(self, group_id: bytes, epoch: int, commit: bytes, *,
                     welcomes: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        """Submit the commit for ``epoch``; the ack holds its ``seq`` and the new ``epoch``.

        Raises ``SignalingError`` with code ``conflict`` and ``details["epoch"]``
        when another commit for that epoch won.
        """
        wire_welcomes = [{"to": to, "welcome": p.b64encode(body)} for to, body in (welcomes or {}).items()]
        return await self.request(p.COMMIT, group_id=group_id, epoch=epoch, commit=commit,
                                  welcomes=wire_welcomes)

    async def propose(self, group_id: bytes, epoch: int, proposal: bytes) -> dict[str, Any]:
        return await self.request(p.PROPOSAL, group_id=group_id, epoch=epoch, proposal=proposal)

    async def send_application(self, epoch: int, ciphertext: bytes) -> int:
        """Send an MLS PrivateMessage (RFC 9420 §6.3); its ``seq`` once the server has stored it."""
        return (await self.request(p.APPLICATION, epoch=epoch, ciphertext=ciphertext))["seq"]

    async def signal(self, kind: str, to: str, data: Any) -> None:
        """Relay WebRTC signaling (``offer``, ``answer`` or ``candidate``) to ``to``."""
        if kind not in p.RELAY_TYPES:
            raise ValueError(f"kind must be one of {sorted(p.RELAY_TYPES)}")
        await self.request(kind, to=to, data=data)

    # -- events ----------------------------------------------------------------------------

    async def next_event(self, *types: str, timeout: float | None = 10.0) -> dict[str, Any]:
        """The next pushed event (of one of ``types`` when given, dropping the others)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if not types or event["type"] in types:
                    return event

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.events.get()
            yield event
            if event["type"] == "closed":
                return


async def fetch_token(base_url: str, room: str, identity: str, *, ttl: int | None = None,
                      session: aiohttp.ClientSession | None = None) -> str:
    """Mint a token through a development server's loopback-only ``POST /token``."""
    body: dict[str, Any] = {"room": room, "identity": identity}
    if ttl is not None:
        body["ttl"] = ttl
    owned = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.post(base_url.rstrip("/") + "/token", data=p.dump_frame(body),
                                headers={"Content-Type": "application/json"}) as response:
            reply = p.parse_json_object(await response.text())
            if response.status != 200:
                raise SignalingError(reply.get("code", ErrorCode.INTERNAL), reply.get("message", ""))
            return reply["token"]
    finally:
        if owned:
            await session.close()
