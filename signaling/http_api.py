"""The HTTP side of the server: health, development tokens, the KeyPackage directory.

- ``GET /healthz``: liveness and counts.
- ``POST /token``: mint a room token. A development convenience: enabled by
  ``ServerConfig.token_endpoint`` and answered only for loopback peers.
- ``POST /rooms/{room}/keypackages`` and
  ``POST /rooms/{room}/keypackages/{identity}/claim``: the same directory as the
  WebSocket requests, authorized by ``Authorization: Bearer <room token>``.
- ``GET /``: the call page (``index.html`` of the static root, whose other
  files the server serves as static files).

Errors are JSON bodies ``{"type": "error", "code", "message", ...}``.

The edge every request passes (docs/deployment.md, "The HTTP edge"): a
``Host`` outside the allowlist gets 421 and a foreign ``Origin`` on the API
routes 403 (:mod:`signaling.hosts`); every response carries the security
headers of :func:`security_headers`; the access log names paths without
their query strings (:class:`PathAccessLogger`), so nothing a URL carries
after ``?`` is ever logged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import protocol as p
from .config import is_loopback_host
from .delivery import DeliveryService
from .errors import ErrorCode, SignalingError
from .hosts import HostPolicy

_STATUS: dict[str, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.BAD_MESSAGE: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.WRONG_ROOM: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NOT_MEMBER: 403,
    ErrorCode.IDENTITY_MISMATCH: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_KEY_PACKAGES: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.HOST_NOT_ALLOWED: 421,
    ErrorCode.ORIGIN_NOT_ALLOWED: 403,
    ErrorCode.TOO_MANY_FROM_ADDRESS: 429,
    ErrorCode.TOO_MANY_CONNECTIONS: 503,
    ErrorCode.STORE_UNAVAILABLE: 503,
}

#: Paths a browser page of another origin must not drive (the ``Origin`` check).
_API_PREFIXES = ("/ws", "/token", "/rooms/")

#: Powerful features the page may use: camera and microphone, for its own origin only.
PERMISSIONS_POLICY = ", ".join(
    [f"{feature}=(self)" for feature in ("camera", "microphone")]
    + [f"{feature}=()" for feature in ("accelerometer", "display-capture", "geolocation", "gyroscope",
                                       "hid", "magnetometer", "midi", "payment", "serial", "usb")])


def json_response(body: dict[str, Any], *, status: int = 200) -> web.Response:
    """``body`` as strict JSON (no ``NaN`` or ``Infinity``, :func:`signaling.protocol.dump_frame`)."""
    return web.json_response(body, status=status, dumps=p.dump_frame)


def error_response(err: SignalingError) -> web.Response:
    """The JSON error body of ``err`` with its HTTP status (400 unless listed in ``_STATUS``)."""
    body = {"type": p.ERROR, "code": str(err.code), "message": err.message, **err.details}
    return json_response(body, status=_STATUS.get(str(err.code), 400))


def local_port(request: web.BaseRequest) -> int:
    """The server port the request arrived on (0 when the transport is gone)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 else 0


def content_security_policy(ws_host: str | None) -> str:
    """The page's CSP: scripts, workers, styles and connections of its own origin only (plus the
    WebSocket schemes of ``ws_host``, an allowed ``Host`` value); no frames, plugins or ``<base>``."""
    connect = "'self'" if ws_host is None else f"'self' ws://{ws_host} wss://{ws_host}"
    return ("default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; "
            f"img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src {connect}; "
            "form-action 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'")


def security_headers(policy: HostPolicy) -> Any:
    """An ``on_response_prepare`` hook setting the security headers on every response
    (pages, static files, JSON, errors and WebSocket upgrades alike)."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        host = request.headers.get("Host")
        allowed = policy.host_allowed(host, local_port(request))
        headers = response.headers
        headers["Content-Security-Policy"] = content_security_policy(
            host.strip().lower() if allowed and host is not None else None)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Permissions-Policy"] = PERMISSIONS_POLICY
        headers["Cross-Origin-Opener-Policy"] = "same-origin"

    return hook


def edge_middleware(policy: HostPolicy) -> Any:
    """The ``Host`` allowlist on every route and the ``Origin`` allowlist on the API routes."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        port = local_port(request)
        if not policy.host_allowed(request.headers.get("Host"), port):
            return error_response(SignalingError(
                ErrorCode.HOST_NOT_ALLOWED, "this server does not answer that Host (see --allowed-host)"))
        origin = request.headers.get("Origin")
        if (origin is not None and request.path.startswith(_API_PREFIXES)
                and not policy.origin_allowed(origin, port)):
            return error_response(SignalingError(
                ErrorCode.ORIGIN_NOT_ALLOWED, "pages of that origin may not use this server (see --allowed-origin)"))
        return await handler(request)

    return middleware


