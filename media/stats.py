"""SFrame statistics per sender, per receiver and per peer connection.

Counters are kept by the transforms (:mod:`media.transform`) and read as
immutable snapshots.  Times are wall-clock seconds (``time.time()``) so they
can be shown to a user; ``None`` means "never".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FailureKind(enum.Enum):
    """Why a received frame was dropped instead of decoded.

    ``UNKNOWN_KID`` is no attack: the frame's epoch key is not installed
    (yet), e.g. a joiner or a commit still in flight (RFC 9605 §4.4.4);
    ``AUTHENTICATION`` is a forged, corrupted or wrongly keyed frame;
    ``HELD_EXPIRED`` a frame held for the key of an epoch not installed yet
    (RFC 9605 §4.4.4) that did not come in time, or that the receiver's hold
    bounds pushed out.
    """

    UNKNOWN_KID = "unknown_kid"
    AUTHENTICATION = "authentication"
    REPLAY = "replay"
    MALFORMED = "malformed"
    HELD_EXPIRED = "held_expired"


@dataclass(frozen=True)
class SenderStats:
    """What one protected RTCRtpSender did."""

    kind: str
    codec: str | None
    frames_encrypted: int
    keyframes_encrypted: int
    #: keyframes this transform asked the encoder for after a key switch
    keyframes_forced: int
    #: frames dropped because they could not be framed or encrypted
    frames_dropped: int
    #: frames not sent because the remote lacked the sending epoch's key
    frames_withheld: int
    #: MLS epoch of the last encrypted frame
    epoch: int | None
    #: when this sender first encrypted under a new epoch
    last_rekey: float | None


@dataclass(frozen=True)
class ReceiverStats:
    """What one protected RTCRtpReceiver did."""

    kind: str
    codec: str | None
    frames_decrypted: int
    keyframes_decrypted: int
    failures: dict[FailureKind, int]
    #: keyframe requests (PLI) sent after failures, rate-limited
    keyframe_requests: int
    #: MLS epoch of the last decrypted frame
    epoch: int | None
    #: when this receiver first decrypted a frame of a new epoch
    last_rekey: float | None
    frames_by_epoch: dict[int, int] = field(default_factory=dict)
    keyframes_by_epoch: dict[int, int] = field(default_factory=dict)
    #: frames held for the key of an epoch not installed yet (RFC 9605 §4.4.4)
    frames_held: int = 0
    #: of those, frames opened once their epoch was installed (counted in
    #: ``frames_decrypted`` too); the others expired
    #: (``failures[FailureKind.HELD_EXPIRED]``), failed to open, or are
    #: still held
    frames_held_opened: int = 0
    #: frames held now
    frames_holding: int = 0

    @property
    def failures_total(self) -> int:
        return sum(self.failures.values())


@dataclass(frozen=True)
class PeerStats:
    """Every protected sender and receiver of one RTCPeerConnection."""

    senders: tuple[SenderStats, ...]
    receivers: tuple[ReceiverStats, ...]
    #: MLS epoch this member sends under, and the newest installed
    sending_epoch: int | None
    newest_epoch: int | None
    #: when this member last switched its sending key
    last_rekey: float | None
    #: SFU subscriber connection: streams whose frames carried the KID of another
    #: member than the one first attributed or claimed by the server (media.sfu)
    streams_relabelled: int = 0

    @property
    def frames_encrypted(self) -> int:
        return sum(s.frames_encrypted for s in self.senders)

    @property
    def frames_decrypted(self) -> int:
        return sum(r.frames_decrypted for r in self.receivers)

    @property
    def failures(self) -> dict[FailureKind, int]:
        total = {kind: 0 for kind in FailureKind}
        for receiver in self.receivers:
            for kind, count in receiver.failures.items():
                total[kind] += count
        return total
