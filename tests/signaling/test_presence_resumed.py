"""The ``presence`` events say whether a joiner resumed and whether a leaver's connection
dropped (docs/protocol.md, issue 17).

``resumed`` is true when the join gave ``since`` or ``epoch`` (the joiner catches up
from its cursor: it kept its group state) and false for a newcomer; a ``leave``'s
``dropped`` is true when the connection ended without a ``leave`` request and false
after one. On one server (both stores) and from an instance to the members of another
one over Redis (the store's presence signal carries them).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import MakeServer
from signaling.client import SignalingClient
from signaling.redis_store import RedisStore
from signaling.server import RunningServer

SECRET = b"p" * 32
ROOM = "presence"


def client(server: RunningServer, clients: list[SignalingClient], identity: str) -> SignalingClient:
    opened = SignalingClient(server.ws_url, ROOM, server.server.tokens.mint(ROOM, identity, 600))
    clients.append(opened)
    return opened


async def next_join(watcher: SignalingClient) -> dict[str, Any]:
    event = await watcher.next_event("presence")
    assert event["event"] == "join", event
    return event


@pytest.mark.usefixtures("store_kind")
async def test_a_join_with_a_cursor_or_an_epoch_is_resumed(make_server: MakeServer,
                                                          clients: list[SignalingClient]) -> None:
    server = await make_server()
    alice = client(server, clients, "alice")
    await alice.connect()
    bob = client(server, clients, "bob")
    await bob.connect()
    assert await next_join(alice) == {"type": "presence", "event": "join", "identity": "bob", "resumed": False}
    for fields in ({"since": 0}, {"epoch": 0}, {}):
        again = client(server, clients, "bob")
        await again.connect(**fields)
        event = await next_join(alice)
        assert (event["identity"], event["resumed"]) == ("bob", bool(fields)), fields
    await again.leave()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "bob",
                                                  "dropped": False}
    carol = client(server, clients, "carol")
    await carol.connect()
    await next_join(alice)
    await carol.close()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "carol",
                                                  "dropped": True}


async def test_resumed_crosses_instances(make_server: MakeServer, redis_url: str,
                                         clients: list[SignalingClient]) -> None:
    """bob leaves one instance and comes back through another with his cursor (as after
    his instance died); alice, on a third, is told he resumed."""
    x, y, z = [await make_server(store=RedisStore.from_url(redis_url)) for _ in range(3)]
    alice = client(x, clients, "alice")
    await alice.connect()
    bob = client(y, clients, "bob")
    await bob.connect()
    assert (await next_join(alice))["resumed"] is False
    await bob.close()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "bob",
                                                  "dropped": True}
    back = client(z, clients, "bob")
    await back.connect(since=bob.last_seq)
    assert await next_join(alice) == {"type": "presence", "event": "join", "identity": "bob", "resumed": True}
    newcomer = client(y, clients, "bob")
    await newcomer.connect()
    assert await next_join(alice) == {"type": "presence", "event": "join", "identity": "bob", "resumed": False}
    await newcomer.leave()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "bob",
                                                  "dropped": False}
