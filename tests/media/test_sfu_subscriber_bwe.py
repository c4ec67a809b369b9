"""The SFU subscriber negotiates no receive-side bandwidth estimate (issue 16).

Janus VideoRoom ignores a subscriber's REMB, while aiortc computes one on
every video packet carrying the ``abs-send-time`` header extension and, once
the receiver lags, sends an RTCP REMB per packet: media.sfu strips the
extension from Janus's offer (:func:`media.sfu.without_abs_send_time`), so
the subscriber's answer does not accept it and its receivers never see the
extension.  Checked on the SDP rule alone, on aiortc's answer to such an
offer, and on SfuLinks' handling of the server's offer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from media.mesh import MediaSources
from media.session import SFrameSession
from media.sfu import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, SfuLinks, without_abs_send_time
from media.tracks import PatternVideoTrack
from sframe import MLSKeyManager

def extmaps(sdp: str) -> list[str]:
    return [line.split()[1] for line in sdp.splitlines() if line.startswith("a=extmap:")]


def janus_like_offer() -> str:
    """A subscriber offer shaped as Janus VideoRoom's (one audio, one video section)."""
    return "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=VideoRoom 1234", "t=0 0", "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=sendonly", "a=mid:0",
        "a=rtcp-mux", "a=rtpmap:111 opus/48000/2",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:2 {ABS_SEND_TIME_URI}",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 127.0.0.1", "a=sendonly", "a=mid:1",
        "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 nack pli",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:2 {ABS_SEND_TIME_URI}",
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "a=ssrc:1234 cname:janus", "",
    ])


def test_only_the_abs_send_time_extmaps_leave_and_line_endings_stay() -> None:
    offer = janus_like_offer()
    before = extmaps(offer)
    assert before.count(ABS_SEND_TIME_URI) == 2 and len(set(before)) == 3
    out = without_abs_send_time(offer)
    assert extmaps(out) == [uri for uri in before if uri != ABS_SEND_TIME_URI]
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")
    kept = [line for line in offer.split("\r\n") if ABS_SEND_TIME_URI not in line]
    assert out.split("\r\n") == kept
    assert without_abs_send_time(out) == out


def test_an_extmap_with_a_direction_leaves_too_and_plain_lf_stays() -> None:
    sdp = ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\n"
           f"a=extmap:3/recvonly {ABS_SEND_TIME_URI}\na=extmap:4 {AUDIO_LEVEL_URI}\na=mid:0\n")
    assert without_abs_send_time(sdp) == f"v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=extmap:4 {AUDIO_LEVEL_URI}\na=mid:0\n"


def test_aiortc_answers_without_the_extension_once_the_offer_lost_it() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        sender, receiver = RTCPeerConnection(), RTCPeerConnection()
        try:
            sender.addTransceiver(PatternVideoTrack(), direction="sendonly")
            await sender.setLocalDescription(await sender.createOffer())
            offer = sender.localDescription.sdp
            await receiver.setRemoteDescription(RTCSessionDescription(without_abs_send_time(offer), "offer"))
            await receiver.setLocalDescription(await receiver.createAnswer())
            plain = RTCPeerConnection()
            try:
                await plain.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                await plain.setLocalDescription(await plain.createAnswer())
                return extmaps(offer), extmaps(receiver.localDescription.sdp), extmaps(plain.localDescription.sdp)
            finally:
                await plain.close()
        finally:
            await sender.close()
            await receiver.close()

    offered, answered, answered_plain = asyncio.run(scenario())
    assert ABS_SEND_TIME_URI in offered and ABS_SEND_TIME_URI in answered_plain
    assert ABS_SEND_TIME_URI not in answered and answered  # the other extensions stay


def test_sfu_links_take_the_servers_offer_without_it_and_an_answer_as_it_is() -> None:
    async def scenario() -> tuple[str, str]:
        async def request(kind: str, **fields: Any) -> dict[str, Any]:
            raise AssertionError("no request expected")

        links = SfuLinks(session=SFrameSession(MLSKeyManager()), sources=MediaSources.synthetic(), ready=lambda: True,
                         request=request, identify=lambda leaf, epoch: None,
                         on_track=lambda identity, track: None, loopback=False)
        sdp = janus_like_offer()
        return links._remote(sdp, "offer").sdp, links._remote(sdp, "answer").sdp

    offer, answer = asyncio.run(scenario())
    assert ABS_SEND_TIME_URI not in offer and ABS_SEND_TIME_URI in answer
