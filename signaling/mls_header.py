"""The envelope against the MLS header: group_id, epoch and content type of a framed message.

The delivery service orders commits by the ``group_id`` and ``epoch`` of the
request envelope. Commits and proposals must be PublicMessages (RFC 9420
§6.2), application data a PrivateMessage (§6.3); both carry the same facts in
their clear header, and the server refuses an envelope that disagrees:
otherwise a commit replayed in a later epoch's envelope would move the room to
an epoch its members never reach. This is the cheap first check, before the
room's PublicGroup validates a handshake (:mod:`signaling.public_state`).
"""

from __future__ import annotations

from mls.errors import MLSError
from mls.inspection import ContentType, WireFormat, inspect_message

from .errors import ErrorCode, SignalingError


def check_mls_header(data: bytes, field: str, content_type: ContentType, epoch: int,
                     group_id: bytes | None = None) -> bytes:
    """The group id of ``data``, a framed MLSMessage of the right wire format agreeing with the envelope.

    ``field`` names the envelope field carrying ``data`` (for the message);
    ``group_id`` is left unchecked when ``None`` (application envelopes have
    none). A handshake that is no PublicMessage gets ``invalid_handshake``,
    any other disagreement ``bad_message``.
    """
    handshake = content_type is not ContentType.APPLICATION
    try:
        header = inspect_message(data)
    except MLSError:
        raise SignalingError(ErrorCode.INVALID_HANDSHAKE if handshake else ErrorCode.BAD_MESSAGE,
                             f"{field}: not an MLSMessage") from None
    if not header.is_framed:
        raise SignalingError(ErrorCode.INVALID_HANDSHAKE if handshake else ErrorCode.BAD_MESSAGE,
                             f"{field}: an MLS {header.wire_format.name.lower()} is no framed message")
    if header.wire_format is WireFormat.MLS_PUBLIC_MESSAGE and not handshake:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: application data travels as a PrivateMessage (RFC 9420 §6)")
    if header.wire_format is WireFormat.MLS_PRIVATE_MESSAGE and handshake:
        raise SignalingError(ErrorCode.INVALID_HANDSHAKE,
                             f"{field}: handshakes travel as PublicMessage (RFC 9420 §6.2) for the "
                             "delivery service to validate them")
    assert header.content_type is not None and header.epoch is not None
    if header.content_type != content_type:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: the MLS header carries a {header.content_type.name.lower()}, "
                             f"not a {content_type.name.lower()}")
    if group_id is not None and header.group_id != group_id:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"{field}: group_id differs from the MLS header's")
    if header.epoch != epoch:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"{field}: the MLS header is for epoch "
                                                    f"{header.epoch}, the envelope says {epoch}")
    assert header.group_id is not None
    return header.group_id
