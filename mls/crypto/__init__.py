"""Cryptographic primitives of MLS cipher suites 1-7 (RFC 9420 §5, §17.1), on ``cryptography``."""

from __future__ import annotations

from mls.crypto.suite import (
    KEY_PACKAGE_REF_LABEL,
    PROPOSAL_REF_LABEL,
    SUPPORTED_CIPHER_SUITES,
    CipherSuite,
    cipher_suite,
)

__all__ = [
    "KEY_PACKAGE_REF_LABEL",
    "PROPOSAL_REF_LABEL",
    "SUPPORTED_CIPHER_SUITES",
    "CipherSuite",
    "cipher_suite",
]
