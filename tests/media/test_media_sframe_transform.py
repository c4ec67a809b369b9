"""SFrame transforms on real aiortc senders/receivers, without a network.

Frames go through the sender's own ``_next_encoded_frame`` (track -> hooked
encoder -> RTP payloads), are depacketized with aiortc's ``depayload`` and
handed to the receiver's hooked decoder queue, then decoded by aiortc's
decoders: every step is aiortc's code except the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from typing import Any

import aiortc
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import AudioFrame, VideoFrame
from aiortc.codecs import depayload, get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from conftest import until
from media import AlreadyProtected, FailureKind, SFrameEncoder, SFrameSession, UnsupportedAiortc, seams
from media.framing import FrameCodec, frame_codec, is_keyframe
from media.tracks import PatternVideoTrack, ToneAudioTrack
from sframe import MLSKeyManager

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=99,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)


class FakeDtlsTransport:
    """Just enough of RTCDtlsTransport to construct senders and receivers."""

    state = "new"


class Exporter:
    """Stand-in MLS exporter: a deterministic secret per (seed, epoch)."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(self.seed + b"|" + label + b"|" + context).digest(length)


def member(own_index: int, epoch: int = 1, seed: bytes = b"group", **kwargs) -> SFrameSession:
    session = SFrameSession(MLSKeyManager(), **kwargs)
    session.install_epoch(Exporter(seed + bytes([epoch])), epoch, own_index, 2)
    return session


def track_for(codec: RTCRtpCodecParameters) -> MediaStreamTrack:
    return ToneAudioTrack() if codec is OPUS else PatternVideoTrack(64, 48)


async def send_frames(sender: RTCRtpSender, codec: RTCRtpCodecParameters, count: int) -> list[JitterFrame]:
    """``count`` encoded frames as the remote jitter buffer would emit them."""
    frames: list[JitterFrame] = []
    while len(frames) < count:
        encoded = await sender._next_encoded_frame(codec)
        if encoded is None:
            continue
        if codec is OPUS:  # one Opus packet per RTP packet, each a frame
            frames += [JitterFrame(p, encoded.timestamp) for p in encoded.payloads]
        else:
            data = b"".join(depayload(codec, p) for p in encoded.payloads)
            frames.append(JitterFrame(data, encoded.timestamp))
    return frames


def feed(receiver: RTCRtpReceiver, codec: RTCRtpCodecParameters, frames: list[JitterFrame]) -> list[JitterFrame]:
    """Put frames where aiortc puts them; return what reaches the decoder."""
    reached: list[tuple[RTCRtpCodecParameters, JitterFrame]] = []
    hooked = receiver._RTCRtpReceiver__decoder_queue
    decode, hooked._forward = hooked._forward, reached.append
    try:
        for frame in frames:
            hooked.put((codec, frame))
    finally:
        hooked._forward = decode
    return [frame for _, frame in reached]


@pytest.mark.parametrize("codec", [VP8, H264, OPUS], ids=["vp8", "h264", "opus"])
async def test_frames_are_sealed_then_opened_and_decoded(codec: RTCRtpCodecParameters) -> None:
    alice, bob = member(0), member(1)
    sender = RTCRtpSender(track_for(codec), FakeDtlsTransport())
    sending = alice.protect_sender(sender)
    receiver = RTCRtpReceiver(codec.mimeType.split("/")[0], FakeDtlsTransport())
    receiving = bob.protect_receiver(receiver)

    frames = await send_frames(sender, codec, 8)
    wire = [f.data for f in frames]
    delivered = feed(receiver, codec, frames)
    assert len(delivered) == 8
    # what travelled is not what the decoder got: every frame was sealed
    assert all(f.data != w for f, w in zip(delivered, wire))

    decoder = get_decoder(codec)
    decoded = sum(len(decoder.decode(f)) for f in delivered)
    assert decoded >= 6

    sent, received = sending.stats(), receiving.stats()
    assert sent.frames_encrypted == received.frames_decrypted == 8
    assert sent.epoch == received.epoch == 1
    assert received.failures_total == 0
    if codec is not OPUS:
        assert is_keyframe(frame_codec(codec.mimeType), delivered[0].data)
        assert sent.keyframes_encrypted == received.keyframes_decrypted >= 1
    sender.replaceTrack(None)


