"""The delivery service against hostile participants: real CallPeers (aiortc, MLS, SFrame), the
real signaling server and an attacker ("mallory") holding a valid room token, on 127.0.0.1.

One test per attack the server must stop (docs/protocol.md, "What the server checks"). Each
attack is refused with a typed error, changes no room state (epoch, group id, log length,
stored PublicGroup) and leaves the call working for everyone else: their media is still
decrypted afterwards, and the next legitimate commit is accepted. On each store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import expect_error, until
from ds_participant import Participant
from media.call_peer import CallOptions, CallPeer
from media.sinks import VerifyingSink
from mls.inspection import WireFormat
from signaling.client import SignalingClient
from signaling.config import ServerConfig
from signaling.errors import ErrorCode
from signaling.server import RunningServer, start_server

ROOM = "trust"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

StartPeer = Callable[..., Awaitable[CallPeer]]


@dataclasses.dataclass
class Call:
    """The server, the CallPeers started and who they admit to the group."""

    server: RunningServer
    peers: list[CallPeer]
    clients: list[SignalingClient]
    refused: set[str]

    async def peer(self, identity: str) -> CallPeer:
        options = CallOptions(admit=lambda who: who not in self.refused)
        token = self.server.server.tokens.mint(ROOM, identity, 600)
        peer = CallPeer(self.server.ws_url, ROOM, token, sinks=[VerifyingSink()], options=options)
        self.peers.append(peer)
        await peer.start()
        return peer

    async def mallory(self, identity: str = "mallory") -> Participant:
        """The attacker: a valid token for the room, an MLS client of its own, no CallPeer."""
        return await Participant.joined(self.server, self.clients, identity, ROOM)

    async def state(self) -> tuple[Any, ...]:
        """What an attack must not change: the room's group, epoch, log and stored PublicGroup."""
        store = self.server.server.store
        group = await store.group_state(ROOM)
        entries = len(await store.read_entries(ROOM, after_seq=0))
        return group.group_id, group.epoch, group.last_seq, entries, await store.public_group(ROOM)


@pytest.fixture
async def call(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Call]:
    """A server on this run's store (tests/store_fixtures.py) and the peers a test starts."""
    store_url = request.getfixturevalue("redis_url") if store_kind == "redis" else None
    server = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=tmp_path / "trust.db",
                                             store_url=store_url, secret=b"t" * 32, static_dir=None,
                                             claim_rate=2.0, claim_burst=20))
    # mallory is never admitted by the CallPeers unless a test says so
    running = Call(server, [], [], {"mallory"})
    yield running
    for peer in running.peers:
        await peer.stop()
    for client in running.clients:
        await client.close()
    await server.close()


def decoded(peer: CallPeer, remote: str) -> int:
    sink = peer.sinks[0]
    assert isinstance(sink, VerifyingSink)
    return sink.frames(remote, "video") + sink.frames(remote, "audio")


def converged(peers: list[CallPeer], members: set[str] | None = None) -> bool:
    names = tuple(sorted(members if members is not None else {p.identity for p in peers}))
    return (all(p.status().members == names for p in peers)
            and len({p.status().epoch for p in peers}) == 1
            and all(p.session.sending_epoch == p.status().epoch for p in peers))


async def media_flows(peers: list[CallPeer], frames: int = 20) -> None:
    """Every peer decrypts and decodes ``frames`` more frames from every other one."""
    before = {(p.identity, q.identity): decoded(p, q.identity) for p in peers for q in peers if q is not p}
    await until(lambda: all(decoded(p, q.identity) >= before[p.identity, q.identity] + frames
                            for p in peers for q in peers if q is not p), f"{frames} more frames on every link")


async def two_in_a_call(call: Call, members: set[str] | None = None) -> list[CallPeer]:
    peers = [await call.peer("alice"), await call.peer("bob")]
    await until(lambda: converged(peers, members), "alice and bob in one group")
    await media_flows(peers)
    return peers


async def still_working(call: Call, peers: list[CallPeer], members: set[str] | None = None) -> None:
    """Media flows, and the next legitimate commit (a self-update) is accepted by every peer."""
    await media_flows(peers)
    epoch = peers[0].status().epoch
    assert epoch is not None
    peers[0].request_self_update()
    await until(lambda: all((p.status().epoch or 0) > epoch for p in peers) and converged(peers, members),
                "a self-update accepted after the attack")
    await media_flows(peers)


