"""The media links of a call through an SFU (Janus VideoRoom, issue 16).

In an SFU room (docs/protocol.md, ``topology``) a call peer has two
RTCPeerConnections instead of one per other participant:

* a **publisher** (sendonly audio and video, every frame SFrame-sealed as in
  the mesh), negotiated with ``sfu.publish``;
* a **subscriber** (recvonly, every other member's streams on one
  connection), negotiated with ``sfu.subscribe`` (the server's offer) and
  ``sfu.start`` (our answer).

The SFU forwards SFrame ciphertext it cannot read (RFC 9605 §1, §4.1), so
the rules here keep it that way:

* **SDP** (:func:`without_audio_level`, :func:`without_rtx`): the RFC 6464
  audio-level header extension (``urn:ietf:params:rtp-hdrext:ssrc-audio-level``)
  is computed by the sender from the *clear* audio and forwarded in the
  clear by Janus, so it is negotiated on neither connection; the aiortc
  subscriber also strips RTX (RFC 4588) from Janus's offer (aiortc 1.16
  registers no RTX SSRCs when several publishers share a connection) and
  bundles everything on one transport (RFC 8843, ``max-bundle``) and strips
  the ``abs-send-time`` extension (:func:`without_abs_send_time`: Janus
  reads no subscriber's bandwidth estimate).  The same rules for the page are the
  cases of tests/contracts/sfu_sdp.json.
* **Attribution** (:class:`StreamAttribution`): who sent a frame is its
  SFrame KID's sender index (RFC 9605 §5.2: the MLS leaf, hence the
  member's credential), never the server's ``from``.  A subscribed stream
  whose frames carry the KID of another member than the one it was first
  attributed to, or than the server claims, is flagged
  (:class:`StreamRelabelled`, counted in ``PeerStats.streams_relabelled``)
  and its frames are counted for the member of their KID.
* **Keyframes**: every subscriber's PLI/FIR reaches the publisher (RFC 4585
  §6.3.1); the publisher answers at most one per ``keyframe_interval``
  (:class:`KeyframeLimiter`), a request inside the interval is answered when
  it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from sframe import MLSSender, MLSUnprotectResult
from signaling.eventloop import cancel_and_wait

from . import seams
from .consent import keep_consent
from .loopback import filter_sdp, loopback_ice
from .mesh import MediaSources, usable_ice_servers
from .session import PeerProtection, SFrameSession
from .stats import PeerStats, ReceiverStats
from .transform import FrameKeys, SFrameReceiverTransform

logger = logging.getLogger(__name__)

#: RFC 6464 client-to-mixer audio level: derived from the clear audio
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
#: the sender's clock in each packet, for the receiver's bandwidth estimate (REMB)
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
#: a publisher answers keyframe requests at most this often (seconds)
KEYFRAME_INTERVAL = 0.5
#: a subscription that did not bring every wanted feed is asked again after this
#: long (seconds), at most this many times until the wanted set changes
SUBSCRIBE_RETRY = 0.5
SUBSCRIBE_RETRIES = 20


# -- SDP ---------------------------------------------------------------------------


def _lines(sdp: str) -> tuple[list[str], str]:
    """The lines of ``sdp`` without their endings, and the ending it uses."""
    ending = "\r\n" if "\r\n" in sdp else "\n"
    return sdp.splitlines(), ending


def _join(lines: list[str], ending: str, original: str) -> str:
    text = ending.join(lines)
    return text + ending if original.endswith(("\n", "\r")) and lines else text


def without_audio_level(sdp: str) -> str:
    """``sdp`` without any ``a=extmap`` line of the audio-level extension
    (RFC 8285 §7: ``a=extmap:<id>[/<direction>] <uri> [<attributes>]``)."""
    lines, ending = _lines(sdp)
    kept = [line for line in lines
            if not (line.startswith("a=extmap:") and line.split()[1:2] == [AUDIO_LEVEL_URI])]
    return _join(kept, ending, sdp)


def without_abs_send_time(sdp: str) -> str:
    """``sdp`` without any ``a=extmap`` line of the absolute send time extension
    (``abs-send-time``), which only feeds a receiver's bandwidth estimate (REMB).
    For the subscriber: Janus VideoRoom ignores a subscriber's REMB, while
    aiortc computes it on every video packet and, once the receiver lags behind
    (delays grow: "overusing"), sends one RTCP REMB per packet received, so a
    loaded subscriber's lag turned into more load (media.stress, issue 16)."""
    lines, ending = _lines(sdp)
    kept = [line for line in lines
            if not (line.startswith("a=extmap:") and line.split()[1:2] == [ABS_SEND_TIME_URI])]
    return _join(kept, ending, sdp)


