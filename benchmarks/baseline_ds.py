"""The baseline the delivery-service benchmarks measure mlscall against.

A minimal aiohttp WebSocket fan-out server: a client's first frame joins a
room (the frame's ``"room"`` field, or one shared room without it) and is
answered with a constant ack; every later frame goes verbatim to the room's
other members, and a constant ack to its sender.  No parsing beyond the join,
no authentication, storage or sequencing: what any delivery service must do
at least.  Used by ``ds_load.py`` (in a process of its own) and
``signaling_bench.py`` (in process).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import WSMsgType, web

ACK = json.dumps({"type": "ack"})


def fanout_app() -> web.Application:
    """The baseline server's aiohttp application (WebSocket at ``/ws``)."""
    rooms: dict[str, set[web.WebSocketResponse]] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        if first.type is not WSMsgType.TEXT:
            return ws
        peers = rooms.setdefault(str(json.loads(first.data).get("room", "")), set())
        peers.add(ws)
        await ws.send_str(ACK)
        try:
            async for msg in ws:
                for peer in tuple(peers):
                    if peer is not ws:
                        await peer.send_str(msg.data)
                await ws.send_str(ACK)
        finally:
            peers.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


@asynccontextmanager
async def running_fanout_server() -> AsyncIterator[int]:
    """Run the baseline on 127.0.0.1 (a free port, yielded) until the block ends."""
    runner = web.AppRunner(fanout_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
