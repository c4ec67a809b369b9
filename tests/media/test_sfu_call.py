"""CallPeers in an SFU room: the real signaling server bridging to a private
Janus (media.cli.janus), everything on 127.0.0.1 (issue 16).

* four peers decode each other's audio and video, the sinks' tiles named by
  the frames' SFrame KIDs; what each publisher sends Janus is ciphertext (no
  16-byte run of any plaintext frame it encoded, past the codec's clear
  bytes, occurs in its outgoing RTP payloads);
* churn through the SFU: a joiner, a leaver and a self-update, with no
  frame lost to keys after each receiver's first frame of a stream;
* a misbehaving bridge that swaps two feeds' ``from``: the streams are
  flagged and the tracks shown under the KID's member;
* Janus SIGKILLed and restarted mid-call: ``sfu.down``, then ``sfu.up``,
  republish and resubscribe, and media resumes with no MLS epoch change;
* a connection that loses ICE (as when consent expires) is made anew: the
  subscriber from scratch (``restart``), the publisher with a new feed.

Small pictures (the synthetic 96x64 pattern) so that four aiortc peers fit
on two cores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCDtlsTransport
from aiortc.rtp import is_rtcp
from janus_peers import janus  # noqa: F401  (fixture)

from call_checks import PeerStarter, receiving_all, same_group, sink
from conftest import until
from media.call_peer import CallOptions, CallPeer
from media.cli.janus import JanusProcess
from media.framing import vp8_clear_bytes
from media.stats import FailureKind, ReceiverStats
from signaling.config import ServerConfig
from signaling.server import RunningServer, start_server
from signaling.sfu import SfuBridge

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOM = "sfu-call"
WINDOW = 16  # bytes: a longer run of plaintext in an RTP payload counts as leaked

StartPeer = Callable[..., Awaitable[CallPeer]]


@pytest.fixture
def sfu_above() -> int:
    """Rooms go through Janus once more than this many participants are connected."""
    return 0


@pytest.fixture
async def server(tmp_path: Path, janus: JanusProcess, sfu_above: int) -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=tmp_path / "calls.db",
                                              secret=b"k" * 32, static_dir=None,
                                              sfu_url=janus.url, sfu_above=sfu_above))
    yield running
    await running.close()


@pytest.fixture
async def start_peer(server: RunningServer) -> AsyncIterator[StartPeer]:
    starter = PeerStarter(server.ws_url, server.server.tokens, ROOM)
    yield starter
    await starter.stop_all()


def streams_from(peer: CallPeer, remote: str) -> list[ReceiverStats]:
    """``peer``'s receivers of the streams attributed (by KID) to ``remote``."""
    assert peer.sfu is not None
    return [stats for attribution, stats in peer.sfu.receiver_stats().values() if attribution.first == remote]


def assert_no_gap(peer: CallPeer, remote: str) -> None:
    video = sink(peer).reports[remote]["video"]
    assert video.frames > 0 and video.unreadable == 0, (peer.identity, remote, video)
    assert video.missing == 0 and video.out_of_order == 0, (peer.identity, remote, video.gaps)


# -- what leaves the publisher -------------------------------------------------


class Wire:
    """Every RTP packet sent (SSRC, payload), and the plaintext frames each
    tapped SFrame sender transform sealed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.packets: list[tuple[int, bytes]] = []
        self.frames: dict[int, list[tuple[str, bytes]]] = {}
        send_rtp = RTCDtlsTransport._send_rtp
        packets = self.packets

        async def recording(transport: RTCDtlsTransport, data: bytes) -> None:
            if not is_rtcp(data):
                cc = data[0] & 0x0F
                start = 12 + 4 * cc
                if data[0] & 0x10:
                    start += 4 + 4 * int.from_bytes(data[start + 2:start + 4], "big")
                packets.append((int.from_bytes(data[8:12], "big"), data[start:]))
            await send_rtp(transport, data)

        monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", recording)

    def tap(self, peer: CallPeer) -> None:
        """Record the plaintext of every frame ``peer``'s publisher seals from now on."""
        assert peer.sfu is not None and peer.sfu._publishing is not None
        for transform in peer.sfu._publishing.senders:
            kind = transform.sender.kind
            frames = self.frames.setdefault(transform.sender._ssrc, [])
            seal_frame = transform.seal_frame

            def recording(frame: bytes, seal: Any = seal_frame, frames: list[Any] = frames,
                          kind: str = kind) -> bytes | None:
                frames.append((kind, frame))
                return seal(frame)

            transform.seal_frame = recording  # type: ignore[method-assign]

    def leaked(self, ssrc: int) -> tuple[int, int]:
        """(plaintext frames with a WINDOW-byte run past their clear bytes in an RTP
        payload of ``ssrc``, frames checked)."""
        on_wire = {payload[i:i + WINDOW] for s, payload in self.packets if s == ssrc
                   for i in range(len(payload) - WINDOW + 1)}
        frames = self.frames.get(ssrc, [])
        leaked = sum(any(frame[i:i + WINDOW] in on_wire for i in range(clear(kind, frame), len(frame) - WINDOW + 1))
                     for kind, frame in frames)
        return leaked, len(frames)


