"""Failover between server instances (issue 17, docs/deployment.md "Failures").

A client given several WebSocket addresses moves to the next one, round
robin, when its connection ends, and opening a connection tries each address
once from the current one. Here the instances are single servers on SQLite,
each with its own database, so each is a different room history: these tests
check the rotation itself (which server the client reaches), not catch-up
across instances.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from signaling.client import SignalingClient
from signaling.server import RunningServer

SECRET = b"f" * 32  # every instance shares the token secret (docs/deployment.md)
ROOM = "failover"

MakeServer = Callable[..., Awaitable[RunningServer]]


def closed_address() -> str:
    """A loopback WebSocket address nothing listens on (a port bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def client_of(servers: list[RunningServer | str], clients: list[SignalingClient],
              identity: str = "alice") -> SignalingClient:
    first = next(s for s in servers if isinstance(s, RunningServer))
    urls = [s.ws_url if isinstance(s, RunningServer) else s for s in servers]
    client = SignalingClient(urls, ROOM, first.server.tokens.mint(ROOM, identity, 600))
    clients.append(client)
    return client


async def present_on(server: RunningServer, clients: list[SignalingClient]) -> set[str]:
    """Who is in the room on ``server``, as a watcher joining it there is told."""
    watcher = SignalingClient(server.ws_url, ROOM, server.server.tokens.mint(ROOM, "watcher", 600))
    clients.append(watcher)
    reply = await watcher.connect()
    await watcher.close()
    return set(reply["members"]) - {"watcher"}


async def test_one_address_or_several(make_server: MakeServer) -> None:
    server = await make_server()
    assert SignalingClient(server.ws_url, ROOM, "t").ws_urls == (server.ws_url,)
    pair = SignalingClient([server.ws_url, "ws://127.0.0.1:9/ws"], ROOM, "t")
    assert pair.ws_urls == (server.ws_url, "ws://127.0.0.1:9/ws") and pair.ws_url == server.ws_url
    for bad in ([], ("",), [server.ws_url, 7]):
        with pytest.raises(ValueError):
            SignalingClient(bad, ROOM, "t")  # type: ignore[arg-type]


async def test_a_stopped_instance_sends_its_clients_to_the_next(make_server: MakeServer,
                                                                clients: list[SignalingClient]) -> None:
    first, second = await make_server(), await make_server()
    client = client_of([first, second], clients)
    await client.connect()
    assert client.ws_url == first.ws_url
    assert await present_on(first, clients) == {"alice"}
    await first.close()
    await client.next_event("closed")
    reply = await client.reconnect(catch_up=False)
    assert reply["identity"] == "alice" and client.ws_url == second.ws_url
    assert await present_on(second, clients) == {"alice"}


async def test_rotation_wraps_around(make_server: MakeServer, clients: list[SignalingClient]) -> None:
    first, second = await make_server(), await make_server()
    client = client_of([first, second], clients)
    await client.connect()
    await first.close()
    await client.next_event("closed")
    await client.reconnect(catch_up=False)
    assert client.ws_url == second.ws_url
    again = await make_server(port=first.port)  # the first instance is back on its address
    await second.close()
    await client.next_event("closed")
    await client.reconnect(catch_up=False)
    assert client.ws_url == first.ws_url
    assert await present_on(again, clients) == {"alice"}


async def test_opening_skips_addresses_that_do_not_answer(make_server: MakeServer,
                                                          clients: list[SignalingClient]) -> None:
    server = await make_server()
    client = client_of([closed_address(), closed_address(), server], clients)
    await client.connect()
    assert client.ws_url == server.ws_url
    assert await present_on(server, clients) == {"alice"}


async def test_no_address_answers(make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server()
    client = client_of([server, closed_address()], clients)
    await server.close()
    with pytest.raises((aiohttp.ClientError, OSError)):
        await client.connect()
    assert not client.connected


async def test_a_reconnect_of_its_own_stays_on_the_same_instance(make_server: MakeServer,
                                                                  clients: list[SignalingClient]) -> None:
    first, second = await make_server(), await make_server()
    client = client_of([first, second], clients)
    await client.connect()
    await client.reconnect()  # the client dropped it: nothing says the instance is gone
    assert client.ws_url == first.ws_url
    assert await present_on(first, clients) == {"alice"}
    assert await present_on(second, clients) == set()
