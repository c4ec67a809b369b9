"""Official ``messages.json`` and ``deserialization.json`` vectors, one pytest case per vector case,
and the ``python -m mls.vectors`` runner on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mls.vectors import MLSVectorMismatch, run_file
from mls.vectors import deserialization as deserialization_vectors
from mls.vectors import messages as messages_vectors
from mls.errors import DecodeError

from conftest import REPO_ROOT

MLS_VECTORS = REPO_ROOT.parent / "shared" / "vectors" / "mls"
EXPECTED_COUNTS = {"messages.json": 300, "deserialization.json": 14}


def _load(name: str) -> list[dict[str, object]]:
    path = MLS_VECTORS / name
    return json.loads(path.read_text()) if path.is_file() else []


MESSAGES = _load("messages.json")
DESERIALIZATION = _load("deserialization.json")


def test_vector_files_present(vectors_dir: Path) -> None:
    assert vectors_dir / "mls" == MLS_VECTORS
    for name, count in EXPECTED_COUNTS.items():
        assert len(json.loads((vectors_dir / "mls" / name).read_text())) == count


@pytest.mark.parametrize("index", range(len(MESSAGES)))
def test_messages_case(index: int) -> None:
    messages_vectors.check(MESSAGES[index])  # type: ignore[arg-type]


@pytest.mark.parametrize("index", range(len(DESERIALIZATION)))
def test_deserialization_case(index: int) -> None:
    deserialization_vectors.check(DESERIALIZATION[index])


def test_messages_checker_detects_a_bad_field() -> None:
    case = dict(MESSAGES[0])
    case["remove_proposal"] = str(case["remove_proposal"]) + "00"  # trailing byte
    with pytest.raises(DecodeError):
        messages_vectors.check(case)  # type: ignore[arg-type]
    case = dict(MESSAGES[0])
    case["mls_welcome"], case["mls_group_info"] = case["mls_group_info"], case["mls_welcome"]
    with pytest.raises(MLSVectorMismatch, match="wire_format"):
        messages_vectors.check(case)  # type: ignore[arg-type]


def test_deserialization_checker_detects_a_wrong_length() -> None:
    with pytest.raises(MLSVectorMismatch, match="length"):
        deserialization_vectors.check({"vlbytes_header": "4040", "length": 63})
    with pytest.raises(DecodeError):
        deserialization_vectors.check({"vlbytes_header": "4000", "length": 0})


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED_COUNTS.items()))
def test_run_file_counts(name: str, count: int) -> None:
    result = run_file(MLS_VECTORS / name)
    assert (result.passed, result.failed) == (count, 0), result.failures


def test_cli_on_messages() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mls.vectors", str(MLS_VECTORS / "messages.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "messages.json: 300 passed, 0 failed"
