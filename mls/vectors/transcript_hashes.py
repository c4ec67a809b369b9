"""Checker for ``transcript-hashes.json``: confirmation tag and transcript updates (RFC 9420 §6.1, §8.2)."""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.key_schedule import verify_confirmation_tag
from mls.transcript import update_transcript_hashes
from mls.vectors import MLSVectorMismatch, expect
from mls.wire import ContentType
from mls.wire.framing import AuthenticatedContent


def check(case: dict[str, Any]) -> None:
    """Check the Commit's confirmation tag, then both updated transcript hashes."""
    suite = cipher_suite(int(case["cipher_suite"]))
    content = AuthenticatedContent.decode(bytes.fromhex(case["authenticated_content"]))
    expect("content_type", content.content.content_type, ContentType.COMMIT)
    confirmed, interim = update_transcript_hashes(
        suite, bytes.fromhex(case["interim_transcript_hash_before"]), content
    )
    expect("confirmed_transcript_hash_after", confirmed, bytes.fromhex(case["confirmed_transcript_hash_after"]))
    expect("interim_transcript_hash_after", interim, bytes.fromhex(case["interim_transcript_hash_after"]))
    tag = content.auth.confirmation_tag
    if tag is None or not verify_confirmation_tag(suite, bytes.fromhex(case["confirmation_key"]), confirmed, tag):
        raise MLSVectorMismatch("confirmation_tag is not MAC(confirmation_key, confirmed_transcript_hash_after)")
