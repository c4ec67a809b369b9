"""CPU cost of SFrame in a real call: the same 3-peer call with and without it.

Three aiortc peers in one process hold a mesh call over 127.0.0.1 (one
RTCPeerConnection per pair, VP8 + Opus both ways): each streams the
synthetic source of the call peers (``MediaSources.synthetic()``: the
moving test pattern with its drawn-in counter, and a tone) to the two
others, which decode it.  The *SFrame* variant gives each peer an
``SFrameSession`` (one MLS epoch of three members) on every sender and
receiver; the *plain* variant is the same code without it.

Each variant runs in its own process, both at the same time so that both
see the same load from the rest of the machine (CPU time of a process is
far from constant on a shared machine).  The figure is the process CPU
time (user + system of every thread: the event loop, aiortc's encoder
executor, the decoder threads and libvpx's own threads) over the same
wall-clock window of ``--duration`` seconds once media flows on every link.
Pairs run ``--repeat`` times, which variant starts first alternating; the
ratio is the median of the pairs' ratios.  One pair's ratio swings by a few
% either way on a shared 2-core machine (the same call in both processes
gave 0.91 to 1.00), so the range of the pairs is printed with it.

The picture is 640x360 by default, a webcam's size in a group call (aiortc's
own test track sends 640x480, which two calls at once cannot both keep up
with on 2 cores).  The call peers' tests and the bot send 96x64 to stay
light: ``--size 96x64`` measures that worst case, where aiortc's per-packet
Python dominates the plain call and SFrame's fixed cost per frame weighs most.

One more pair, not counted in the ratio, times the SFrame transforms: the
thread CPU time (``time.thread_time_ns``, less the clock's own cost) spent
inside each seal and open.  That is the direct cost of encryption, far
steadier than the whole-process comparison; it is kept out of the counted
pairs because the timing itself costs CPU in the SFrame process only.
Target (issue 6): encryption adds at most 3 % CPU.

Run: ``.venv/bin/python benchmarks/call_overhead.py [--quick] [--duration S] [--size WxH]
[--repeat N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_json import figure, write_figures  # noqa: E402
from media.counter import MIN_HEIGHT, MIN_WIDTH  # noqa: E402

PEERS = 3
DEFAULT_SIZE = (640, 360)  # a webcam's picture in a group call (see the module docstring)
VARIANTS = ("plain", "sframe")
TARGET_PERCENT = 3.0
BOUND = 60.0  # seconds for every link to carry media (a bound, not a measurement)


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads included (Linux)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- one variant (child process) ------------------------------------------------


class Exporter:
    """Stand-in MLS exporter: one epoch's secret, shared by the three members."""

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(b"call-overhead|" + label + b"|" + context).digest(length)


class TransformClock:
    """Thread CPU time spent inside the SFrame transforms (sealing in the
    encoder threads, opening on the event loop), in ns per call.
    ``time.thread_time_ns`` counts CPU only (not the time a thread waits for
    the GIL or the processor); the median cost of one reading, measured at
    install, is taken off each span."""

    def __init__(self) -> None:
        self.spans: list[int] = []  # list.append is atomic across threads
        self.clock_cost = 0

    def install(self) -> None:
        from media.transform import SFrameReceiverTransform, SFrameSenderTransform

        spans = self.spans
        clock = time.thread_time_ns
        readings = []
        for _ in range(10_000):
            start = clock()
            readings.append(clock() - start)
        cost = self.clock_cost = int(statistics.median(readings))
        def timed(method: Callable[..., Any]) -> Callable[..., Any]:
            def timed_method(*args: Any) -> Any:
                start = clock()
                try:
                    return method(*args)
                finally:
                    spans.append(clock() - start - cost)
            return timed_method

        SFrameSenderTransform.seal_frame = timed(SFrameSenderTransform.seal_frame)  # type: ignore[method-assign]
        SFrameReceiverTransform.handle = timed(SFrameReceiverTransform.handle)  # type: ignore[method-assign]


