"""The aiortc 1.16 seams SFrame hooks into, per instance (never process-wide).

aiortc has no encoded-transform API, so this module (the only one that
touches aiortc internals) hooks six private places, all per object:

* **send**: ``RTCRtpSender._next_encoded_frame`` is shadowed on the sender
  *instance*; before each frame it makes sure the sender's encoder slot
  (``_RTCRtpSender__encoder``, filled lazily from ``get_encoder`` as
  imported in ``aiortc.rtcrtpsender``) holds an encoder built by ``wrap``.
  The wrapper then sees each whole encoded frame once, before
  packetization (``Vp8Encoder._packetize`` / ``H264Encoder._packetize``,
  shadowed on that encoder instance; Opus returns whole packets).
* **receive**: the receiver's ``_RTCRtpReceiver__decoder_queue`` attribute
  is replaced by a forwarder.  ``_handle_rtp_packet`` puts each whole
  depacketized frame (``JitterFrame``) there, on the event loop; the
  forwarder decrypts it *before* it reaches the decoder thread, whose own
  queue is unchanged.  Nothing of ours runs in that thread, so a decrypt
  failure cannot kill it (it dies on anything but ``av.FFmpegError``).
  A frame ``handle`` kept back (held for a key not installed yet, RFC 9605
  §4.4.4) re-enters later, decrypted, through the ``deliver`` function
  :func:`hook_receiver` returns: the same queue, on the event loop, so the
  decoder sees it as any other decrypted frame, in the order delivered.
* **codec threads**: aiortc encodes each frame in the event loop's default
  executor and decodes in one thread per received track, a hand-off there
  and back per frame (two thread switches, and the event loop waiting for
  the GIL the codec thread holds; PyAV keeps it for most of an encode or
  decode).  By default a hooked sender encodes on the event loop (its
  ``_RTCRtpSender__loop``, used only for that ``run_in_executor``, becomes
  an :class:`_EncodeAtOnce`) and a hooked receiver's forwarder decodes
  there too (aiortc's ``get_decoder``; the pictures and samples go on the
  remote track's ``_queue``, as the thread would put them; the decoder
  thread then only carries the receiver's end-of-stream).  That costs less
  CPU than the hand-offs for the pictures of a call tile (docs/stress.md);
  ``codec_threads`` keeps aiortc's threads, for large pictures on a machine
  with idle cores.
* **keyframe requests**: setting ``_RTCRtpReceiver__decoder_error`` makes
  the receiver send a PLI with its next RTP packet (video only), exactly as
  after a decoder error.
* **SSRC routing**: aiortc routes an incoming RTP packet by the SSRCs a
  receiver announced on its *first* negotiation; :func:`route_ssrc` adds
  one a later offer gives its m-line (an SFU reusing the m-line for
  another publisher), which aiortc would otherwise drop.
* **video jitter buffer**: a hooked video receiver's
  ``_RTCRtpReceiver__jitter_buffer`` becomes a :class:`GapSkippingJitterBuffer`,
  which gives up on a packet that NACK did not bring back instead of
  freezing the picture (see there).

Other senders and receivers in the process are untouched.
:func:`check_aiortc` refuses any aiortc but 1.16.x, or one lacking a seam.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpsender
from aiortc.codecs import H264Encoder, Vp8Encoder, get_decoder
from aiortc.codecs.base import Decoder, Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from .errors import AlreadyProtected, UnsupportedAiortc

logger = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16."

_SENDER_ENCODER = "_RTCRtpSender__encoder"
_SENDER_LOOP = "_RTCRtpSender__loop"
_RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_ERROR = "_RTCRtpReceiver__decoder_error"
_RECEIVER_KIND = "_RTCRtpReceiver__kind"
_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_TRACK_QUEUE = "_queue"
_TRANSPORT_ROUTER = "_rtp_router"

#: aiortc's video jitter buffer size (packets) and the RTP clock of every video codec
VIDEO_JITTER_CAPACITY = 512
VIDEO_CLOCK_RATE = 90_000

#: ``wrap(encoder, codec)``: the encoder the sender will use instead.
EncoderWrapper = Callable[[Encoder, RTCRtpCodecParameters], Encoder]
#: ``handle(codec, frame)``: decrypt ``frame.data`` in place; False drops it
#: (or keeps it back, for ``deliver``).
FrameHandler = Callable[[RTCRtpCodecParameters, JitterFrame], bool]
#: ``deliver(codec, frame)``: hand an already decrypted frame to the decoder.
FrameDeliverer = Callable[[RTCRtpCodecParameters, JitterFrame], None]


def check_aiortc() -> None:
    """Raise :class:`UnsupportedAiortc` unless aiortc 1.16 with our seams."""
    version = getattr(aiortc, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIORTC):
        raise UnsupportedAiortc(
            f"media.sframe hooks aiortc {SUPPORTED_AIORTC}x internals; found aiortc {version}"
        )
    missing = [
        name
        for owner, name in (
            (RTCRtpSender, "_next_encoded_frame"),
            (Vp8Encoder, "_packetize"),
            (H264Encoder, "_packetize"),
            (rtcrtpsender, "get_encoder"),
            (JitterBuffer, "smart_remove"),
            (JitterBuffer, "_remove_frame"),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise UnsupportedAiortc(f"aiortc {version} lacks the seams {missing}")


def _require(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise UnsupportedAiortc(f"{type(obj).__name__} has no {name}") from None


def is_hooked(obj: object) -> bool:
    """True once :func:`hook_sender` or :func:`hook_receiver` ran on ``obj``."""
    return bool(getattr(obj, "_sframe_hooked", False))


def _mark(obj: object) -> None:
    if is_hooked(obj):
        raise AlreadyProtected(f"SFrame is already attached to this {type(obj).__name__}")
    obj._sframe_hooked = True  # type: ignore[attr-defined]


def hook_sender(sender: RTCRtpSender, wrap: EncoderWrapper, *, codec_threads: bool = False) -> None:
    """Make every encoder of ``sender`` (current or future) ``wrap(encoder, codec)``;
    frames are encoded on the event loop unless ``codec_threads``."""
    check_aiortc()
    if is_hooked(sender):
        raise AlreadyProtected("SFrame is already attached to this RTCRtpSender")
    _require(sender, _SENDER_ENCODER)
    loop = _require(sender, _SENDER_LOOP)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise UnsupportedAiortc("RTCRtpSender's event loop has an unexpected shape")
    _mark(sender)
    if not codec_threads:
        setattr(sender, _SENDER_LOOP, _EncodeAtOnce())
    original = RTCRtpSender._next_encoded_frame.__get__(sender)
    wrapped: Encoder | None = None  # the encoder ``wrap`` made last

    def next_encoded_frame(codec: RTCRtpCodecParameters) -> Coroutine[Any, Any, Any]:
        # A plain function returning aiortc's own coroutine (which the sender
        # awaits): no coroutine of ours to pass each resumption through.
        nonlocal wrapped
        encoder = getattr(sender, _SENDER_ENCODER)
        if encoder is None or encoder is not wrapped:
            inner = encoder if encoder is not None else rtcrtpsender.get_encoder(codec)
            wrapped = wrap(inner, codec)
            setattr(sender, _SENDER_ENCODER, wrapped)
        return original(codec)

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]


class _EncodeAtOnce:
    """Stands in for a sender's event loop, which aiortc uses only to run
    its encoder in the default executor: runs it at once, on the event loop,
    and gives its result (or exception) as a completed future."""

    def run_in_executor(self, executor: Any, encode: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            done.set_result(encode(*args))
        except Exception as exc:  # (as the executor's future would carry it)
            done.set_exception(exc)
        return done


def shadow_packetize(encoder: Encoder, packetize: Callable[..., list[bytes]]) -> Callable[..., list[bytes]]:
    """Shadow ``encoder._packetize`` on this instance; returns the original."""
    original: Callable[..., list[bytes]] = _require(encoder, "_packetize")
    encoder._packetize = packetize  # type: ignore[attr-defined]
    return original


class _LoopDecoder:
    """Decodes, on the event loop, what aiortc's decoder thread would
    (``aiortc.rtcrtpreceiver.decoder_worker``, minus the thread): each frame
    with the decoder of its codec, the pictures or samples put on the
    track's queue; a frame the decoder refuses is logged and flags a
    decoder error, as there (the receiver then asks for a keyframe)."""

    def __init__(self, receiver: RTCRtpReceiver, error: threading.Event) -> None:
        self._receiver = receiver
        self._kind = receiver_kind(receiver)
        self._error = error
        #: the remote track's queue (aiortc gives a receiver its track after
        #: construction: looked up at the first frame, checked there or in
        #: :func:`hook_receiver` if it is already known)
        self._output: asyncio.Queue[Any] | None = None
        self._codec_name: str | None = None
        self._decoder: Decoder | None = None

    def output(self) -> asyncio.Queue[Any]:
        """The remote track's frame queue."""
        if self._output is None:
            output = _require(self._receiver.track, _TRACK_QUEUE)
            if not isinstance(output, asyncio.Queue):
                raise UnsupportedAiortc("the remote track's frame queue has an unexpected shape")
            self._output = output
        return self._output

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame]) -> None:
        codec, frame = item
        decoder = self._decoder
        if decoder is None or codec.name != self._codec_name:
            decoder = self._decoder = get_decoder(codec)
            self._codec_name = codec.name
        try:
            decoded = decoder.decode(frame)
        except av.FFmpegError as exc:
            # the decoder keeps its state, as in aiortc: a reset would fail
            # every frame until the next keyframe
            logger.warning("%s receiver failed to decode a %s frame: %s", self._kind, codec.name, exc)
            self._error.set()
            return
        except Exception as exc:
            # A member's authenticated frame is still any bytes it chose; whatever
            # the decoder raises must not reach aiortc's receive task (it would end
            # the connection's media). Only the type is logged: no media bytes.
            logger.warning("%s receiver's %s decoder raised %s", self._kind, codec.name, type(exc).__name__)
            self._error.set()
            return
        output = self._output or self.output()
        for picture in decoded:
            output.put_nowait(picture)


