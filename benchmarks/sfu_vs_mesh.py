"""Mesh vs SFU on this machine: how many participants a call holds (issue 16).

The same call, each point a short stress run (:mod:`media.stress`: a
signaling server, aiortc call peers on loopback spread over worker
processes, MLS and SFrame as in every call; no churn, no self-updates),
once as a full mesh and once through a private Janus (``--sfu``: the
server sends the room through it; Janus forwards SFrame ciphertext it
cannot read).  Per point, over ``--seconds`` that begin ``--ramp`` seconds
after the call formed (every participant a member, decrypting media), so
that the last joiners' streams have started (:mod:`media.stress.traffic`):

* CPU per participant: CPU time of the worker processes hosting the peers
  over the wall time, per participant (the server's and Janus's CPU are
  shown apart: infrastructure, not a participant's device);
* upstream per participant: bytes it sent on its RTP transports per second;
* keyframes per participant: video keyframes its senders encrypted per
  second (each answers a keyframe request: a receiver that lost a packet
  and cannot decode until the next keyframe, or a new subscriber);
* delivery: video frames each receiver decoded from each sender per second,
  as a fraction of the 30 per second a camera makes (a test source drawn on
  an overloaded event loop makes fewer: ``src fps``, the fewest any
  participant's source made, shows it); the minimum over every receiving
  pair, and the mean.

Then, for each topology, the largest call in which every participant still
receives at least ``--bar`` (90 %) of every other participant's frames: the
search goes upward from 4 participants (or the bound, if lower) in steps of ``--step``, bounded by
``--mesh-max`` and ``--sfu-max``, and stops at the first size that misses
the bar (a call that never forms within ``--warmup`` seconds misses it too;
if 4 misses, it goes down to 2); a topology that passes at its bound is
printed as holding "at least" that many, and the ratio qualified.  Targets: the SFU holds at least twice the
mesh's participants (SFU-max / mesh-max >= 2), and upstream per participant
stays flat as the call grows (upstream at the largest table size over the
smallest, 1 for a flat line; a mesh grows with the participants).

The table also shows, per call, how many UDP datagrams the kernel dropped
for a full socket receive buffer meanwhile (``RcvbufErrors``, machine-wide:
other programs' drops count too): a peer whose event loop stalls loses
what overflows its sockets' buffers.

The codec floor, from the same run (:mod:`media.stress.floor`): before the
calls, the CPU per frame of the codec work every participant does, timed
outside the call on the same source (aiortc's VP8 encoder and decoder on
the counting test pattern, its Opus encoder and decoder on the tone, and
the video's receive stack and sink: SRTP, RTP, jitter buffer, SFrame, the
counter read), and for each topology the largest call whose codec work
fits the machine's cores when every participant decodes every other's
media (n(n-1) decodes, plus n encodes through the SFU or n(n-1) for the
mesh), printed next to the measured maxima; the table's ``codec/peer``
column is that work per participant for each call, beside its measured
CPU.  The ratio of those two floors is the most an SFU can gain over the
mesh on this machine before any packet handling or Janus's CPU counts
(both decode n(n-1) streams; only the mesh's extra encoders are saved),
printed with the bound no number of cores exceeds at these costs,
sqrt((encode + decode) / decode) (:func:`media.stress.floor.ratio_limit`);
where the floor's ratio is below the target, the run says so.  (It bounds
the topologies, not a measurement: a mesh that pays more overhead above its
floor than the SFU does would measure a larger ratio.)

Every figure comes from this one run on this machine; a shared machine's
other work weighs on them (the core count is printed).

Run: ``.venv/bin/python benchmarks/sfu_vs_mesh.py [--sizes 4,8,12] [--seconds 12]
[--ramp 3] [--step 2] [--mesh-max 16] [--sfu-max 16] [--bar 0.9] [--topologies mesh,sfu]
[--processes N] [--warmup S] [--json PATH] [--plot PNG]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_json import figure  # noqa: E402
from media.cli.janus import JanusError  # noqa: E402
from media.errors import MediaError, NotInstalled  # noqa: E402
from media.stress.floor import (  # noqa: E402
    AUDIO_FPS,
    VIDEO_FPS,
    CodecCosts,
    codec_cores,
    largest_call,
    measure_codec_costs,
    ratio_limit,
)
from media.stress.report import analyze  # noqa: E402
from media.stress.run import StressConfig, StressRun  # noqa: E402
from signaling import eventloop  # noqa: E402
from signaling.errors import SignalingError  # noqa: E402

TOPOLOGIES = ("mesh", "sfu")
#: the search starts here (the issue's smallest call)
SEARCH_FROM = 4
#: the issue's targets
TARGET_RATIO = 2.0


@dataclass
class Point:
    """One call of one topology and size."""

    topology: str
    participants: int
    wall_s: float
    #: why the call could not be measured (None: it was)
    error: str | None = None
    #: :func:`media.stress.traffic.media_figures` of its measured phase
    media: dict[str, Any] | None = None
    #: UDP datagrams the kernel dropped for a full receive buffer while the
    #: call ran, machine-wide (None where /proc/net/snmp is missing)
    udp_drops: int | None = None

    @property
    def delivery_min(self) -> float:
        if self.media is None or self.media["delivery_min"] is None:
            return 0.0
        return float(self.media["delivery_min"])

    def passes(self, bar: float) -> bool:
        return self.error is None and self.delivery_min >= bar

    def row(self) -> dict[str, Any]:
        return {"topology": self.topology, "participants": self.participants,
                "wall_s": round(self.wall_s, 1), "error": self.error, "udp_drops": self.udp_drops,
                "media": self.media}


class Bench:
    """The runs of one benchmark, each (topology, size) at most once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.points: dict[tuple[str, int], Point] = {}

    def point(self, topology: str, participants: int) -> Point:
        key = (topology, participants)
        if key not in self.points:
            print(f"  {topology} with {participants} participants ...", file=sys.stderr, flush=True)
            self.points[key] = self._measure(topology, participants)
            print(f"    {self._status(self.points[key])}", file=sys.stderr, flush=True)
        return self.points[key]

    def _status(self, point: Point) -> str:
        if point.error is not None:
            return f"not measured: {point.error} ({point.wall_s:.0f} s)"
        return (f"delivery min {point.delivery_min:.3f}, "
                f"{'passes' if point.passes(self.args.bar) else 'misses'} the bar ({point.wall_s:.0f} s)")

    def _measure(self, topology: str, participants: int) -> Point:
        args = self.args
        config = StressConfig(peers=participants, duration=args.ramp + args.seconds,
                              media_after=args.ramp, churn=0.0,
                              update_interval=None, processes=args.processes,
                              room=f"bench-{topology}-{participants}",
                              warmup_timeout=args.warmup, settle_timeout=5.0,
                              sfu=topology == "sfu", sfu_above=0)
        started, drops = time.monotonic(), udp_receive_drops()
        try:
            data = eventloop.run(StressRun(config).run())
        except NotInstalled:
            raise
        except (MediaError, SignalingError, OSError, JanusError) as exc:
            return Point(topology, participants, time.monotonic() - started, str(exc) or type(exc).__name__)
        after = udp_receive_drops()
        wall, media = time.monotonic() - started, analyze(data)["media"]
        udp = None if drops is None or after is None else after - drops
        if media is None or not media["participants"]:
            return Point(topology, participants, wall, "the peers' traffic could not be sampled "
                         "(their workers did not answer in time)", udp_drops=udp)
        return Point(topology, participants, wall, media=media, udp_drops=udp)

    def largest(self, topology: str, bound: int) -> int:
        """The largest call passing the bar (0 if none down to 2)."""
        start = size = min(SEARCH_FROM, bound)
        best = 0
        while size <= bound and self.point(topology, size).passes(self.args.bar):
            best = size
            size += self.args.step
        if best == 0:
            for size in range(start - 1, 1, -1):
                if self.point(topology, size).passes(self.args.bar):
                    return size
        return best