def without_rtx(sdp: str) -> str:
    """``sdp`` without RTX (RFC 4588): in each media section, the payload
    types whose ``a=rtpmap`` encoding is ``rtx`` leave the ``m=`` format list
    with their ``a=rtpmap``, ``a=fmtp`` and ``a=rtcp-fb`` lines, and each
    ``a=ssrc-group:FID <primary> <retransmission>`` leaves with the
    ``a=ssrc`` lines of its retransmission SSRC."""
    lines, ending = _lines(sdp)
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = sections[0]
    for section in sections[1:]:
        out.extend(_section_without_rtx(section))
    return _join(out, ending, sdp)


def _section_without_rtx(section: list[str]) -> list[str]:
    rtx_types: set[str] = set()
    rtx_ssrcs: set[str] = set()
    for line in section:
        if line.startswith("a=rtpmap:"):
            payload_type, _, encoding = line[len("a=rtpmap:"):].partition(" ")
            if encoding.split("/", 1)[0].strip().lower() == "rtx":
                rtx_types.add(payload_type)
        elif line.startswith("a=ssrc-group:FID "):
            ssrcs = line.split()[1:]
            rtx_ssrcs.update(ssrcs[1:])
    if not rtx_types and not rtx_ssrcs:
        return section

    def payload_type_of(line: str, prefix: str) -> str | None:
        return line[len(prefix):].split(" ", 1)[0] if line.startswith(prefix) else None

    kept = []
    for line in section:
        if line.startswith("m="):
            fields = line.split(" ")
            line = " ".join(fields[:3] + [f for f in fields[3:] if f not in rtx_types])
        elif any(payload_type_of(line, prefix) in rtx_types
                 for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        elif line.startswith("a=ssrc-group:FID "):
            continue
        elif line.startswith("a=ssrc:") and payload_type_of(line, "a=ssrc:") in rtx_ssrcs:
            continue
        kept.append(line)
    return kept


# -- keyframes ---------------------------------------------------------------------


class KeyframeLimiter:
    """At most one requested keyframe per ``interval`` seconds.

    Called by the publisher's video encoder wrapper with each frame's
    "keyframe requested" flag (aiortc sets it on a PLI or FIR); answers
    whether to encode a keyframe.  A request inside the interval is not
    dropped: it is granted with the first frame after the interval ends.
    Keyframes the SFrame transform forces after a key change are not
    limited (they are not requests).  Runs in the encoder's thread; one
    limiter per sender.
    """

    def __init__(self, interval: float = KEYFRAME_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self._pending = False
        #: requests granted, and requests deferred at least once
        self.granted = 0
        self.deferred = 0

    def __call__(self, requested: bool) -> bool:
        if not (requested or self._pending):
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            if requested and not self._pending:
                self.deferred += 1
            self._pending = True
            return False
        self._pending = False
        self._last = now
        self.granted += 1
        return True


# -- attribution -------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribedStream:
    """One stream of the subscriber connection, as the server describes it
    (the ``streams`` of the ``sfu.subscribe`` ack)."""

    mid: str
    feed: int
    #: who the server says publishes it: never used for attribution
    claimed: str
    kind: str


@dataclass(frozen=True)
class StreamRelabelled:
    """A subscribed stream carries frames of another member than the one it
    was first attributed to, or than the server claims (a misbehaving or
    compromised SFU or server).  Its frames are attributed by their KID."""

    mid: str
    feed: int
    claimed: str
    #: the member of the stream's first frame (by KID), None before
    first: str | None
    #: the member of the frame's KID (None: its leaf is no member shown)
    sender: str | None
    sender_index: int
    epoch: int


#: ``identify(leaf_index, epoch)``: the identity of a member's leaf in that epoch
#: (a leaf is reused after its member left), None if it is no member shown
Identify = Callable[[int, int], "str | None"]


@dataclass
class StreamAttribution:
    """Who sent each frame of one subscribed stream, by its SFrame KID."""

    stream: SubscribedStream
    identify: Identify
    #: called once with the member of the stream's first frame
    on_attributed: Callable[[StreamAttribution], None]
    on_relabelled: Callable[[StreamRelabelled], None]
    #: the member of the first frame's KID
    first: str | None = None
    #: whether a frame ever carried another member's KID (see StreamRelabelled)
    flagged: bool = False
    #: frames opened, per member of their KID (None: a leaf not shown as member)
    frames_by_sender: dict[str | None, int] = field(default_factory=dict)
    _index: int | None = None
    _epoch: int | None = None
    _sender: str | None = None
    _started: bool = False

    def observe(self, result: MLSUnprotectResult) -> None:
        """Attribute one opened frame (on the event loop, per frame: cheap
        unless its sender index or epoch differs from the previous frame's)."""
        index, epoch = result.sender_index, result.epoch
        if index != self._index or epoch != self._epoch:
            self._index, self._epoch = index, epoch
            sender = self.identify(index, epoch)
            changed = sender != self._sender or not self._started
            self._sender = sender
            if changed:
                self._check(result)
        sender = self._sender
        self.frames_by_sender[sender] = self.frames_by_sender.get(sender, 0) + 1

    def _check(self, result: MLSUnprotectResult) -> None:
        sender = self._sender
        if not self._started:
            self._started = True
            self.first = sender
            if sender is not None:
                self.on_attributed(self)
        if sender is None or sender != self.first or sender != self.stream.claimed:
            self.flagged = True
            self.on_relabelled(StreamRelabelled(
                self.stream.mid, self.stream.feed, self.stream.claimed, self.first, sender,
                result.sender_index, result.epoch))


class AttributingKeys:
    """The session's keys for one subscribed receiver: every frame it opens is
    attributed to the member of its KID (:class:`StreamAttribution`); the
    attribution in use can change when a resubscription reuses the stream's
    ``mid`` for another feed."""

    def __init__(self, keys: FrameKeys, attribution: StreamAttribution) -> None:
        self._keys = keys
        self.attribution = attribution

    @property
    def send_key_generation(self) -> int:
        return self._keys.send_key_generation

    def sender(self, context: int) -> MLSSender:
        return self._keys.sender(context)

    def unprotect(self, ciphertext: bytes, metadata: bytes) -> MLSUnprotectResult:
        result = self._keys.unprotect(ciphertext, metadata)
        self.attribution.observe(result)
        return result


# -- the two connections -----------------------------------------------------------

#: ``request(type, **fields)``: one signaling request, its ack's fields
#: (``SignalingClient.request``; raises ``SignalingError`` when refused)
SfuRequest = Callable[..., Awaitable[dict[str, Any]]]


def subscribed_streams(ack: dict[str, Any]) -> list[SubscribedStream]:
    """The active audio and video streams of an ``sfu.subscribe`` ack
    (malformed entries are left out)."""
    entries = ack.get("streams")
    streams = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or entry.get("active", True) is False:
            continue
        mid, feed, claimed, kind = entry.get("mid"), entry.get("feed"), entry.get("from"), entry.get("kind")
        if isinstance(mid, str) and isinstance(feed, int) and isinstance(claimed, str) \
                and kind in ("audio", "video"):
            streams.append(SubscribedStream(mid, feed, claimed, kind))
    return streams


def _jsep_sdp(ack: dict[str, Any], kind: str) -> str | None:
    jsep = ack.get("jsep")
    if jsep is None:
        return None
    if not isinstance(jsep, dict) or jsep.get("type") != kind or not isinstance(jsep.get("sdp"), str):
        raise ValueError(f"malformed {kind} from the server")
    return jsep["sdp"]


class SfuLinks:
    """This peer's publishing and subscribing connections through the SFU.

    Negotiations run one at a time in the links' own task (the caller's
    membership work never waits for the SFU): :meth:`start` publishes,
    :meth:`want` subscribes to the room's feeds (each ``sfu.feeds`` event),
    :meth:`interrupt` marks the links down (``sfu.down``) and :meth:`resume`
    publishes afresh on a new connection once the SFU is back (``sfu.up``;
    the feeds to subscribe to come with the next :meth:`want`).  A connection
    that fails or closes on its own (ICE consent lost, RFC 7675; a network
    failure) is made anew: the publisher publishes again (the server replaces
    its feed), the subscriber subscribes again from scratch (``sfu.subscribe``
    with ``restart``: the server drops the old subscription and offers afresh).  Remote
    tracks go to ``on_track(identity, track)`` once the stream's first frame
    says, by its KID, whose it is: each a copy (``MediaRelay``) that ends when
    a resubscription gives the stream's ``mid`` to another feed, whose copy
    then goes to ``on_track`` in turn.
    """

    def __init__(
        self,
        *,
        session: SFrameSession,
        sources: MediaSources,
        ready: Callable[[], bool],
        request: SfuRequest,
        identify: Identify,
        on_track: Callable[[str, MediaStreamTrack], None],
        on_relabelled: Callable[[StreamRelabelled], None] | None = None,
        loopback: bool = True,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
        keyframe_interval: float = KEYFRAME_INTERVAL,
    ) -> None:
        self._session = session
        self._sources = sources
        self._ready = ready
        self._request = request
        self._identify = identify
        self._on_track = on_track
        self._on_relabelled = on_relabelled
        self._loopback = loopback
        self._ice_servers = usable_ice_servers(ice_servers or [], loopback)
        self._policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self._keyframe_interval = keyframe_interval
        #: our published feed (None until published)
        self.feed: int | None = None
        #: the SFU was lost (``sfu.down``) and the links not renegotiated yet
        self.interrupted = False
        #: flagged streams, in order (see StreamRelabelled)
        self.relabelled: list[StreamRelabelled] = []
        #: why the last negotiation failed, if it did
        self.failed: str | None = None
        #: connections made anew after they failed or closed on their own
        self.restarts = 0
        #: the next sfu.subscribe asks the server to drop the old subscription (ours is gone)
        self._restart_subscription = False
        self._publisher: RTCPeerConnection | None = None
        self._publishing: PeerProtection | None = None
        self._publisher_tracks: list[MediaStreamTrack] = []
        self._subscriber: RTCPeerConnection | None = None
        #: per mid of the subscriber connection: its receiver transform and keys
        self._receivers: dict[str, tuple[SFrameReceiverTransform, AttributingKeys]] = {}
        #: per mid: the receiver's track, and the copy given to ``on_track``
        self._pending_tracks: dict[str, MediaStreamTrack] = {}
        self._given: dict[str, tuple[str, MediaStreamTrack]] = {}
        self._relay = MediaRelay()
        self._wanted: tuple[int, ...] = ()
        self._subscribed: tuple[int, ...] = ()
        #: subscriptions asked again since the wanted set last changed
        self._retries = 0
        self._closed_stats: list[PeerStats] = []
        #: commands queued or running
        self._busy = 0
        self._jobs: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SfuLinks(feed={self.feed}, subscribed={list(self._subscribed)}, interrupted={self.interrupted})"

    # -- commands (any time; carried out in order by the links' task) ------------

    def start(self) -> None:
        """Publish (once the task runs)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._queue("publish")

    def want(self, feeds: Sequence[int]) -> None:
        """Subscribe to ``feeds`` (the room's published feeds; ours is left out)."""
        self._wanted = tuple(sorted({f for f in feeds if isinstance(f, int)}))
        self._retries = 0
        self._queue("subscribe")

    def interrupt(self) -> None:
        """The SFU is gone (``sfu.down``): the links carry nothing until :meth:`resume`."""
        self.interrupted = True

    def resume(self) -> None:
        """The SFU is back (``sfu.up``): publish and subscribe afresh (the feeds
        known so far are gone with the SFU's old state: the next :meth:`want` names them)."""
        self._wanted = ()
        self._queue("resume")

    def _queue(self, job: str) -> None:
        self._busy += 1
        self._jobs.put_nowait(job)

    @property
    def negotiating(self) -> bool:
        """Whether commands are still waiting or running."""
        return self._busy > 0

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._close_connections()

    # -- status ------------------------------------------------------------------

    @property
    def streams(self) -> dict[str, StreamAttribution]:
        """Per mid of the subscriber connection: who sent its frames."""
        return {mid: keys.attribution for mid, (_, keys) in self._receivers.items()}

    def receiver_stats(self) -> dict[str, tuple[StreamAttribution, ReceiverStats]]:
        """Per mid: the stream's attribution and its receiver's SFrame stats."""
        return {mid: (keys.attribution, transform.stats()) for mid, (transform, keys) in self._receivers.items()}

    def stats(self) -> list[PeerStats]:
        """SFrame stats of both connections, former ones (before a resume) included."""
        current = []
        if self._publishing is not None:
            current.append(self._publishing.stats())
        if self._subscriber is not None:
            current.append(self._subscriber_stats())
        return self._closed_stats + current

    def connections(self) -> list[RTCPeerConnection]:
        """The publishing and subscribing connections open now (for transport statistics)."""
        return [pc for pc in (self._publisher, self._subscriber) if pc is not None]

    def _subscriber_stats(self) -> PeerStats:
        return PeerStats(
            senders=(), receivers=tuple(t.stats() for t, _ in self._receivers.values()),
            sending_epoch=self._session.sending_epoch, newest_epoch=self._session.newest_epoch,
            last_rekey=self._session.last_rekey,
            streams_relabelled=sum(keys.attribution.flagged for _, keys in self._receivers.values()))

    # -- negotiation -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                if job == "publish":
                    await self._publish()
                elif job == "subscribe":
                    await self._subscribe()
                elif job == "resume":
                    await self._close_connections()
                    self._subscribed = ()
                    self.interrupted = False
                    await self._publish()
                elif job == "republish":
                    if self._publisher is not None and self._gone(self._publisher):
                        await self._close_publisher()
                        self.restarts += 1
                        await self._publish()
                elif job == "resubscribe":
                    if self._subscriber is not None and self._gone(self._subscriber):
                        await self._close_subscriber()
                        self.restarts += 1
                        self._subscribed = ()
                        self._restart_subscription = True
                        await self._subscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a refusal or a broken SFU must not end the call
                self.failed = f"{job}: {type(exc).__name__}: {exc}"
                logger.warning("SFU %s failed: %s", job, self.failed)
            finally:
                self._busy -= 1

    def _configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self._ice_servers), iceTransportPolicy=self._policy,
                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)

    async def _local(self, pc: RTCPeerConnection, description: RTCSessionDescription) -> str:
        """Set ``description`` locally (ICE gathered completely: no trickle) and
        return its SDP as sent: without audio level (and non-loopback candidates).
        Its ICE connection checks consent by RFC 7675's rule (media.consent)."""
        keep_consent(pc)
        if self._loopback:
            with loopback_ice():
                await pc.setLocalDescription(description)
        else:
            await pc.setLocalDescription(description)
        sdp = pc.localDescription.sdp
        return without_audio_level(filter_sdp(sdp) if self._loopback else sdp)

    def _remote(self, sdp: str, kind: str) -> RTCSessionDescription:
        sdp = without_audio_level(filter_sdp(sdp) if self._loopback else sdp)
        return RTCSessionDescription(without_abs_send_time(without_rtx(sdp)) if kind == "offer" else sdp,
                                     kind)

    @staticmethod
    def _gone(pc: RTCPeerConnection) -> bool:
        return pc.connectionState in ("failed", "closed")

    def _watch(self, pc: RTCPeerConnection, job: str) -> None:
        """When ``pc`` fails or closes while it is still one of ours, ``job`` makes it anew."""
        def changed() -> None:
            if self._gone(pc) and pc in (self._publisher, self._subscriber) and not self.interrupted:
                logger.warning("SFU %s connection %s: %s", "publishing" if job == "republish" else "subscribing",
                               pc.connectionState, "made anew")
                self._queue(job)
        pc.on("connectionstatechange", changed)

    async def _publish(self) -> None:
        pc = self._publisher = RTCPeerConnection(self._configuration())
        self._watch(pc, "republish")
        self._publisher_tracks = self._sources.subscribe(self._ready)
        for track in self._publisher_tracks:
            pc.addTransceiver(track, direction="sendonly")
        self._publishing = self._session.protect_peer_connection(pc)
        for sender in self._publishing.senders:
            if sender.sender.kind == "video":
                sender.keyframe_requests = KeyframeLimiter(self._keyframe_interval)
        offer = await self._local(pc, await pc.createOffer())
        ack = await self._request("sfu.publish", jsep={"type": "offer", "sdp": offer})
        feed, answer = ack.get("feed"), _jsep_sdp(ack, "answer")
        if not isinstance(feed, int) or answer is None:
            raise ValueError("malformed sfu.publish ack")
        self.feed = feed
        await pc.setRemoteDescription(self._remote(answer, "answer"))
        self.failed = None

    async def _subscribe(self) -> None:
        wanted = tuple(f for f in self._wanted if f != self.feed)
        if wanted == self._subscribed or self.interrupted:
            return
        restart = {"restart": True} if self._restart_subscription else {}
        ack = await self._request("sfu.subscribe", feeds=list(wanted), **restart)
        self._restart_subscription = False
        streams = {stream.mid: stream for stream in subscribed_streams(ack)}
        # what the SFU sends now (a feed not live yet is left out: asked again below)
        self._subscribed = tuple(sorted({stream.feed for stream in streams.values()}))
        offer = _jsep_sdp(ack, "offer")
        logger.debug("sfu.subscribe %s: streams %s, offer %s", list(wanted),
                     [(s.mid, s.feed, s.kind) for s in streams.values()], offer is not None)
        if offer is not None:
            pc = self._subscriber
            if pc is None:
                pc = self._subscriber = RTCPeerConnection(self._configuration())
                pc.on("track", lambda track: self._track_arrived(pc, track))
                self._watch(pc, "resubscribe")
            description = self._remote(offer, "offer")
            await pc.setRemoteDescription(description)
            self._protect(pc, streams)
            self._route(pc, description.sdp)
            answer = await self._local(pc, await pc.createAnswer())
            await self._request("sfu.start", jsep={"type": "answer", "sdp": answer})
        elif self._subscriber is not None:
            self._protect(self._subscriber, streams)
        self.failed = None
        if set(wanted) - set(self._subscribed) and self._retries < SUBSCRIBE_RETRIES:
            # not live yet, or the SFU queued the update behind a renegotiation of its own
            self._retries += 1
            asyncio.get_running_loop().call_later(SUBSCRIBE_RETRY, self._retry, wanted)

    def _retry(self, wanted: tuple[int, ...]) -> None:
        """Ask again for feeds an ``sfu.subscribe`` did not bring, unless the wanted set changed."""
        if self._task is not None and not self._task.done() \
                and tuple(f for f in self._wanted if f != self.feed) == wanted:
            self._queue("subscribe")

    def _protect(self, pc: RTCPeerConnection, streams: dict[str, SubscribedStream]) -> None:
        """Every receiver of the subscriber connection opens its frames with keys
        that attribute them; a stream now on another feed gets a fresh attribution,
        and the copy of a stream no longer sent (or now another feed's) ends."""
        for mid in [mid for mid in self._given if mid not in streams]:
            self._take_back(mid)
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            stream = streams.get(mid) if mid is not None else None
            if stream is None:
                continue
            known = self._receivers.get(stream.mid)
            if known is not None and known[0].receiver is transceiver.receiver:
                if known[1].attribution.stream != stream:  # the mid now carries another feed
                    self._take_back(stream.mid)
                    known[1].attribution = self._attribution(stream)
                continue
            keys = AttributingKeys(self._session, self._attribution(stream))
            transform = self._session.protect_receiver(transceiver.receiver, keys=keys)
            self._receivers[stream.mid] = (transform, keys)

    def _route(self, pc: RTCPeerConnection, sdp: str) -> None:
        """Each receiver gets the SSRCs its m-line has now: when the SFU gives an
        m-line to another feed, the feed's SSRC is new to aiortc, which routes by
        the SSRCs of a receiver's first negotiation only."""
        receivers = {t.mid: t.receiver for t in pc.getTransceivers() if t.mid is not None}
        for media in SessionDescription.parse(sdp).media:
            receiver = receivers.get(media.rtp.muxId)
            if receiver is not None:
                for ssrc in media.ssrc:
                    seams.route_ssrc(receiver, ssrc.ssrc)

    def _attribution(self, stream: SubscribedStream) -> StreamAttribution:
        return StreamAttribution(stream, self._identify, self._attributed, self._relabelled)

    def _track_arrived(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
        if mid is None:
            return
        self._pending_tracks[mid] = track
        known = self._receivers.get(mid)
        if known is not None and known[1].attribution.first is not None:
            self._attributed(known[1].attribution)

    def _attributed(self, attribution: StreamAttribution) -> None:
        """A stream's first frame named its sender: its track goes to ``on_track``."""
        mid = attribution.stream.mid
        track = self._pending_tracks.get(mid)
        if track is None or attribution.first is None or mid in self._given:
            return
        given = self._relay.subscribe(track)
        self._given[mid] = (attribution.first, given)
        self._on_track(attribution.first, given)

    def _take_back(self, mid: str) -> None:
        """End the copy of ``mid``'s track given to ``on_track`` (its reader sees the track end)."""
        given = self._given.pop(mid, None)
        if given is not None:
            given[1].stop()

    def release(self, identity: str) -> None:
        """End the copies given under ``identity`` (it left): a stream of it later
        (a new feed) is given afresh."""
        for mid in [mid for mid, (who, _) in self._given.items() if who == identity]:
            self._take_back(mid)

    def _relabelled(self, event: StreamRelabelled) -> None:
        self.relabelled.append(event)
        logger.warning("SFU stream %s (feed %d, said to be %r) carries frames of %r (leaf %d)",
                       event.mid, event.feed, event.claimed, event.sender, event.sender_index)
        if self._on_relabelled is not None:
            self._on_relabelled(event)

    async def _close_connections(self) -> None:
        await self._close_publisher()
        await self._close_subscriber()

    async def _close_publisher(self) -> None:
        pc, self._publisher = self._publisher, None
        if self._publishing is not None:
            self._closed_stats.append(self._publishing.stats())
        if pc is not None:
            await pc.close()
        for track in self._publisher_tracks:
            track.stop()
        self._publishing = None
        self._publisher_tracks = []
        self.feed = None

    async def _close_subscriber(self) -> None:
        """Close the subscribing connection; the copies of its streams given to ``on_track`` end."""
        if self._subscriber is not None:
            self._closed_stats.append(self._subscriber_stats())
        pc, self._subscriber = self._subscriber, None
        for transform, _ in self._receivers.values():
            transform.close()
        self._receivers.clear()
        self._pending_tracks.clear()
        for mid in list(self._given):
            self._take_back(mid)
        if pc is not None:
            await pc.close()
