"""``mlscall bench`` (and benchmarks/run_all.py) in quick mode: every
benchmark runs, and one JSON file and one Markdown table come out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from media.cli.bench import BENCHMARKS, markdown

from conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUND = 300.0  # seconds (a bound, not a measurement)


def test_quick_run_of_every_benchmark_writes_json_and_markdown(tmp_path: Path) -> None:
    result, table = tmp_path / "bench.json", tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--timeout", "120",
         "--json", str(result), "--markdown", str(table)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    failed = ([f"{b['name']}: {b['error']}" for b in json.loads(result.read_text())["benchmarks"] if b.get("error")]
              if result.exists() else [])
    assert done.returncode == 0, (failed, done.stderr[-2000:])  # (which benchmark failed, and why)
    report = json.loads(result.read_text())
    assert report["quick"] is True
    names = [b["name"] for b in report["benchmarks"]]
    assert names == [b.name for b in BENCHMARKS]
    scripts = {p.stem for p in (REPO_ROOT / "benchmarks").glob("*.py")} - {"run_all", "bench_json", "baseline_ds"}  # runner and shared modules
    assert set(names) == scripts  # every benchmark script runs
    for bench in report["benchmarks"]:
        assert bench["ok"] and bench["error"] is None, bench
        assert bench["figures"], bench["name"]
        assert bench["output"].strip()  # the script's own printed table is kept
        for figure in bench["figures"]:
            assert figure["figure"] > 0 and figure["baseline"] > 0, figure
            assert abs(figure["ratio"] - figure["figure"] / figure["baseline"]) < 1e-9
            assert figure["unit"] and figure["name"] and figure["baseline_name"]

    text = table.read_text()
    assert text == markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| benchmark | measure | figure | baseline | ratio |"
    assert len(rows) - 1 == sum(len(b["figures"]) for b in report["benchmarks"])
    assert all(row.count("|") == 6 for row in rows)
    assert text in done.stdout


def test_a_failing_benchmark_is_reported_not_hidden(tmp_path: Path) -> None:
    result, table = tmp_path / "bench.json", tmp_path / "bench.md"
    # a timeout far too short for the script to start: reported, exit status 1
    done = subprocess.run(
        [sys.executable, "-m", "media.cli", "bench", "--only", "mls_group_bench", "--timeout", "0.01",
         "--json", str(result), "--markdown", str(table)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert done.returncode == 1
    (bench,) = json.loads(result.read_text())["benchmarks"]
    assert bench == {**bench, "name": "mls_group_bench", "ok": False, "figures": [],
                     "error": "timed out after 0.01 s"}
    assert "| mls_group_bench | **failed**: timed out after 0.01 s | | | |" in table.read_text()
