"""Typed errors of the ``media`` package (aiortc integration).

Every failure of the public media API is a :class:`MediaError`.  Messages
never contain key material or frame contents.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base class of every error raised by the ``media`` package."""


class UnsupportedAiortc(MediaError):
    """The installed aiortc is not the version whose codec seams we hook.

    ``media`` wraps private parts of aiortc 1.16 (the sender's encoder slot,
    the encoders' ``_packetize`` and the receiver's decoder queue); any other
    version is refused rather than silently sending clear media.
    """


class UnsupportedCodec(MediaError):
    """No codec-aware SFrame framing is defined for this codec."""


class MalformedFrame(MediaError):
    """An encoded frame does not have the structure its codec requires
    (e.g. a VP8 frame shorter than its clear header, or an H.264 frame that
    is not an Annex B byte stream of NAL units written by this framing)."""


class AlreadyProtected(MediaError):
    """SFrame is already attached to this RTCRtpSender or RTCRtpReceiver."""


class NotInstalled(MediaError):
    """A command needs something this installation lacks; ``hint`` is one
    line saying how to get it (``mlscall`` prints it instead of a traceback)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class BenchmarksNotFound(NotInstalled):
    """``mlscall bench`` runs the scripts under ``benchmarks/``, which only a
    checkout of the repository has (they are not installed with the package)."""


class PlottingNotInstalled(NotInstalled):
    """``--plot`` draws with matplotlib, the optional ``plots`` extra."""
