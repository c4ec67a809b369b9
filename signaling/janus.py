"""An asyncio client of Janus's HTTP API for the VideoRoom plugin (the SFU of issue 16).

The signaling server is Janus's only client: Janus forwards SFrame ciphertext
it cannot read (RFC 9605 §4.1 and §9.1: the SFU is outside the trust
boundary), and its control API stays private to the server.  One
:class:`JanusSession` is one Janus session (``create``) whose events arrive
through a long poll (``GET /janus/<session>?maxev=10``, which also keeps the
session alive); each :class:`VideoRoomHandle` is one attached
``janus.plugin.videoroom`` handle: room create/destroy, a publisher's
join-and-publish, a multistream subscriber's join/update/start, detach.

Requests answered asynchronously (``ack`` then an event carrying the same
transaction) and synchronously (``success``) look the same to callers: a
plugin answer and its jsep.  Janus's failures become typed errors:
:class:`SfuUnavailable` when Janus cannot be reached or has lost the session
(it died or restarted; a pending request then fails the same way), and
:class:`SfuRefused` carrying Janus's numeric ``janus_code`` otherwise.  SDP
bodies and room secrets never reach a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from .errors import ErrorCode, SignalingError

logger = logging.getLogger("signaling.janus")

VIDEOROOM = "janus.plugin.videoroom"
#: seconds for one request to Janus (its long poll answers within 30 s on its own)
REQUEST_TIMEOUT = 10.0
POLL_TIMEOUT = 45.0
#: seconds between keepalives: a session Janus dropped (it timed out, or was destroyed) is noticed
#: within this time, while a pending long poll would linger up to 30 s
KEEPALIVE_INTERVAL = 10.0
#: Janus core errors meaning the session or handle is gone (janus/apierror.h)
LOST_CODES = frozenset({458, 459})
#: VideoRoom errors meaning the room is gone (plugins/janus_videoroom.c: 426 no such room)
NO_SUCH_ROOM = 426
#: VideoRoom's "no such feed": the feed is not (or no longer) published
NO_SUCH_FEED = 428
#: VideoRoom's "unauthorized", also its answer to a publish without ``e2ee`` in a require_e2ee room
UNAUTHORIZED = 433

Jsep = dict[str, Any]


class SfuError(SignalingError):
    """A request to the SFU failed; the ``error`` frame a client gets for it."""


class SfuUnavailable(SfuError):
    """Janus cannot be reached, or lost the session (it died or restarted)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SFU_UNAVAILABLE, message)


class SfuRefused(SfuError):
    """Janus answered a request with an error: ``janus_code`` and Janus's reason (never SDP or secrets)."""

    def __init__(self, janus_code: int, reason: str) -> None:
        code = ErrorCode.NOT_FOUND if janus_code in (NO_SUCH_ROOM, NO_SUCH_FEED) else ErrorCode.SFU_REFUSED
        super().__init__(code, f"Janus error {janus_code}: {reason[:200]}", janus_code=janus_code)
        self.janus_code = janus_code


def _transaction() -> str:
    return secrets.token_hex(8)


