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
from mls.wire.enums import ContentType
from mls.wire.framing import PrivateMessage, PublicMessage
from mls.wire.messages import MLSMessage

from .errors import ErrorCode, SignalingError


def check_mls_header(data: bytes, field: str, content_type: ContentType, epoch: int,
                     group_id: bytes | None = None) -> None:
    """Raise ``bad_message`` when ``data`` is an MLSMessage whose header disagrees with the envelope.

    ``field`` names the envelope field carrying ``data`` (for the message);
    ``group_id`` is left unchecked when ``None`` (application envelopes have none).
    """
    try:
        message = MLSMessage.decode(data)
    except (MLSError, ValueError, KeyError, IndexError):
        return  # not MLS: opaque
    body = message.body
    if isinstance(body, PublicMessage):
        if content_type is ContentType.APPLICATION:
            raise SignalingError(ErrorCode.BAD_MESSAGE,
                                 f"{field}: application data travels as a PrivateMessage (RFC 9420 §6)")
        header = (body.content.group_id, body.content.epoch, body.content.content_type)
    elif isinstance(body, PrivateMessage):
        header = (body.group_id, body.epoch, body.content_type)
    else:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: an MLS {message.wire_format.name.lower()} is no framed message")
    header_group, header_epoch, header_type = header
    if header_type != content_type:
        raise SignalingError(ErrorCode.BAD_MESSAGE,
                             f"{field}: the MLS header carries a {header_type.name.lower()}, "
                             f"not a {content_type.name.lower()}")
    if group_id is not None and header_group != group_id:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"{field}: group_id differs from the MLS header's")
    if header_epoch != epoch:
        raise SignalingError(ErrorCode.BAD_MESSAGE, f"{field}: the MLS header is for epoch "
                                                    f"{header_epoch}, the envelope says {epoch}")
