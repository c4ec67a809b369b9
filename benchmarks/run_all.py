"""Run every benchmark and write one JSON file and a Markdown table.

The same as ``mlscall bench`` (media/cli/bench.py, which documents the options).
Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--json bench.json] [--markdown bench.md]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from media.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
