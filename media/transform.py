"""Per-sender and per-receiver SFrame transforms for aiortc.

:class:`SFrameSenderTransform` seals every encoded frame of one
RTCRtpSender with the codec-aware framing of :mod:`media.framing`, inside
an encoder wrapper (:class:`SFrameEncoder`) that the sender uses instead of
its own encoder; :class:`SFrameReceiverTransform` opens every frame of one
RTCRtpReceiver before it reaches the decoder thread.  How they are hooked
into aiortc is :mod:`media.seams`; keys come from a :class:`FrameKeys`
(in practice :class:`media.session.SFrameSession`, a locked
``sframe.MLSKeyManager``).

Sending: a frame that cannot be framed or encrypted is dropped (counted),
never sent in the clear.  When the sending key changes (a new MLS epoch
after its transition, RFC 9605 §7.2 "Video Key Frames") the next video
frame is encoded as a keyframe.  The encoder runs in aiortc's executor
thread, so the key switch can land while a frame is being encoded: that
frame is then sealed under the new key and the *next* one is the forced
keyframe.

Receiving: a frame that fails to decrypt is dropped and counted by kind
(:class:`media.stats.FailureKind`); decryption runs on the event loop, not
in the decoder thread, so it can never kill that thread.  After failures,
and on the first success after failures (the decoder missed references),
a keyframe is requested (PLI), at most once per ``pli_interval`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.frame import Frame
from av.packet import Packet
from sframe import AuthenticationFailure, MLSSender, MLSUnprotectResult, ReplayDetected, SFrameError, UnknownKID

from . import framing, seams
from .errors import MediaError
from .framing import FrameCodec
from .stats import FailureKind, ReceiverStats, SenderStats

logger = logging.getLogger(__name__)


class FrameKeys(Protocol):
    """Thread-safe SFrame keys of the local member (see media.session)."""

    @property
    def send_key_generation(self) -> int: ...

    def sender(self, context: int) -> MLSSender: ...

    def unprotect(self, ciphertext: bytes, metadata: bytes) -> MLSUnprotectResult: ...


class SFrameSenderTransform:
    """Seals every encoded frame of one RTCRtpSender."""

    def __init__(self, sender: RTCRtpSender, keys: FrameKeys, *, context: int = 0) -> None:
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
        seams.hook_sender(sender, self._wrap)

    def _wrap(self, encoder: Encoder, codec: RTCRtpCodecParameters) -> Encoder:
        self._codec = framing.frame_codec(codec.mimeType)
        self._codec_name = codec.mimeType
        self._frame_sealer = framing.frame_sealer(self._codec)
        return SFrameEncoder(encoder, self._codec, self)

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
        if self._codec is not FrameCodec.AUDIO and self._transform.keyframe_due():
            force_keyframe = True
        payloads, timestamp = self._inner.encode(frame, force_keyframe)
        return self._seal_payloads(payloads), timestamp

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
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
    ) -> None:
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
        seams.hook_receiver(receiver, self.handle)

    def _open(self, ciphertext: bytes, metadata: bytes) -> bytes:
        """``open_`` of :mod:`media.framing`; keeps the result for :meth:`handle`
        (which runs on the event loop only, one frame at a time)."""
        result = self._unprotect(ciphertext, metadata)
        self._opened = result
        return result.plaintext

    def handle(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> bool:
        """Decrypt ``frame.data`` in place; False (frame dropped) on failure."""
        mime = codec.mimeType
        try:
            if mime != self._framing_mime:  # the first frame, or another codec
                self._codec_name = mime
                self._framing = framing.frame_codec(mime)
                self._frame_opener = framing.frame_opener(self._framing)
                self._framing_mime = mime
            plaintext = self._frame_opener(frame.data, self._open_callback)
        except (SFrameError, MediaError) as exc:
            self._failures[failure_kind(exc)] += 1
            self._failing = self._pli_pending = True
            self._maybe_request_keyframe()
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
        )