def verdict(ratio: float | None, capped: dict[str, bool]) -> str:
    """The ratio against the target; qualified where one topology passed at
    its search bound (it may hold more)."""
    if ratio is None:
        return "-"
    text = "ok" if ratio >= TARGET_RATIO else "MISSED"
    if capped["mesh"] and not capped["sfu"]:
        text += " (the mesh passed at its bound: the ratio is at most this)"
    elif capped["sfu"] and not capped["mesh"]:
        text += " (the SFU passed at its bound: the ratio is at least this)"
    return text


def udp_receive_drops() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full socket receive
    buffer (``RcvbufErrors`` in /proc/net/snmp), None where unknown."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                 if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def _kbps(bytes_per_s: float | None) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s * 8 / 1000:.0f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(points: list[Point], bar: float, costs: CodecCosts) -> str:
    """One row per call; ``codec/peer``: the cores its codec work takes at
    ``costs`` (with the receive stack and sink), per participant."""
    lines = [f"{'topology':9}{'peers':>6}{'CPU/peer':>10}{'codec':>7}{'server':>8}{'janus':>7}"
             f"{'up kbit/s':>11}{'keyfr/s':>9}{'deliv min':>11}{'mean':>7}{'pairs':>9}"
             f"{'src fps':>8}{'UDP drops':>11}  {'bar':4}",
             f"{'':9}{'':>6}{'(cores)':>10}{'/peer':>7}{'(cores)':>8}{'':>7}{'per peer':>11}{'per peer':>9}"
             f"{'':>27}{'min':>8}{'(machine)':>11}"]
    for p in sorted(points, key=lambda p: (p.topology, p.participants)):
        if p.media is None:
            lines.append(f"{p.topology:9}{p.participants:>6}  not measured: {p.error}")
            continue
        m, cpu = p.media, p.media["cpu_per_s"]
        codec = codec_cores(p.topology, p.participants, costs, receive=True) / p.participants
        lines.append(
            f"{p.topology:9}{p.participants:>6}{_num(m['cpu_per_participant']):>10}{_num(codec):>7}"
            f"{_num(cpu.get('server'), 2):>8}{_num(cpu.get('janus'), 2):>7}"
            f"{_kbps(m['upstream_bytes_per_s_per_participant']):>11}"
            f"{_num(m['keyframes_per_s_per_participant'], 1):>9}{_num(m['delivery_min']):>11}"
            f"{_num(m['delivery_mean']):>7}{str(m['pairs_receiving']) + '/' + str(len(m['pairs'])):>9}"
            f"{_num(min((peer['video_fps_produced'] for peer in m['peers']), default=None), 1):>8}"
            f"{'-' if p.udp_drops is None else p.udp_drops:>11}"
            f"  {'ok' if p.passes(bar) else 'miss'}")
    return "\n".join(lines)