class _DecryptingQueue:
    """Stands in for the receiver's decoder queue: ``put`` (event loop side)
    hands what ``handle`` keeps to ``forward`` (the original queue's ``put``,
    or a :class:`_LoopDecoder`'s), ``get`` (decoder thread side) reads from
    the original queue."""

    def __init__(self, target: queue.Queue[Any], handle: FrameHandler,
                 forward: Callable[[Any], None]) -> None:
        self._target = target
        self._handle = handle
        self._forward = forward
        #: the decoder thread's end (it gets this object if hooked before
        #: ``receive()`` started the thread, the original queue otherwise):
        #: the original queue's own method, so no Python frame of ours per frame
        self.get: Callable[..., Any] = target.get

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver's stop sentinel: the thread ends the track
            self._target.put(item, block, timeout)
            return
        codec, frame = item
        if self._handle(codec, frame):
            self._forward(item)

    def deliver(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        """Decode a decrypted frame, bypassing ``handle`` (never blocks: the
        thread's queue is unbounded)."""
        self._forward((codec, frame))


def hook_receiver(receiver: RTCRtpReceiver, handle: FrameHandler, *,
                  codec_threads: bool = False) -> FrameDeliverer:
    """Run ``handle(codec, frame)`` on every frame before ``receiver`` decodes
    it; returns ``deliver(codec, frame)``, which decodes a frame ``handle``
    kept back, once decrypted (call it on the event loop, as ``handle``).
    Frames are decoded on the event loop unless ``codec_threads``."""
    check_aiortc()
    if is_hooked(receiver):
        raise AlreadyProtected("SFrame is already attached to this RTCRtpReceiver")
    target = _require(receiver, _RECEIVER_QUEUE)
    error = _require(receiver, _RECEIVER_ERROR)
    if not isinstance(target, queue.Queue) or not isinstance(error, threading.Event):
        raise UnsupportedAiortc("RTCRtpReceiver decoder queue has an unexpected shape")
    forward: Callable[[Any], None] = target.put
    if not codec_threads:
        decoder = _LoopDecoder(receiver, error)
        if receiver.track is not None:
            decoder.output()
        forward = decoder.put
    _mark(receiver)
    forwarder = _DecryptingQueue(target, handle, forward)
    setattr(receiver, _RECEIVER_QUEUE, forwarder)
    jitter_buffer = getattr(receiver, _RECEIVER_JITTER_BUFFER, None)
    # a buffer that has seen packets keeps them: only a fresh one is replaced
    if receiver_kind(receiver) == "video" and isinstance(jitter_buffer, JitterBuffer) \
            and getattr(jitter_buffer, "_origin", 0) is None:
        setattr(receiver, _RECEIVER_JITTER_BUFFER, GapSkippingJitterBuffer())
    return forwarder.deliver


class GapSkippingJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, minus its long freeze after a lost packet.

    aiortc's ``JitterBuffer`` hands frames on in sequence order and waits at a
    missing packet until ``capacity`` (512) packets have arrived behind it;
    its NACK generator asks for each missing packet once.  When that
    retransmission is lost too, a stream of about one packet per frame (a
    small picture) freezes for some 17 s.  Like browser receivers, this one
    gives up on the missing packet once the newest packet is ``max_wait``
    seconds of media time past the oldest one waiting: it drops the frame
    with the hole (and, when the hole falls between two frames, both of
    them: which one lost its packet is unknown) and asks for a keyframe (a
    PLI, RFC 4585 §6.3.1), since the frames after it reference what was lost.
    """

    def __init__(self, max_wait: float = 0.5) -> None:
        super().__init__(VIDEO_JITTER_CAPACITY, is_video=True)
        self._max_wait = int(max_wait * VIDEO_CLOCK_RATE)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is not None or self._origin is None:
            return pli_flag, frame
        ahead = uint16_add(packet.sequence_number, -self._origin)  # slots before ``packet``
        if ahead >= self._capacity or not self._overdue(packet, ahead):  # (or a late packet, dropped)
            return pli_flag, frame
        hole = next((i for i in range(ahead) if self._slot(i) is None), None)
        if hole is None:  # a frame longer than max_wait, nothing missing: keep waiting
            return pli_flag, frame
        # Drop up to the hole and the whole frame of the next packet that did arrive: the
        # missing packet was the tail of the frame before it, the first packet of that
        # frame, or inside it, and no broken frame may reach the decoder.
        after = next(i for i in range(hole + 1, ahead + 1) if self._slot(i) is not None)
        self.smart_remove(after + 1)
        return True, self._remove_frame(packet.sequence_number)

    def _slot(self, i: int) -> RtpPacket | None:
        """The packet ``i`` places after the origin, if it arrived."""
        assert self._origin is not None
        return self._packets[(self._origin + i) % self._capacity]

    def _overdue(self, newest: RtpPacket, ahead: int) -> bool:
        """Whether ``newest`` is ``max_wait`` of media time past the oldest of the
        ``ahead`` packets before it still waiting (the origin's, unless the origin
        itself is missing)."""
        oldest = next((p for p in map(self._slot, range(ahead)) if p is not None), None)
        if oldest is None:
            return False
        waited = (newest.timestamp - oldest.timestamp) % (1 << 32)
        return self._max_wait <= waited < 1 << 31  # not a late (older) packet


def route_ssrc(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Route RTP packets of ``ssrc`` on ``receiver``'s transport to ``receiver``."""
    router = _require(receiver.transport, _TRANSPORT_ROUTER)
    table = _require(router, "ssrc_table")
    if not isinstance(table, dict):
        raise UnsupportedAiortc("the RTP router's SSRC table has an unexpected shape")
    table[ssrc] = receiver


def receiver_kind(receiver: RTCRtpReceiver) -> str:
    """``'audio'`` or ``'video'`` (RTCRtpReceiver keeps it private)."""
    kind: str = _require(receiver, _RECEIVER_KIND)
    return kind


def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Have ``receiver`` send a PLI with its next RTP packet (video only)."""
    event: threading.Event = getattr(receiver, _RECEIVER_ERROR)
    event.set()