async def test_rekey_transition_keyframe_and_no_failures() -> None:
    alice, bob = member(0), member(1)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    sending = alice.protect_sender(sender)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    receiving = bob.protect_receiver(receiver)
    epoch2 = Exporter(b"group" + bytes([2]))

    before = feed(receiver, VP8, await send_frames(sender, VP8, 4))
    # commit processed: both install epoch 2 for receiving; alice still sends epoch 1
    bob.install_epoch(epoch2, 2, 1, 2)
    alice.install_epoch(epoch2, 2, 0, 2)
    during = feed(receiver, VP8, await send_frames(sender, VP8, 3))
    assert receiving.stats().frames_by_epoch == {1: 7}
    assert alice.sending_epoch == 1 and alice.newest_epoch == 2

    alice.switch_sender()  # the transition ends
    after = feed(receiver, VP8, await send_frames(sender, VP8, 4))
    assert len(before) + len(during) + len(after) == 11
    assert is_keyframe(FrameCodec.VP8, after[0].data)  # first frame of epoch 2
    assert not any(is_keyframe(FrameCodec.VP8, f.data) for f in during + after[1:])

    stats = receiving.stats()
    assert stats.failures_total == 0
    assert stats.frames_by_epoch == {1: 7, 2: 4}
    assert stats.keyframes_by_epoch[2] == 1
    assert stats.epoch == 2 and stats.last_rekey is not None
    sent = sending.stats()
    assert sent.epoch == 2 and sent.keyframes_forced == 2 and sent.last_rekey is not None
    assert alice.last_rekey is not None
    decoder = get_decoder(VP8)
    assert sum(len(decoder.decode(f)) for f in before + during + after) == 11


async def test_failures_are_counted_by_kind_and_keyframe_requests_rate_limited() -> None:
    now = [100.0]
    alice = member(0)
    stranger = member(0, seed=b"other group")  # same epoch, wrong key
    # epoch 12's KID bits read as 5 epochs behind bob's epoch 1 (E = 4): a key
    # bob can never get, dropped at once (a next epoch's frames would be held)
    future = member(0, epoch=12)
    bob = member(1, pli_interval=1.0, clock=lambda: now[0])
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    receiving = bob.protect_receiver(receiver)
    pli = receiver._RTCRtpReceiver__decoder_error

    wrong = await send_frames(_protected_sender(stranger), VP8, 3)
    unknown = await send_frames(_protected_sender(future), VP8, 2)
    good = await send_frames(_protected_sender(alice), VP8, 2)

    assert feed(receiver, VP8, wrong[:1]) == []
    assert pli.is_set()  # first failure: keyframe request at once
    pli.clear()
    assert feed(receiver, VP8, wrong[1:] + unknown + [JitterFrame(b"", 0)]) == []
    assert not pli.is_set()  # rate-limited: same second
    stats = receiving.stats()
    assert stats.failures == {
        FailureKind.AUTHENTICATION: 3,
        FailureKind.UNKNOWN_KID: 2,
        FailureKind.REPLAY: 0,
        FailureKind.MALFORMED: 1,
        FailureKind.HELD_EXPIRED: 0,
    }
    assert stats.keyframe_requests == 1 and stats.frames_decrypted == 0

    now[0] += 1.5
    delivered = feed(receiver, VP8, good)  # recovery: the decoder missed frames
    assert [f.data[:3] for f in delivered] == [f.data[:3] for f in good]
    assert pli.is_set() and receiving.stats().keyframe_requests == 2
    assert receiving.stats().frames_decrypted == 2


def _protected_sender(session: SFrameSession) -> RTCRtpSender:
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    session.protect_sender(sender)
    return sender


async def test_audio_receiver_never_requests_keyframes() -> None:
    bob = member(1)
    receiver = RTCRtpReceiver("audio", FakeDtlsTransport())
    receiving = bob.protect_receiver(receiver)
    assert feed(receiver, OPUS, [JitterFrame(b"\x01\x02", 0)] * 3) == []
    assert not receiver._RTCRtpReceiver__decoder_error.is_set()
    assert receiving.stats().failures_total == 3
    assert receiving.stats().keyframe_requests == 0


async def test_hooks_are_per_instance() -> None:
    alice = member(0)
    protected = RTCRtpSender("video", FakeDtlsTransport())
    plain = RTCRtpSender("video", FakeDtlsTransport())
    alice.protect_sender(protected)
    assert "_next_encoded_frame" in vars(protected)
    assert "_next_encoded_frame" not in vars(plain)
    assert RTCRtpSender._next_encoded_frame is not protected._next_encoded_frame
    plain_receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    protected_receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    alice.protect_receiver(protected_receiver)
    assert isinstance(plain_receiver._RTCRtpReceiver__decoder_queue, queue.Queue)
    assert not isinstance(protected_receiver._RTCRtpReceiver__decoder_queue, queue.Queue)
    with pytest.raises(AlreadyProtected):
        alice.protect_sender(protected)
    with pytest.raises(AlreadyProtected):
        alice.protect_receiver(protected_receiver)


