"""``mlscall stress`` end to end: a server process, 4 call peers on
127.0.0.1, a membership change every 2 s, racing self-updates, a server
restart (SIGKILL, same database and port) and a committer that crashes
right after submitting a commit; once with every peer in the run's own
process, once spread over two worker processes.  Asserts correctness,
never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUND = 240.0  # seconds the whole run may take (a bound, not a measurement)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=[1, 2], ids=["in-process", "2-workers"])
def run(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    tmp = tmp_path_factory.mktemp("stress")
    scenario = tmp / "scenario.txt"
    scenario.write_text("# the server restarts mid-call; later the committer dies mid-commit\n"
                        "9 restart-server down=1\n"
                        "15 crash who=committer when=commit\n")
    result, plot = tmp / "stress.json", tmp / "stress.png"
    done = subprocess.run(
        [sys.executable, "-m", "media.cli", "stress", "--peers", "4", "--duration", "20",
         "--churn", "0.5", "--update-interval", "4", "--racers", "2", "--scenario", str(scenario),
         "--processes", str(request.param), "--json", str(result), "--plot", str(plot)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(result.read_text())
    assert document["config"]["processes"] == request.param
    return document, plot, done.stdout


def test_no_frame_fails_for_a_key_reason(run: tuple[dict[str, Any], Path, str]) -> None:
    document, _, _ = run
    summary = document["summary"]
    assert summary["failures"]["authentication"] == 0
    assert summary["failures"]["decode"] == 0
    # unknown KIDs only before a receiver's first decrypted frame (a joiner's),
    # none of a frame that came after its epoch was evicted either
    assert summary["failures"]["unknown_kid"] == 0, document["key_failures"]
    assert summary["failures"]["unknown_kid_late"] == 0
    assert summary["key_failures"] == 0
    for peer in document["peers"]:
        assert peer["failures"]["authentication"] == peer["failures"]["unknown_kid"] == 0, peer
        assert peer["failures"]["unknown_kid_late"] == 0, peer
        if peer["how"] != "join-failed":
            assert peer["frames_decrypted"] > 0, peer
    # no member sent a joiner a frame before it was a member, nor under an epoch
    # older than its Welcome's: joiners met no unknown KID
    assert summary["failures"]["unknown_kid_joiner"] == 0
    assert summary["failures"]["unknown_kid_never_keyed"] == 0


def test_every_member_agrees_on_every_epoch(run: tuple[dict[str, Any], Path, str]) -> None:
    document, _, _ = run
    epochs = document["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(len(epochs)))  # no epoch skipped
    for epoch in epochs:
        assert epoch["agree"], epoch
        assert epoch["missing"] == [], epoch
    assert document["summary"]["all_agree"] and document["summary"]["targets"]["all_agree"]
    kinds = {e["kind"] for e in epochs if e["t"] >= 0}
    assert {"add", "remove", "update"} <= kinds
    summary = document["summary"]
    assert summary["joins"] > 4 and summary["leaves"] >= 3 and summary["crashes"] == 1
    assert summary["commits_refused"] >= 1  # racing self-updates: some lost the epoch
    assert summary["settled_in_s"] is not None  # one group, one epoch at the end


def test_the_call_recovers_from_the_server_restart(run: tuple[dict[str, Any], Path, str]) -> None:
    document, _, _ = run
    (restart,) = document["restarts"]
    assert restart["peers"] >= 2
    assert restart["reconnected"] == restart["peers"]
    assert restart["decrypting_after"] == restart["alive_after"] > 0
    assert restart["epochs_after"] >= 2
    assert restart["recovered"]
    after = [e for e in document["epochs"] if e["t"] > restart["back_at"]]
    assert after and max(e["epoch"] for e in after) > restart["epoch_before"]
    assert any(e["kind"] in ("add", "remove", "add+remove") for e in after)  # membership works again


def test_the_committer_crash_is_absorbed(run: tuple[dict[str, Any], Path, str]) -> None:
    document, _, _ = run
    (crashed,) = [p for p in document["peers"] if p["how"] == "crash"]
    events = [e["what"] for e in document["timeline"]["events"]]
    assert f"{crashed['identity']} crashed right after submitting a commit" in events
    removals = [e for e in document["epochs"] if crashed["identity"] in e["removed"]]
    assert len(removals) == 1 and removals[0]["t"] >= crashed["ended_at"]


def test_results_table_json_and_plot_are_written(run: tuple[dict[str, Any], Path, str]) -> None:
    document, plot, stdout = run
    assert stdout.startswith("stress: 4 peers, 20 s, churn 0.5/s")
    assert "rekey latency p50 / p95 / max" in stdout and "targets:" in stdout
    assert set(document) >= {"config", "summary", "epochs", "peers", "restarts", "timeline"}
    assert document["config"]["peers"] == 4
    assert len(document["timeline"]["samples"]) >= 30
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000
