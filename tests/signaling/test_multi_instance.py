"""Three server instances on one Redis hold one room (issue 17, docs/deployment.md
"Several instances over Redis").

Every test starts three in-process servers on 127.0.0.1 sharing one real
redis-server (the ``redis_url`` fixture of tests/signaling/conftest.py), with
the participants of a room spread over them: MLS participants driving a
signaling client each (tests/ds_participant.py), and CallPeers for the call.
What one instance accepts reaches the clients of the others through the
store's feed: commits (exactly one per epoch, whichever instance each racer
went through), application messages in log order without duplicates,
presence, and the WebRTC relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from call_checks import call_peers  # noqa: F401  (a fixture; listed after instances, it stops its peers first)
from conftest import BOUND, until
from ds_participant import Participant
from media.call_peer import CallPeer
from media.sinks import VerifyingSink
from signaling.client import SignalingClient
from signaling.delivery import CLOSE_STORE_UNAVAILABLE
from signaling.errors import ErrorCode, SignalingError
from signaling.redis_store import RedisStore
from signaling.server import RunningServer
from redis_server import RedisServer
from tcp_proxy import TcpProxy

SECRET = b"m" * 32  # one token secret for every instance (docs/deployment.md)
ROOM = "spread"
#: commit races through two different instances
TRIALS = 200

MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def instances(make_server: MakeServer, redis_url: str) -> list[RunningServer]:
    """Three servers on the same Redis database."""
    return [await make_server(store=RedisStore.from_url(redis_url)) for _ in range(3)]


@pytest.fixture
async def redis_proxy(redis_server: RedisServer, redis_url: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the session's redis-server (its database emptied): an instance whose
    store goes through it can be cut off from Redis while the others are not."""
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def joined(server: RunningServer, clients: list[SignalingClient], identity: str) -> Participant:
    return await Participant.joined(server, clients, identity, ROOM)


async def spread_group(instances: list[RunningServer], clients: list[SignalingClient],
                       identities: tuple[str, ...]) -> tuple[list[Participant], int]:
    """Participants joined round robin over ``instances``, the first creating the group and
    adding the others (their KeyPackages published through their own instances); the
    participants and the seq of the commit that added them."""
    members = [await joined(instances[i % len(instances)], clients, identity)
               for i, identity in enumerate(identities)]
    creator, *others = members
    await creator.create()
    for other in others:
        await other.publish()
    reply = await creator.add(*others)
    return members, reply["seq"]


def authenticators(members: list[Participant]) -> set[bytes]:
    return {member.view.epoch_authenticator() for member in members}


async def next_commit(member: Participant, after_seq: int) -> dict[str, object]:
    """The next commit event with a seq beyond ``after_seq``."""
    while True:
        event = await member.client.next_event("commit")
        if event["seq"] > after_seq:
            return event


async def test_racing_commits_through_different_instances_have_one_winner(
        instances: list[RunningServer], clients: list[SignalingClient]) -> None:
    members, seq = await spread_group(instances, clients, ("alice", "bob", "carol"))
    assert len(authenticators(members)) == 1
    for trial in range(TRIALS):
        # two members on two different instances commit for the same epoch at once
        first, second = members[trial % 3], members[(trial + 1) % 3]
        epoch = first.view.epoch
        outputs = {first.identity: first.view.update(), second.identity: second.view.update()}
        results = await asyncio.gather(first.submit(outputs[first.identity]),
                                       second.submit(outputs[second.identity]), return_exceptions=True)
        accepted = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(accepted) == 1 and len(refused) == 1, (trial, results)
        assert isinstance(refused[0], SignalingError) and refused[0].code == ErrorCode.CONFLICT, refused
        assert accepted[0]["epoch"] == epoch + 1
        winner = first if results[0] is accepted[0] else second
        # every member (the winner's echo included) gets the winning commit, once
        for member in members:
            event = await next_commit(member, seq)
            assert event["commit"] == outputs[winner.identity].commit, (trial, member)
            if member is not winner:
                member.view.receive(event["commit"])
        seq = accepted[0]["seq"]
        assert {member.view.epoch for member in members} == {epoch + 1}
        assert len(authenticators(members)) == 1, trial
    # nothing after the last winner: a marker sent now is each member's next entry
    marker = await members[0].client.send_application(members[0].view.epoch, members[0].send(b"end"))
    for member in members[1:]:
        event = await member.client.next_event("application", "commit")
        assert event["type"] == "application" and event["seq"] == marker


