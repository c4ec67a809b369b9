"""What the call tests ask of real CallPeers: start them in a room of a running server and stop
them after the test, read their VerifyingSink, and tell whether they hold one group and decode
each other (tests/media/test_media_call.py, test_sfu_call.py, test_media_join_hold.py,
tests/signaling/test_sfu_multi_instance.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from media.call_peer import CallOptions, CallPeer
from media.sinks import VerifyingSink


class PeerStarter:
    """Starts CallPeers (each with one VerifyingSink) in ``room`` of the server behind ``ws_url``
    with tokens from ``tokens``; :meth:`stop_all` stops every one started."""

    def __init__(self, ws_url: str, tokens: Any, room: str) -> None:
        self.ws_url, self.tokens, self.room = ws_url, tokens, room
        self.peers: list[CallPeer] = []

    async def __call__(self, identity: str, options: CallOptions | None = None, *,
                       kind: type[CallPeer] = CallPeer) -> CallPeer:
        token = self.tokens.mint(self.room, identity, 600)
        peer = kind(self.ws_url, self.room, token, sinks=[VerifyingSink()], options=options)
        self.peers.append(peer)
        await peer.start()
        return peer

    async def stop_all(self) -> None:
        for peer in self.peers:
            await peer.stop()


def sink(peer: CallPeer) -> VerifyingSink:
    verifying = peer.sinks[0]
    assert isinstance(verifying, VerifyingSink)
    return verifying


def receiving_all(peers: list[CallPeer], at_least: int) -> bool:
    """Every peer decoded at least ``at_least`` audio and video frames of every other."""
    return all(sink(p).frames(q.identity, kind) >= at_least
               for p in peers for q in peers if q is not p for kind in ("audio", "video"))


def same_group(peers: list[CallPeer]) -> bool:
    """The peers show the same members, epoch and verification code, and each sends in that epoch."""
    names = tuple(sorted(p.identity for p in peers))
    statuses = [p.status() for p in peers]
    return (all(s.members == names for s in statuses) and len({s.epoch for s in statuses}) == 1
            and len({s.verification for s in statuses}) == 1
            and all(p.session.sending_epoch == s.epoch for p, s in zip(peers, statuses)))


@pytest.fixture
async def call_peers() -> AsyncIterator[list[CallPeer]]:
    """The CallPeers a test starts itself (appending them here); stopped after the test."""
    peers: list[CallPeer] = []
    yield peers
    for peer in peers:
        await peer.stop()


def epoch_authenticators(peers: list[CallPeer]) -> dict[str, tuple[int, bytes]]:
    """Each member's epoch and epoch authenticator (RFC 9420 §8.7)."""
    out = {}
    for peer in peers:
        assert peer.group is not None
        out[peer.identity] = (peer.group.epoch, peer.group.epoch_authenticator())
    return out
