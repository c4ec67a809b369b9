"""Confirmed and interim transcript hashes (RFC 9420 §8.2).

::

    confirmed_transcript_hash_[n] = Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n])
    interim_transcript_hash_[n]   = Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n])

``ConfirmedTranscriptHashInput`` is ``wire_format || content || signature<V>`` of
the AuthenticatedContent carrying the Commit; ``InterimTranscriptHashInput``
is its ``confirmation_tag`` as ``MAC<V>``. Both start as empty strings.
"""

from __future__ import annotations

from mls.crypto import CipherSuite
from mls.errors import ValidationError
from mls.wire import ContentType
from mls.wire.framing import AuthenticatedContent, ConfirmedTranscriptHashInput, InterimTranscriptHashInput


def confirmed_transcript_hash(
    suite: CipherSuite, interim_transcript_hash: bytes, content: AuthenticatedContent
) -> bytes:
    """The confirmed transcript hash after the Commit in ``content`` (§8.2)."""
    if content.content.content_type != ContentType.COMMIT:
        raise ValidationError("transcript hashes are updated only by a Commit")
    hash_input = ConfirmedTranscriptHashInput.from_authenticated_content(content).encode()
    return suite.hash(interim_transcript_hash + hash_input)


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes, confirmation_tag: bytes) -> bytes:
    """The interim transcript hash from a confirmed one and the Commit's ``confirmation_tag`` (§8.2).

    New members use the ``confirmation_tag`` of the GroupInfo (§12.4.3.1).
    """
    return suite.hash(confirmed + InterimTranscriptHashInput(confirmation_tag).encode())


def update_transcript_hashes(
    suite: CipherSuite, interim_before: bytes, content: AuthenticatedContent
) -> tuple[bytes, bytes]:
    """``(confirmed, interim)`` after applying a Commit's AuthenticatedContent (§8.2).

    The AuthenticatedContent must carry its ``confirmation_tag`` (§6.1).
    """
    tag = content.auth.confirmation_tag
    if tag is None:
        raise ValidationError("a Commit's FramedContentAuthData needs a confirmation_tag")
    confirmed = confirmed_transcript_hash(suite, interim_before, content)
    return confirmed, interim_transcript_hash(suite, confirmed, tag)