async def test_a_member_on_another_instance_receives_in_log_order_once(
        instances: list[RunningServer], clients: list[SignalingClient]) -> None:
    (alice, bob, carol), _ = await spread_group(instances, clients, ("alice", "bob", "carol"))
    epoch = alice.view.epoch
    texts = [b"message %03d" % i for i in range(100)]
    ciphertexts = [alice.send(text) for text in texts]
    # sent without waiting for each ack: the server's order is the log's
    seqs = await asyncio.gather(*(alice.client.send_application(epoch, c) for c in ciphertexts))
    assert len(set(seqs)) == len(seqs)
    text_of = dict(zip(seqs, texts))
    for reader in (bob, carol):
        events = [await reader.client.next_event("application") for _ in texts]
        got = [event["seq"] for event in events]
        assert got == sorted(seqs), "in log order, every one"
        assert [reader.view.receive(e["ciphertext"]).content for e in events] == [text_of[s] for s in got]
    # no duplicate follows: the next entry each reader gets is a later marker
    marker = await alice.client.send_application(epoch, alice.send(b"marker"))
    for reader in (bob, carol):
        event = await reader.client.next_event("application")
        assert event["seq"] == marker and reader.view.receive(event["ciphertext"]).content == b"marker"


async def test_webrtc_relay_between_instances(instances: list[RunningServer],
                                              clients: list[SignalingClient]) -> None:
    alice = await joined(instances[0], clients, "alice")
    bob = await joined(instances[1], clients, "bob")
    await alice.client.next_event("presence")  # bob is there, through another instance
    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}
    await alice.client.signal("offer", "bob", offer)
    event = await bob.client.next_event("offer")
    assert event["from"] == "alice" and event["data"] == offer
    await bob.client.signal("answer", "alice", {"type": "answer", "sdp": "v=0\r\n"})
    assert (await alice.client.next_event("answer"))["from"] == "bob"
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdpMid": "0"}
    await alice.client.signal("candidate", "bob", candidate)
    await bob.client.signal("candidate", "alice", {**candidate, "sdpMid": "1"})
    assert (await bob.client.next_event("candidate"))["data"] == candidate
    assert (await alice.client.next_event("candidate"))["data"] == {**candidate, "sdpMid": "1"}
    with pytest.raises(SignalingError) as refused:
        await alice.client.signal("offer", "nobody", offer)
    assert refused.value.code == ErrorCode.NOT_CONNECTED


async def test_presence_across_instances(instances: list[RunningServer],
                                         clients: list[SignalingClient]) -> None:
    alice = await joined(instances[0], clients, "alice")
    bob = await joined(instances[1], clients, "bob")
    assert set(bob.client.join_reply["members"]) == {"alice"}  # the others present
    joined_event = await alice.client.next_event("presence")
    assert (joined_event["event"], joined_event["identity"]) == ("join", "bob")
    carol = await joined(instances[2], clients, "carol")
    assert set(carol.client.join_reply["members"]) == {"alice", "bob"}
    for member in (alice, bob):
        event = await member.client.next_event("presence")
        assert (event["event"], event["identity"]) == ("join", "carol")
    await bob.client.leave()
    for member in (alice, carol):
        event = await member.client.next_event("presence")
        assert (event["event"], event["identity"]) == ("leave", "bob")
    watcher = await joined(instances[0], clients, "watcher")
    assert set(watcher.client.join_reply["members"]) == {"alice", "carol"}


