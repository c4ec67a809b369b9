"""The tools through an SFU (issue 16): ``mlscall demo --sfu`` and ``mlscall
stress --sfu`` run a call through a private Janus (media.cli.janus) and say
so, and ``benchmarks/sfu_vs_mesh.py`` prints its table for both topologies;
the media figures' arithmetic (media.stress.traffic) on made-up samples.
The calls assert what went through Janus, never timings or rates."""

from __future__ import annotations

import importlib.util

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

import media.cli.janus
from media.cli import main
from media.stress.floor import CodecCosts, codec_cores, largest_call, measure_codec_costs, ratio_limit
from media.stress.peer import PeerTraffic
from media.stress.traffic import TrafficSample, media_figures

#: seconds a command may take (a bound, not a measurement)
BOUND = 240.0


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_decrypts_frames_through_the_sfu() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "media.cli", "demo", "--sfu", "--port", "0", "--duration", "10"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = re.findall(r"summary for (\S+):\n  frames sent:\s+(\d+)\n  frames received:\s+(\d+)\n"
                           r"  frames decrypted:\s+(\d+)\n  frames decoded:\s+(\d+)\n"
                           r"  failures:\s+(\d+) \(unknown_kid (\d+), authentication (\d+)",
                           result.stdout)
    assert [name for name, *_ in summaries] == ["alice-bot", "bob-bot"]
    for _name, sent, _received, decrypted, decoded, _failures, _unknown, authentication in summaries:
        assert int(sent) > 50 and int(decrypted) > 50 and int(decoded) > 50
        assert int(authentication) == 0
    assert re.search(r"through the SFU \(a private Janus at http://127\.0\.0\.1:\d+/janus", result.stdout)
    through = re.findall(r"  (\S+): topology (\w+), (\d+) frames decrypted through the SFU", result.stdout)
    assert [(name, topology) for name, topology, _ in through] == [("alice-bot", "sfu"), ("bob-bot", "sfu")]
    for _name, _topology, frames in through:
        assert int(frames) > 50


