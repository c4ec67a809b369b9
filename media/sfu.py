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
  bundles everything on one transport (RFC 8843, ``max-bundle``).  The same
  rules for the page are the cases of tests/contracts/sfu_sdp.json.
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

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sframe import MLSSender, MLSUnprotectResult

from .transform import FrameKeys

#: RFC 6464 client-to-mixer audio level: derived from the clear audio
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
#: a publisher answers keyframe requests at most this often (seconds)
KEYFRAME_INTERVAL = 0.5


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


#: ``identify(leaf_index)``: the identity of a member's leaf, None if it is no member shown
Identify = Callable[[int], "str | None"]


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
    _sender: str | None = None
    _started: bool = False

    def observe(self, result: MLSUnprotectResult) -> None:
        """Attribute one opened frame (on the event loop, per frame: cheap
        unless its sender index differs from the previous frame's)."""
        index = result.sender_index
        if index != self._index:
            self._index = index
            self._sender = self.identify(index)
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
