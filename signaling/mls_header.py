"""The envelope against the MLS header: group_id, epoch and content type of a framed message.

The delivery service orders commits by the ``group_id`` and ``epoch`` of the
request envelope. A PublicMessage (RFC 9420 §6.2) or PrivateMessage (§6.3)
carries the same facts in its clear header, so when the bytes decode as one
the server refuses an envelope that disagrees: otherwise a commit replayed in
a later epoch's envelope would move the room to an epoch its members never
reach. Bytes that are not an MLSMessage stay opaque (the server verifies no
signature and holds no key, so this is a consistency check, not authentication).
"""

from __future__ import annotations

from mls.errors import MLSError
from mls.inspection import ContentType, WireFormat, inspect_message

from .errors import ErrorCode, SignalingError


def check_mls_header(data: bytes, field: str, content_type: ContentType, epoch: int,
                     group_id: bytes | None = None) -> None:
    """Raise ``bad_message`` when ``data`` is an MLSMessage whose header disagrees with the envelope.

    ``field`` names the envelope field carrying ``data`` (for the message);
    ``group_id`` is left unchecked when ``None`` (application envelopes have none).
    """
    try:
        header = inspect_message(data)
    except MLSError:
        return  # not MLS: opaque
    if not header.is_framed:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: an MLS {header.wire_format.name.lower()} is no framed message")
    if header.wire_format is WireFormat.MLS_PUBLIC_MESSAGE and content_type is ContentType.APPLICATION:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: application data travels as a PrivateMessage (RFC 9420 §6)")
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