def test_demo_sfu_without_janus_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(media.cli.janus, "JANUS_BINARY", tmp_path / "no-janus")
    status = main(["demo", "--sfu", "--port", "0", "--duration", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{tmp_path / 'no-janus'} is missing" in err
    assert "hint: apt-get install janus" in err
    assert "Traceback" not in err


def test_demo_sfu_refuses_running_servers(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--sfu", "--server", "http://127.0.0.1:9", "--duration", "1"])
    assert status == 2
    assert "--sfu starts its own server and Janus" in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.slow
def test_stress_through_the_sfu_every_pair_receives(tmp_path: Path) -> None:
    result_path = tmp_path / "stress.json"
    result = subprocess.run(
        [sys.executable, "-m", "media.cli", "stress", "--sfu", "--peers", "4", "--duration", "8",
         "--churn", "0", "--update-interval", "0", "--json", str(result_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result_path.read_text())
    assert document["config"]["sfu"] is True
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/janus", document["config"]["janus"])
    media = document["media"]
    assert media["participants"] == 4
    assert [peer["topology"] for peer in media["peers"]] == ["sfu"] * 4
    pairs = {(pair["from"], pair["to"]): pair for pair in media["pairs"]}
    names = [peer["identity"] for peer in media["peers"]]
    assert set(pairs) == {(a, b) for a in names for b in names if a != b}
    for pair in pairs.values():
        assert pair["delivered_fps"] > 0, pair
    assert media["pairs_receiving"] == 12
    assert media["cpu_per_s"]["janus"] is not None
    assert all(peer["upstream_bytes_per_s"] > 0 for peer in media["peers"])
    assert document["summary"]["failures"]["authentication"] == 0
    assert "pairs receiving video" in result.stdout and "12 / 12" in result.stdout
    assert "through Janus above 0 participants" in result.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_benchmark_smoke_prints_the_table(tmp_path: Path) -> None:
    result_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/sfu_vs_mesh.py", "--sizes", "3", "--seconds", "3",
         "--mesh-max", "3", "--sfu-max", "3", "--json", str(result_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"{os.cpu_count()} cores" in out
    assert re.search(r"^topology\s+peers\s+CPU/peer", out, re.MULTILINE)
    for topology in ("mesh", "sfu"):
        assert re.search(rf"^{topology}\s+3\s+[\d.]+\s", out, re.MULTILINE), out
        # 3 is the bound and passes: the search cannot tell whether more would
        assert re.search(rf"^  {topology}: at least 3 participants \(searched 3\.\.3, passing at the bound\)$",
                         out, re.MULTILINE), out
    assert re.search(r"^SFU-max / mesh-max: ", out, re.MULTILINE)
    assert re.search(r"^upstream per participant, 3-peer / 3-peer, sfu: ", out, re.MULTILINE)
    costs = re.search(r"^codec costs, CPU per frame, timed in this run outside the call \(96x64 VP8 at 30 "
                      r"frames/s, Opus at 50/s\): VP8 encode ([\d.]+) ms, decode ([\d.]+) ms; "
                      r"Opus encode ([\d.]+) ms, decode ([\d.]+) ms; video receive stack "
                      r"\(SRTP, RTP, jitter buffer, SFrame\) ([\d.]+) ms, sink ([\d.]+) ms$",
                      out, re.MULTILINE)
    assert costs is not None, out
    assert float(costs[1]) > 0 and float(costs[2]) > 0 and float(costs[3]) > 0
    assert re.search(rf"^codec floor: largest call whose codec work fits {os.cpu_count()} cores ", out,
                     re.MULTILINE), out
    floors = dict(re.findall(r"^  (mesh|sfu): codec floor (\d+ / \d+) participants, measured 3$", out,
                             re.MULTILINE))
    assert set(floors) == {"mesh", "sfu"}, out
    document = json.loads(result_path.read_text())
    assert {floors[t] for t in floors} == {f"{f['codec']} / {f['with_receive']}"
                                           for f in document["codec_floor"].values()}
    assert document["codec_costs"]["width"] == 96 and document["codec_costs"]["decode_ms"] > 0
    ratios = re.search(r"^SFU / mesh the codec work allows .*: on \d+ cores ([\d.]+) / ([\d.]+); on any number "
                       r"of cores at most sqrt\(\(encode \+ decode\) / decode\) = ([\d.]+) / ([\d.]+) ", out,
                       re.MULTILINE)
    assert ratios is not None, out
    floor = document["codec_floor"]
    assert float(ratios[2]) == pytest.approx(floor["sfu"]["with_receive"] / floor["mesh"]["with_receive"], abs=0.005)
    assert document["codec_floor_ratio"]["with_receive"] == pytest.approx(float(ratios[2]), abs=0.005)
    assert float(ratios[4]) < float(ratios[3])  # the receive stack is decode work: less to gain
    beyond = "is above what the codec work lets an SFU gain on this machine" in out
    assert beyond == (document["codec_floor_ratio"]["with_receive"] < 2), out
    held = {f["name"]: f for f in document["figures"]
            if f["name"].startswith("participants held at the bar against the codec floor, ")}
    assert len(held) == 2
    assert {f["baseline"] for f in held.values()} == {document["codec_floor"][t]["with_receive"]
                                                      for t in ("mesh", "sfu")}
    assert all(f["figure"] == 3 for f in held.values())
    assert document["benchmark"] == "sfu_vs_mesh" and document["cores"] == os.cpu_count()
    assert document["passed_at_bound"] == {"mesh": True, "sfu": True}
    points = {(p["topology"], p["participants"]): p for p in document["points"]}
    assert set(points) == {("mesh", 3), ("sfu", 3)}
    for point in points.values():
        assert point["error"] is None, point
        assert point["media"]["pairs_receiving"] == 6


def test_media_figures_from_two_samples() -> None:
    def traffic(identity: str, at: float, produced: int, decoded: dict[str, int], sent: int) -> PeerTraffic:
        return PeerTraffic(identity, at, produced, decoded, sent, 0, "sfu")

    start = TrafficSample(10.0, [traffic("a", 10.0, 100, {"b": 50}, 1000),
                                 traffic("b", 10.0, 200, {"a": 90}, 5000),
                                 traffic("gone", 10.0, 0, {}, 0)],
                          {"peers": 4.0, "server": 1.0, "janus": None})
    end = TrafficSample(20.0, [traffic("a", 20.0, 400, {"b": 320}, 11000),
                               traffic("b", 20.0, 500, {"a": 390}, 45000)],
                          {"peers": 9.0, "server": 1.5, "janus": 2.0})
    figures = media_figures(start, end)
    assert figures["participants"] == 2 and figures["seconds"] == 10.0
    # 5 CPU seconds of the peers' processes over 10 s, 2 participants
    assert figures["cpu_per_s"] == {"peers": 0.5, "server": 0.05, "janus": None}
    assert figures["cpu_per_participant"] == 0.25
    assert [p["upstream_bytes_per_s"] for p in figures["peers"]] == [1000, 4000]
    assert figures["upstream_bytes_per_s_per_participant"] == 2500
    pairs = {(p["from"], p["to"]): p for p in figures["pairs"]}
    # b's source made 30 frames/s, a decoded 27/s of them; a made 30/s, b decoded 30/s
    assert pairs[("b", "a")]["delivered_fps"] == 27.0 and pairs[("b", "a")]["fraction"] == 0.9
    assert pairs[("a", "b")]["fraction"] == 1.0
    assert figures["delivery_min"] == 0.9 and figures["delivery_mean"] == 0.95
    assert figures["pairs_receiving"] == 2


def test_codec_costs_of_the_call_source() -> None:
    costs = measure_codec_costs(frames=20)
    assert (costs.width, costs.height, costs.frames) == (96, 64, 20)
    for value in (costs.encode_ms, costs.decode_ms, costs.audio_encode_ms, costs.audio_decode_ms,
                  costs.receive_ms, costs.sink_ms):
        assert value > 0
    assert costs.frame_bytes > 0
    with pytest.raises(ValueError, match="at least 2 frames"):
        measure_codec_costs(frames=1)


def test_codec_floor_arithmetic() -> None:
    # 1 ms per video decode and 0.5 ms per audio decode: a received participant costs
    # 30 * 1 + 50 * 0.5 = 55 ms per second; an encoder pair 30 * 2 + 50 * 1 = 110 ms per second
    costs = CodecCosts(width=96, height=64, frames=10, encode_ms=2.0, decode_ms=1.0, audio_encode_ms=1.0,
                       audio_decode_ms=0.5, receive_ms=0.25, sink_ms=0.75, frame_bytes=100.0)
    assert codec_cores("sfu", 4, costs) == pytest.approx(12 * 0.055 + 4 * 0.110)
    assert codec_cores("mesh", 4, costs) == pytest.approx(12 * (0.055 + 0.110))
    # the receive stack and sink add 30 * (0.25 + 0.75) ms per received participant
    assert codec_cores("sfu", 4, costs, receive=True) == pytest.approx(12 * 0.085 + 4 * 0.110)
    # mesh: n(n-1) * 0.165 <= 2 holds for n = 4 (1.98), not 5 (3.3)
    assert largest_call("mesh", costs, 2.0) == 4
    # sfu: n(n-1) * 0.055 + n * 0.110 <= 2 holds for n = 5 (1.65), not 6 (2.31)
    assert largest_call("sfu", costs, 2.0) == 5
    # with the receive stack: 5 costs 20 * 0.085 + 0.55 = 2.25
    assert largest_call("sfu", costs, 2.0, receive=True) == 4
    assert largest_call("mesh", costs, 0.1) == 0
    with pytest.raises(ValueError, match="unknown topology"):
        codec_cores("star", 4, costs)
    # as calls grow the SFU gains at most sqrt((0.110 + 0.055) / 0.055) = sqrt(3) over the mesh
    assert ratio_limit(costs) == pytest.approx(3 ** 0.5)
    assert ratio_limit(costs, receive=True) == pytest.approx(((0.110 + 0.085) / 0.085) ** 0.5)
    # and the finite sizes approach it from below: 100 cores hold a mesh of 25, an SFU of 42
    assert largest_call("mesh", costs, 100.0) == 25 and largest_call("sfu", costs, 100.0) == 42
    assert 42 / 25 < ratio_limit(costs)


def test_the_ratio_verdict_says_which_way_a_bound_leans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("sfu_vs_mesh", REPO_ROOT / "benchmarks" / "sfu_vs_mesh.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sfu_vs_mesh", bench)  # (its dataclasses look themselves up)
    spec.loader.exec_module(bench)
    neither, both = {"mesh": False, "sfu": False}, {"mesh": True, "sfu": True}
    assert bench.verdict(2.0, neither) == "ok" and bench.verdict(1.5, both) == "MISSED"
    assert bench.verdict(None, neither) == "-"
    assert bench.verdict(1.0, {"mesh": True, "sfu": False}) == (
        "MISSED (the mesh passed at its bound: the ratio is at most this)")
    assert bench.verdict(1.5, {"mesh": False, "sfu": True}) == (
        "MISSED (the SFU passed at its bound: the ratio is at least this)")


def test_delivery_counts_against_a_real_time_source() -> None:
    # c's test source, drawn on an overloaded event loop, made 15 frames/s and d decoded all 15:
    # half of what a camera makes, whatever the source managed
    start = TrafficSample(0.0, [PeerTraffic("c", 0.0, 0, {"d": 0}, 0, 0, "mesh"),
                                PeerTraffic("d", 0.0, 0, {"c": 0}, 0, 0, "mesh")], {})
    end = TrafficSample(10.0, [PeerTraffic("c", 10.0, 150, {"d": 300}, 0, 0, "mesh"),
                               PeerTraffic("d", 10.0, 300, {"c": 150}, 0, 0, "mesh")], {})
    figures = media_figures(start, end)
    pairs = {(p["from"], p["to"]): p["fraction"] for p in figures["pairs"]}
    assert pairs == {("c", "d"): 0.5, ("d", "c"): 1.0}
    assert [p["video_fps_produced"] for p in figures["peers"]] == [15.0, 30.0]
    assert figures["delivery_min"] == 0.5