async def member_mallory(call: Call, peers: list[CallPeer]) -> Participant:
    """mallory as an added member of the call's group (his own MLS state, following the log)."""
    call.refused.discard("mallory")
    mallory = await call.mallory()
    await mallory.publish()
    for peer in peers:
        peer.reconcile_soon()
    welcome = await mallory.client.next_event("welcome", timeout=30)
    mallory.group = mallory.mls.group_join(mallory.client_id, welcome["welcome"])
    await until(lambda: converged(peers, {p.identity for p in peers} | {"mallory"}), "mallory added")
    await follow_log(mallory, peers[0].status().epoch)
    return mallory


async def follow_log(member: Participant, epoch: int | None) -> None:
    """Process the log's commits until ``member`` is at ``epoch``."""
    while member.view.epoch != epoch:
        event = await member.client.next_event("commit", timeout=30)
        if event["epoch"] == member.view.epoch:
            member.view.receive(event["commit"])


# -- garbage bytes as a commit ------------------------------------------------------------------


async def test_garbage_commit_is_refused_and_the_call_goes_on(call: Call) -> None:
    peers = await two_in_a_call(call)
    mallory = await call.mallory()
    before = await call.state()
    group_id, epoch = before[0], before[1]
    for garbage in (b"\x00" * 40, b"\x00\x01\x00\x01" + b"\xff" * 60, b"not mls at all"):
        error = await expect_error(mallory.client.commit(group_id, epoch, garbage), ErrorCode.INVALID_HANDSHAKE)
        assert "MLS" in error.message or "handshake" in error.message
    assert await call.state() == before
    await still_working(call, peers)  # no permanent conflict: real commits go on


async def test_garbage_in_an_empty_room_registers_no_group(call: Call) -> None:
    mallory = await call.mallory()
    before = await call.state()
    await expect_error(mallory.client.commit(b"bogus-group", 0, b"\x00" * 40), ErrorCode.INVALID_HANDSHAKE)
    await expect_error(mallory.client.create_group(b"bogus-group", 0, b"\x00\x01\x00\x04garbage"),
                       ErrorCode.INVALID_HANDSHAKE)
    assert await call.state() == before and before[0] is None
    # the real creator is not met with wrong_group: the call starts normally
    peers = await two_in_a_call(call)
    assert peers[0].epochs[0].cause == "create" and peers[0].conflicts == 0
    await still_working(call, peers)


# -- a non-member's commit ----------------------------------------------------------------------


async def test_a_non_members_commit_is_refused(call: Call) -> None:
    peers = await two_in_a_call(call)
    mallory = await call.mallory()
    before = await call.state()
    group_id, epoch = before[0], before[1]
    # mallory's own group under the room's group id, brought to the room's epoch: a well-formed,
    # signed commit for the right group and epoch, from leaf 0 (alice's leaf in the real group)
    fake = mallory.mls.group_create(mallory.client_id, mallory.credential, group_id=group_id)
    while fake.epoch < epoch:
        fake.update()
        fake.apply_pending_commit()
    error = await expect_error(mallory.client.commit(group_id, epoch, fake.update().commit), ErrorCode.NOT_MEMBER)
    assert "leaf" in error.message
    # a proposal likewise
    await expect_error(mallory.client.propose(group_id, epoch, fake.propose_update().content), ErrorCode.NOT_MEMBER)
    assert await call.state() == before
    await still_working(call, peers)


# -- a foreign Welcome attached to a commit -----------------------------------------------------


