"""Runner for the official MLS interop test vectors (mlswg/mls-implementations).

Each vector file ``<name>.json`` is checked by the module
``mls.vectors.<name with - replaced by _>``, which exposes
``check(case: dict) -> None``: it returns when the case passes and raises
(``MLSVectorMismatch`` or any other exception) when it fails.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path


class MLSVectorMismatch(AssertionError):
    """A computed value differs from the one in the vector."""


def expect(name: str, got: object, want: object) -> None:
    """Raise ``MLSVectorMismatch`` naming the field when ``got != want``."""
    if got != want:
        raise MLSVectorMismatch(f"{name}: got {_short(got)}, want {_short(want)}")


def _short(value: object) -> str:
    text = value.hex() if isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class FileResult:
    """Outcome of one vector file: counts and the first failures."""

    path: Path
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.path.name}: {self.passed} passed, {self.failed} failed"


def checker_for(path: Path):  # type: ignore[no-untyped-def]
    """Return the ``check`` function for a vector file, by its name."""
    module = importlib.import_module(f"mls.vectors.{path.stem.replace('-', '_')}")
    return module.check


def run_file(path: Path) -> FileResult:
    """Run every case of one vector file, counting passes and failures."""
    result = FileResult(path)
    check = checker_for(path)
    cases = json.loads(path.read_text())
    for index, case in enumerate(cases):
        try:
            check(case)
        except Exception as exc:  # a failing case is counted, never fatal
            result.failed += 1
            if len(result.failures) < 20:
                result.failures.append(f"case {index}: {type(exc).__name__}: {exc}")
        else:
            result.passed += 1
    return result
