"""Failover between server instances (issue 17, docs/deployment.md "Failures").

A client given several WebSocket addresses moves to the next one, round
robin, when its connection ends, and opening a connection tries each address
once from the current one.

* The rotation itself (which server the client reaches), with single
  servers on SQLite, each with its own database (so a different room
  history each).
* A CallPeer back on a new connection (the others saw it leave and come
  back) gets media again on every link, in the same epoch, and ``mlscall bot``
  given a dead server first goes through the next.
* Instances over one real redis-server (``mlscall serve --store redis://...``
  processes): one is SIGKILLed while its clients are in a call; they
  reconnect to another instance and catch up from their cursor, and nothing
  acknowledged is lost or duplicated; with CallPeers, media goes on and the
  call stays in its epoch, with the same epoch authenticator: the members that
  moved come back resumed, so no one's leaf is replaced (docs/deployment.md,
  "Failures").
* redis-server itself SIGKILLed (append-only file, ``appendfsync always``)
  and restarted: every acknowledged entry is still in the log, and the
  instances deliver again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from call_checks import call_peers, epoch_authenticators  # noqa: F401  (call_peers: a fixture)
from conftest import BOUND, REPO_ROOT, until
from ds_participant import Participant
from media.call_peer import CallOptions, CallPeer
from media.sinks import VerifyingSink
from redis_server import RedisServer
from signaling.client import SignalingClient
from signaling.errors import SignalingError
from signaling.redis_store import RedisStore
from signaling.server import RunningServer
from signaling.tokens import TokenAuthority

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


@pytest.mark.e2e
@pytest.mark.slow
async def test_the_bot_goes_through_the_next_server(make_server: MakeServer, call_peers: list[CallPeer]) -> None:
    """``mlscall bot --server DEAD --server LIVE``: its token and its call through the live one."""
    server = await make_server()
    alice = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, "alice", 600), sinks=[VerifyingSink()])
    call_peers.append(alice)
    await alice.start()
    dead = closed_address().replace("ws://", "http://", 1).removesuffix("/ws")
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.cli", "bot", "--server", dead, "--server", server.url, "--room", ROOM,
        "--name", "bot", "--duration", "4", cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(bot.communicate(), 2 * BOUND)
    assert bot.returncode == 0, err.decode()[-2000:]
    summary = out.decode()
    assert summary.startswith("summary for bot:"), summary
    assert re.search(r"^  frames decrypted:\s+[1-9]\d*$", summary, re.MULTILINE), summary
    sink = alice.sinks[0]
    assert isinstance(sink, VerifyingSink)  # the bot has left: its tracks are in the history
    assert {report.kind for remote, report in sink.all_reports() if remote == "bot" and report.frames > 0} == {
        "audio", "video"}


@pytest.mark.slow
async def test_a_peer_back_on_a_new_connection_gets_media_again(
        make_server: MakeServer, call_peers: list[CallPeer], loopback: None) -> None:
    """The server saw alice's connection go: bob and carol saw her leave and come back, and
    replaced their links with her; alice, back with her state, offers afresh on hers."""
    server = await make_server()
    for name in ("alice", "bob", "carol"):
        peer = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, name, 600),
                        sinks=[VerifyingSink()], options=CallOptions(reconnect_timeout=BOUND))
        call_peers.append(peer)
        await peer.start()
    await until(lambda: all(decoded(p, q.identity) >= 20 for p in call_peers for q in call_peers if q is not p),
                "media on every link")
    alice = call_peers[0]
    before = epoch_authenticators(call_peers)
    ws = alice.client._ws  # noqa: SLF001 - the test cuts the connection under the client
    assert ws is not None
    await ws.close(code=1011)
    await until(lambda: alice.client.connected and alice.client._ws is not ws, "alice back")  # noqa: SLF001
    frames = {(p.identity, q.identity): decoded(p, q.identity) for p in call_peers for q in call_peers
              if q is not p}
    await until(lambda: all(decoded(p, q.identity) >= frames[p.identity, q.identity] + 20
                            for p in call_peers for q in call_peers if q is not p),
                "media again on every link")
    assert epoch_authenticators(call_peers) == before  # back resumed: no commit, same epoch


# -- instances over one Redis ---------------------------------------------------------------


class Instance:
    """One ``mlscall serve --store redis://...`` process on 127.0.0.1."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.ws_url = url.replace("http://", "ws://", 1) + "/ws"

    def kill(self) -> None:
        """SIGKILL: no close frame, no clean-up, no last write."""
        os.kill(self.process.pid, signal.SIGKILL)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Instance]]]:
    """Start instances on a Redis URL, all with one token secret file (``tmp_path/secret``)."""
    (tmp_path / "secret").write_bytes(SECRET)
    started: list[Instance] = []

    async def start(redis_url: str) -> Instance:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--store", redis_url, "--secret-file", str(tmp_path / "secret"),
            "--db", str(tmp_path / f"unused-{len(started)}.db"), "--log-level", "warning",
            cwd=REPO_ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), BOUND)).decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        instance = Instance(process, line.split()[-1])
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process.returncode is None:
            instance.process.terminate()
            await asyncio.wait_for(instance.process.wait(), BOUND)


