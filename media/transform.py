"""Per-sender and per-receiver SFrame transforms for aiortc.

:class:`SFrameSenderTransform` seals every encoded frame of one
RTCRtpSender with the codec-aware framing of :mod:`media.framing`, inside
an encoder wrapper (:class:`SFrameEncoder`) that the sender uses instead of
its own encoder; :class:`SFrameReceiverTransform` opens every frame of one
RTCRtpReceiver before it is decoded.  How they are hooked
into aiortc is :mod:`media.seams`; keys come from a :class:`FrameKeys`
(in practice :class:`media.session.SFrameSession`, a locked
``sframe.MLSKeyManager``).

Sending: a frame that cannot be framed or encrypted is dropped (counted),
never sent in the clear.  A frame the remote could not open (it is not a
member, or joined in an epoch after our sending one:
:meth:`SFrameSenderTransform.remote_keys_from`) is withheld before it is
encoded (counted); the first video frame sent after is a keyframe.  When the sending key changes (a new MLS epoch
after its transition, RFC 9605 §7.2 "Video Key Frames") the next video
frame is encoded as a keyframe.  With ``codec_threads`` the encoder runs in
aiortc's executor thread, so the key switch can land while a frame is being
encoded: that frame is then sealed under the new key and the *next* one is
the forced keyframe.

Receiving: a frame that fails to decrypt is dropped and counted by kind
(:class:`media.stats.FailureKind`); decryption runs on the event loop (never
in a decoder thread, which it therefore cannot kill).  After failures,
and on the first success after failures (the decoder missed references),
a keyframe is requested (PLI), at most once per ``pli_interval`` seconds.

A frame whose epoch is not installed yet (``sframe.KeyPending``: a joiner
before its Welcome, a member before the commit) is no failure: it is held
(``sframe.HoldBuffer``, bounded by :class:`HoldLimits`) and opened, in
arrival order, when the session installs an epoch (:meth:`SFrameReceiverTransform.key_installed`);
then it goes to the decoder queue like any decrypted frame, so a joiner's
first picture comes from the keyframe its sender started with.  Held frames
that expire (or that the bounds push out) count as
``FailureKind.HELD_EXPIRED``.  The transform passes the time to the
sans-I/O buffer and expires held frames on the next frame, on an install,
and with one event-loop timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.frame import Frame
from av.packet import Packet
from sframe import (
    AuthenticationFailure,
    HeldFrame,
    HoldBuffer,
    KeyPending,
    MLSSender,
    MLSUnprotectResult,
    ReplayDetected,
    SFrameError,
    UnknownKID,
)
from sframe.hold import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAMES

from . import framing, seams
from .errors import MediaError
from .framing import FrameCodec
from .stats import FailureKind, ReceiverStats, SenderStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldLimits:
    """How long and how much a receiver holds frames awaiting their epoch's
    key (RFC 9605 §4.4.4); see ``sframe.HoldBuffer``."""

    #: seconds a frame may wait
    max_age: float = DEFAULT_MAX_AGE
    max_frames: int = DEFAULT_MAX_FRAMES
    #: bytes of ciphertext held per receiver
    max_bytes: int = DEFAULT_MAX_BYTES


class FrameKeys(Protocol):
    """Thread-safe SFrame keys of the local member (see media.session)."""

    @property
    def send_key_generation(self) -> int: ...

    def sender(self, context: int) -> MLSSender: ...

    def unprotect(self, ciphertext: bytes, metadata: bytes) -> MLSUnprotectResult: ...


class SFrameSenderTransform:
    """Seals every encoded frame of one RTCRtpSender."""

    def __init__(self, sender: RTCRtpSender, keys: FrameKeys, *, context: int = 0,
                 codec_threads: bool = False) -> None:
        """``codec_threads``: encode in aiortc's executor threads rather than
        on the event loop (:mod:`media.seams`, "codec threads")."""
        self.sender = sender
        self._keys = keys
        self._context = context
        self._codec = FrameCodec.AUDIO  # set with the encoder (see _wrap)
        self._codec_name: str | None = None
        #: ``framing.frame_sealer(self._codec)``
        self._frame_sealer = framing.seal_whole
        self._frames = 0
        self._keyframes = 0
        self._forced = 0
        self._dropped = 0
        #: the sending key frames are sealed with (None until the first frame)
        self._sender: MLSSender | None = None
        self._keyframe_generation: int | None = None
        self._last_rekey: float | None = None
        #: the first MLS epoch whose key the remote has (None: no member, see remote_keys_from)
        self._remote_from: int | None = 0
        self._withheld = 0
        #: ``limit(requested)``: whether to answer a keyframe request (a PLI or FIR)
        #: now (media.sfu.KeyframeLimiter; runs where the encoder runs); None: always
        self.keyframe_requests: Callable[[bool], bool] | None = None
        seams.hook_sender(sender, self._wrap, codec_threads=codec_threads)

    def _wrap(self, encoder: Encoder, codec: RTCRtpCodecParameters) -> Encoder:
        self._codec = framing.frame_codec(codec.mimeType)
        self._codec_name = codec.mimeType
        self._frame_sealer = framing.frame_sealer(self._codec)
        return SFrameEncoder(encoder, self._codec, self)

    def remote_keys_from(self, epoch: int | None) -> None:
        """Send only under ``epoch`` or a later one: the remote has their
        keys (the epoch its Welcome starts).  None: the remote is no member
        of the group, send nothing.  Withheld frames are not even encoded;
        the first video frame sent after some were withheld is a keyframe."""
        self._remote_from = epoch

    def may_send(self) -> bool:
        """Whether the next frame goes out (where the encoder runs): the remote has
        our sending key.  If not, it is withheld (counted) and the next
        video frame sent will be a keyframe."""
        first = self._remote_from
        if first is not None:
            if first <= 0:
                return True
            sender = self._sender
            try:
                if sender is None or sender.generation != self._keys.send_key_generation:
                    sender = self._current_sender()
            except SFrameError:  # no sending key: seal_frame drops (and counts) the frame
                return True
            if sender.epoch >= first:
                return True
        self._withheld += 1
        self._keyframe_generation = None  # keyframe_due: the next frame sent starts afresh
        return False

    def keyframe_due(self) -> bool:
        """True once after each change of the sending key (and first frame)."""
        generation = self._keys.send_key_generation
        if generation == self._keyframe_generation:
            return False
        self._keyframe_generation = generation
        self._forced += 1
        return True

    def _current_sender(self) -> MLSSender:
        """The sending key, fetched again after it changed (or first)."""
        sender = self._keys.sender(self._context)
        if self._sender is not None:
            self._last_rekey = time.time()
        self._sender = sender
        return sender

    def _drop(self, exc: Exception) -> None:
        self._dropped += 1
        if self._dropped & (self._dropped - 1) == 0:  # 1st, 2nd, 4th, 8th...: never a flood
            logger.warning("SFrame: dropped %d %s frame(s), last: %s",
                           self._dropped, self.sender.kind, type(exc).__name__)

    # seal_frame and seal_h264_nal_units run for every frame: no closures, helper
    # objects or locks per frame (benchmarks/call_overhead.py measures the cost)

    def seal_frame(self, frame: bytes) -> bytes | None:
        """Sealed frame (of the encoder's codec), or None if it had to be dropped."""
        sender = self._sender
        try:
            if sender is None or sender.generation != self._keys.send_key_generation:
                sender = self._current_sender()
            sealed = self._frame_sealer(frame, sender.seal)
        except (SFrameError, MediaError) as exc:
            self._drop(exc)
            return None
        self._frames += 1
        codec = self._codec
        if codec is not FrameCodec.AUDIO:  # audio frames are never keyframes
            self._keyframes += framing.is_keyframe(codec, frame)
        return sealed

    def seal_h264_nal_units(self, nal_units: list[bytes]) -> list[bytes] | None:
        """Sealed wire NAL units of one H.264 frame, or None if dropped."""
        sender = self._sender
        try:
            if sender is None or sender.generation != self._keys.send_key_generation:
                sender = self._current_sender()
            sealed = framing.seal_h264_nal_units(nal_units, sender.seal)
        except (SFrameError, MediaError) as exc:
            self._drop(exc)
            return None
        self._frames += 1
        self._keyframes += framing.h264_has_idr(nal_units)
        return sealed

    def stats(self) -> SenderStats:
        return SenderStats(
            kind=self.sender.kind,
            codec=self._codec_name,
            frames_encrypted=self._frames,
            keyframes_encrypted=self._keyframes,
            keyframes_forced=self._forced,
            frames_dropped=self._dropped,
            frames_withheld=self._withheld,
            epoch=None if self._sender is None else self._sender.epoch,
            last_rekey=self._last_rekey,
        )


class SFrameEncoder(Encoder):
    """An aiortc encoder whose frames leave sealed; wraps the real encoder.

    VP8 and H.264 seal the whole frame in the inner encoder's ``_packetize``
    (shadowed on that instance), before it is cut into RTP payloads; audio
    encoders return whole frames, sealed one by one.
    """

    def __init__(self, inner: Encoder, codec: FrameCodec, transform: SFrameSenderTransform) -> None:
        self._inner = inner
        self._codec = codec
        self._transform = transform
        if codec is FrameCodec.VP8:
            self._packetize = seams.shadow_packetize(inner, self._packetize_vp8)
        elif codec is FrameCodec.H264:
            self._packetize = seams.shadow_packetize(inner, self._packetize_h264)

    def _packetize_vp8(self, buffer: bytes, picture_id: int) -> list[bytes]:
        if not buffer:
            return []
        sealed = self._transform.seal_frame(buffer)
        return [] if sealed is None else self._packetize(sealed, picture_id)

    def _packetize_h264(self, packages: Iterable[bytes]) -> list[bytes]:
        nal_units = list(packages)
        if not nal_units:
            return []
        sealed = self._transform.seal_h264_nal_units(nal_units)
        return [] if sealed is None else self._packetize(sealed)

    def _seal_payloads(self, payloads: list[bytes]) -> list[bytes]:
        if self._codec is not FrameCodec.AUDIO:
            return payloads
        sealed = []
        for payload in payloads:  # (a loop, not a generator: this runs for every audio frame)
            if payload and (frame := self._transform.seal_frame(payload)) is not None:
                sealed.append(frame)
        return sealed

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if not self._transform.may_send():
            return [], 0  # no payloads: aiortc's sender sends nothing for this frame
        if self._codec is not FrameCodec.AUDIO:
            limit = self._transform.keyframe_requests
            if limit is not None:
                force_keyframe = limit(force_keyframe)
            if self._transform.keyframe_due():
                force_keyframe = True
        payloads, timestamp = self._inner.encode(frame, force_keyframe)
        return self._seal_payloads(payloads), timestamp

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        if not self._transform.may_send():
            return [], 0
        payloads, timestamp = self._inner.pack(packet)
        return self._seal_payloads(payloads), timestamp

    @property
    def target_bitrate(self) -> int:
        """The inner encoder's bitrate (AttributeError for audio encoders,
        so aiortc's ``hasattr`` check behaves as without the wrapper)."""
        bitrate: int = getattr(self._inner, "target_bitrate")
        return bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        if hasattr(self._inner, "target_bitrate"):
            setattr(self._inner, "target_bitrate", bitrate)


_FAILURES: tuple[tuple[type[Exception], FailureKind], ...] = (
    (UnknownKID, FailureKind.UNKNOWN_KID),
    (AuthenticationFailure, FailureKind.AUTHENTICATION),
    (ReplayDetected, FailureKind.REPLAY),
)


def failure_kind(exc: Exception) -> FailureKind:
    """The :class:`FailureKind` of a decrypt error."""
    for error, kind in _FAILURES:
        if isinstance(exc, error):
            return kind
    return FailureKind.MALFORMED


class SFrameReceiverTransform:
    """Opens every encoded frame of one RTCRtpReceiver before decoding."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        keys: FrameKeys,
        *,
        pli_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        hold: HoldLimits | None = HoldLimits(),
        codec_threads: bool = False,
    ) -> None:
        """``codec_threads``: decode in aiortc's decoder thread rather than
        on the event loop (:mod:`media.seams`, "codec threads")."""
        self.receiver = receiver
        self._keys = keys
        self._kind = seams.receiver_kind(receiver)
        self._pli_interval = pli_interval
        self._clock = clock
        self._codec_name: str | None = None
        self._frames = 0
        self._keyframes = 0
        self._failures = {kind_: 0 for kind_ in FailureKind}
        self._failing = False
        self._pli_pending = False
        self._pli_last: float | None = None
        self._pli_count = 0
        self._epoch: int | None = None
        self._last_rekey: float | None = None
        self._by_epoch: dict[int, int] = {}
        self._keyframes_by_epoch: dict[int, int] = {}
        #: the framing rule of ``_framing_mime`` (set with it on the first frame)
        self._framing_mime: str | None = None
        self._framing = FrameCodec.AUDIO
        #: ``framing.frame_opener(self._framing)``
        self._frame_opener = framing.open_whole
        #: the keys' unprotect (one bound method, not one lookup per frame)
        self._unprotect = keys.unprotect
        #: the last unprotect result, for handle()
        self._opened: MLSUnprotectResult | None = None
        self._open_callback = self._open  # one bound method, not one per frame
        #: frames awaiting their epoch's key; None: holding switched off
        self._held: HoldBuffer[tuple[RTCRtpCodecParameters, JitterFrame]] | None = (
            None if hold is None else HoldBuffer(
                max_age=hold.max_age, max_frames=hold.max_frames, max_bytes=hold.max_bytes))
        self._held_total = 0
        self._held_opened = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._deliver = seams.hook_receiver(receiver, self.handle, codec_threads=codec_threads)

    def _open(self, ciphertext: bytes, metadata: bytes) -> bytes:
        """``open_`` of :mod:`media.framing`; keeps the result for :meth:`handle`
        (which runs on the event loop only, one frame at a time)."""
        result = self._unprotect(ciphertext, metadata)
        self._opened = result
        return result.plaintext

    def handle(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> bool:
        """Decrypt ``frame.data`` in place; False if the frame was dropped or
        held (then :meth:`key_installed` may deliver it later)."""
        held = self._held
        if held:  # (non-empty)
            self._expire_held(self._clock())
        return self._open_frame(codec, frame, held)

    def _open_frame(self, codec: RTCRtpCodecParameters, frame: JitterFrame,
                    held: HoldBuffer[tuple[RTCRtpCodecParameters, JitterFrame]] | None,
                    arrived: float | None = None) -> bool:
        """Decrypt ``frame``, or hold it into ``held`` (arrived at
        ``arrived``, default now) if its epoch is not installed yet."""
        mime = codec.mimeType
        try:
            if mime != self._framing_mime:  # the first frame, or another codec
                self._codec_name = mime
                self._framing = framing.frame_codec(mime)
                self._frame_opener = framing.frame_opener(self._framing)
                self._framing_mime = mime
            plaintext = self._frame_opener(frame.data, self._open_callback)
        except (SFrameError, MediaError) as exc:
            if held is not None and isinstance(exc, KeyPending):
                if arrived is None:
                    arrived = self._clock()
                    self._held_total += 1
                self._hold(held, codec, frame, arrived)
                return False
            self._fail(failure_kind(exc))
            return False
        if self._failing:  # the decoder missed frames: ask for a fresh start
            self._failing = False
            self._pli_pending = True
        opened = self._opened
        assert opened is not None  # set by _open, which open_frame called
        epoch = opened.epoch
        if epoch != self._epoch and (self._epoch is None or epoch > self._epoch):
            if self._epoch is not None:
                self._last_rekey = time.time()
            self._epoch = epoch
        fcodec = self._framing
        keyframe = fcodec is not FrameCodec.AUDIO and framing.is_keyframe(fcodec, plaintext)
        self._frames += 1
        self._keyframes += keyframe
        self._by_epoch[epoch] = self._by_epoch.get(epoch, 0) + 1
        self._keyframes_by_epoch[epoch] = self._keyframes_by_epoch.get(epoch, 0) + keyframe
        frame.data = plaintext
        if self._pli_pending:
            self._maybe_request_keyframe()
        return True

    def _fail(self, kind: FailureKind, count: int = 1) -> None:
        """Count ``count`` dropped frames; ask for a keyframe."""
        self._failures[kind] += count
        self._failing = self._pli_pending = True
        self._maybe_request_keyframe()

    def _hold(self, held: HoldBuffer[tuple[RTCRtpCodecParameters, JitterFrame]],
              codec: RTCRtpCodecParameters, frame: JitterFrame, arrived: float) -> None:
        evicted = held.hold((codec, frame), len(frame.data), arrived)
        if evicted:
            self._fail(FailureKind.HELD_EXPIRED, len(evicted))
        if self._expiry is None and held:
            self._schedule_expiry(held)

    def _schedule_expiry(self, held: HoldBuffer[tuple[RTCRtpCodecParameters, JitterFrame]]) -> None:
        """One timer at the oldest held frame's deadline (frames may stop
        arriving; otherwise :meth:`handle` expires them)."""
        deadline = held.deadline
        if deadline is None:
            return
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()  # handle runs on the event loop
            except RuntimeError:  # driven without one (tests): expiry waits for the next frame
                return
        delay = max(deadline - self._clock(), 0.0) + 0.01
        self._expiry = self._loop.call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        held = self._held
        if held:
            self._expire_held(self._clock())
            self._schedule_expiry(held)

    def _expire_held(self, now: float) -> None:
        assert self._held is not None
        expired = self._held.expire(now)
        if expired:
            self._fail(FailureKind.HELD_EXPIRED, len(expired))

    def key_installed(self) -> None:
        """An epoch was installed: open the held frames that now have their
        key, in arrival order, and hand them to the decoder; keep those
        still waiting.  Call on the event loop (as :meth:`handle` runs)."""
        held = self._held
        if not held:
            return
        self._expire_held(self._clock())
        waiting: list[HeldFrame[tuple[RTCRtpCodecParameters, JitterFrame]]] = held.take()
        for entry in waiting:
            codec, frame = entry.item
            if self._open_frame(codec, frame, held, entry.arrived):
                self._held_opened += 1
                self._deliver(codec, frame)
        if not held and self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def close(self) -> None:
        """Forget the held frames (not counted) and stop the expiry timer."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._held is not None:
            self._held.take()

    def _maybe_request_keyframe(self) -> None:
        if not self._pli_pending or self._kind != "video":
            return
        now = self._clock()
        if self._pli_last is not None and now - self._pli_last < self._pli_interval:
            return
        self._pli_pending = False
        self._pli_last = now
        self._pli_count += 1
        seams.request_keyframe(self.receiver)

    def stats(self) -> ReceiverStats:
        return ReceiverStats(
            kind=self._kind,
            codec=self._codec_name,
            frames_decrypted=self._frames,
            keyframes_decrypted=self._keyframes,
            failures=dict(self._failures),
            keyframe_requests=self._pli_count,
            epoch=self._epoch,
            last_rekey=self._last_rekey,
            frames_by_epoch=dict(self._by_epoch),
            keyframes_by_epoch=dict(self._keyframes_by_epoch),
            frames_held=self._held_total,
            frames_held_opened=self._held_opened,
            frames_holding=0 if self._held is None else len(self._held),
        )
