"""The parts of ``mlscall stress`` that spread peers over processes: the
worker ledger's batches, the pipe protocol to a worker process, the
classification of late frames, and the shared synthetic media sources."""

from __future__ import annotations

import asyncio
import hashlib
import pickle

import pytest
from sframe import MLSKeyManager, UnknownKID

from media.call_peer import CallOptions
from media.counter import CounterVideoTrack, read_counter
from media.stats import FailureKind
from media.stress.hosts import RemotePeer, WorkerError, WorkerProcess
from media.stress.peer import (
    FAILURE_BIN,
    CommitRecord,
    EpochRecord,
    Ledger,
    ObservedSession,
    PeerView,
    Phase,
)
from media.stress.channel import WorkerSetup
from media.tracks import ToneAudioTrack


class Exporter:
    """Stands in for an MLS group view: one secret per epoch."""

    def __init__(self, epoch: int) -> None:
        self.secret = hashlib.sha256(f"stress/{epoch}".encode()).digest()

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(self.secret + label + b"|" + context).digest(length)


def test_a_worker_ledger_batch_merges_into_the_run_ledger_once() -> None:
    run = Ledger()
    worker = Ledger(origin=run.origin, forwarding=True)
    worker.epochs.append(EpochRecord("p001", 3, "commit", 1.0, ("p001", "p002"), "ab"))
    worker.commits.append(CommitRecord("p001", 2, 0.5, 0.6, True))
    worker.switches.append(("p001", 3, 1.3))
    for phase in (Phase.STARTUP, Phase.STARTUP, Phase.AFTER, Phase.LATE):
        worker.failure("p002", FailureKind.UNKNOWN_KID, phase, lambda: "p001", 3, (4, 0, "why"))
    worker.failure("p002", FailureKind.AUTHENTICATION, Phase.AFTER, lambda: "p001", 3)
    assert worker.failure_counts == {}  # a forwarding ledger only counts for its batches

    run.merge(pickle.loads(pickle.dumps(worker.drain())))  # as through the pipe
    counts = run.failure_counts["p002"]
    assert counts[FailureKind.UNKNOWN_KID] == [2, 1, 1]
    assert counts[FailureKind.AUTHENTICATION] == [0, 1, 0]
    assert sum(run.startup_bins.values()) == 2 and sum(run.late_bins.values()) == 1
    assert sum(b[FailureKind.UNKNOWN_KID] + b[FailureKind.AUTHENTICATION]
               for b in run.failure_bins.values()) == 2
    assert [f.kind for f in run.key_failures] == [FailureKind.UNKNOWN_KID, FailureKind.AUTHENTICATION]
    assert run.key_failures[0].remote == "p001" and run.unknown_reasons == {"why": 1}
    assert len(run.epochs) == len(run.commits) == len(run.switches) == 1
    assert all(int(f.at // FAILURE_BIN) in run.failure_bins for f in run.key_failures)

    run.merge(worker.drain())  # drained: nothing twice
    assert run.failure_counts["p002"][FailureKind.UNKNOWN_KID] == [2, 1, 1]
    assert len(run.epochs) == 1


async def test_late_frames_are_told_from_frames_of_a_future_epoch() -> None:
    sender = MLSKeyManager(retain_epochs=8)
    receiver = ObservedSession(lambda epoch: None, lambda *args: None, MLSKeyManager(retain_epochs=8))
    sealed = {}
    for epoch in range(12):
        sender.install_epoch(Exporter(epoch), epoch, 1, 2)
        sealed[epoch] = sender.protect(b"frame", b"")
        receiver.install_epoch(Exporter(epoch), epoch, 0, 2, switch_after=None)
    sender.install_epoch(Exporter(12), 12, 1, 2)
    sealed[12] = sender.protect(b"frame", b"")
    assert receiver.unprotect(sealed[4], b"").epoch == 4  # retained: 4..11

    with pytest.raises(UnknownKID):
        receiver.unprotect(sealed[2], b"")  # installed, then evicted
    assert receiver.evicted(last_epoch=1)  # its link had delivered epoch 1 last: late
    with pytest.raises(UnknownKID):
        receiver.unprotect(sealed[12], b"")  # not installed yet: a key problem
    assert not receiver.evicted(last_epoch=11)
    receiver.close()


async def test_a_worker_process_answers_and_reports_a_failed_start() -> None:
    # nothing listens on port 9 of 127.0.0.1: the peer cannot start
    worker = WorkerProcess(0, WorkerSetup(Ledger().origin, "ws://127.0.0.1:9/ws", "room"), Ledger())
    await worker.start()
    try:
        peer = RemotePeer("p001", worker, "token", CallOptions())
        assert peer.view() == PeerView("p001", None, {}, None, 0, False, None)
        assert worker.hosted == {"p001"}
        with pytest.raises(WorkerError, match="p001 did not start"):
            await peer.start(10.0)
        totals = await peer.end("leave", 10.0)
        assert totals.frames_sent == 0 and worker.hosted == set()
        await asyncio.sleep(0.3)  # state messages keep coming, without the ended peer
        assert worker.views == {}
    finally:
        await worker.stop(10.0)
    with pytest.raises(WorkerError, match="not running"):
        worker.command("update", "p001")


def test_the_pattern_repeats_every_64_frames_with_its_counter() -> None:
    track = CounterVideoTrack(96, 64)
    planes = [[bytes(p) for p in track.make_frame(i).planes] for i in (0, 1, 64)]
    assert planes[0] != planes[1]  # it moves
    for index in (0, 1, 63, 64, 65, 1000):
        assert read_counter(track.make_frame(index)) == index  # the counter is drawn on the shared planes


async def test_the_tone_is_a_440_hz_sine() -> None:
    import math

    track = ToneAudioTrack()
    try:
        frames = [await track.recv() for _ in range(3)]
    finally:
        track.stop()
    samples = b"".join(bytes(f.planes[0])[:1920] for f in frames)
    step = 2 * math.pi * 440 / 48000
    for i in (0, 1, 100, 959, 960, 2879):
        want = int(8000 * math.sin(step * i)) & 0xFFFF
        assert int.from_bytes(samples[2 * i : 2 * i + 2], "little") == want
    assert [f.pts for f in frames] == [0, 960, 1920]
