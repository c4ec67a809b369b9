"""The common JSON shape of the benchmark scripts' ``--json PATH`` output.

::

    {"benchmark": "sframe_bench",
     "figures": [{"name": "...", "unit": "µs", "figure": 2.3, "baseline": 1.3,
                  "baseline_name": "bare AESGCM", "ratio": 1.77}, ...]}

``ratio`` is figure / baseline.  ``benchmarks/run_all.py`` (``mlscall bench``)
collects these files into one report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def figure(name: str, unit: str, value: float, baseline: float, baseline_name: str) -> dict[str, Any]:
    """One measured figure against its baseline."""
    return {"name": name, "unit": unit, "figure": value, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": value / baseline if baseline else None}


def write_figures(path: Path | str | None, benchmark: str, figures: list[dict[str, Any]]) -> None:
    """Write the figures to ``path`` (nothing when None)."""
    if path is not None:
        Path(path).write_text(json.dumps({"benchmark": benchmark, "figures": figures}, indent=1) + "\n",
                              encoding="utf-8")
