"""Runs the browser-side JavaScript tests (``node --test web/test/``) under pytest.

The JS suite checks web/sframe against the RFC 9605 vectors, against the
Python ``sframe`` and ``media.framing`` packages (it spawns this venv's
Python), and the SFrameTransform worker logic.  Node's summary lines are
printed so the counts show up in the pytest output (``-s`` or ``-rA``).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

WEB = REPO_ROOT / "web"
TIMEOUT_SECONDS = 300
SUMMARY = re.compile(r"^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) (\S+)$", re.M)


def test_node_suite_passes() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the web/ tests need Node >= 20")
    proc = subprocess.run(
        [node, "--test", "test/"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    summary = dict(SUMMARY.findall(proc.stdout))
    for key, value in summary.items():
        print(f"node --test web/test/: {key} {value}")
    failing = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("not ok")]
    assert proc.returncode == 0, "\n".join(failing[:20]) + proc.stderr[-2000:]
    assert summary.get("fail") == "0", summary
    assert summary.get("cancelled") == "0", summary
    assert summary.get("skipped") == "0", summary
    assert int(summary.get("pass", "0")) > 600, summary
