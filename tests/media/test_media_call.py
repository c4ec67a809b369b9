"""Encrypted group calls: real CallPeers (aiortc, MLS, SFrame) and the real
signaling server, all on 127.0.0.1 (ephemeral port, temporary database).

Each peer streams the test pattern with a drawn-in frame counter and a
tone to every other participant; receivers decrypt, decode and read the
counter back from the decoded pictures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from call_checks import PeerStarter, receiving_all, same_group, sink
from conftest import CANDIDATE, until
from media.call_peer import CallOptions, CallPeer
from media.stats import FailureKind, PeerStats
from signaling.config import ServerConfig
from signaling.errors import ErrorCode, SignalingError
from signaling.server import RunningServer, start_server

ROOM = "call"

StartPeer = Callable[..., Awaitable[CallPeer]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=tmp_path / "calls.db",
                                              secret=b"k" * 32, static_dir=None))
    yield running
    await running.close()


@pytest.fixture
async def start_peer(server: RunningServer) -> AsyncIterator[StartPeer]:
    starter = PeerStarter(server.ws_url, server.server.tokens, ROOM)
    yield starter
    await starter.stop_all()


def decoded(peer: CallPeer, remote: str, kind: str) -> int:
    return sink(peer).frames(remote, kind)


def link(peer: CallPeer, remote: str) -> PeerStats:
    return peer.links[remote].stats()


def failures(peer: CallPeer, remote: str) -> dict[FailureKind, int]:
    return link(peer, remote).failures


def failed(peer: CallPeer, remote: str) -> int:
    return sum(failures(peer, remote).values())


def withheld(peer: CallPeer, remote: str) -> int:
    """Frames ``peer`` did not send ``remote``, who could not have opened them."""
    return sum(s.frames_withheld for s in link(peer, remote).senders)


def frames_in_epoch(peer: CallPeer, remote: str, epoch: int) -> int:
    return sum(r.frames_by_epoch.get(epoch, 0) for r in link(peer, remote).receivers)


def assert_no_gap(peer: CallPeer, remote: str) -> None:
    """Every frame after the first decoded one (a keyframe) arrived, in order."""
    video = sink(peer).reports[remote]["video"]
    assert video.frames > 0 and video.unreadable == 0, (peer.identity, remote, video)
    assert video.missing == 0 and video.out_of_order == 0, (peer.identity, remote, video.gaps)


async def test_three_peers_hold_an_encrypted_call(start_peer: StartPeer) -> None:
    peers = [await start_peer(name) for name in ("alice", "bob", "carol")]
    await until(lambda: same_group(peers), "one group of three, every sender on its epoch")
    await until(lambda: receiving_all(peers, 60), "60 decoded frames of each kind on every link")

    epoch = peers[0].status().epoch
    # alice created the group and committed every Add (one or two commits)
    assert [e.cause for e in peers[0].epochs] == ["create"] + ["own"] * epoch
    assert peers[0].epochs[-1].members == 3
    assert len({p.group.epoch_authenticator() for p in peers if p.group}) == 1
    for peer in peers:
        for remote in (q.identity for q in peers if q is not peer):
            assert_no_gap(peer, remote)
            stats = link(peer, remote)
            assert {s.codec for s in stats.senders} == {"video/VP8", "audio/opus"}
            assert all(s.frames_encrypted > 0 and s.frames_dropped == 0 for s in stats.senders)
            # decoded frames were all decrypted first; some in the current epoch
            assert stats.frames_decrypted >= decoded(peer, remote, "audio") + decoded(peer, remote, "video")
            assert frames_in_epoch(peer, remote, epoch) > 0
            # before a member had the keys of a sender's epoch its frames were
            # of an unknown KID, never forged or garbled
            assert stats.failures[FailureKind.AUTHENTICATION] == 0
            assert stats.failures[FailureKind.MALFORMED] == 0
            pc = peer.links[remote].pc
            for description in (pc.localDescription, pc.remoteDescription):
                assert set(CANDIDATE.findall(description.sdp)) == {"127.0.0.1"}
    # alice committed every change: her receivers never missed a key
    assert peers[0].status().failures_total == 0


async def test_outsider_and_removed_member_cannot_decrypt(start_peer: StartPeer) -> None:
    banned = {"eve"}
    options = CallOptions(admit=lambda identity: identity not in banned)
    alice, bob, carol = [await start_peer(name, options) for name in ("alice", "bob", "carol")]
    eve = await start_peer("eve", options)  # in the room, never in the group
    members = [alice, bob, carol]
    await until(lambda: same_group(members) and receiving_all(members, 30), "a call of three")
    await until(lambda: all(withheld(p, "eve") > 30 for p in members),
                "members withholding their media from eve")

    assert eve.group is None and "eve" not in alice.status().members
    assert sink(eve).total_frames == 0
    for member in members:
        stats = link(eve, member.identity)
        # no member sends a frame to a participant who is not one: eve gets nothing
        assert stats.frames_decrypted == 0 and failed(eve, member.identity) == 0
        assert link(member, "eve").frames_encrypted == 0
        assert link(member, "eve").frames_decrypted == 0  # eve has no key to send with
    assert eve.status().frames_sent == 0

    # carol is expelled: the committer removes her, the others switch keys
    before = carol.status().epoch
    assert before is not None
    steady = {(m.identity, o): failures(m, o) for m, o in ((alice, "bob"), (bob, "alice"))}
    banned.add("carol")
    alice.reconcile_soon()
    removal = before + 1
    await until(lambda: carol.removed and same_group([alice, bob]), "carol removed")
    assert alice.status().epoch == removal
    withheld_then = {m.identity: withheld(m, "carol") for m in (alice, bob)}
    await until(lambda: all(withheld(m, "carol") > withheld_then[m.identity] + 30
                            for m in (alice, bob)), "alice and bob withholding media from carol")
    await until(lambda: frames_in_epoch(bob, "alice", removal) > 30
                and frames_in_epoch(alice, "bob", removal) > 30, "alice and bob in the new epoch")

    for remote in ("alice", "bob"):
        assert frames_in_epoch(carol, remote, before) > 0  # she did decrypt before
        assert frames_in_epoch(carol, remote, removal) == 0
        receivers = link(carol, remote).receivers
        assert all(epoch < removal for r in receivers for epoch in r.frames_by_epoch)
    for member, other in ((alice, "bob"), (bob, "alice")):
        assert failures(member, other) == steady[(member.identity, other)]  # none across the rekey
        assert_no_gap(member, other)


async def test_fourth_peer_joins_and_one_leaves_without_decrypt_failures(
        start_peer: StartPeer) -> None:
    alice, bob, carol = [await start_peer(name) for name in ("alice", "bob", "carol")]
    await until(lambda: same_group([alice, bob, carol]) and receiving_all([alice, bob, carol], 30),
                "a call of three")
    steady = {(p.identity, q): dict(failures(p, q)) for p in (alice, bob, carol)
              for q in p.links}

    dave = await start_peer("dave")
    dave_links = [(alice, "dave"), (bob, "dave"), (carol, "dave"),
                  (dave, "alice"), (dave, "bob"), (dave, "carol")]
    #: failures of each receiver on a link with dave when it first decrypted
    first_decrypt: dict[tuple[str, str, str], int] = {}

    def dave_in() -> bool:
        # on links with dave, failures are expected only before the first frame
        for p, q in dave_links:
            for r in link(p, q).receivers if q in p.links else ():
                if r.frames_decrypted and (p.identity, q, r.kind) not in first_decrypt:
                    first_decrypt[(p.identity, q, r.kind)] = r.failures_total
        return len(first_decrypt) == 12 and same_group([alice, bob, carol, dave]) \
            and receiving_all([alice, bob, carol, dave], 30)

    await until(dave_in, "dave in the call")
    joined_epoch = dave.status().epoch
    await carol.stop()
    remaining = [alice, bob, dave]
    await until(lambda: same_group(remaining), "carol removed")
    left_epoch = alice.status().epoch
    assert joined_epoch is not None and left_epoch == joined_epoch + 1
    await until(lambda: all(frames_in_epoch(p, q.identity, left_epoch) > 30
                            for p in remaining for q in remaining if q is not p),
                "every remaining sender in the new epoch")

    for p in (alice, bob):
        for q in ("alice", "bob"):
            if q != p.identity:
                assert failures(p, q) == steady[(p.identity, q)]
    peers = {"alice": alice, "bob": bob, "dave": dave}
    for (p_name, q, kind), counted in first_decrypt.items():
        if p_name in peers and q != "carol":
            (receiver,) = (r for r in link(peers[p_name], q).receivers if r.kind == kind)
            assert receiver.failures_total == counted, (p_name, q, receiver)
    for p in remaining:
        for q in remaining:
            if q is not p:
                assert_no_gap(p, q.identity)
    assert [e.cause for e in dave.epochs] == ["welcome", "commit"]


async def test_racing_commits_settle_through_the_delivery_service(start_peer: StartPeer) -> None:
    peers = [await start_peer(name) for name in ("alice", "bob", "carol")]
    await until(lambda: same_group(peers) and receiving_all(peers, 30), "a call of three")
    start = peers[0].status().epoch
    assert start is not None
    steady = {(p.identity, q): dict(failures(p, q)) for p in peers for q in p.links}
    causes_before = [len(p.epochs) for p in peers]

    # all three commit an UpdatePath for the same epoch at once: one wins,
    # the others process the winner from the log and try again
    for peer in peers:
        peer.request_self_update()
    await until(lambda: same_group(peers) and peers[0].status().epoch == start + 3,
                "three self-updates accepted")
    final = start + 3
    await until(lambda: all(frames_in_epoch(p, q.identity, final) > 10
                            for p in peers for q in peers if q is not p), "everyone on the last key")

    assert sum(p.conflicts for p in peers) >= 2
    assert len({p.group.epoch_authenticator() for p in peers if p.group}) == 1
    for peer, before in zip(peers, causes_before):
        changes = peer.epochs[before:]
        assert [e.epoch for e in changes] == [start + 1, start + 2, start + 3]
        assert sum(e.cause == "own" for e in changes) == 1  # its own update, exactly once
        for remote in peer.links:
            assert failures(peer, remote) == steady[(peer.identity, remote)]
            assert_no_gap(peer, remote)


async def test_member_reconnecting_without_state_is_removed_and_added_again(
        start_peer: StartPeer) -> None:
    alice, bob = await start_peer("alice"), await start_peer("bob")
    await until(lambda: same_group([alice, bob]) and receiving_all([alice, bob], 10), "a call of two")
    before = alice.status().epoch
    assert before is not None

    # a new process for bob: fresh MLS state, same identity; the server
    # replaces the old connection, alice sees bob join again
    bob_again = await start_peer("bob")
    await until(lambda: bob.ended.is_set(), "the old connection replaced")
    # another signature key for bob: alice is warned and shows bob's media once she accepts it
    await until(lambda: any(w.kind == "key_changed" and w.identity == "bob" for w in alice.warnings),
                "alice warned of bob's new key")
    assert not bob_again.warnings
    alice.accept_key("bob")
    await until(lambda: same_group([alice, bob_again]) and receiving_all([alice, bob_again], 30),
                "bob back in the call")
    assert [(e.epoch, e.members) for e in alice.epochs[-2:]] == [(before + 1, 1), (before + 2, 2)]
    assert [e.cause for e in bob_again.epochs] == ["welcome"]
    assert_no_gap(alice, "bob")
    assert_no_gap(bob_again, "alice")


async def test_a_room_is_used_again_after_everyone_left(server: RunningServer, start_peer: StartPeer) -> None:
    """alice and bob hold a call and leave; later carol and dave meet in the same
    room: carol starts a new group (the old one has nobody left to add her)."""
    server.server.config = replace(server.server.config, abandon_after=0.0)
    first = [await start_peer("alice"), await start_peer("bob")]
    await until(lambda: same_group(first) and receiving_all(first, 10), "yesterday's call")
    old_group = first[0].group.group_id if first[0].group else None
    for peer in first:
        await peer.stop()
    rooms = server.server.rooms
    await until(lambda: ROOM not in rooms or not rooms[ROOM].members, "everyone left")

    second = [await start_peer("carol"), await start_peer("dave")]
    await until(lambda: same_group(second) and receiving_all(second, 30), "today's call")
    assert [e.cause for e in second[0].epochs][0] == "create"
    assert second[0].group is not None and second[0].group.group_id != old_group
    assert_no_gap(second[0], "dave")
    assert_no_gap(second[1], "carol")


async def test_newcomers_right_after_everyone_left_start_afresh(server: RunningServer,
                                                               start_peer: StartPeer) -> None:
    """alice and bob leave; carol joins at once, while the server still keeps their
    group (nobody left to add her): once --abandon-after has passed the server drops
    it and tells her (``group_reset``), she creates a new group and dave joins it."""
    server.server.config = replace(server.server.config, abandon_after=3.0)
    first = [await start_peer("alice"), await start_peer("bob")]
    await until(lambda: same_group(first), "yesterday's call")
    old_group = first[0].group.group_id if first[0].group else None
    for peer in first:
        await peer.stop()
    carol = await start_peer("carol")
    assert carol.client.join_reply["group_id"] == old_group  # within the 3 s: she waits
    await until(lambda: carol.group is not None, "carol told the old group was dropped")
    assert carol.group is not None and carol.group.group_id != old_group
    assert [e.cause for e in carol.epochs] == ["create"]
    dave = await start_peer("dave")
    second = [carol, dave]
    await until(lambda: same_group(second) and receiving_all(second, 30), "today's call")
    assert_no_gap(carol, "dave")
    assert_no_gap(dave, "carol")


async def test_a_peer_away_longer_than_the_room_log_gives_up_reconnecting(start_peer: StartPeer) -> None:
    """The server refuses a catch-up the pruned log cannot serve (log_truncated):
    the peer stops retrying at once and ends its call, instead of retrying until
    its reconnect_timeout."""
    alice = await start_peer("alice", CallOptions(reconnect_timeout=60.0))
    attempts = []

    async def truncated(**kwargs: object) -> dict[str, object]:
        attempts.append(1)
        raise SignalingError(ErrorCode.LOG_TRUNCATED, "away too long", pruned_seq=9)

    alice.client.reconnect = truncated  # type: ignore[method-assign]
    assert await alice.rejoin(60.0) is None
    assert attempts == [1]


async def test_a_peer_still_waiting_to_be_added_reconnects_as_a_newcomer(start_peer: StartPeer) -> None:
    """Catching up with ``since`` would make the server count it as a member of the
    group it is not in (and never drop that group if abandoned)."""
    alice = await start_peer("alice")
    asked = []

    async def reconnect(**kwargs: object) -> dict[str, object]:
        asked.append(kwargs)
        return {"members": [], "group_id": None, "epoch": None}

    alice.client.reconnect = reconnect  # type: ignore[method-assign]
    assert alice.group is not None
    await alice.rejoin(5.0)
    alice.membership.group = None  # as a newcomer waiting to be added
    await alice.rejoin(5.0)
    assert asked == [{"catch_up": True}, {"catch_up": False}]


async def test_back_from_an_outage_to_a_room_with_another_group(server: RunningServer,
                                                                 start_peer: StartPeer) -> None:
    """A member away while its room was started afresh (docs/protocol.md, abandoned
    rooms) drops the old group's state and offers a KeyPackage to be added anew."""
    alice, bob = await start_peer("alice"), await start_peer("bob")
    await until(lambda: same_group([alice, bob]), "a call of two")
    assert alice.group is not None
    epoch = alice.group.epoch
    await alice._on_reconnected({"members": ["bob"], "group_id": alice.group.group_id, "epoch": epoch})
    assert alice.group is not None, "the same group: nothing to do"
    await alice._on_reconnected({"members": ["bob"], "group_id": b"\x07another group", "epoch": 3})
    assert alice.group is None
    assert await server.server.store.claim_key_package(ROOM, "alice") is not None