def clear(kind: str, frame: bytes) -> int:
    return vp8_clear_bytes(frame) if kind == "video" else 0


async def test_four_peers_through_janus_decode_each_other_and_janus_gets_ciphertext(
        start_peer: StartPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)
    peers = [await start_peer(name) for name in ("alice", "bob", "carol", "dave")]
    await until(lambda: all(p.sfu is not None and p.sfu._publishing is not None for p in peers), "publishing")
    for peer in peers:
        wire.tap(peer)
    await until(lambda: same_group(peers) and receiving_all(peers, 20), "a call of four through Janus", 45)
    for peer in peers:
        status = peer.status()
        assert status.topology == "sfu" and peer.links == {}
        assert status.relabelled == () and status.failures[FailureKind.AUTHENTICATION] == 0
        # tiles under the KID's member: exactly the three others, audio and video each
        assert sorted(sink(peer).reports) == sorted(q.identity for q in peers if q is not peer)
        assert all(a.first == a.stream.claimed for a in peer.sfu.streams.values())
        for remote in sink(peer).reports:
            assert_no_gap(peer, remote)
    for peer in peers:
        assert peer.sfu is not None and peer.sfu._publisher is not None
        for transceiver in peer.sfu._publisher.getTransceivers():
            leaked, checked = wire.leaked(transceiver.sender._ssrc)
            assert checked > 20 and leaked == 0, (peer.identity, transceiver.kind, leaked, checked)
    # the check can fail: the plaintext itself is found where it was sent in the clear
    ssrc, frames = next((s, f) for s, f in wire.frames.items() if f and f[0][0] == "video")
    wire.packets.append((ssrc, frames[-1][1]))
    assert wire.leaked(ssrc)[0] >= 1


async def test_churn_through_the_sfu_loses_no_frame_to_keys_after_the_first(start_peer: StartPeer) -> None:
    alice, bob, carol = [await start_peer(name) for name in ("alice", "bob", "carol")]
    await until(lambda: same_group([alice, bob, carol]) and receiving_all([alice, bob, carol], 15),
                "a call of three", 40)
    first: dict[tuple[str, str, str], int] = {}

    def note_first(peers: list[CallPeer]) -> None:
        """Failures of each receiver (peer, sender by KID, mid) when it first decrypted."""
        for p in peers:
            assert p.sfu is not None
            for mid, (attribution, stats) in p.sfu.receiver_stats().items():
                key = (p.identity, str(attribution.first), f"{attribution.stream.feed}/{mid}")
                if stats.frames_decrypted and key not in first:
                    first[key] = stats.failures_total

    dave = await start_peer("dave")
    four = [alice, bob, carol, dave]

    def dave_in() -> bool:
        note_first(four)
        return same_group(four) and receiving_all(four, 15)

    await until(dave_in, "dave in the call", 40)
    joined = dave.status().epoch
    await carol.stop()
    three = [alice, bob, dave]
    await until(lambda: same_group(three), "carol removed", 30)
    bob.request_self_update()
    assert joined is not None
    await until(lambda: same_group(three) and alice.status().epoch == joined + 2, "bob's update", 30)
    before = {(p.identity, q.identity): sink(p).frames(q.identity, "video") for p in three for q in three
              if q is not p}
    await until(lambda: all(sink(p).frames(q.identity, "video") > before[(p.identity, q.identity)] + 15
                            for p in three for q in three if q is not p), "media after the rekeys", 30)
    note_first(three)
    checked = 0
    for p in three:
        assert p.sfu is not None
        for mid, (attribution, stats) in p.sfu.receiver_stats().items():
            key = (p.identity, str(attribution.first), f"{attribution.stream.feed}/{mid}")
            if attribution.first != "carol":
                assert stats.failures_total == first[key], (key, stats.failures)
                checked += 1
        for q in three:
            if q is not p:
                assert_no_gap(p, q.identity)
    assert checked == 12  # each of three receives two others' audio and video
    assert [e.cause for e in dave.epochs] == ["welcome", "commit", "commit"]


