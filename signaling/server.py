"""The signaling server's transport: WebSocket and HTTP (aiohttp) in front of the delivery service.

One WebSocket per participant carries requests (each answered by ``ack`` or
``error``) and pushed events (docs/protocol.md). This module owns what is
about connections: the aiohttp application, the upgrade limits (in total and
per remote address), the join deadline, the per-connection frame rate and
size limits, parsing frames and dispatching each request to the
:class:`~signaling.delivery.DeliveryService`, which does the MLS delivery
service's work (RFC 9420 §14) over the :class:`~signaling.store.Store`. The
HTTP routes are :mod:`signaling.http_api`'s, over the same delivery service.

The store is named by a URL (:func:`open_store`): SQLite for one instance,
Redis for several sharing their rooms.

Logging records types, rooms, identities, sequence numbers and sizes only:
never a payload, a token or the secret.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import WSMsgType, web

from . import protocol as p
from .config import ServerConfig
from .delivery import DeliveryService, send_error
from .errors import ErrorCode, SignalingError
from .http_api import PathAccessLogger, add_http_routes, error_response
from .ratelimit import TokenBucket
from .room import CLOSE_JOIN_TIMEOUT, Member, Room
from .sqlite_store import SQLiteStore
from .store import Store
from .tokens import TokenAuthority, load_or_create_secret

logger = logging.getLogger("signaling")


def resolve_secret(config: ServerConfig) -> bytes:
    """The token secret: given, loaded from (or created in) ``secret_file``, or ephemeral."""
    if config.secret is not None:
        return config.secret
    if config.secret_file is not None:
        return load_or_create_secret(config.secret_file)
    logger.warning("no token secret file: tokens will not outlive this process")
    return secrets.token_bytes(32)


def open_store(config: ServerConfig) -> Store:
    """The store ``config.store_url`` names (:meth:`ServerConfig.sqlite_path`): a Redis server
    shared by several instances, or SQLite (``db_path`` without a URL)."""
    path = config.sqlite_path()
    if path is None:
        from .redis_store import RedisStore  # only deployments on Redis need its client

        assert config.store_url is not None
        return RedisStore.from_url(config.store_url, policy=config.log_policy(), clock=config.clock)
    return SQLiteStore(path, synchronous=config.db_synchronous, policy=config.log_policy(), clock=config.clock)


class SignalingServer:
    """The WebSocket and HTTP transport of one instance, over its :class:`DeliveryService`."""

    def __init__(self, config: ServerConfig, store: Store | None = None,
                 tokens: TokenAuthority | None = None) -> None:
        self.delivery = DeliveryService(config, store or open_store(config),
                                        tokens or TokenAuthority(resolve_secret(config)))
        self.connections: set[Member] = set()
        #: WebSocket upgrades under way: they count against ``max_connections`` like open ones.
        self._handshakes = 0
        #: WebSocket connections (upgrades under way included) by remote address: the
        #: per-address limits; one without an identity has not joined yet.
        self._by_address: dict[str, set[Member]] = {}

    @property
    def config(self) -> ServerConfig:
        """The settings of this instance (one object with the delivery service's)."""
        return self.delivery.config

    @config.setter
    def config(self, config: ServerConfig) -> None:
        self.delivery.config = config

    @property
    def store(self) -> Store:
        """The delivery service's store."""
        return self.delivery.store

    @property
    def tokens(self) -> TokenAuthority:
        """The delivery service's token authority (every instance of a deployment shares its secret)."""
        return self.delivery.tokens

    @property
    def rooms(self) -> dict[str, Room]:
        """The rooms with members on this instance (the delivery service's)."""
        return self.delivery.rooms

    # -- application -----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application: /ws, the HTTP API (signaling.http_api) and static files."""
        app = web.Application(client_max_size=self.config.max_message_bytes)
        app.router.add_get("/ws", self.handle_ws)
        add_http_routes(app, self.delivery, lambda: len(self.connections))
        static = Path(self.config.static_dir) if self.config.static_dir else None
        if static is not None and static.is_dir() and any(static.iterdir()):
            app.router.add_static("/", static, show_index=False, follow_symlinks=False)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        await self.delivery.start()

    async def _shutdown(self, _app: web.Application) -> None:
        members = tuple(self.connections)
        for member in members:
            member.close(1001, "server shutdown")
        await asyncio.gather(*(member.wait_closed() for member in members), return_exceptions=True)

    async def _cleanup(self, _app: web.Application) -> None:
        await self.delivery.stop()

    # -- one WebSocket connection ----------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        if len(self.connections) + self._handshakes >= cfg.max_connections:
            logger.warning("refused a WebSocket upgrade: %d connections open", len(self.connections))
            return error_response(SignalingError(
                ErrorCode.TOO_MANY_CONNECTIONS, "the server has reached its connection limit; retry later",
                limit=cfg.max_connections))
        if not self.delivery.store_reachable:  # cut off from the store: the client tries the next server
            return error_response(SignalingError(ErrorCode.STORE_UNAVAILABLE,
                                                 "this server has lost its store; try another server"))
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
                    send_error(member, None, SignalingError(
                        ErrorCode.BAD_MESSAGE, "protocol version 1 uses text frames only"))
                else:
                    break
        finally:
            member.join_deadline.cancel()
            self.delivery.depart(member)
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
        return SignalingError(ErrorCode.TOO_MANY_FROM_ADDRESS,
                              f"too many {what} from this address; retry later", limit=limit)

    def _forget_address(self, address: str, member: Member) -> None:
        peers = self._by_address.get(address)
        if peers is not None:
            peers.discard(member)
            if not peers:
                del self._by_address[address]

    def _join_deadline_passed(self, member: Member) -> None:
        if member.identity is None and not member.closing:
            send_error(member, None, SignalingError(ErrorCode.UNAUTHORIZED,
                                                    "no join request within the join timeout"))
            member.close(CLOSE_JOIN_TIMEOUT, "join timeout")

    async def _handle_text(self, member: Member, text: str) -> None:
        if member.closing:
            return  # left, replaced or too slow: nothing it sends now is sequenced (or answered)
        limit = self.config.max_message_bytes
        if not member.bucket.allow():
            send_error(member, None, SignalingError(
                ErrorCode.RATE_LIMITED, "too many frames; slow down",
                rate_per_second=self.config.rate_per_second))
            return
        if len(text) > limit or (4 * len(text) > limit and len(text.encode()) > limit):
            send_error(member, None, SignalingError(
                ErrorCode.TOO_LARGE, f"frames are limited to {limit} bytes", limit=limit))
            return
        try:
            message = p.parse_frame(text)
            rid = p.request_id(message)
        except SignalingError as err:
            send_error(member, None, err)
            return
        kind = message["type"]
        handler = self.delivery.handlers.get(kind)
        if handler is None:
            send_error(member, rid, SignalingError(ErrorCode.UNKNOWN_TYPE, "unknown message type"))
            return
        if member.room is None and kind != p.JOIN:
            send_error(member, rid, SignalingError(ErrorCode.NOT_JOINED, "join a room first"))
            return
        logger.debug("frame %s (%d bytes) from %s", kind, len(text), member.identity)
        try:
            await handler(member, rid, message)
        except SignalingError as err:
            send_error(member, rid, err)
        except Exception:
            logger.exception("internal error while handling a %s request", kind)
            send_error(member, rid, SignalingError(ErrorCode.INTERNAL, "internal server error"))


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
    logger.info("listening on %s:%d instance=%s", config.host, port, config.instance_id)
    return RunningServer(server, runner, config.host, port)
