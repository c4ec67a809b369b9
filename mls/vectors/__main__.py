"""``python -m mls.vectors FILE...``: run official MLS vector files, case by case."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mls.vectors import run_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mls.vectors", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="vector JSON files")
    parser.add_argument("-v", "--verbose", action="store_true", help="list failing cases")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        result = run_file(path)
        print(result.summary(), flush=True)
        if args.verbose:
            for line in result.failures:
                print("   ", line)
        failed += result.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
