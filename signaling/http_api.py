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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import protocol as p
from .config import is_loopback_host
from .errors import ErrorCode, SignalingError

if TYPE_CHECKING:
    from .server import SignalingServer

#: The code of the HTTP 503 refusing a WebSocket upgrade beyond ``max_connections``.
TOO_MANY_CONNECTIONS = "too_many_connections"

_STATUS: dict[str, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.BAD_MESSAGE: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.WRONG_ROOM: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.TOO_MANY_KEY_PACKAGES: 409,
    ErrorCode.TOO_LARGE: 413,
    TOO_MANY_CONNECTIONS: 503,
}


def error_response(err: SignalingError) -> web.Response:
    """The JSON error body of ``err`` with its HTTP status (400 unless listed in ``_STATUS``)."""
    body = {"type": p.ERROR, "code": str(err.code), "message": err.message, **err.details}
    return web.json_response(body, status=_STATUS.get(str(err.code), 400))


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


def add_http_routes(app: web.Application, server: SignalingServer) -> None:
    """Register the HTTP endpoints of ``server`` on ``app``."""

    def bearer_identity(request: web.Request, room: str) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise SignalingError(ErrorCode.UNAUTHORIZED, "an Authorization: Bearer room token is required")
        return server.tokens.verify(token.strip(), room).identity

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "protocol": p.PROTOCOL_VERSION,
                                  "rooms": len(server.rooms), "connections": len(server.connections)})

    async def token(request: web.Request) -> web.Response:
        cfg = server.config
        if not cfg.token_endpoint or not is_loopback_host(request.remote):
            return web.json_response({"type": p.ERROR, "code": "forbidden",
                                      "message": "the token endpoint answers loopback clients only"},
                                     status=403)
        try:
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
        return web.json_response({"token": minted, "room": room, "identity": identity,
                                  "expires": claims.expires})

    async def publish(request: web.Request) -> web.Response:
        try:
            room = p.validate_room(request.match_info["room"])
            identity = bearer_identity(request, room)
            body = await _json_body(request, server.config.max_message_bytes)
            stored, available = await server.publish_key_packages(room, identity, body.get("key_packages"))
        except SignalingError as err:
            return error_response(err)
        return web.json_response({"stored": stored, "available": available})

    async def claim(request: web.Request) -> web.Response:
        try:
            room = p.validate_room(request.match_info["room"])
            bearer_identity(request, room)
            target, key_package = await server.claim_key_package(room, request.match_info["identity"])
        except SignalingError as err:
            return error_response(err)
        return web.json_response({"identity": target, "key_package": p.b64encode(key_package)})

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