async def test_a_foreign_welcome_is_refused_and_the_newcomer_joins_the_real_group(call: Call) -> None:
    call.refused.add("carol")  # carol is not added until the attack is over
    peers = await two_in_a_call(call)
    mallory = await member_mallory(call, peers)
    carol = await call.peer("carol")
    await until(lambda: carol.membership.key_packages_published > 0, "carol published a KeyPackage")
    # mallory (a member, so he may claim) takes carol's KeyPackage and welcomes her into a group
    # of his own, attached to a valid commit of the room's group that adds nobody
    foreign = mallory.mls.group_create(mallory.client_id, mallory.credential)
    added = foreign.add(await mallory.client.claim_key_package("carol"))
    assert added.welcome is not None
    before = await call.state()
    update = mallory.view.update()
    error = await expect_error(mallory.client.commit(mallory.view.group_id, mallory.view.epoch, update.commit,
                                                     welcomes={"carol": added.welcome}),
                               ErrorCode.INVALID_WELCOME)
    assert "does not add" in error.message
    mallory.view.discard_pending_commit()
    assert await call.state() == before
    assert carol.group is None
    # carol keeps publishing KeyPackages; once admitted, alice adds her to the real group
    call.refused.discard("carol")
    for peer in peers:
        peer.reconcile_soon()
    everyone = peers + [carol]
    await until(lambda: converged(everyone, {"alice", "bob", "carol", "mallory"}), "carol in the real group")
    assert carol.group is not None and carol.group.group_id == peers[0].group.group_id  # type: ignore[union-attr]
    await media_flows(everyone)


# -- a duplicate identity -------------------------------------------------------------------------


async def test_an_add_repeating_a_members_identity_is_refused(call: Call) -> None:
    peers = await two_in_a_call(call)
    mallory = await member_mallory(call, peers)
    before = await call.state()
    # a KeyPackage mallory made himself with alice's name (the directory would not take it)
    other_key = mallory.mls.generate_identity().content  # (one signature key per leaf)
    twin = mallory.mls.generate_key_package(other_key, mallory.mls.generate_credential("alice").content)
    output = mallory.view.add(twin.content)
    error = await expect_error(mallory.client.commit(mallory.view.group_id, mallory.view.epoch, output.commit,
                                                     welcomes={"alice": output.welcome}),
                               ErrorCode.DUPLICATE_IDENTITY)
    assert "alice" in error.message
    mallory.view.discard_pending_commit()
    # and one for an identity that never joined the room
    ghost = mallory.mls.generate_key_package(other_key, mallory.mls.generate_credential("ghost").content)
    output = mallory.view.add(ghost.content)
    await expect_error(mallory.client.commit(mallory.view.group_id, mallory.view.epoch, output.commit),
                       ErrorCode.NOT_ADMITTED)
    mallory.view.discard_pending_commit()
    assert await call.state() == before
    assert all(sorted(p.member_identities()) == ["alice", "bob", "mallory"] for p in peers)
    await still_working(call, peers, {"alice", "bob", "mallory"})


# -- an impostor creating the group ---------------------------------------------------------------


async def test_an_impostor_cannot_create_the_group_as_another(call: Call) -> None:
    mallory = await call.mallory()
    before = await call.state()
    as_alice = mallory.mls.generate_credential("alice").content
    group = mallory.mls.group_create(mallory.client_id, as_alice)
    error = await expect_error(mallory.client.create_group(group.group_id, 0, group.group_info()),
                               ErrorCode.IDENTITY_MISMATCH)
    assert "token identity" in error.message
    assert await call.state() == before and before[0] is None
    peers = await two_in_a_call(call)  # the real alice creates the group
    assert peers[0].epochs[0].cause == "create"
    assert sorted(peers[1].member_identities()) == ["alice", "bob"]
    await still_working(call, peers)


# -- an impostor's KeyPackage ---------------------------------------------------------------------


async def key_packages_of(call: Call, identity: str) -> int:
    """The KeyPackages of ``identity`` in the directory (publishing none answers how many)."""
    count = await call.server.server.store.publish_key_packages(ROOM, identity, [], limit=2**31)
    assert count is not None
    return count


async def test_an_impostors_key_package_is_refused(call: Call) -> None:
    call.refused.add("bob")
    alice = await call.peer("alice")
    mallory = await call.mallory()
    as_bob = mallory.mls.generate_credential("bob").content
    package = mallory.mls.generate_key_package(mallory.client_id, as_bob).content
    error = await expect_error(mallory.client.publish_key_packages([package]), ErrorCode.IDENTITY_MISMATCH)
    assert "token identity" in error.message
    # under his own name it is not stored either
    await expect_error(mallory.client.publish_key_packages([mallory.key_package(), package]),
                       ErrorCode.IDENTITY_MISMATCH)
    assert await key_packages_of(call, "bob") == 0 and await key_packages_of(call, "mallory") == 0
    # the real bob is added with his own KeyPackage
    bob = await call.peer("bob")
    call.refused.discard("bob")
    alice.reconcile_soon()
    await until(lambda: converged([alice, bob]), "the real bob added")
    assert bob.group is not None and bob.group.details().members[bob.group.leaf_index].client_id == bob.membership.client_id
    await still_working(call, [alice, bob])


