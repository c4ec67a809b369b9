"""Shared fixtures: the official vectors live in ../shared relative to the repo root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """``../shared/vectors`` (never copied into the repo)."""
    path = SHARED / "vectors"
    if not path.is_dir():
        pytest.fail(f"official vectors not found at {path}")
    return path