async def test_streams_relabelled_by_the_sfu_are_flagged_and_shown_by_kid(
        start_peer: StartPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    honest = SfuBridge._streams

    def swapped(state: Any, streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A bridge that says alice's streams are bob's and the reverse."""
        swap = {"alice": "bob", "bob": "alice"}
        return [dict(s, **{"from": swap.get(s["from"], s["from"])}) for s in honest(state, streams)]

    monkeypatch.setattr(SfuBridge, "_streams", staticmethod(swapped))
    peers = [await start_peer(name) for name in ("alice", "bob", "carol")]
    alice, bob, carol = peers
    await until(lambda: same_group(peers) and receiving_all(peers, 15), "a call of three", 40)
    flagged = {(e.claimed, e.sender) for e in carol.status().relabelled}
    assert flagged == {("bob", "alice"), ("alice", "bob")}
    assert sum(stats.streams_relabelled for stats in carol.link_stats()) == 4
    # alice's and bob's tiles at carol hold their own pictures: each counter run is continuous
    for remote in ("alice", "bob"):
        assert_no_gap(carol, remote)
        assert {a.first for a in carol.sfu.streams.values() if a.stream.claimed != remote} >= {remote}
    # alice sees bob's streams claimed as alice's own: flagged too
    assert {(e.claimed, e.sender) for e in alice.status().relabelled} == {("alice", "bob")}


async def test_janus_killed_and_restarted_mid_call_resumes_without_an_epoch_change(
        start_peer: StartPeer, janus: JanusProcess) -> None:
    peers = [await start_peer(name) for name in ("alice", "bob", "carol")]
    await until(lambda: same_group(peers) and receiving_all(peers, 15), "a call of three", 40)
    epochs = [list(p.epochs) for p in peers]
    janus.kill()
    await until(lambda: all(p.sfu is not None and p.sfu.interrupted for p in peers), "sfu.down seen", 20)
    janus.start()
    old = {(p.identity, q.identity): sink(p).reports[q.identity]["video"] for p in peers for q in peers
           if q is not p}

    def resumed() -> bool:  # each remote's tile got a new track from the new subscription, and frames on it
        return all(sink(p).reports[q.identity]["video"] is not old[(p.identity, q.identity)]
                   and sink(p).frames(q.identity, "video") >= 15 and sink(p).frames(q.identity, "audio") >= 15
                   for p in peers for q in peers if q is not p)

    await until(resumed, "media again after the restart", 45)
    assert [list(p.epochs) for p in peers] == epochs
    assert all(not p.sfu.interrupted for p in peers if p.sfu is not None)
    assert all(p.status().relabelled == () for p in peers)


@pytest.mark.parametrize("sfu_above", [2])
async def test_a_mesh_room_moves_to_the_sfu_when_a_third_participant_joins(start_peer: StartPeer) -> None:
    alice, bob = await start_peer("alice"), await start_peer("bob")
    await until(lambda: same_group([alice, bob]) and receiving_all([alice, bob], 15), "a mesh call of two", 30)
    assert alice.status().topology == bob.status().topology == "mesh"
    assert set(alice.links) == {"bob"} and alice.sfu is None
    mesh_epochs = [list(p.epochs) for p in (alice, bob)]
    carol = await start_peer("carol")
    peers = [alice, bob, carol]
    await until(lambda: same_group(peers) and all(p.sfu is not None for p in peers)
                and all(p.sfu.receiver_stats() for p in peers if p.sfu is not None)
                and receiving_all(peers, 15), "the call of three through Janus", 40)
    for peer in peers:
        assert peer.status().topology == "sfu" and peer.links == {}
        assert {a.first for a in peer.sfu.streams.values()} == {q.identity for q in peers if q is not peer}
    # the switch changed the media links, not MLS: the only new epoch is carol's addition
    assert [e.cause for e in alice.epochs[len(mesh_epochs[0]):]] in (["own"], ["commit"])


async def test_a_member_back_from_a_signaling_outage_republishes_and_resubscribes(start_peer: StartPeer) -> None:
    """The server lets go of a member's SFU handles with its connection; back,
    the member publishes and subscribes afresh and the others subscribe to its
    new feed, which Janus puts on the m-lines its old feed left (a new SSRC on
    a known m-line: media.seams.route_ssrc).  MLS does not change: bob comes
    back resumed (with his state), so the others keep his leaf and everyone
    stays in the epoch, with the same epoch authenticator."""
    options = CallOptions(reconnect_timeout=30.0)
    peers = [await start_peer(name, options) for name in ("alice", "bob", "carol")]
    alice, bob, carol = peers
    await until(lambda: same_group(peers) and receiving_all(peers, 15), "a call of three", 40)
    assert bob.sfu is not None
    feed = bob.sfu.feed
    old = {(p.identity, q.identity): sink(p).reports[q.identity]["video"] for p in peers for q in peers
           if q is not p}
    epochs = {p.identity: (p.status().epoch, p.status().verification) for p in peers}
    ws = bob.client._ws
    assert ws is not None
    await ws.close()  # the connection drops under bob
    await until(lambda: bob.sfu is not None and bob.sfu.feed not in (None, feed), "bob published again", 30)

    def resumed() -> bool:
        # bob's tiles get fresh tracks (his new subscription), the others a fresh one of bob
        return all(sink(p).frames(q.identity, "video") >= 15
                   and (sink(p).reports[q.identity]["video"] is not old[(p.identity, q.identity)]
                        or bob not in (p, q))
                   for p in peers for q in peers if q is not p)

    await until(resumed, "media from and to bob again", 40)
    for p in (alice, carol):
        assert p.sfu is not None
        assert {a.stream.feed: a.first for a in p.sfu.streams.values()}.get(bob.sfu.feed) == "bob"
    assert all(p.status().relabelled == () for p in peers)
    assert {p.identity: (p.status().epoch, p.status().verification) for p in peers} == epochs


async def lose_ice(pc: Any) -> None:
    """End ``pc``'s ICE connection as aioice does when consent expires (RFC 7675 §5.1): aiortc
    then closes the whole connection on its own."""
    await pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection.close()


async def test_connections_that_close_on_their_own_are_made_anew(start_peer: StartPeer) -> None:
    """bob's subscribing connection loses ICE (as when consent expires under load): bob
    subscribes again from scratch (``restart``: the server drops the old subscription) and
    decodes alice again on fresh tracks; then his publishing connection: he publishes
    again (a new feed) and alice decodes him again."""
    peers = [await start_peer(name) for name in ("alice", "bob")]
    alice, bob = peers
    await until(lambda: same_group(peers) and receiving_all(peers, 15), "a call of two", 40)
    assert bob.sfu is not None and bob.sfu.restarts == 0
    subscriber, publisher = bob.sfu._subscriber, bob.sfu._publisher
    feed = bob.sfu.feed
    old = sink(bob).reports["alice"]["video"]

    await lose_ice(subscriber)
    await until(lambda: subscriber.connectionState == "closed", "bob's subscribing connection closed", 10)
    await until(lambda: bob.sfu is not None and bob.sfu._subscriber not in (None, subscriber)
                and sink(bob).reports["alice"]["video"] is not old
                and sink(bob).frames("alice", "video") >= 15, "bob decoding alice on a new connection", 30)
    assert bob.sfu.restarts == 1 and bob.sfu._publisher is publisher and bob.sfu.feed == feed

    old = sink(alice).reports["bob"]["video"]
    await lose_ice(publisher)
    await until(lambda: bob.sfu is not None and bob.sfu.feed not in (None, feed)
                and sink(alice).reports["bob"]["video"] is not old
                and sink(alice).frames("bob", "video") >= 15, "alice decoding bob's new feed", 30)
    assert bob.sfu.restarts == 2 and bob.sfu.failed is None
    assert alice.sfu is not None and alice.sfu.restarts == 0
    assert receiving_all(peers, 15) and same_group(peers)