async def test_other_aiortc_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(UnsupportedAiortc):
        SFrameSession(MLSKeyManager())


async def test_timed_transition_switches_sender() -> None:
    alice = member(0)
    alice.install_epoch(Exporter(b"group" + bytes([2])), 2, 0, 2, switch_after=0.01)
    assert alice.sending_epoch == 1
    await until(lambda: alice.sending_epoch == 2)
    assert alice.last_rekey is not None


async def test_a_burst_of_epochs_does_not_postpone_the_switch() -> None:
    # Each epoch's switch is due its own delay after its install: a new
    # epoch arriving meanwhile must not push the earlier switch back.
    alice = member(0)
    alice.install_epoch(Exporter(b"group" + bytes([2])), 2, 0, 2, switch_after=0.2)
    alice.install_epoch(Exporter(b"group" + bytes([3])), 3, 0, 2, switch_after=60.0)
    await until(lambda: alice.sending_epoch == 2)
    alice.close()  # cancels epoch 3's pending switch
    await asyncio.sleep(0.05)
    assert alice.sending_epoch == 2



def test_senders_on_threads_never_reuse_a_ctr_across_key_switches() -> None:
    # aiortc seals in executor threads while the event loop switches keys:
    # each thread holds its sender state and seals without the lock; the
    # (KID, CTR) pairs stay unique and every frame opens under its epoch.
    alice, bob = member(0), member(1)
    frames: list[bytes] = []  # list.append is atomic
    go = threading.Event()

    def seal_many() -> None:
        go.wait()
        sender = alice.sender(0)
        for i in range(400):
            if sender.generation != alice.send_key_generation:
                sender = alice.sender(0)
            frames.append(sender.seal(i.to_bytes(2, "big"), b""))

    threads = [threading.Thread(target=seal_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    go.set()
    for epoch in range(2, 6):
        exporter = Exporter(b"group" + bytes([epoch]))
        bob.install_epoch(exporter, epoch, 1, 2)
        alice.install_epoch(exporter, epoch, 0, 2)
        alice.switch_sender()
    for thread in threads:
        thread.join()
    opened = [bob.unprotect(frame, b"") for frame in frames]
    assert len({(o.kid, o.ctr) for o in opened}) == len(frames) == 1200
    assert {o.epoch for o in opened} <= {1, 2, 3, 4, 5}
    assert alice.sender(0).epoch == 5


async def test_the_sender_hook_wraps_each_encoder_once() -> None:
    alice, bob = member(0), member(1)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    alice.protect_sender(sender)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    bob.protect_receiver(receiver)
    decoder = get_decoder(VP8)

    frames = await send_frames(sender, VP8, 2)
    first = sender._RTCRtpSender__encoder
    assert isinstance(first, SFrameEncoder) and not isinstance(first._inner, SFrameEncoder)
    frames += await send_frames(sender, VP8, 2)
    assert sender._RTCRtpSender__encoder is first  # kept, not wrapped again
    sender._RTCRtpSender__encoder = None  # aiortc releases it when its RTP loop ends
    frames += await send_frames(sender, VP8, 2)
    second = sender._RTCRtpSender__encoder
    assert isinstance(second, SFrameEncoder) and second is not first
    assert not isinstance(second._inner, SFrameEncoder)
    delivered = feed(receiver, VP8, frames)  # each sealed once: each opens to a decodable frame
    assert len(delivered) == 6 and sum(len(decoder.decode(f)) for f in delivered) == 6


def with_track(receiver: RTCRtpReceiver) -> RemoteStreamTrack:
    """Give ``receiver`` its remote track, as RTCPeerConnection does."""
    track = RemoteStreamTrack(kind=receiver._RTCRtpReceiver__kind)
    receiver._track = track
    return track


@pytest.mark.parametrize("codec", [VP8, OPUS], ids=["vp8", "opus"])
async def test_frames_are_decoded_on_the_event_loop_by_default(codec: RTCRtpCodecParameters) -> None:
    alice, bob = member(0), member(1)
    sender = RTCRtpSender(track_for(codec), FakeDtlsTransport())
    alice.protect_sender(sender)
    receiver = RTCRtpReceiver(codec.mimeType.split("/")[0], FakeDtlsTransport())
    track = with_track(receiver)
    bob.protect_receiver(receiver)
    thread_queue = receiver._RTCRtpReceiver__decoder_queue._target

    for frame in await send_frames(sender, codec, 6):
        receiver._RTCRtpReceiver__decoder_queue.put((codec, frame))
    # decoded at once, in this thread: on the track's queue, nothing for the decoder thread
    assert thread_queue.empty()
    pictures = [track._queue.get_nowait() for _ in range(track._queue.qsize())]
    assert len(pictures) >= 5
    expected = VideoFrame if codec is VP8 else AudioFrame
    assert all(isinstance(p, expected) for p in pictures)
    # the receiver's stop sentinel still goes to the thread, which ends the track
    receiver._RTCRtpReceiver__decoder_queue.put(None)
    assert thread_queue.get_nowait() is None
    sender.replaceTrack(None)


async def test_a_frame_the_decoder_refuses_asks_for_a_keyframe_and_decoding_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    track = with_track(receiver)
    seams.hook_receiver(receiver, lambda codec, frame: True)  # no SFrame: the decoding seam alone
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    frames = await send_frames(sender, VP8, 4)
    queue_ = receiver._RTCRtpReceiver__decoder_queue
    error = receiver._RTCRtpReceiver__decoder_error

    queue_.put((VP8, frames[0]))
    assert track._queue.qsize() == 1 and not error.is_set()
    with caplog.at_level("WARNING", logger="media.seams"):
        queue_.put((VP8, JitterFrame(b"\x00" * 40, frames[1].timestamp)))
    assert error.is_set()  # the receiver sends a PLI with its next packet
    assert "video receiver failed to decode a VP8 frame" in caplog.text
    assert track._queue.qsize() == 1
    for frame in frames[1:]:
        queue_.put((VP8, frame))
    assert track._queue.qsize() == 4
    sender.replaceTrack(None)


async def test_codec_threads_leave_decoding_to_aiortcs_thread() -> None:
    alice = member(0)
    bob = member(1, codec_threads=True)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    alice.protect_sender(sender)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    track = with_track(receiver)
    receiving = bob.protect_receiver(receiver)
    thread_queue = receiver._RTCRtpReceiver__decoder_queue._target

    for frame in await send_frames(sender, VP8, 3):
        receiver._RTCRtpReceiver__decoder_queue.put((VP8, frame))
    assert track._queue.empty()
    queued = [thread_queue.get_nowait() for _ in range(thread_queue.qsize())]
    assert [codec for codec, _ in queued] == [VP8] * 3
    assert receiving.stats().frames_decrypted == 3
    sender.replaceTrack(None)


class RecordingEncoder:
    """Wraps an encoder; records the thread of each ``encode`` (or raises)."""

    def __init__(self, inner: Any, fail: bool = False) -> None:
        self.inner, self.fail = inner, fail
        self.threads: list[int] = []

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise ValueError("encoder refused the frame")
        return self.inner.encode(frame, force_keyframe)


@pytest.mark.parametrize("codec_threads", [False, True], ids=["on-the-loop", "in-threads"])
async def test_senders_encode_on_the_event_loop_unless_codec_threads(codec_threads: bool) -> None:
    encoders: list[RecordingEncoder] = []
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    seams.hook_sender(sender, lambda encoder, codec: encoders.append(RecordingEncoder(encoder)) or encoders[-1],
                      codec_threads=codec_threads)
    frames = [await sender._next_encoded_frame(VP8) for _ in range(3)]
    assert all(f is not None and f.payloads for f in frames)
    assert len(encoders) == 1 and len(encoders[0].threads) == 3
    on_loop = {t == threading.get_ident() for t in encoders[0].threads}
    assert on_loop == {not codec_threads}
    sender.replaceTrack(None)


async def test_an_encoder_error_reaches_the_sender_as_from_its_executor() -> None:
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    seams.hook_sender(sender, lambda encoder, codec: RecordingEncoder(encoder, fail=True))
    with pytest.raises(ValueError, match="encoder refused the frame"):
        await sender._next_encoded_frame(VP8)
    sender.replaceTrack(None)


async def test_no_decoder_exception_reaches_the_receive_path(caplog: pytest.LogCaptureFixture) -> None:
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    track = with_track(receiver)
    seams.hook_receiver(receiver, lambda codec, frame: True)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    frames = await send_frames(sender, VP8, 2)
    queue_ = receiver._RTCRtpReceiver__decoder_queue
    queue_.put((VP8, frames[0]))  # the decoder exists now
    decoder = queue_._forward.__self__._decoder

    class Refusing:
        def decode(self, frame: JitterFrame) -> list[Any]:
            raise ValueError(b"secret media bytes")

    queue_._forward.__self__._decoder = Refusing()
    with caplog.at_level("WARNING", logger="media.seams"):
        queue_.put((VP8, frames[1]))  # returns: nothing raised into aiortc's receive task
    assert receiver._RTCRtpReceiver__decoder_error.is_set()
    assert "video receiver's VP8 decoder raised ValueError" in caplog.text
    assert "secret media bytes" not in caplog.text
    queue_._forward.__self__._decoder = decoder
    assert track._queue.qsize() == 1
    sender.replaceTrack(None)
