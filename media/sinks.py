"""Where a call peer's received (decrypted, decoded) media goes.

A sink gets each remote participant's tracks as they arrive
(:meth:`Sink.attach`) and lets go of them when the participant leaves
(:meth:`Sink.detach`):

* :class:`VerifyingSink` counts decoded frames per participant and kind and
  reads the frame counter drawn into test-pattern pictures
  (:mod:`media.counter`) to detect gaps after the first decoded frame (a
  decoder outputs nothing before its first keyframe);
* :class:`RecordingSink` writes each participant's audio and video to a
  file through aiortc's ``MediaRecorder``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from signaling.eventloop import cancel_and_wait

from .counter import COUNTER_MODULUS, read_counter

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Consumer of remote tracks."""

    def attach(self, remote: str, track: MediaStreamTrack) -> None: ...

    async def detach(self, remote: str) -> None: ...

    async def close(self) -> None: ...


@dataclass
class TrackReport:
    """What arrived on one remote track."""

    kind: str
    frames: int = 0
    #: video: frames whose drawn-in counter could not be read
    unreadable: int = 0
    first_counter: int | None = None
    last_counter: int | None = None
    #: video: frames missing between consecutive readable counters
    missing: int = 0
    #: video: the counter went backwards or repeated
    out_of_order: int = 0
    #: video: (previous, next) counters around each gap, the first few
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def count(self, frame: object) -> None:
        self.frames += 1
        if not isinstance(frame, VideoFrame):
            return
        counter = read_counter(frame)
        if counter is None:
            self.unreadable += 1
            return
        if self.last_counter is None:
            self.first_counter = counter
        else:
            step = (counter - self.last_counter) % COUNTER_MODULUS
            if step == 0 or step > COUNTER_MODULUS // 2:
                self.out_of_order += 1
            elif step > 1:
                self.missing += step - 1
                if len(self.gaps) < 8:
                    self.gaps.append((self.last_counter, counter))
        self.last_counter = counter


class VerifyingSink:
    """Counts and checks every frame of every remote track."""

    def __init__(self) -> None:
        #: remote identity -> kind -> report (a participant that rejoins
        #: gets a fresh report; the old one moves to :attr:`history`)
        self.reports: dict[str, dict[str, TrackReport]] = {}
        self.history: list[tuple[str, dict[str, TrackReport]]] = []
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}

    def attach(self, remote: str, track: MediaStreamTrack) -> None:
        report = TrackReport(track.kind)
        self.reports.setdefault(remote, {})[track.kind] = report
        task = asyncio.ensure_future(self._consume(track, report))
        self._tasks.setdefault(remote, []).append(task)

    @staticmethod
    async def _consume(track: MediaStreamTrack, report: TrackReport) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                report.count(await track.recv())

    def frames(self, remote: str, kind: str) -> int:
        report = self.reports.get(remote, {}).get(kind)
        return 0 if report is None else report.frames

    def all_reports(self) -> list[tuple[str, TrackReport]]:
        """(remote, report) of every track, of departed participants too."""
        current = [(remote, reports) for remote, reports in self.reports.items()]
        return [(remote, report) for remote, reports in self.history + current
                for report in reports.values()]

    @property
    def total_frames(self) -> int:
        return sum(report.frames for _, report in self.all_reports())

    async def detach(self, remote: str) -> None:
        await cancel_and_wait(*self._tasks.pop(remote, []))
        if remote in self.reports:
            self.history.append((remote, self.reports.pop(remote)))

    async def close(self) -> None:
        for remote in list(self._tasks):
            await self.detach(remote)


class RecordingSink:
    """Records each remote participant to ``{stem}-{identity}{suffix}``
    next to ``path`` (e.g. ``call.mp4`` -> ``call-bob.mp4``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[Path] = []
        self._recorders: dict[str, MediaRecorder] = {}
        self._starts: dict[str, asyncio.Task[None]] = {}

    def path_for(self, remote: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in remote)
        return self.path.with_name(f"{self.path.stem}-{safe}{self.path.suffix}")

    def attach(self, remote: str, track: MediaStreamTrack) -> None:
        recorder = self._recorders.get(remote)
        if recorder is None:
            path = self.path_for(remote)
            recorder = self._recorders[remote] = MediaRecorder(str(path))
            self.files.append(path)
            # the tracks of one negotiation arrive together: start once all are in
            self._starts[remote] = asyncio.ensure_future(self._start(recorder))
        recorder.addTrack(track)

    @staticmethod
    async def _start(recorder: MediaRecorder) -> None:
        await asyncio.sleep(0)
        await recorder.start()

    async def detach(self, remote: str) -> None:
        recorder = self._recorders.pop(remote, None)
        start = self._starts.pop(remote, None)
        if recorder is None or start is None:
            return
        await start
        await recorder.stop()

    async def close(self) -> None:
        for remote in list(self._recorders):
            await self.detach(remote)
