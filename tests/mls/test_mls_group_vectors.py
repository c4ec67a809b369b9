"""Official MLS vectors for the group engine: welcome, passive-client-welcome,
passive-client-handling-commit (RFC 9420 §12.4.2, §12.4.3.1), case by case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mls.vectors import checker_for, run_file

VECTOR_FILES = {
    "welcome.json": 7,
    "passive-client-welcome.json": 56,
    "passive-client-handling-commit.json": 91,
}



@pytest.mark.parametrize("name", sorted(VECTOR_FILES))
def test_vector_file_counts(vectors_dir: Path, name: str) -> None:
    """Every case of the file passes; the count is the published one."""
    result = run_file(vectors_dir / "mls" / name)
    assert result.failures == []
    assert (result.passed, result.failed) == (VECTOR_FILES[name], 0)


@pytest.mark.parametrize(
    "name,index",
    [(name, index) for name, count in sorted(VECTOR_FILES.items()) for index in range(count)],
)
def test_vector_case(vectors_dir: Path, name: str, index: int) -> None:
    """Each case on its own (cipher suite in the id via the case's own field)."""
    cases = json.loads((vectors_dir / "mls" / name).read_text())
    checker_for(vectors_dir / "mls" / name)(cases[index])


def test_tampered_epoch_authenticator_fails(vectors_dir: Path) -> None:
    """The passive-client checker really compares: a wrong authenticator is a mismatch."""
    cases = json.loads((vectors_dir / "mls" / "passive-client-handling-commit.json").read_text())
    case = dict(cases[0])
    case["epochs"] = [dict(epoch) for epoch in case["epochs"]]
    case["epochs"][-1]["epoch_authenticator"] = "00" * len(bytes.fromhex(case["epochs"][-1]["epoch_authenticator"]))
    with pytest.raises(AssertionError):
        checker_for(vectors_dir / "mls" / "passive-client-handling-commit.json")(case)