def token(identity: str) -> str:
    return TokenAuthority(SECRET).mint(ROOM, identity, 600)


async def participant(urls: list[str], clients: list[SignalingClient], identity: str) -> Participant:
    client = SignalingClient(urls, ROOM, token(identity))
    clients.append(client)
    await client.connect()
    return Participant(client, identity)


async def applications_until(member: Participant, seq: int) -> list[dict[str, object]]:
    """The application events ``member`` gets up to the one with ``seq``."""
    events = []
    while not events or events[-1]["seq"] != seq:
        event = await member.client.next_event("application")
        assert event["seq"] <= seq, f"{member.identity} got {event['seq']}, beyond {seq}"
        events.append(event)
    return events


@pytest.mark.e2e
async def test_a_killed_instance_clients_catch_up_on_another(
        serve: Callable[[str], Awaitable[Instance]], redis_url: str, clients: list[SignalingClient]) -> None:
    x, y = await serve(redis_url), await serve(redis_url)
    # alice and carol on x, bob on y; each knows both
    alice = await participant([x.ws_url, y.ws_url], clients, "alice")
    bob = await participant([y.ws_url, x.ws_url], clients, "bob")
    carol = await participant([x.ws_url, y.ws_url], clients, "carol")
    await alice.create()
    for other in (bob, carol):
        await other.publish()
    await alice.add(bob, carol)
    epoch = alice.view.epoch
    texts: dict[int, bytes] = {}
    for i in range(10):  # acknowledged before the kill
        text = b"before %d" % i
        texts[await bob.client.send_application(epoch, bob.send(text))] = text
    await applications_until(alice, max(texts))  # alice read them; carol not yet
    x.kill()
    for member in (alice, carol):
        # (its queue keeps what it received before: next_event would drop those)
        await until(lambda: not member.client.connected, f"{member.identity} lost x")
        await member.client.reconnect()  # to y, catching up after its cursor
        assert member.client.ws_url == y.ws_url
    before = sorted(texts)
    for i in range(10):  # acknowledged after the kill, sent through y by a member now there
        text = b"after %d" % i
        texts[await carol.client.send_application(epoch, carol.send(text))] = text
    after = sorted(s for s in texts if s not in before)
    # each gets what it had not read, once, in log order: alice and bob carol's messages;
    # carol bob's (those that reached her before the kill, then the rest caught up from y)
    for member, expected in ((alice, after), (bob, after), (carol, before)):
        got = await applications_until(member, expected[-1])
        assert [e["seq"] for e in got] == expected, member.identity
        assert [member.view.receive(e["ciphertext"]).content for e in got] == [texts[s] for s in expected]
    # nothing more comes: the next entry each gets is a later marker
    marker = await bob.client.send_application(epoch, bob.send(b"marker"))
    for member in (alice, carol):
        assert (await member.client.next_event("application"))["seq"] == marker


def decoded(peer: CallPeer, remote: str) -> int:
    return sum(sink.frames(remote, kind) for sink in peer.sinks if isinstance(sink, VerifyingSink)
               for kind in ("audio", "video"))


