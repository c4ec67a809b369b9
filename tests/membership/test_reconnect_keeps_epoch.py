"""A member back on a new connection with its state changes nothing in MLS (issues 17, 16).

Real signaling servers (SQLite and Redis stores) and :class:`media.call_peer.CallPeer`
members: a member's socket is reset under it (no close frame); the others see it leave
and come back with a ``presence`` ``join`` that says ``resumed`` (it caught up from its
cursor, docs/protocol.md), so they keep its leaf (docs/membership.md): every member
stays in the same epoch with the same epoch authenticator (RFC 9420 §8.7) and the
room's log holds no commit from then on. A member back without its state (a newcomer's
join) is still removed and added again.
"""

from __future__ import annotations

import pytest

from call_checks import call_peers, epoch_authenticators  # noqa: F401  (call_peers: a fixture)
from conftest import BOUND, MakeServer, until
from media.call_peer import CallOptions, CallPeer
from signaling.server import RunningServer
from signaling.store import EntryKind

pytestmark = pytest.mark.usefixtures("store_kind")

SECRET = b"r" * 32
ROOM = "resume"
NAMES = ("alice", "bob", "carol")


async def start_call(server: RunningServer, peers: list[CallPeer]) -> None:
    for name in NAMES:
        peer = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, name, 600),
                        options=CallOptions(reconnect_timeout=BOUND))
        peers.append(peer)
        await peer.start()
    await until(lambda: one_group(peers), "one group of three")


def one_group(peers: list[CallPeer]) -> bool:
    statuses = [peer.status() for peer in peers]
    return (all(s.members == NAMES for s in statuses) and len({s.epoch for s in statuses}) == 1
            and len({s.verification for s in statuses}) == 1)


async def last_seq(server: RunningServer) -> int:
    entries = await server.server.store.read_entries(ROOM, after_seq=0)
    return entries[-1].seq


async def commits_after(server: RunningServer, seq: int) -> list[int]:
    entries = await server.server.store.read_entries(ROOM, after_seq=seq)
    return [entry.seq for entry in entries if entry.kind is EntryKind.COMMIT]


def reset(server: RunningServer, identity: str) -> None:
    """Abort the server's side of ``identity``'s connection: no close frame."""
    for member in tuple(server.server.connections):
        if member.identity == identity:
            assert member.transport is not None
            member.transport.abort()
            return
    raise AssertionError(f"{identity} is not connected")


async def chat_round(peers: list[CallPeer], text: str) -> None:
    """Every member says ``text`` and hears everyone else's: each has handled what the log
    held before (the chat follows it), including any commit its requests brought."""
    for peer in peers:
        peer.send_chat(f"{text} from {peer.identity}")
    wanted = {f"{text} from {peer.identity}".encode() for peer in peers}
    await until(lambda: all({c.text for c in p.chat} >= wanted - {f"{text} from {p.identity}".encode()}
                            for p in peers), f"the chat round {text!r}")


@pytest.mark.parametrize("who", ["alice", "carol"])
async def test_a_member_whose_socket_is_reset_comes_back_in_the_same_epoch(
        make_server: MakeServer, call_peers: list[CallPeer], who: str) -> None:
    """alice is the committer (the lowest leaf), carol is not: either way, no commit."""
    server = await make_server()
    await start_call(server, call_peers)
    await chat_round(call_peers, "before")
    before, seq = epoch_authenticators(call_peers), await last_seq(server)
    peer = next(p for p in call_peers if p.identity == who)
    ws = peer.client._ws  # noqa: SLF001 - the test cuts the connection under the client
    reset(server, who)
    await until(lambda: peer.client.connected and peer.client._ws is not ws, f"{who} back")  # noqa: SLF001
    await chat_round(call_peers, "after")
    assert epoch_authenticators(call_peers) == before
    assert await commits_after(server, seq) == []
    assert one_group(call_peers)
    assert all(not p.ended.is_set() and p.status().warnings == () for p in call_peers)


async def test_every_socket_reset_at_once_keeps_the_epoch(make_server: MakeServer,
                                                          call_peers: list[CallPeer]) -> None:
    """Everyone's connection drops together (as when a load balancer restarts): each comes
    back, no one's leaf is replaced."""
    server = await make_server()
    await start_call(server, call_peers)
    await chat_round(call_peers, "before")
    before, seq = epoch_authenticators(call_peers), await last_seq(server)
    sockets = {p.identity: p.client._ws for p in call_peers}  # noqa: SLF001
    for name in NAMES:
        reset(server, name)
    await until(lambda: all(p.client.connected and p.client._ws is not sockets[p.identity]  # noqa: SLF001
                            for p in call_peers), "everyone back")
    await chat_round(call_peers, "after")
    assert epoch_authenticators(call_peers) == before
    assert await commits_after(server, seq) == []


async def test_a_member_back_without_its_state_is_added_again(make_server: MakeServer,
                                                              call_peers: list[CallPeer]) -> None:
    """carol comes back without her state (a new client, whose newcomer join replaces her
    connection: no leave, a join not resumed): her old leaf is removed and a new one
    added, under new epochs."""
    server = await make_server()
    await start_call(server, call_peers)
    before, seq = epoch_authenticators(call_peers), await last_seq(server)
    fresh = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, "carol", 600),
                     options=CallOptions(reconnect_timeout=BOUND))
    call_peers.append(fresh)
    await fresh.start()
    await call_peers.pop(2).stop()  # the replaced one
    await until(lambda: one_group(call_peers), "one group of three again")
    after = epoch_authenticators(call_peers)
    assert after["alice"][0] >= before["alice"][0] + 2  # a remove, then an add
    assert after["alice"][1] != before["alice"][1]
    assert len(await commits_after(server, seq)) >= 2
