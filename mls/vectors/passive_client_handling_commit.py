"""Checker for ``passive-client-handling-commit.json``: following a group through
Commits of every proposal type, by value and by reference (RFC 9420 §12.4.2)."""

from __future__ import annotations

from mls.vectors.passive_client_welcome import follow


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Join, then apply each epoch's proposals and Commit, comparing epoch authenticators."""
    follow(case)
