"""aiortc integration: SFrame per RTCRtpSender/RTCRtpReceiver, call peers, the bot.

Public names are loaded on first use (PEP 562), so importing ``media.cli``
(e.g. for ``mlscall serve``) does not import aiortc.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AlreadyProtected": "errors",
    "MalformedFrame": "errors",
    "MediaError": "errors",
    "UnsupportedAiortc": "errors",
    "UnsupportedCodec": "errors",
    "CallOptions": "call_peer",
    "CallPeer": "call_peer",
    "CallStatus": "call_peer",
    "FrameCodec": "framing",
    "MediaSources": "mesh",
    "RecordingSink": "sinks",
    "VerifyingSink": "sinks",
    "PeerProtection": "session",
    "SFrameSession": "session",
    "FailureKind": "stats",
    "PeerStats": "stats",
    "ReceiverStats": "stats",
    "SenderStats": "stats",
    "SFrameEncoder": "transform",
    "SFrameReceiverTransform": "transform",
    "SFrameSenderTransform": "transform",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'media' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