# -- KeyPackage claims ----------------------------------------------------------------------------


async def test_a_non_member_claims_no_key_package(call: Call) -> None:
    call.refused.add("carol")  # carol waits, publishing
    peers = await two_in_a_call(call)
    carol = await call.peer("carol")
    await until(lambda: carol.membership.key_packages_published > 0, "carol published a KeyPackage")
    available = await key_packages_of(call, "carol")
    mallory = await call.mallory()
    before = await call.state()
    for target in ("carol", "alice", "nobody"):
        await expect_error(mallory.client.claim_key_package(target), ErrorCode.NOT_MEMBER)
    assert await key_packages_of(call, "carol") >= available > 0  # none was taken
    assert await call.state() == before
    call.refused.discard("carol")
    for peer in peers:
        peer.reconcile_soon()
    await until(lambda: converged(peers + [carol]), "carol added with her KeyPackage")
    await media_flows(peers + [carol])


async def test_a_claim_flood_is_rate_limited(call: Call) -> None:
    call.refused.add("carol")
    peers = await two_in_a_call(call)
    mallory = await member_mallory(call, peers)
    carol = await call.peer("carol")
    await until(lambda: carol.membership.key_packages_published > 0, "carol published a KeyPackage")
    before = await call.state()
    codes = []
    for _ in range(60):  # as fast as the connection allows
        try:
            await mallory.client.claim_key_package("nobody")
        except Exception as err:  # noqa: BLE001 - the typed error is what is counted
            codes.append(getattr(err, "code", None))
    assert codes.count(ErrorCode.RATE_LIMITED) >= 60 - 20 - 5  # the burst of 20, a few refills
    assert set(codes) == {ErrorCode.NOT_FOUND, ErrorCode.RATE_LIMITED}
    await expect_error(mallory.client.claim_key_package("carol"), ErrorCode.RATE_LIMITED)
    assert await key_packages_of(call, "carol") > 0  # carol's KeyPackages are still there ...
    assert await call.state() == before
    call.refused.discard("carol")  # ... and alice, with a budget of her own, adds her
    for peer in peers:
        peer.reconcile_soon()
    await until(lambda: converged(peers + [carol], {"alice", "bob", "carol", "mallory"}), "carol added")
    await media_flows(peers + [carol])


# -- handshakes and application messages ------------------------------------------------------------


async def test_a_handshake_sent_as_private_message_is_refused(call: Call) -> None:
    peers = await two_in_a_call(call)
    mallory = await member_mallory(call, peers)
    before = await call.state()
    private = dataclasses.replace(mallory.mls.config, handshake_wire_format=WireFormat.MLS_PRIVATE_MESSAGE)
    mallory.mls.config = private  # a member whose handshakes the server cannot read
    update = mallory.view.update()
    error = await expect_error(mallory.client.commit(mallory.view.group_id, mallory.view.epoch, update.commit),
                               ErrorCode.INVALID_HANDSHAKE)
    assert "PublicMessage" in error.message
    mallory.view.discard_pending_commit()
    proposal = mallory.view.propose_update().content
    await expect_error(mallory.client.propose(mallory.view.group_id, mallory.view.epoch, proposal),
                       ErrorCode.INVALID_HANDSHAKE)
    assert await call.state() == before
    await still_working(call, peers, {"alice", "bob", "mallory"})


async def test_an_application_message_from_a_non_member_is_refused(call: Call) -> None:
    peers = await two_in_a_call(call)
    mallory = await call.mallory()
    before = await call.state()
    group_id, epoch = before[0], before[1]
    fake = mallory.mls.group_create(mallory.client_id, mallory.credential, group_id=group_id)
    while fake.epoch < epoch:
        fake.update()
        fake.apply_pending_commit()
    ciphertext = fake.send(b"I am alice").content  # a PrivateMessage under the room's group id
    error = await expect_error(mallory.client.send_application(epoch, ciphertext), ErrorCode.NOT_MEMBER)
    assert "member" in error.message
    assert await call.state() == before
    await still_working(call, peers)
