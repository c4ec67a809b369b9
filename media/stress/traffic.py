"""Media figures of a stress run: CPU, upstream bytes and delivered frames
per participant, from two :class:`TrafficSample` taken at the start and the
end of the measured phase (``benchmarks/sfu_vs_mesh.py`` compares them
between a mesh and an SFU call; issue 16).

* *CPU per participant*: CPU time (user + system, every thread) of the
  processes hosting the peers over the wall time between the samples,
  divided by the participants; the signaling server's and Janus's are
  reported apart (the infrastructure, not a participant's device);
* *upstream per participant*: bytes it sent on its RTP transports (DTLS and
  SRTP datagrams: media and RTCP) per second;
* *delivery* of a receiving pair (sender, receiver): video frames the
  receiver decoded from the sender per second, as a fraction of the 30 per
  second a camera makes (:data:`media.tracks.VIDEO_FPS`).  An overloaded
  sender that encodes only a third of its frames delivers a third, however
  well the network carries them; so does one whose test source, drawn on
  its own busy event loop, made only a third (the frames its source made
  are shown apart, ``video_fps_produced``: a real camera would not slow
  down, and an earlier version of this figure, relative to what the source
  made, let overloaded calls pass).

CPU times come from ``/proc/<pid>/stat`` (Linux); elsewhere they are None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tracks import VIDEO_FPS
from .peer import PeerTraffic


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` used so far, None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after "pid (comm)": state is field 3, utime 14 and stime 15 (proc(5))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TrafficSample:
    """Every peer's :class:`PeerTraffic` and the processes' CPU at one moment."""

    #: ledger time
    at: float
    peers: list[PeerTraffic]
    #: role ("peers", "server", "janus") -> CPU seconds of its processes
    cpu: dict[str, float | None] = field(default_factory=dict)


def cpu_of(pids: list[int | None]) -> float | None:
    """Summed CPU seconds of ``pids`` (None if any is unknown)."""
    total = 0.0
    for pid in pids:
        seconds = None if pid is None else cpu_seconds(pid)
        if seconds is None:
            return None
        total += seconds
    return total


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def media_figures(start: TrafficSample, end: TrafficSample) -> dict[str, Any]:
    """The figures of the module docstring for the peers in both samples."""
    before = {p.identity: p for p in start.peers}
    after = {p.identity: p for p in end.peers if p.identity in before}
    wall = end.at - start.at
    participants = len(after)
    cpu: dict[str, float | None] = {}
    for role, seconds in end.cpu.items():
        first = start.cpu.get(role)
        cpu[role] = None if seconds is None or first is None else round(_rate(seconds - first, wall), 4)
    peers_cpu = cpu.get("peers")
    peers = []
    pairs = []
    for identity, last in sorted(after.items()):
        first = before[identity]
        seconds = last.at - first.at
        produced = _rate(last.video_produced - first.video_produced, seconds)
        peers.append({
            "identity": identity,
            "topology": last.topology,
            "upstream_bytes_per_s": round(_rate(last.bytes_sent - first.bytes_sent, seconds)),
            "video_fps_produced": round(produced, 2),
            "frames_encrypted_per_s": round(_rate(last.frames_encrypted - first.frames_encrypted,
                                                  seconds), 2),
            "keyframes_per_s": round(_rate(last.keyframes_encrypted - first.keyframes_encrypted,
                                           seconds), 2),
        })
    for receiver, last in sorted(after.items()):
        first = before[receiver]
        seconds = last.at - first.at
        for sender in sorted(after):
            if sender == receiver:
                continue
            delivered = _rate(last.video_decoded.get(sender, 0) - first.video_decoded.get(sender, 0),
                              seconds)
            pairs.append({"from": sender, "to": receiver, "delivered_fps": round(delivered, 2),
                          "fraction": round(delivered / VIDEO_FPS, 4)})
    fractions = [p["fraction"] for p in pairs]
    upstream = [p["upstream_bytes_per_s"] for p in peers]
    keyframes = [p["keyframes_per_s"] for p in peers]
    return {
        "seconds": round(wall, 2),
        "participants": participants,
        "cpu_per_s": cpu,
        "cpu_per_participant": (None if peers_cpu is None or not participants
                                else round(peers_cpu / participants, 4)),
        "upstream_bytes_per_s_per_participant": (round(sum(upstream) / len(upstream))
                                                 if upstream else None),
        "keyframes_per_s_per_participant": (round(sum(keyframes) / len(keyframes), 2)
                                            if keyframes else None),
        "delivery_min": min(fractions, default=None),
        "delivery_mean": round(sum(fractions) / len(fractions), 4) if fractions else None,
        "pairs_receiving": sum(p["delivered_fps"] > 0 for p in pairs),
        "pairs": pairs,
        "peers": peers,
    }
