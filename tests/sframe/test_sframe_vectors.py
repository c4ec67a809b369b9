"""Official RFC 9605 vectors, one pytest case per vector case, and the
``python -m sframe.vectors`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sframe.vectors import check_case, iter_cases, run_file

from conftest import REPO_ROOT

SFRAME_VECTORS = REPO_ROOT.parent / "shared" / "vectors" / "sframe"
FILES = ("test-vectors.json", "test-vectors-head.json", "test-vectors-aes256.json")
EXPECTED_COUNTS = {
    "test-vectors.json": {"header": 289, "aes_ctr_hmac": 3, "sframe": 5},
    "test-vectors-head.json": {"header": 289, "aes_ctr_hmac": 3, "aes_256_ctr_hmac": 3, "sframe": 5},
    "test-vectors-aes256.json": {"sframe_aes_256_ctr_hmac": 3},
}


def _cases() -> list[object]:
    params = []
    for name in FILES:
        path = SFRAME_VECTORS / name
        if not path.is_file():  # reported by test_vector_files_present instead
            continue
        for section, index, _ in iter_cases(path):
            params.append(pytest.param(name, section, index, id=f"{name}:{section}[{index}]"))
    return params


def test_vector_files_present(vectors_dir: Path) -> None:
    assert vectors_dir / "sframe" == SFRAME_VECTORS
    for name, sections in EXPECTED_COUNTS.items():
        data = json.loads((vectors_dir / "sframe" / name).read_text())
        assert {k: len(v) for k, v in data.items()} == sections


@pytest.mark.parametrize(("file_name", "section", "index"), _cases())
def test_vector_case(vectors_dir: Path, file_name: str, section: str, index: int) -> None:
    data = json.loads((vectors_dir / "sframe" / file_name).read_text())
    check_case(section, data[section][index])


def _run_cli(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sframe.vectors", *map(str, files)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_all_files_pass(vectors_dir: Path) -> None:
    paths = [vectors_dir / "sframe" / name for name in FILES]
    proc = _run_cli(*paths)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    expected = [f"{p}: {sum(EXPECTED_COUNTS[p.name].values())} passed, 0 failed" for p in paths]
    assert lines == expected


def test_cli_reports_failures(vectors_dir: Path, tmp_path: Path) -> None:
    data = json.loads((vectors_dir / "sframe" / "test-vectors.json").read_text())
    ct = bytearray.fromhex(data["sframe"][2]["ct"])
    ct[-1] ^= 1
    data["sframe"][2]["ct"] = ct.hex()
    data["header"][0]["encoded"] = "01"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    assert run_file(tampered) == (295, 2)
    proc = _run_cli(tampered)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"{tampered}: 295 passed, 2 failed"]
    assert "sframe[2]" in proc.stderr and "header[0]" in proc.stderr


def test_cli_without_files_is_an_error() -> None:
    proc = _run_cli()
    assert proc.returncode == 2
    assert "usage" in proc.stderr


def test_cli_unreadable_file(tmp_path: Path) -> None:
    proc = _run_cli(tmp_path / "missing.json")
    assert proc.returncode == 1
    assert "cannot read vectors" in proc.stderr