@pytest.mark.slow
@pytest.mark.e2e
async def test_a_call_survives_the_death_of_an_instance(
        serve: Callable[[str], Awaitable[Instance]], redis_url: str, call_peers: list[CallPeer],
        loopback: None) -> None:
    x, y = await serve(redis_url), await serve(redis_url)
    names = ("alice", "bob", "carol")
    addresses = {"alice": [x.ws_url, y.ws_url], "bob": [y.ws_url, x.ws_url], "carol": [x.ws_url, y.ws_url]}
    for name in names:
        peer = CallPeer(addresses[name], ROOM, token(name), sinks=[VerifyingSink()],
                        options=CallOptions(reconnect_timeout=BOUND))
        call_peers.append(peer)
        await peer.start()

    def one_group() -> bool:
        statuses = [peer.status() for peer in call_peers]
        return (all(s.members == names for s in statuses) and len({s.epoch for s in statuses}) == 1
                and len({s.verification for s in statuses}) == 1)

    await until(one_group, "one group of three over two instances")
    await until(lambda: all(decoded(p, q.identity) >= 20 for p in call_peers for q in call_peers if q is not p),
                "media on every link")
    alice, bob, carol = call_peers
    alice.send_chat("before the kill")
    await until(lambda: all(any(c.text == b"before the kill" for c in p.chat) for p in (bob, carol)),
                "the chat message before the kill")
    frames = {(p.identity, q.identity): decoded(p, q.identity) for p in call_peers for q in call_peers
              if q is not p}
    before = epoch_authenticators(call_peers)
    x.kill()
    await until(lambda: all(p.client.ws_url == y.ws_url and p.client.connected for p in (alice, carol)),
                "alice and carol reconnected to the other instance")
    await until(lambda: all(decoded(p, q.identity) >= frames[p.identity, q.identity] + 20
                            for p in call_peers for q in call_peers if q is not p),
                "media goes on on every link")
    await until(one_group, "one group of three again, one verification code")
    bob.send_chat("after the kill")
    carol.send_chat("from carol after the kill")
    await until(lambda: all(any(c.text == b"after the kill" for c in p.chat) for p in (alice, carol))
                and all(any(c.text == b"from carol after the kill" for c in p.chat) for p in (alice, bob)),
                "the chat messages after the kill")
    for peer in call_peers:
        texts = [c.text for c in peer.chat]
        assert len(texts) == len(set(texts)), (peer.identity, texts)  # none twice
        assert not peer.ended.is_set()
    # alice and carol came back resumed: no leaf replaced, no commit, the same epoch
    assert epoch_authenticators(call_peers) == before


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (append-only file, ``appendfsync always``), to kill;
    requested before ``make_server`` so that it stops after the servers closed."""
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    yield server
    server.stop()


@pytest.mark.e2e
async def test_a_killed_redis_keeps_every_acknowledged_entry(
        own_redis: RedisServer, make_server: MakeServer, clients: list[SignalingClient]) -> None:
    redis = own_redis
    a = await make_server(store=RedisStore.from_url(redis.url))
    b = await make_server(store=RedisStore.from_url(redis.url))
    alice = await participant([a.ws_url], clients, "alice")
    bob = await participant([b.ws_url], clients, "bob")
    await alice.create()
    await bob.publish()
    await alice.add(bob)
    acked: dict[int, bytes] = {}
    for i in range(20):
        body = alice.send(b"kept %d" % i)
        acked[await alice.client.send_application(alice.view.epoch, body)] = body
    update = alice.view.update()
    commit_seq = (await alice.submit(update))["seq"]
    redis.kill()
    with pytest.raises(SignalingError):  # no ack while Redis is down
        await alice.client.send_application(alice.view.epoch, alice.send(b"refused"))
    redis.start()  # the same directory and port: it replays its append-only file

    async def sent_again() -> int | None:
        try:
            return await alice.client.send_application(alice.view.epoch, alice.send(b"back"))
        except SignalingError:
            return None

    back = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while back is None:
        assert loop.time() < deadline, "the instance did not get Redis back"
        back = await sent_again()
        await asyncio.sleep(0.1)
    assert back > commit_seq
    # a reader joining now through the other instance finds every acknowledged entry, once
    reader = SignalingClient(b.ws_url, ROOM, token("reader"))
    clients.append(reader)
    reply = await reader.connect(since=0)
    entries = [await reader.next_event("application", "commit") for _ in range(reply["backlog"])]
    seqs = [e["seq"] for e in entries]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    logged = {e["seq"]: e.get("ciphertext", e.get("commit")) for e in entries}
    for seq, body in acked.items():
        assert logged.get(seq) == body, seq
    assert logged.get(commit_seq) == update.commit
    # the feed works again across instances: bob, on b, gets what alice sent through a once
    # Redis was back with nothing sent after it (b's feed, subscribed again, read the log)
    arrived = await bob.client.next_event("application", timeout=BOUND)
    while arrived["seq"] <= commit_seq:  # what bob had not read before the kill
        arrived = await bob.client.next_event("application", timeout=BOUND)
    assert arrived["seq"] == back
    marker = await alice.client.send_application(alice.view.epoch, alice.send(b"marker"))
    assert (await bob.client.next_event("application"))["seq"] == marker  # each once


@pytest.mark.e2e
async def test_the_clients_of_a_killed_instance_are_announced_gone(
        serve: Callable[[str], Awaitable[Instance]], redis_url: str, clients: list[SignalingClient]) -> None:
    x, y, z = await serve(redis_url), await serve(redis_url), await serve(redis_url)
    watchers = [await participant([server.ws_url], clients, name) for server, name in ((y, "wy"), (z, "wz"))]
    await participant([x.ws_url], clients, "stayer")  # knows x only: does not come back
    mover = await participant([x.ws_url, y.ws_url], clients, "mover")
    for watcher in watchers:
        joins = [await watcher.client.next_event("presence") for _ in range(3 if watcher is watchers[0] else 2)]
        assert {e["identity"] for e in joins} >= {"stayer", "mover"}
    x.kill()
    await until(lambda: not mover.client.connected, "mover lost x")
    await mover.client.reconnect()  # to y, before x's heartbeat expires: a resumed join
    assert mover.client.ws_url == y.ws_url
    # once x's heartbeat expired, one of y and z swept stayer's presence and announced its leave
    for watcher in watchers:
        events = [await watcher.client.next_event("presence", timeout=BOUND)]
        while events[-1]["event"] != "leave":
            events.append(await watcher.client.next_event("presence", timeout=BOUND))
        assert [(e["event"], e["identity"]) for e in events] == [("join", "mover"), ("leave", "stayer")]
        assert events[0]["resumed"] is True
    late = await participant([z.ws_url], clients, "late")
    assert set(late.client.join_reply["members"]) == {"wy", "wz", "mover"}
    for watcher in watchers:  # the next presence event is late's join, not a second leave
        event = await watcher.client.next_event("presence")
        assert (event["event"], event["identity"]) == ("join", "late")