class PathAccessLogger(AbstractAccessLogger):
    """Access-log lines naming the path only: never a query string (a token pasted into one),
    a ``Referer`` or other headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.raw_path.partition("?")[0]
        self.logger.info('%s "%s %s" %d %d %.3fs', request.remote, request.method, path,
                         response.status, response.body_length, time)


async def _json_body(request: web.Request, limit: int) -> dict[str, Any]:
    """The request body (at most ``limit`` bytes) as a JSON object, parsed like a WebSocket frame."""
    try:
        raw = await request.read()  # the application's client_max_size is ``limit``
    except web.HTTPRequestEntityTooLarge:
        raise SignalingError(ErrorCode.TOO_LARGE, f"request bodies are limited to {limit} bytes",
                             limit=limit) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SignalingError(ErrorCode.BAD_JSON, "the body is not UTF-8 JSON") from None
    return p.parse_json_object(text)


def add_http_routes(app: web.Application, server: DeliveryService, connections: Callable[[], int]) -> None:
    """Register the HTTP endpoints of the delivery service ``server`` on ``app``, behind the edge
    checks; ``connections`` counts the WebSocket connections open (for ``/healthz``)."""
    policy = HostPolicy(server.config.allowed_hosts, server.config.allowed_origins)
    app.middlewares.append(edge_middleware(policy))
    app.on_response_prepare.append(security_headers(policy))

    def bearer_identity(request: web.Request, room: str) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise SignalingError(ErrorCode.UNAUTHORIZED, "an Authorization: Bearer room token is required")
        return server.tokens.verify(token.strip(), room).identity

    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "ok", "protocol": p.PROTOCOL_VERSION,
                                  "rooms": len(server.rooms), "connections": connections()})

    async def token(request: web.Request) -> web.Response:
        cfg = server.config
        if not cfg.token_endpoint or not is_loopback_host(request.remote):
            return error_response(SignalingError(ErrorCode.FORBIDDEN,
                                                 "the token endpoint answers loopback clients only"))
        try:
            if request.content_type != "application/json":
                raise SignalingError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "POST /token takes an application/json body")
            body = await _json_body(request, server.config.max_message_bytes)
            room = p.validate_room(body.get("room"))
            identity = p.validate_identity(body.get("identity"))
            ttl = p.int_field(body, "ttl", required=False)
            if ttl is None:
                ttl = cfg.default_token_ttl
            elif not 0 < ttl <= cfg.max_token_ttl:
                raise SignalingError(ErrorCode.BAD_MESSAGE, f"ttl must be 1..{cfg.max_token_ttl} seconds")
        except SignalingError as err:
            return error_response(err)
        minted = server.tokens.mint(room, identity, ttl)
        claims = server.tokens.verify(minted, room)
        return json_response({"token": minted, "room": room, "identity": identity,
                                  "expires": claims.expires})

    async def publish(request: web.Request) -> web.Response:
        try:
            room = p.validate_room(request.match_info["room"])
            identity = bearer_identity(request, room)
            body = await _json_body(request, server.config.max_message_bytes)
            stored, available = await server.publish_key_packages(room, identity, body.get("key_packages"))
        except SignalingError as err:
            return error_response(err)
        return json_response({"stored": stored, "available": available})

    async def claim(request: web.Request) -> web.Response:
        try:
            room = p.validate_room(request.match_info["room"])
            claimer = bearer_identity(request, room)
            target, key_package = await server.claim_key_package(room, claimer, request.match_info["identity"])
        except SignalingError as err:
            return error_response(err)
        return json_response({"identity": target, "key_package": p.b64encode(key_package)})

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/token", token)
    app.router.add_post("/rooms/{room}/keypackages", publish)
    app.router.add_post("/rooms/{room}/keypackages/{identity}/claim", claim)

    static = server.config.static_dir
    index = Path(static) / "index.html" if static else None
    if index is not None and index.is_file():
        async def page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", page)
