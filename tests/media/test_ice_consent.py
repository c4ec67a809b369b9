"""ICE consent freshness by RFC 7675's rule (media.consent).

Two aiortc peers on loopback; the answering peer's STUN success responses
pass through a gate that delays them (as a busy event loop reading a
backlog of RTP from one bundled socket does) or drops them.  Intervals are
scaled down (checks every 0.1 to 0.2 s, a 2 s consent timeout) so the
tests stay short; waits are bounded by outcomes, not sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection

import media.consent
from media.consent import keep_consent
from media.loopback import filter_sdp, loopback_ice
from media.tracks import ToneAudioTrack

BOUND = 30.0


@dataclass
class Gate:
    """What becomes of the answering peer's STUN success responses."""

    delay: float = 0.0
    drop: bool = False
    answered: int = 0


async def connected_pair(gate: Gate, consent: Callable[[RTCPeerConnection], None] | None
                         ) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """An offerer (``consent`` applied) and an answerer whose responses pass ``gate`` once connected."""
    offerer, answerer = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    offerer.addTransceiver(ToneAudioTrack(), direction="sendonly")
    if consent is not None:
        consent(offerer)
    with loopback_ice():
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
    answer = answerer.localDescription
    await offerer.setRemoteDescription(type(answer)(filter_sdp(answer.sdp), answer.type))
    await until(lambda: offerer.connectionState == "connected" and answerer.connectionState == "connected",
                "both peers connected")
    connection = answerer.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
    for protocol in connection._protocols:
        send = protocol.send_stun

        def gated(message: stun.Message, addr: tuple[str, int], send: Any = send) -> None:
            if message.message_class != stun.Class.RESPONSE:
                send(message, addr)
            elif not gate.drop:
                gate.answered += 1
                asyncio.get_running_loop().call_later(gate.delay, send, message, addr)
        protocol.send_stun = gated
    return offerer, answerer


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not predicate():
        assert loop.time() < deadline, f"not reached within {BOUND} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent checks every 0.1 to 0.2 s, both ours and aioice's; our consent timeout 2 s."""
    monkeypatch.setattr(media.consent, "CHECK_INTERVAL", (0.1, 0.2))
    monkeypatch.setattr(media.consent, "CONSENT_TIMEOUT", 2.0)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.15)


@pytest.fixture
async def peers() -> AsyncIterator[list[RTCPeerConnection]]:
    made: list[RTCPeerConnection] = []
    yield made
    for pc in made:
        await pc.close()


async def test_answers_later_than_aioices_transaction_keep_consent(
        scaled: None, peers: list[RTCPeerConnection]) -> None:
    gate = Gate()
    ours = await connected_pair(gate, keep_consent)
    theirs = await connected_pair(gate, None)  # aioice's own checks, for contrast
    peers.extend([*ours, *theirs])
    gate.delay = 1.0  # every answer arrives after aioice's 0.5 s transaction ended
    # aioice drops the late answers: six checks in a row unanswered close the connection
    await until(lambda: theirs[0].connectionState == "closed", "aioice's connection closed")
    # RFC 7675's rule: an answer within the 2 s consent timeout keeps consent
    answered = gate.answered
    await until(lambda: gate.answered >= answered + 20, "20 more answered checks")
    assert ours[0].connectionState == "connected" and ours[1].connectionState == "connected"


async def test_consent_expires_when_nothing_answers(scaled: None, peers: list[RTCPeerConnection]) -> None:
    gate = Gate()
    ours = await connected_pair(gate, keep_consent)
    peers.extend(ours)
    gate.drop = True
    await until(lambda: ours[0].connectionState == "closed", "the connection closed once consent expired")