async def run_call(variant: str, duration: float, size: tuple[int, int], timed: bool) -> dict[str, Any]:
    """Hold the call; CPU, frames and SFrame counters of the measured window."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    from media.loopback import filter_sdp, loopback_ice
    from media.mesh import MediaSources
    from media.session import PeerProtection, SFrameSession
    from sframe import MLSKeyManager

    clock = TransformClock()
    if timed:
        clock.install()  # before any transform exists (each binds its handle)
    sources = [MediaSources.synthetic(*size) for _ in range(PEERS)]
    sessions: list[SFrameSession | None] = [None] * PEERS
    if variant == "sframe":
        for index in range(PEERS):
            session = SFrameSession(MLSKeyManager())
            session.install_epoch(Exporter(), 1, index, PEERS)
            sessions[index] = session
    decoded = {"audio": 0, "video": 0}
    links: set[tuple[int, int, str]] = set()  # (receiver, sender, kind) that decoded a frame
    consumers: list[asyncio.Task[None]] = []
    pcs: list[RTCPeerConnection] = []
    protections: dict[int, PeerProtection] = {}  # id(pc) -> its SFrame transforms

    async def consume(owner: int, remote: int, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                decoded[track.kind] += 1
                links.add((owner, remote, track.kind))

    def connection(owner: int, remote: int) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", lambda track: consumers.append(
            asyncio.ensure_future(consume(owner, remote, track))))
        session = sessions[owner]
        if session is not None:
            protections[id(pc)] = session.protect_peer_connection(pc)
        pcs.append(pc)
        return pc

    def protect_new(pc: RTCPeerConnection) -> None:
        """SFrame on the transceivers just added (before any frame is sent)."""
        if id(pc) in protections:
            protections[id(pc)].update()

    async def set_local(pc: RTCPeerConnection, description: RTCSessionDescription) -> str:
        with loopback_ice():
            await pc.setLocalDescription(description)
        return filter_sdp(pc.localDescription.sdp)

    for i, j in itertools.combinations(range(PEERS), 2):
        offerer, answerer = connection(i, j), connection(j, i)
        for track in sources[i].subscribe(lambda: True):
            offerer.addTransceiver(track, direction="sendrecv")
        protect_new(offerer)
        offer = await set_local(offerer, await offerer.createOffer())
        await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for track in sources[j].subscribe(lambda: True):
            answerer.addTrack(track)
        protect_new(answerer)
        answer = await set_local(answerer, await answerer.createAnswer())
        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    everyone = PEERS * (PEERS - 1) * 2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while len(links) < everyone:
        if loop.time() > deadline:
            raise RuntimeError(f"only {len(links)} of {everyone} links carry media")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # past the first keyframes and bitrate ramp-up

    def sframe_frames() -> int:
        return sum(p.stats().frames_encrypted + p.stats().frames_decrypted for p in protections.values())

    before = dict(decoded)
    frames_before, spans_before = sframe_frames(), len(clock.spans)
    cpu_before, wall_before = cpu_seconds(), time.monotonic()
    await asyncio.sleep(duration)
    cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - wall_before
    result = {
        "variant": variant,
        "cpu": cpu,
        "in_transforms": sum(clock.spans[spans_before:]) / 1e9,
        "median_span": statistics.median(clock.spans[spans_before:] or [0]) / 1e9,
        "spans": len(clock.spans) - spans_before,
        "clock_cost": clock.clock_cost / 1e9,
        "wall": wall,
        "video_decoded": decoded["video"] - before["video"],
        "audio_decoded": decoded["audio"] - before["audio"],
        "sframe_frames": sframe_frames() - frames_before,
        "failures": sum(sum(p.stats().failures.values()) for p in protections.values()),
    }
    for task in consumers:
        task.cancel()
    for pc in pcs:
        await pc.close()
    for source in sources:
        source.stop()
    for session in sessions:
        if session is not None:
            session.close()
    return result


def child(variant: str, duration: float, size: tuple[int, int], timed: bool) -> None:
    print(json.dumps(asyncio.run(run_call(variant, duration, size, timed))))


# --- the comparison (parent process) --------------------------------------------


def run_pair(duration: float, size: tuple[int, int], *, timed: bool = False,
             order: tuple[str, ...] = VARIANTS) -> dict[str, dict[str, Any]]:
    """Both variants at the same time, each in its own process (started in
    ``order``), so that both see the same load from the rest of the machine;
    ``timed``: the SFrame process times its transforms."""
    children = {
        variant: subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", variant,
             "--duration", str(duration), "--size", f"{size[0]}x{size[1]}",
             *(["--timed"] if timed and variant == "sframe" else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for variant in order
    }
    results = {}
    for variant, process in children.items():
        try:
            out, err = process.communicate(timeout=duration + 2 * BOUND)
        except subprocess.TimeoutExpired:
            process.kill()  # this child only, by its PID
            process.communicate()
            raise SystemExit(f"{variant} call timed out") from None
        if process.returncode != 0:
            raise SystemExit(f"{variant} call failed ({process.returncode}): {err.strip()[-2000:]}")
        results[variant] = json.loads(out.strip().splitlines()[-1])
        if results[variant]["failures"]:
            raise SystemExit(f"{variant} call had {results[variant]['failures']} decrypt failures")
    return results


def picture_size(text: str) -> tuple[int, int]:
    """``WxH`` as a pair of ints (argparse type)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not WxH: {text!r}") from None
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise argparse.ArgumentTypeError(f"at least {MIN_WIDTH}x{MIN_HEIGHT} (the drawn-in counter)")
    return width, height