class JanusSession:
    """One Janus session over HTTP: create, long-poll its events, attach handles, destroy.

    ``on_lost`` is called once (with the reason) when the session dies: a
    failed long poll, an HTTP error, or Janus answering that the session no
    longer exists.  Every pending request then raises :class:`SfuUnavailable`.
    """

    def __init__(self, url: str, on_lost: Callable[[str], None] | None = None,
                 keepalive: float = KEEPALIVE_INTERVAL) -> None:
        self.url = url.rstrip("/")
        self.on_lost = on_lost
        self.keepalive = keepalive
        self.session_id: int | None = None
        self.lost: str | None = None
        self.handles: dict[int, VideoRoomHandle] = {}
        self._http: aiohttp.ClientSession | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def create(self) -> None:
        """Create the session and start its long poll (raises :class:`SfuUnavailable`)."""
        self._http = aiohttp.ClientSession()
        try:
            reply = await self._post("", {"janus": "create"})
        except SfuError:
            await self._http.close()
            raise
        self.session_id = int(reply["data"]["id"])
        self._poller = asyncio.create_task(self._poll())
        self._keeper = asyncio.create_task(self._keep_alive())

    @property
    def alive(self) -> bool:
        return self.session_id is not None and self.lost is None

    async def attach(self) -> VideoRoomHandle:
        """A new VideoRoom handle in this session."""
        reply = await self._post(f"/{self._session()}", {"janus": "attach", "plugin": VIDEOROOM})
        handle = VideoRoomHandle(self, int(reply["data"]["id"]))
        self.handles[handle.handle_id] = handle
        return handle

    async def destroy(self) -> None:
        """Destroy the session (if Janus still has it) and stop polling."""
        for task in (self._poller, self._keeper):
            if task is not None:
                task.cancel()
        if self.alive:
            try:
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
            except SfuError:
                pass  # already gone with Janus: nothing left to destroy
        self._fail_pending("the Janus session was destroyed")
        self.lost = self.lost or "destroyed"
        if self._http is not None:
            await self._http.close()

    def _session(self) -> int:
        if not self.alive:
            raise SfuUnavailable(f"the Janus session is gone ({self.lost or 'not created'})")
        assert self.session_id is not None
        return self.session_id

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` with a fresh transaction; the synchronous reply, or the event an ``ack``
        promised (a plugin ``message``'s; any other request's ``ack`` is its whole answer)."""
        assert self._http is not None, "create() first"
        transaction = body["transaction"] = _transaction()
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = waiter
        try:
            try:
                async with self._http.post(self.url + path, json=body,
                                           timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as response:
                    reply: dict[str, Any] = await response.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
                self._lose(f"HTTP {body['janus']} failed: {type(err).__name__}")
                raise SfuUnavailable(f"Janus did not answer {body['janus']}") from None
            if reply.get("janus") == "ack" and body["janus"] == "message":
                reply = await asyncio.wait_for(waiter, REQUEST_TIMEOUT)
            return self._checked(reply)
        except asyncio.TimeoutError:
            raise SfuUnavailable(f"Janus sent no event for {body['janus']} within {REQUEST_TIMEOUT} s") from None
        finally:
            self._pending.pop(transaction, None)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: a loss that failed it was raised above
            else:
                waiter.cancel()

    def _checked(self, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            code, reason = int(error.get("code", 0)), str(error.get("reason", ""))
            if code in LOST_CODES:
                self._lose(f"Janus error {code}")
                raise SfuUnavailable(f"Janus lost the session or handle (error {code})")
            raise SfuRefused(code, reason)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise SfuRefused(int(data["error_code"]), str(data.get("error", "")))
        return reply

    async def _poll(self) -> None:
        """Long-poll this session's events until it is lost or destroyed."""
        assert self._http is not None
        url = f"{self.url}/{self.session_id}?maxev=10"
        while self.alive:
            try:
                async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT)) as response:
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
                self._lose(f"long poll failed: {type(err).__name__}")
                return
            for event in answer if isinstance(answer, list) else [answer]:
                if isinstance(event, dict):
                    self._dispatch(event)

    async def _keep_alive(self) -> None:
        """Send a keepalive every ``keepalive`` seconds (a lost session fails it: see :meth:`_checked`)."""
        while self.alive:
            await asyncio.sleep(self.keepalive)
            try:
                await self._post(f"/{self._session()}", {"janus": "keepalive"})
            except SfuError:
                return  # _post or _checked reported the loss

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "error" and int(event.get("error", {}).get("code", 0)) in LOST_CODES:
            self._lose(f"Janus error {event['error']['code']}")
            return
        waiter = self._pending.get(str(event.get("transaction")))
        if waiter is not None and not waiter.done() and kind != "ack":
            waiter.set_result(event)
            return
        handle = self.handles.get(int(event.get("sender", 0) or 0))
        if handle is not None:
            handle.dispatch(event)

    def _lose(self, reason: str) -> None:
        if self.lost is not None or self.session_id is None:
            return  # already lost, or never created (create() raises instead)
        self.lost = reason
        logger.warning("lost the Janus session: %s", reason)
        self._fail_pending(reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def _fail_pending(self, reason: str) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(SfuUnavailable(f"the Janus session is gone ({reason})"))


class VideoRoomHandle:
    """One attached ``janus.plugin.videoroom`` handle.

    ``webrtc_up`` is set when Janus reports the handle's PeerConnection up
    (``webrtcup``; a publisher's feed can be subscribed only after it) and
    cleared on ``hangup``; ``on_event`` sees every unsolicited event of the
    handle (e.g. ``hangup``, or a subscriber's ``updated`` offer after a feed
    it watched went away).
    """

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.handle_id = handle_id
        self.webrtc_up = asyncio.Event()
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    def dispatch(self, event: dict[str, Any]) -> None:
        """An unsolicited event for this handle (from the session's long poll)."""
        if event.get("janus") == "webrtcup":
            self.webrtc_up.set()
        elif event.get("janus") == "hangup":
            self.webrtc_up.clear()
        if self.on_event is not None:
            self.on_event(event)

    async def request(self, body: dict[str, Any], jsep: Jsep | None = None) -> tuple[dict[str, Any], Jsep | None]:
        """Send a VideoRoom request; its plugin answer and jsep (raises :class:`SfuError`)."""
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        reply = await self.session._post(f"/{self.session._session()}/{self.handle_id}", message)
        return reply.get("plugindata", {}).get("data", {}), reply.get("jsep")

    async def create_room(self, room: int, secret: str, publishers: int) -> None:
        """Create ``room`` in end-to-end-encrypted mode (every publish must say ``e2ee: true``)."""
        await self.request({"request": "create", "room": room, "secret": secret, "require_e2ee": True,
                            "publishers": publishers, "audiocodec": "opus", "videocodec": "vp8,h264",
                            "permanent": False})

    async def destroy_room(self, room: int, secret: str) -> None:
        await self.request({"request": "destroy", "room": room, "secret": secret})

    async def publish(self, room: int, offer: Jsep) -> tuple[int, Jsep]:
        """Join ``room`` as a publisher and publish ``offer`` with ``e2ee: true``: (feed id, answer)."""
        data, answer = await self.request({"request": "joinandconfigure", "room": room, "ptype": "publisher"},
                                          {"type": "offer", "sdp": offer["sdp"], "e2ee": True})
        if answer is None or "id" not in data:
            raise SfuRefused(0, "Janus published without an answer")
        return int(data["id"]), answer

    async def join_subscriber(self, room: int, feeds: list[int]) -> tuple[list[dict[str, Any]], Jsep | None]:
        """Join ``room`` as one multistream subscriber of ``feeds``: (Janus's streams, its offer)."""
        data, offer = await self.request({"request": "join", "room": room, "ptype": "subscriber",
                                          "streams": [{"feed": feed} for feed in feeds]})
        return list(data.get("streams", [])), offer

    async def update(self, subscribe: list[int], unsubscribe: list[int]) -> tuple[list[dict[str, Any]], Jsep | None]:
        """Add and remove feeds of a joined subscriber in one renegotiation: (streams, new offer)."""
        body: dict[str, Any] = {"request": "update"}
        if subscribe:
            body["subscribe"] = [{"feed": feed} for feed in subscribe]
        if unsubscribe:
            body["unsubscribe"] = [{"feed": feed} for feed in unsubscribe]
        data, offer = await self.request(body)
        return list(data.get("streams", [])), offer

    async def start(self, answer: Jsep) -> None:
        """Complete a subscriber negotiation with the client's answer."""
        await self.request({"request": "start"}, {"type": "answer", "sdp": answer["sdp"]})

    async def detach(self) -> None:
        """Detach the handle (Janus hangs up its PeerConnection and leaves the room)."""
        self.session.handles.pop(self.handle_id, None)
        if self.session.alive:
            await self.session._post(f"/{self.session.session_id}/{self.handle_id}", {"janus": "detach"})