def upstream_growth(bench: Bench, topology: str, sizes: list[int]) -> float | None:
    """Upstream per participant at the largest size over the smallest."""
    first, last = bench.points.get((topology, sizes[0])), bench.points.get((topology, sizes[-1]))
    if first is None or last is None or first.media is None or last.media is None:
        return None
    low = first.media["upstream_bytes_per_s_per_participant"]
    high = last.media["upstream_bytes_per_s_per_participant"]
    return None if not low or high is None else high / low


def plot(points: list[Point], bar: float, path: Path) -> None:
    """CPU, upstream and delivery against participants, one line per topology."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cpu, ax_up, ax_delivery) = plt.subplots(1, 3, figsize=(13, 4))
    fig.suptitle(f"mesh vs SFU on {os.cpu_count()} cores (mlscall, aiortc peers on loopback)")
    for topology in TOPOLOGIES:
        rows = sorted((p for p in points if p.topology == topology and p.media is not None),
                      key=lambda p: p.participants)
        if not rows:
            continue
        xs = [p.participants for p in rows]
        ax_cpu.plot(xs, [p.media["cpu_per_participant"] for p in rows], marker="o", label=topology)
        ax_up.plot(xs, [p.media["upstream_bytes_per_s_per_participant"] * 8 / 1000 for p in rows],
                   marker="o", label=topology)
        ax_delivery.plot(xs, [p.delivery_min for p in rows], marker="o", label=topology)
    ax_cpu.set_ylabel("CPU per participant (cores)")
    ax_up.set_ylabel("upstream per participant (kbit/s)")
    ax_delivery.set_ylabel("video delivered / sent, worst pair")
    ax_delivery.axhline(bar, color="tab:red", linestyle=":", label=f"bar {bar:g}")
    ax_delivery.set_ylim(0, 1.05)
    ax_cpu.set_ylim(bottom=0)
    ax_up.set_ylim(bottom=0)
    for axis in (ax_cpu, ax_up, ax_delivery):
        axis.set_xlabel("participants")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError("sizes must be integers >= 2")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[4, 8, 12],
                        help="participants of the table's calls (default 4,8,12)")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="measured seconds per call (default %(default)s)")
    parser.add_argument("--ramp", type=float, default=3.0,
                        help="seconds between the call forming and the measurement, while the last "
                             "joiners' streams start (default %(default)s)")
    parser.add_argument("--step", type=int, default=2, help="search step (default %(default)s)")
    parser.add_argument("--mesh-max", type=int, default=16, help="search bound, mesh (default %(default)s)")
    parser.add_argument("--sfu-max", type=int, default=16, help="search bound, SFU (default %(default)s)")
    parser.add_argument("--bar", type=float, default=0.9,
                        help="delivered fraction every pair must reach (default %(default)s)")
    parser.add_argument("--topologies", default="mesh,sfu", help="mesh, sfu or both (default %(default)s)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes hosting the peers (default: the CPU count, %(default)s)")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds a call may take to form (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures and points as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot (needs matplotlib)")
    args = parser.parse_args()
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    if not topologies or any(t not in TOPOLOGIES for t in topologies) or args.step < 1:
        parser.error("--topologies takes mesh, sfu or mesh,sfu; --step at least 1")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    bench = Bench(args)
    bounds = {"mesh": args.mesh_max, "sfu": args.sfu_max}
    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"mesh vs SFU: {os.cpu_count()} cores, {args.seconds:g} s per call, "
          f"{args.processes} worker processes", file=sys.stderr, flush=True)
    costs = measure_codec_costs()
    cores = os.cpu_count() or 1
    floor = {t: {"codec": largest_call(t, costs, cores),
                 "with_receive": largest_call(t, costs, cores, receive=True)} for t in topologies}
    try:
        for size in args.sizes:
            for topology in topologies:
                bench.point(topology, size)
        largest = {t: bench.largest(t, bounds[t]) for t in topologies}
    except NotInstalled as exc:
        print(f"sfu_vs_mesh: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    points = list(bench.points.values())

    load_after = os.getloadavg()
    print(f"mesh vs SFU on this machine: {os.cpu_count()} cores, {args.seconds:g} s measured per call, "
          f"whole run {time.monotonic() - started:.0f} s")
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"(other work on the machine weighs on every figure)")
    print(table(points, args.bar, costs))
    print(f"largest call with every pair >= {args.bar:.0%} of frames delivered "
          f"(searched upward in steps of {args.step}):")
    # a topology that passed at its bound may hold more: its figure is a lower bound
    capped = {t: largest[t] >= bounds[t] for t in topologies}
    for topology in topologies:
        at_least = "at least " if capped[topology] else ""
        print(f"  {topology}: {at_least}{largest[topology]} participants "
              f"(searched {min(SEARCH_FROM, bounds[topology])}..{bounds[topology]}"
              f"{', passing at the bound' if capped[topology] else ''})")
    print(f"codec costs, CPU per frame, timed in this run outside the call ({costs.width}x{costs.height} "
          f"VP8 at {VIDEO_FPS} frames/s, Opus at {AUDIO_FPS}/s): VP8 encode {costs.encode_ms:.3f} ms, "
          f"decode {costs.decode_ms:.3f} ms; Opus encode {costs.audio_encode_ms:.3f} ms, "
          f"decode {costs.audio_decode_ms:.3f} ms; video receive stack (SRTP, RTP, jitter buffer, SFrame) "
          f"{costs.receive_ms:.3f} ms, sink {costs.sink_ms:.3f} ms")
    print(f"codec floor: largest call whose codec work fits {cores} cores when every participant decodes "
          f"every other's media (codec only / with receive stack and sink), against the measured maximum:")
    for topology in topologies:
        print(f"  {topology}: codec floor {floor[topology]['codec']} / {floor[topology]['with_receive']} "
              f"participants, measured {largest[topology]}")
    floor_ratio: dict[str, float] = {}
    if set(topologies) == set(TOPOLOGIES):
        for kind in ("codec", "with_receive"):
            if floor["mesh"][kind]:
                floor_ratio[kind] = floor["sfu"][kind] / floor["mesh"][kind]
        limits = (ratio_limit(costs), ratio_limit(costs, receive=True))
        print(f"SFU / mesh the codec work allows (both decode n(n-1) streams; the SFU saves the mesh's "
              f"extra encoders): on {cores} cores "
              + " / ".join(f"{floor_ratio[k]:.2f}" if k in floor_ratio else "-"
                           for k in ("codec", "with_receive"))
              + f"; on any number of cores at most sqrt((encode + decode) / decode) = "
              f"{limits[0]:.2f} / {limits[1]:.2f} (codec only / with receive stack and sink)")
        if "with_receive" in floor_ratio and floor_ratio["with_receive"] < TARGET_RATIO:
            print(f"  the target ({TARGET_RATIO:g}) is above what the codec work lets an SFU gain on this "
                  f"machine: a measured ratio at or above it would come from overhead the mesh pays "
                  f"beyond its codec floor, not from the topology")
    figures = []
    for name, value in (("VP8 encode", costs.encode_ms), ("VP8 decode", costs.decode_ms),
                        ("video receive stack", costs.receive_ms)):
        figures.append(figure(f"{name} per frame, {costs.width}x{costs.height}", "ms", value,
                              1000 / VIDEO_FPS, "frame interval"))
    for topology in topologies:
        if largest[topology] and floor[topology]["with_receive"]:
            figures.append(figure(f"participants held at the bar against the codec floor, {topology}",
                                  "participants", largest[topology], floor[topology]["with_receive"],
                                  "codec floor with receive stack"))
    if "with_receive" in floor_ratio:
        figures.append(figure("SFU / mesh at the codec floor with receive stack", "x",
                              floor_ratio["with_receive"], TARGET_RATIO, "target"))
    if set(topologies) == set(TOPOLOGIES):
        ratio = largest["sfu"] / largest["mesh"] if largest["mesh"] else None
        print(f"SFU-max / mesh-max: {_num(ratio, 2)} (target >= {TARGET_RATIO:g}) {verdict(ratio, capped)}")
        if ratio is not None:
            figures.append(figure("participants held at the bar, SFU / mesh", "x", ratio,
                                  TARGET_RATIO, "target"))
    span = f"{args.sizes[-1]}-peer / {args.sizes[0]}-peer"
    for topology in topologies:
        growth = upstream_growth(bench, topology, args.sizes)
        flat = "" if topology != "sfu" else " (target: flat, 1)"
        print(f"upstream per participant, {span}, {topology}: {_num(growth, 2)}{flat}")
        if growth is not None:
            figures.append(figure(f"upstream per participant {span}, {topology}", "x", growth, 1.0,
                                  "flat"))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "benchmark": "sfu_vs_mesh", "figures": figures, "cores": os.cpu_count(),
            "load_average": {"before": load_before[0], "after": load_after[0]},
            "largest": largest, "passed_at_bound": capped, "codec_costs": asdict(costs), "codec_floor": floor,
            "codec_floor_ratio": floor_ratio,
            "points": [p.row() for p in points]}, indent=1) + "\n", encoding="utf-8")
        print(f"results: {args.json}")
    if args.plot is not None:
        try:
            plot(points, args.bar, args.plot)
        except ImportError:
            print("sfu_vs_mesh: --plot needs matplotlib (pip install 'mlscall[plots]')", file=sys.stderr)
            return 2
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
