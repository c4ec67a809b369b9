"""Message protection: FramedContent to PublicMessage / PrivateMessage and back (RFC 9420 §6).

* Signing (§6.1): ``SignWithLabel(., "FramedContentTBS", FramedContentTBS)``,
  the TBS covering the GroupContext for ``member`` and ``new_member_commit``
  senders.
* PublicMessage (§6.2): plus ``membership_tag = MAC(membership_key,
  AuthenticatedContentTBM)`` for member senders.
* PrivateMessage (§6.3): the content is sealed with the sender's ratchet key
  and nonce (nonce XOR reuse guard) over PrivateContentAAD; SenderData is
  sealed with a key and nonce derived from ``sender_data_secret`` and the
  first ``KDF.Nh`` bytes of that ciphertext.

:class:`MessageProtection` holds one epoch's inputs (encoded GroupContext,
secret tree, sender data and membership keys) so that every message reuses
them. Unprotecting checks everything (AEAD, padding, signature) before it
consumes the ratchet key: a message that fails changes no state.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import constant_time

from mls.crypto import CipherSuite
from mls.errors import MembershipTagError, UnknownSenderError, ValidationError
from mls.secret_tree import RatchetType, SecretTree
from mls.wire import ContentType, SenderType, WireFormat
from mls.wire.codec import encode_varint
from mls.wire.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
)
from mls.wire.group_context import GroupContext

#: ``SignWithLabel`` label of FramedContentTBS (§6.1).
FRAMED_CONTENT_TBS_LABEL = b"FramedContentTBS"

_SENDERS_WITH_CONTEXT = (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
_MLS10 = (1).to_bytes(2, "big")
_TBS_PREFIX = {
    wire_format: _MLS10 + wire_format.to_bytes(2, "big")
    for wire_format in (WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE)
}


def sender_data_key_nonce(suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes) -> tuple[bytes, bytes]:
    """``(sender_data_key, sender_data_nonce)`` from the first ``KDF.Nh`` bytes of ``ciphertext`` (§6.3.2)."""
    sample = ciphertext[: suite.Nh]
    return (
        suite.expand_with_label(sender_data_secret, b"key", sample, suite.Nk),
        suite.expand_with_label(sender_data_secret, b"nonce", sample, suite.Nn),
    )


def _ratchet_type(content_type: ContentType) -> RatchetType:
    return RatchetType.APPLICATION if content_type == ContentType.APPLICATION else RatchetType.HANDSHAKE


def _member_leaf(content: FramedContent) -> int:
    """The sender's leaf index: only members send PrivateMessages (§6.3.2)."""
    sender = content.sender
    if sender.sender_type != SenderType.MEMBER or sender.index is None:
        raise ValidationError("only members send PrivateMessages (§6.3.2)")
    return sender.index


def _reuse_guard(reuse_guard: bytes | None) -> bytes:
    """The 4-byte ``reuse_guard`` of a PrivateMessage: fresh random bytes unless given (§6.3.1)."""
    if reuse_guard is None:
        return os.urandom(4)
    if len(reuse_guard) != 4:
        raise ValidationError("reuse_guard must be 4 bytes")
    return reuse_guard


def _guarded_nonce(nonce: bytes, reuse_guard: bytes) -> bytes:
    """XOR the 4-byte reuse guard into the first 4 bytes of the ratchet nonce (§6.3.1)."""
    head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(4, "big") + nonce[4:]


