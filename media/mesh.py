"""The media mesh of a call peer: its sources, and one RTCPeerConnection
per other participant, every sender and receiver SFrame-protected.

* :class:`MediaSources`: this peer's audio and video (the test pattern
  with its drawn-in counter and a tone, or a file through aiortc's
  ``MediaPlayer``), fanned out to every link through a ``MediaRelay`` so
  that each link gets every frame.
* :class:`PeerLink`: the connection with one participant.  Offer/answer
  (RFC 8829) goes through the signaling relay; the offerer is decided by
  the caller (deterministically, so two peers never offer to each other).
  In loopback mode the link gathers 127.0.0.1 only and drops every
  non-loopback candidate it sends or receives (:mod:`media.loopback`);
  of the STUN/TURN servers it is given, it uses only those on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av.frame import Frame
from av.packet import Packet

from signaling.config import is_loopback_host
from signaling.eventloop import cancel_and_wait

from .counter import CounterVideoTrack
from .loopback import filter_sdp, is_loopback_candidate, loopback_ice
from .session import PeerProtection, SFrameSession
from .stats import PeerStats
from .tracks import ToneAudioTrack

logger = logging.getLogger(__name__)

#: ``signal(kind, data)``: relay an offer, answer or candidate to the remote.
Signal = Callable[[str, Any], Awaitable[None]]


class KeyGatedTrack(MediaStreamTrack):
    """A copy of a source that lets frames through only once ``ready()``
    (this peer has a sending key): before that they are dropped unencoded,
    not encoded to be dropped by the SFrame sender."""

    def __init__(self, source: MediaStreamTrack, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._ready = ready

    async def recv(self) -> Frame | Packet:
        while True:
            frame = await self._source.recv()
            if self._ready():
                return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class MediaSources:
    """This peer's outgoing tracks, one relayed copy per link."""

    def __init__(self, audio: MediaStreamTrack | None, video: MediaStreamTrack | None) -> None:
        self.audio = audio
        self.video = video
        self._relay = MediaRelay()

    @classmethod
    def synthetic(cls, width: int = 96, height: int = 64) -> MediaSources:
        """The moving test pattern with its frame counter, and a tone."""
        return cls(ToneAudioTrack(), CounterVideoTrack(width, height))

    @classmethod
    def from_file(cls, path: Path | str, *, loop: bool = True) -> MediaSources:
        """A media file's audio and video, through aiortc's ``MediaPlayer``."""
        player = MediaPlayer(str(path), loop=loop)
        return cls(player.audio, player.video)

    def subscribe(self, ready: Callable[[], bool]) -> list[MediaStreamTrack]:
        """Fresh copies of the sources for one link (buffered: no frame
        skipped), passing frames once ``ready()``."""
        return [KeyGatedTrack(self._relay.subscribe(track), ready)
                for track in (self.audio, self.video) if track is not None]

    def stop(self) -> None:
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()


def ice_server_host(url: str) -> str:
    """The host of a STUN/TURN URI (RFC 7064/7065: ``scheme:host[:port][?transport=...]``)."""
    rest = url.split(":", 1)[1] if ":" in url else url
    rest = rest.split("?", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.split(":", 1)[0]


def usable_ice_servers(servers: list[RTCIceServer], loopback: bool) -> list[RTCIceServer]:
    """``servers``, or in loopback mode only those whose every URI names a loopback
    address (a local call asks no server elsewhere)."""
    if not loopback:
        return list(servers)
    def on_loopback(server: RTCIceServer) -> bool:
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        return all(is_loopback_host(ice_server_host(url)) for url in urls)
    return [server for server in servers if on_loopback(server)]


class PeerLink:
    """The RTCPeerConnection with one other participant.

    ``relay_only`` gathers and uses TURN relay candidates only (aiortc's
    ``iceTransportPolicy="relay"``), as tests of a TURN deployment do.
    """

    def __init__(
        self,
        remote: str,
        *,
        offerer: bool,
        session: SFrameSession,
        tracks: list[MediaStreamTrack],
        signal: Signal,
        on_track: Callable[[MediaStreamTrack], None],
        loopback: bool,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
    ) -> None:
        self.remote = remote
        self.offerer = offerer
        self._session = session
        self._tracks = tracks
        self._signal = signal
        self._loopback = loopback
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=usable_ice_servers(ice_servers or [], loopback), iceTransportPolicy=policy))
        self.protection: PeerProtection = session.protect_peer_connection(self.pc)
        self.pc.on("track", on_track)
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        self.failed: str | None = None

    def __repr__(self) -> str:
        return (f"PeerLink({self.remote!r}, offerer={self.offerer}, "
                f"state={self.pc.connectionState!r})")

    @property
    def negotiated(self) -> bool:
        return self.pc.remoteDescription is not None

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    def deliver(self, kind: str, data: Any) -> None:
        """Queue a relayed ``offer``, ``answer`` or ``candidate`` from the remote."""
        self._inbox.put_nowait((kind, data))

    def stats(self) -> PeerStats:
        return self.protection.stats()

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await self.pc.close()
        for track in self._tracks:
            track.stop()

    # -- negotiation -------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self.offerer:
                await self._offer()
            while True:
                kind, data = await self._inbox.get()
                await self._handle(kind, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken remote must not take the peer down
            self.failed = f"{type(exc).__name__}: {exc}"
            logger.warning("link to %s failed: %s", self.remote, self.failed)

    async def _set_local(self, description: RTCSessionDescription) -> dict[str, str]:
        if self._loopback:
            with loopback_ice():
                await self.pc.setLocalDescription(description)
        else:
            await self.pc.setLocalDescription(description)
        local = self.pc.localDescription
        sdp = filter_sdp(local.sdp) if self._loopback else local.sdp
        return {"type": local.type, "sdp": sdp}

    async def _offer(self) -> None:
        for track in self._tracks:
            self.pc.addTransceiver(track, direction="sendrecv")
        self.protection.update()
        await self._signal("offer", await self._set_local(await self.pc.createOffer()))

    def _remote_description(self, data: Any, kind: str) -> RTCSessionDescription:
        if not isinstance(data, dict) or not isinstance(data.get("sdp"), str):
            raise ValueError(f"malformed {kind}")
        sdp = filter_sdp(data["sdp"]) if self._loopback else data["sdp"]
        return RTCSessionDescription(sdp, kind)

    async def _handle(self, kind: str, data: Any) -> None:
        if kind == "offer" and not self.offerer:
            await self.pc.setRemoteDescription(self._remote_description(data, "offer"))
            for track in self._tracks:
                self.pc.addTrack(track)
            self.protection.update()
            await self._signal("answer", await self._set_local(await self.pc.createAnswer()))
        elif kind == "answer" and self.offerer:
            await self.pc.setRemoteDescription(self._remote_description(data, "answer"))
        elif kind == "candidate":
            await self._add_candidate(data)
        else:
            logger.debug("ignoring an unexpected %s from %s", kind, self.remote)

    async def _add_candidate(self, data: Any) -> None:
        """A trickled RTCIceCandidateInit (browsers trickle; aiortc does not)."""
        if not isinstance(data, dict) or not data.get("candidate"):
            return  # end of candidates: aiortc needs nothing
        text = str(data["candidate"])
        if self._loopback and not is_loopback_candidate(text):
            return
        candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
        candidate.sdpMid = data.get("sdpMid")
        candidate.sdpMLineIndex = data.get("sdpMLineIndex")
        await self.pc.addIceCandidate(candidate)