async def test_an_entry_published_while_a_feed_reconnects_arrives_without_a_later_one(
        redis_proxy: TcpProxy, make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    cut_off = await make_server(store=RedisStore.from_url(redis_proxy.url()))
    other = await make_server(store=RedisStore.from_url(redis_url))
    (alice, bob), _ = await spread_group([cut_off, other], clients, ("alice", "bob"))
    redis_proxy.cut()  # alice's instance loses its connections to Redis, its feed's included
    sent = await bob.client.send_application(bob.view.epoch, bob.send(b"while cut off"))
    redis_proxy.restore()
    # the feed subscribes again and its instance reads what it missed: no later entry needed
    event = await alice.client.next_event("application", timeout=BOUND)
    assert event["seq"] == sent and alice.view.receive(event["ciphertext"]).content == b"while cut off"


async def client_of(servers: list[RunningServer], clients: list[SignalingClient], identity: str
                    ) -> SignalingClient:
    """A client of ``identity`` knowing the addresses of ``servers`` in that order, joined."""
    client = SignalingClient([s.ws_url for s in servers], ROOM, servers[0].server.tokens.mint(ROOM, identity, 600))
    clients.append(client)
    await client.connect()
    return client


async def test_an_instance_cut_off_from_redis_sends_its_clients_to_another(
        redis_proxy: TcpProxy, make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    cut_off = await make_server(store=RedisStore.from_url(redis_proxy.url()))
    other = await make_server(store=RedisStore.from_url(redis_url))
    alice = Participant(await client_of([cut_off, other], clients, "alice"), "alice")
    carol = Participant(await client_of([cut_off, other], clients, "carol"), "carol")
    bob = Participant(await client_of([other], clients, "bob"), "bob")
    await alice.create()
    for member in (bob, carol):
        await member.publish()
    await alice.add(bob, carol)
    epoch = alice.view.epoch
    sent = [await alice.client.send_application(epoch, alice.send(b"before %d" % i)) for i in range(5)]
    redis_proxy.cut()  # a partition between the first instance and Redis; the other keeps it
    texts = {await bob.client.send_application(epoch, bob.send(b"meanwhile %d" % i)): b"meanwhile %d" % i
             for i in range(5)}
    # the cut-off instance closes its members' connections (try again later) ...
    closed = await carol.client.next_event("closed", timeout=BOUND)
    assert closed["code"] == CLOSE_STORE_UNAVAILABLE
    await until(lambda: not alice.client.connected, "alice sent elsewhere")
    # ... and refuses new ones: HTTP 503, store_unavailable
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client_of([cut_off], clients, "dave")
    assert refused.value.status == 503
    for member in (alice, carol):
        await member.client.reconnect()  # to the other instance, catching up from its cursor
        assert member.client.ws_url == other.ws_url
    # alice gets every message bob had acknowledged meanwhile, once, in log order
    events = [await alice.client.next_event("application") for _ in texts]
    assert [e["seq"] for e in events] == sorted(texts)
    assert [alice.view.receive(e["ciphertext"]).content for e in events] == [texts[s] for s in sorted(texts)]
    marker = await bob.client.send_application(epoch, bob.send(b"marker"))
    for member in (alice, carol):  # nothing twice: the next entry each gets is the marker
        event = await member.client.next_event("application")
        while event["seq"] < marker:  # carol: what she had not read before
            assert member is carol and event["seq"] in (*sent, *texts)
            event = await member.client.next_event("application")
        assert event["seq"] == marker
    store = RedisStore.from_url(redis_url)  # every acknowledged entry is in the log
    await store.open()
    try:
        assert {*sent, *texts, marker} <= {e.seq for e in await store.read_entries(ROOM, after_seq=0)}
    finally:
        await store.close()
    redis_proxy.restore()  # Redis back: the instance takes joins again
    await until(lambda: cut_off.server.delivery.store_reachable, "the instance back")
    assert (await client_of([cut_off], clients, "erin")).ws_url == cut_off.ws_url


@pytest.mark.slow
async def test_one_call_over_three_instances(instances: list[RunningServer], call_peers: list[CallPeer],
                                             loopback: None) -> None:
    for i, name in enumerate(("alice", "bob", "carol")):
        server = instances[i]
        peer = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, name, 600),
                        sinks=[VerifyingSink()])
        call_peers.append(peer)
        await peer.start()

    def one_group() -> bool:
        statuses = [peer.status() for peer in call_peers]
        return (all(s.members == ("alice", "bob", "carol") for s in statuses)
                and len({s.epoch for s in statuses}) == 1 and len({s.verification for s in statuses}) == 1)

    await until(one_group, "one group of three over three instances, one verification code")
    assert len({peer.group.epoch_authenticator() for peer in call_peers if peer.group}) == 1

    def media_everywhere() -> bool:
        return all(sink.frames(q.identity, kind) >= 20
                   for p in call_peers for sink in p.sinks if isinstance(sink, VerifyingSink)
                   for q in call_peers if q is not p for kind in ("audio", "video"))

    await until(media_everywhere, "decrypted media on every link")
