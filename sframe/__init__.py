"""SFrame (RFC 9605), sans-I/O."""

from __future__ import annotations

from .context import SFrameContext, UnprotectResult, derive_key_salt
from .errors import (
    AuthenticationFailure,
    CounterExhausted,
    InvalidArgumentType,
    InvalidParameter,
    KeyManagementError,
    KeyPending,
    MalformedHeader,
    ReplayDetected,
    SFrameError,
    UnknownKID,
    UnsupportedCipherSuite,
)
from .header import SFrameHeader, decode_header, encode_header
from .hold import HeldFrame, HoldBuffer
from .mls_keys import MLSExporter, MLSKeyManager, MLSSender, MLSUnprotectResult, mls_kid
from .ratchet import RatchetReceiver, RatchetSender, ratchet_base_key, sender_key_kid
from .replay import ReplayWindow
from .suites import CIPHER_SUITES, AesCtrHmac, SFrameCipherSuite, CipherSuiteParams, suite_params

__all__ = [
    "CIPHER_SUITES",
    "AesCtrHmac",
    "AuthenticationFailure",
    "SFrameCipherSuite",
    "CipherSuiteParams",
    "CounterExhausted",
    "InvalidArgumentType",
    "InvalidParameter",
    "HeldFrame",
    "HoldBuffer",
    "KeyManagementError",
    "KeyPending",
    "MLSExporter",
    "MLSKeyManager",
    "MLSSender",
    "MLSUnprotectResult",
    "MalformedHeader",
    "RatchetReceiver",
    "RatchetSender",
    "ReplayDetected",
    "ReplayWindow",
    "SFrameContext",
    "SFrameError",
    "SFrameHeader",
    "UnknownKID",
    "UnprotectResult",
    "UnsupportedCipherSuite",
    "decode_header",
    "derive_key_salt",
    "encode_header",
    "mls_kid",
    "ratchet_base_key",
    "sender_key_kid",
    "suite_params",
]