def decoded_frames(result: dict[str, Any]) -> int:
    return int(result["video_decoded"] + result["audio_decoded"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run of each (a smoke run)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per call (15)")
    parser.add_argument("--repeat", type=int, default=None, help="counted runs of each variant (6)")
    parser.add_argument("--size", type=picture_size, default=DEFAULT_SIZE, metavar="WxH",
                        help="picture size of the synthetic video (default 640x360; the call peers "
                             "send 96x64)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    duration = args.duration if args.duration is not None else (4.0 if args.quick else 15.0)
    if args.child:
        child(args.child, duration, args.size, args.timed)
        return
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 6)

    width, height = args.size
    print(f"3-peer mesh call, VP8 {width}x{height} + Opus over 127.0.0.1, {duration:g} s measured "
          "per run, both variants at once")
    print(f"{'run':<7}{'plain CPU s':>12}{'SFrame CPU s':>14}{'ratio':>8}"
          f"{'video fr':>10}{'audio fr':>10}{'SFrame fr':>11}")

    def row(label: str, pair: dict[str, dict[str, Any]]) -> None:
        plain, sframe = pair["plain"], pair["sframe"]
        print(f"{label:<7}{plain['cpu']:>12.2f}{sframe['cpu']:>14.2f}{sframe['cpu'] / plain['cpu']:>8.3f}"
              f"{sframe['video_decoded']:>10}{sframe['audio_decoded']:>10}{sframe['sframe_frames']:>11}",
              flush=True)
        if decoded_frames(sframe) < 0.98 * decoded_frames(plain):
            print("       note: the SFrame call decoded fewer frames (its CPU figure is low)", flush=True)

    pairs = []
    for run in range(repeat):
        pairs.append(run_pair(duration, args.size, order=VARIANTS if run % 2 == 0 else VARIANTS[::-1]))
        row(str(run + 1), pairs[-1])
    timed = run_pair(duration, args.size, timed=True)
    row("timed", timed)

    plain_cpu = statistics.mean(p["plain"]["cpu"] for p in pairs)
    sframe_cpu = statistics.mean(p["sframe"]["cpu"] for p in pairs)
    ratios = [p["sframe"]["cpu"] / p["plain"]["cpu"] for p in pairs]
    ratio = statistics.median(ratios)
    added = (ratio - 1) * 100
    inside, spans = timed["sframe"]["in_transforms"], timed["sframe"]["spans"]
    inside_percent = inside / timed["plain"]["cpu"] * 100
    print(f"CPU seconds (mean of {repeat}): without SFrame {plain_cpu:.2f}, with SFrame {sframe_cpu:.2f}")
    print(f"ratio (median of the pairs, which range {min(ratios):.3f} to {max(ratios):.3f}) "
          f"{ratio:.3f}: encryption adds {added:+.1f} % CPU "
          f"(target <= {TARGET_PERCENT:g} %)")
    print(f"CPU inside the SFrame transforms (timed run): {inside:.3f} s = {inside_percent:.2f} % of the "
          f"plain call, {inside / spans * 1e6:.1f} us per frame sealed or opened "
          f"(median {timed['sframe']['median_span'] * 1e6:.1f} us; {spans} frames; "
          f"{timed['sframe']['clock_cost'] * 1e6:.2f} us clock cost taken off each)")
    write_figures(args.json, "call_overhead", [
        figure(f"3-peer call CPU, {width}x{height}, {duration:g} s, with SFrame", "s", sframe_cpu, plain_cpu,
               "the same call without SFrame"),
        figure("CPU inside the SFrame transforms, of the plain call CPU", "%", inside_percent, TARGET_PERCENT,
               "target"),
    ])


if __name__ == "__main__":
    main()