@dataclass(frozen=True, eq=False)
class MessageProtection:
    """Protect and unprotect messages of one epoch of one group (§6).

    ``padding_block``: a PrivateMessageContent is padded with zero bytes up
    to a multiple of this many bytes (0 or 1: no padding, §6.3.1, §14.1).
    ``secret_tree`` and ``sender_data_secret`` are needed for PrivateMessages,
    ``membership_key`` for PublicMessages of members.
    """

    suite: CipherSuite
    group_context: GroupContext
    secret_tree: SecretTree | None = field(default=None, repr=False)
    sender_data_secret: bytes | None = field(default=None, repr=False)
    membership_key: bytes | None = field(default=None, repr=False)
    padding_block: int = 0
    _context_bytes: bytes = field(init=False, repr=False)
    _aad_prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.padding_block < 0:
            raise ValidationError("padding_block must not be negative")
        context = self.group_context
        object.__setattr__(self, "_context_bytes", context.encode())
        # group_id<V> || uint64 epoch: the start of SenderDataAAD and PrivateContentAAD.
        aad_prefix = encode_varint(len(context.group_id)) + context.group_id + context.epoch.to_bytes(8, "big")
        object.__setattr__(self, "_aad_prefix", aad_prefix)

    # --- signing (§6.1) ------------------------------------------------------------------
    def _tbs(self, wire_format: WireFormat, content: FramedContent) -> bytes:
        """Encode FramedContentTBS, reusing the encoded GroupContext."""
        tbs = _TBS_PREFIX[wire_format] + content.encode()
        if content.sender.sender_type in _SENDERS_WITH_CONTEXT:
            tbs += self._context_bytes
        return tbs

    def _check_epoch(self, group_id: bytes, epoch: int) -> None:
        if group_id != self.group_context.group_id:
            raise ValidationError("message is for another group")
        if epoch != self.group_context.epoch:
            raise ValidationError(f"message is for epoch {epoch}, not {self.group_context.epoch}")

    def sign(self, wire_format: WireFormat, content: FramedContent, signature_private_key: bytes) -> bytes:
        """``SignWithLabel(., "FramedContentTBS", FramedContentTBS)`` of ``content`` in this epoch (§6.1).

        For callers that need the signature before the rest of the
        FramedContentAuthData, as a Commit does: its signature feeds the
        confirmed transcript hash, which its ``confirmation_tag`` covers
        (§8.2). Sign once and pass the finished auth data to
        :meth:`seal_public` / :meth:`seal_private`: re-signing would change
        a randomized (ECDSA) signature.
        """
        return self.suite.sign_with_label(
            signature_private_key, FRAMED_CONTENT_TBS_LABEL, self._tbs(wire_format, content)
        )

    def _check_outgoing(self, wire_format: WireFormat, content: FramedContent, confirmation_tag: bytes | None) -> None:
        """Refuse what this epoch must not send in ``wire_format`` (§6), before any key is used."""
        if wire_format == WireFormat.MLS_PUBLIC_MESSAGE and content.content_type == ContentType.APPLICATION:
            raise ValidationError("application messages must be sent as PrivateMessage")
        self._check_epoch(content.group_id, content.epoch)
        if (confirmation_tag is not None) != (content.content_type == ContentType.COMMIT):
            raise ValidationError("a confirmation_tag is required for a Commit and only for a Commit")

    # --- PublicMessage (§6.2) -------------------------------------------------------------
    def _membership_tag(self, tbs: bytes, auth: FramedContentAuthData) -> bytes:
        if self.membership_key is None:
            raise ValidationError("a membership_key is needed for PublicMessages of members")
        return self.suite.mac(self.membership_key, tbs + auth.encode())

    def protect_public(
        self,
        content: FramedContent,
        signature_private_key: bytes,
        confirmation_tag: bytes | None = None,
    ) -> PublicMessage:
        """Sign ``content`` (and tag it, for a member) into a PublicMessage (§6.2).

        Application data is refused: it MUST be sent as a PrivateMessage (§6).
        """
        wire_format = WireFormat.MLS_PUBLIC_MESSAGE
        self._check_outgoing(wire_format, content, confirmation_tag)
        auth = FramedContentAuthData(self.sign(wire_format, content, signature_private_key), confirmation_tag)
        return self._seal_public(content, auth)

    def seal_public(self, content: FramedContent, auth: FramedContentAuthData) -> PublicMessage:
        """Wrap ``content`` and its ready FramedContentAuthData (see :meth:`sign`) as a PublicMessage (§6.2)."""
        self._check_outgoing(WireFormat.MLS_PUBLIC_MESSAGE, content, auth.confirmation_tag)
        return self._seal_public(content, auth)

    def _seal_public(self, content: FramedContent, auth: FramedContentAuthData) -> PublicMessage:
        tag = None
        if content.sender.sender_type == SenderType.MEMBER:
            tag = self._membership_tag(self._tbs(WireFormat.MLS_PUBLIC_MESSAGE, content), auth)
        return PublicMessage(content, auth, tag)

    def unprotect_public(self, message: PublicMessage, signature_public_key: bytes) -> AuthenticatedContent:
        """Check the membership tag (members) and the signature of a PublicMessage (§6.2).

        ``signature_public_key`` is the sender's key, chosen by the caller from
        ``message.content.sender`` as §6.1 says. Raises ``MembershipTagError``,
        ``SignatureError`` or ``ValidationError``.
        """
        content = message.content
        if content.content_type == ContentType.APPLICATION:
            raise ValidationError("application data in a PublicMessage")
        self._check_epoch(content.group_id, content.epoch)
        tbs = self._tbs(WireFormat.MLS_PUBLIC_MESSAGE, content)
        if content.sender.sender_type == SenderType.MEMBER:
            if message.membership_tag is None or not constant_time.bytes_eq(
                self._membership_tag(tbs, message.auth), message.membership_tag
            ):
                raise MembershipTagError("membership_tag does not verify")
        self.suite.verify_with_label(signature_public_key, FRAMED_CONTENT_TBS_LABEL, tbs, message.auth.signature)
        return AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, content, message.auth)

    # --- PrivateMessage (§6.3) ------------------------------------------------------------
    def _private_keys(self) -> tuple[SecretTree, bytes]:
        if self.secret_tree is None or self.sender_data_secret is None:
            raise ValidationError("a secret tree and sender_data_secret are needed for PrivateMessages")
        return self.secret_tree, self.sender_data_secret

    def protect_private(
        self,
        content: FramedContent,
        signature_private_key: bytes,
        confirmation_tag: bytes | None = None,
        *,
        reuse_guard: bytes | None = None,
    ) -> PrivateMessage:
        """Sign, then encrypt ``content`` from our own leaf into a PrivateMessage (§6.3).

        Consumes the next generation of our handshake or application ratchet.
        ``reuse_guard`` defaults to 4 fresh random bytes.
        """
        wire_format = WireFormat.MLS_PRIVATE_MESSAGE
        tree, sender_data_secret = self._private_keys()
        leaf_index = _member_leaf(content)
        reuse_guard = _reuse_guard(reuse_guard)
        self._check_outgoing(wire_format, content, confirmation_tag)
        auth = FramedContentAuthData(self.sign(wire_format, content, signature_private_key), confirmation_tag)
        return self._seal_private(tree, sender_data_secret, leaf_index, content, auth, reuse_guard)

    def seal_private(
        self, content: FramedContent, auth: FramedContentAuthData, *, reuse_guard: bytes | None = None
    ) -> PrivateMessage:
        """Encrypt ``content`` and its ready FramedContentAuthData (see :meth:`sign`) into a PrivateMessage (§6.3).

        Consumes the next generation of our handshake or application ratchet.
        """
        tree, sender_data_secret = self._private_keys()
        leaf_index = _member_leaf(content)
        reuse_guard = _reuse_guard(reuse_guard)
        self._check_outgoing(WireFormat.MLS_PRIVATE_MESSAGE, content, auth.confirmation_tag)
        return self._seal_private(tree, sender_data_secret, leaf_index, content, auth, reuse_guard)

    def _seal_private(
        self,
        tree: SecretTree,
        sender_data_secret: bytes,
        sender_index: int,
        content: FramedContent,
        auth: FramedContentAuthData,
        reuse_guard: bytes,
    ) -> PrivateMessage:
        """§6.3.1-§6.3.2: seal the content, then the SenderData, with our next ratchet key."""
        content_type = content.content_type
        plaintext = PrivateMessageContent(content.body, auth).encode()
        if self.padding_block > 1:
            plaintext += bytes(-len(plaintext) % self.padding_block)

        suite = self.suite
        ratchet_key = tree.next_key(sender_index, _ratchet_type(content_type))
        aad_head = self._aad_prefix + content_type.to_bytes(1, "big")
        content_aad = aad_head + encode_varint(len(content.authenticated_data)) + content.authenticated_data
        ciphertext = suite.aead_seal(
            ratchet_key.key, _guarded_nonce(ratchet_key.nonce, reuse_guard), content_aad, plaintext
        )
        sender_data = SenderData(sender_index, ratchet_key.generation, reuse_guard).encode()
        key, nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
        encrypted_sender_data = suite.aead_seal(key, nonce, aad_head, sender_data)
        return PrivateMessage(
            content.group_id, content.epoch, content_type, content.authenticated_data, encrypted_sender_data, ciphertext
        )

    def unprotect_private(
        self, message: PrivateMessage, signature_key_of: Callable[[int], bytes | None]
    ) -> AuthenticatedContent:
        """Decrypt and verify a PrivateMessage (§6.3).

        ``signature_key_of(leaf_index)`` returns the signature key of the
        member at that leaf, or None for a blank or absent leaf
        (``UnknownSenderError``). Other failures: ``ValidationError`` (group or
        epoch), ``CryptoError`` (AEAD), ``SecretTreeError`` (generation),
        ``DecodeError`` (malformed content or non-zero padding),
        ``SignatureError``. The ratchet key is consumed only on success.
        """
        tree, sender_data_secret = self._private_keys()
        self._check_epoch(message.group_id, message.epoch)
        suite = self.suite
        content_type = message.content_type
        aad_head = self._aad_prefix + content_type.to_bytes(1, "big")

        key, nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
        sender_data = SenderData.decode(suite.aead_open(key, nonce, aad_head, message.encrypted_sender_data))
        leaf_index = sender_data.leaf_index
        signature_public_key = signature_key_of(leaf_index) if leaf_index < tree.n_leaves else None
        if signature_public_key is None:
            raise UnknownSenderError(f"no member at leaf {leaf_index}")

        pending = tree.prepare_key(leaf_index, _ratchet_type(content_type), sender_data.generation)
        ratchet_key = pending.key
        content_aad = aad_head + encode_varint(len(message.authenticated_data)) + message.authenticated_data
        plaintext = suite.aead_open(
            ratchet_key.key, _guarded_nonce(ratchet_key.nonce, sender_data.reuse_guard), content_aad, message.ciphertext
        )
        private_content = PrivateMessageContent.decode_with(plaintext, content_type)
        content = FramedContent(
            message.group_id, message.epoch, Sender.member(leaf_index), message.authenticated_data, private_content.body
        )
        tbs = self._tbs(WireFormat.MLS_PRIVATE_MESSAGE, content)
        suite.verify_with_label(signature_public_key, FRAMED_CONTENT_TBS_LABEL, tbs, private_content.auth.signature)
        tree.consume(pending)
        return AuthenticatedContent(WireFormat.MLS_PRIVATE_MESSAGE, content, private_content.auth)
