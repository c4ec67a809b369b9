"""``mlscall bench``: run every benchmark under ``benchmarks/`` and collect
their figures into one JSON file and one Markdown table.

::

    mlscall bench [--quick] [--json bench.json] [--markdown bench.md] [--timeout S]

Each script runs as its own process (``python benchmarks/NAME.py ...
--json FILE``), one after the other so they do not disturb each other,
within ``--timeout`` seconds; its printed output is kept in the report.
``--quick`` passes each script its few-iterations arguments (a smoke run:
the figures are then noisy).  A script that fails or times out is reported
as such; the others still run.  ``benchmarks/run_all.py`` is the same
command.  The figures' common shape is ``benchmarks/bench_json.py``'s.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchmarksNotFound

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@dataclass(frozen=True)
class Benchmark:
    """One script and its arguments."""

    name: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("sframe_bench", quick_args=("--quick",)),
    Benchmark("media_bench", quick_args=("--quick",)),
    Benchmark("call_overhead", quick_args=("--quick",)),
    Benchmark("mls_bench", quick_args=("--quick",)),
    Benchmark("mls_group_bench", quick_args=("2",)),
    Benchmark("signaling_bench",
              quick_args=("--clients", "3", "--messages", "100", "--rounds", "10", "--time-limit", "60")),
    Benchmark("ds_load", quick_args=("--quick",)),
    Benchmark("sfu_vs_mesh", quick_args=("--sizes", "3", "--seconds", "3", "--mesh-max", "3", "--sfu-max", "3")),
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mlscall bench`` to ``parser``."""
    parser.add_argument("--quick", action="store_true",
                        help="few iterations per benchmark (a smoke run; noisy figures)")
    parser.add_argument("--json", type=Path, default=Path("bench.json"),
                        help="combined results (default %(default)s)")
    parser.add_argument("--markdown", type=Path, default=Path("bench.md"),
                        help="Markdown table (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds each benchmark may take (default %(default)s)")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        choices=[b.name for b in BENCHMARKS], help="run only this benchmark (repeatable)")


def run_benchmark(benchmark: Benchmark, *, quick: bool, timeout: float, workdir: Path) -> dict[str, Any]:
    """Run one script; its figures, output and outcome."""
    out = workdir / f"{benchmark.name}.json"
    command = [sys.executable, str(BENCHMARKS_DIR / f"{benchmark.name}.py"),
               *(benchmark.quick_args if quick else benchmark.args), "--json", str(out)]
    started = time.monotonic()
    result: dict[str, Any] = {"name": benchmark.name, "ok": False, "figures": [], "error": None}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=BENCHMARKS_DIR.parent, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child (its PID) on timeout
        result["error"] = f"timed out after {timeout:g} s"
    else:
        result["output"] = done.stdout
        if done.returncode != 0:
            result["error"] = f"exit status {done.returncode}: {done.stderr.strip()[-500:]}"
        else:
            try:
                figures = json.loads(out.read_text(encoding="utf-8"))["figures"]
            except (OSError, ValueError, KeyError) as exc:
                result["error"] = f"no figures written ({type(exc).__name__})"
            else:
                result["figures"], result["ok"] = figures, True
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per figure."""
    lines = [
        f"# Benchmarks{' (quick run)' if report['quick'] else ''}",
        "",
        f"{report['generated']}, Python {report['python']}, {report['machine']}",
        "",
        "| benchmark | measure | figure | baseline | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for bench in report["benchmarks"]:
        if not bench["ok"]:
            lines.append(f"| {bench['name']} | **failed**: {bench['error']} | | | |")
            continue
        for f in bench["figures"]:
            lines.append(f"| {bench['name']} | {f['name']} | {_number(f['figure'])} {f['unit']} | "
                         f"{_number(f['baseline'])} {f['unit']} ({f['baseline_name']}) | "
                         f"{_number(f['ratio'])} |")
    return "\n".join(lines) + "\n"


def run_all(*, quick: bool, timeout: float, only: list[str] | None = None) -> dict[str, Any]:
    """Every benchmark (or those named in ``only``), one after the other."""
    chosen = [b for b in BENCHMARKS if only is None or b.name in only]
    with tempfile.TemporaryDirectory(prefix="mlscall-bench-") as tmp:
        results = []
        for benchmark in chosen:
            print(f"running {benchmark.name} ...", file=sys.stderr, flush=True)
            results.append(run_benchmark(benchmark, quick=quick, timeout=timeout, workdir=Path(tmp)))
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "quick": quick,
        "benchmarks": results,
    }


def run(args: argparse.Namespace) -> int:
    if not BENCHMARKS_DIR.is_dir():
        raise BenchmarksNotFound(f"no benchmarks at {BENCHMARKS_DIR}: they are not installed with the package",
                                 "run mlscall bench from a checkout of the repository (its benchmarks/ folder)")
    if args.timeout <= 0:
        print("mlscall bench: --timeout must be positive", file=sys.stderr)
        return 2
    report = run_all(quick=args.quick, timeout=args.timeout, only=args.only)
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    table = markdown(report)
    args.markdown.write_text(table, encoding="utf-8")
    print(table, end="")
    print(f"results: {args.json}, {args.markdown}")
    return 0 if all(b["ok"] for b in report["benchmarks"]) else 1
