"""Checker for ``message-protection.json``: PublicMessage and PrivateMessage (RFC 9420 §6).

For each of the proposal, the commit and the application data, sent by
leaf 1 of a two-member group: the vector's messages must unprotect to the
raw content, and our own protection of the raw content must unprotect too.
"""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.errors import ValidationError
from mls.message_protection import MessageProtection
from mls.secret_tree import SecretTree
from mls.vectors import MLSVectorMismatch, expect
from mls.wire.framing import FramedContent, PrivateMessage, PublicMessage, Sender
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Commit, Proposal

_SENDER = 1


def check(case: dict[str, Any]) -> None:
    """Run the four verifications of FORMAT.md for proposal, commit and application."""
    suite_id = int(case["cipher_suite"])
    suite = cipher_suite(suite_id)
    group_context = GroupContext(
        suite_id,
        bytes.fromhex(case["group_id"]),
        int(case["epoch"]),
        bytes.fromhex(case["tree_hash"]),
        bytes.fromhex(case["confirmed_transcript_hash"]),
    )
    signature_priv = bytes.fromhex(case["signature_priv"])
    signature_pub = bytes.fromhex(case["signature_pub"])

    def protection() -> MessageProtection:
        """A fresh two-member epoch: every message starts from a new secret tree."""
        return MessageProtection(
            suite,
            group_context,
            secret_tree=SecretTree(suite, bytes.fromhex(case["encryption_secret"]), 2),
            sender_data_secret=bytes.fromhex(case["sender_data_secret"]),
            membership_key=bytes.fromhex(case["membership_key"]),
        )

    def signature_key_of(leaf_index: int) -> bytes | None:
        return signature_pub if leaf_index == _SENDER else None

    bodies: dict[str, bytes | Proposal | Commit] = {
        "proposal": Proposal.decode(bytes.fromhex(case["proposal"])),
        "commit": Commit.decode(bytes.fromhex(case["commit"])),
        "application": bytes.fromhex(case["application"]),
    }
    for name, body in bodies.items():
        raw = bytes.fromhex(case[name])
        confirmation_tag = None

        if name != "application":
            public = _decode(case[f"{name}_pub"], PublicMessage)
            received = protection().unprotect_public(public, signature_pub)
            expect(f"{name}_pub content", _body_bytes(received.content.body), raw)
            confirmation_tag = received.auth.confirmation_tag

        private = _decode(case[f"{name}_priv"], PrivateMessage)
        received = protection().unprotect_private(private, signature_key_of)
        expect(f"{name}_priv content", _body_bytes(received.content.body), raw)
        if name == "commit":
            confirmation_tag = received.auth.confirmation_tag

        content = FramedContent(group_context.group_id, group_context.epoch, Sender.member(_SENDER), b"", body)
        if name == "application":
            try:
                protection().protect_public(content, signature_priv)
            except ValidationError:
                pass
            else:
                raise MLSVectorMismatch("application data was protected as a PublicMessage")
        else:
            ours = protection().protect_public(content, signature_priv, confirmation_tag)
            ours = PublicMessage.decode(ours.encode())
            received = protection().unprotect_public(ours, signature_pub)
            expect(f"{name} own PublicMessage content", _body_bytes(received.content.body), raw)

        sender, receiver = protection(), protection()
        ours_private = sender.protect_private(content, signature_priv, confirmation_tag)
        ours_private = PrivateMessage.decode(ours_private.encode())
        received = receiver.unprotect_private(ours_private, signature_key_of)
        expect(f"{name} own PrivateMessage content", _body_bytes(received.content.body), raw)


def _decode(hex_message: str, body_type: type) -> PublicMessage | PrivateMessage:
    message = MLSMessage.decode(bytes.fromhex(hex_message))
    if not isinstance(message.body, body_type):
        raise MLSVectorMismatch(f"expected an MLSMessage carrying a {body_type.__name__}")
    return message.body


def _body_bytes(body: bytes | Proposal | Commit) -> bytes:
    return body if isinstance(body, bytes) else body.encode()
