"""MLS core: key schedule, PSKs, transcript hashes, secret tree, message protection.

RFC 9420 §6, §8, §9. The official vectors run case by case (counted); the
rest tests behaviour the vectors do not reach: out-of-order and replay
policy of the secret tree, and typed errors with no state change for
tampered or forged messages.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from mls.crypto import CipherSuite, cipher_suite
from mls.errors import (
    CryptoError,
    DecodeError,
    MembershipTagError,
    SecretTreeError,
    SignatureError,
    UnknownSenderError,
    ValidationError,
)
from mls.key_schedule import (
    EpochSecrets,
    epoch_secret,
    external_init_receiver,
    external_init_sender,
    joiner_secret,
    welcome_secret,
)
from mls.message_protection import MessageProtection, sender_data_key_nonce
from mls.psk import psk_secret
from mls.secret_tree import RatchetType, SecretTree
from mls.transcript import update_transcript_hashes
from mls.vectors import key_schedule as key_schedule_vectors
from mls.vectors import message_protection as message_protection_vectors
from mls.vectors import psk_secret as psk_secret_vectors
from mls.vectors import run_file
from mls.vectors import secret_tree as secret_tree_vectors
from mls.vectors import transcript_hashes as transcript_hashes_vectors
from mls.wire import ContentType, PSKType, ResumptionPSKUsage, WireFormat
from mls.wire.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
)
from mls.wire.group_context import GroupContext
from mls.wire.proposals import Commit, Proposal, Remove
from mls.wire.psk import PreSharedKeyID

ALL_SUITES = list(range(1, 8))
# Case counts of the official files: a vector file that shrinks must fail, not pass quietly.
CASES = {
    "key-schedule.json": (7, key_schedule_vectors.check),
    "psk_secret.json": (77, psk_secret_vectors.check),
    "secret-tree.json": (21, secret_tree_vectors.check),
    "transcript-hashes.json": (7, transcript_hashes_vectors.check),
    "message-protection.json": (7, message_protection_vectors.check),
}
VECTOR_CASES = [(name, index) for name, (count, _) in CASES.items() for index in range(count)]


@lru_cache(maxsize=None)
def _load(path: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(Path(path).read_text())
    return cases


# --- official vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_vector_file_case_counts_and_suites(vectors_dir: Path, name: str) -> None:
    cases = _load(str(vectors_dir / "mls" / name))
    assert len(cases) == CASES[name][0]
    assert sorted({int(case["cipher_suite"]) for case in cases}) == ALL_SUITES


@pytest.mark.parametrize(("name", "index"), VECTOR_CASES, ids=[f"{n}-{i}" for n, i in VECTOR_CASES])
def test_vector_case(vectors_dir: Path, name: str, index: int) -> None:
    CASES[name][1](_load(str(vectors_dir / "mls" / name))[index])


def test_runner_counts_every_case(vectors_dir: Path) -> None:
    for name, (count, _) in CASES.items():
        result = run_file(vectors_dir / "mls" / name)
        assert (result.passed, result.failed) == (count, 0), result.failures


# --- key schedule (§8) ------------------------------------------------------------------------


def _context(suite_id: int = 1, epoch: int = 7, group_id: bytes = b"group") -> GroupContext:
    return GroupContext(suite_id, group_id, epoch, b"\x01" * 32, b"\x02" * 32)


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_joiner_path_matches_member_path(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    context = _context(suite_id).encode()
    psk = b"\x05" * suite.Nh
    member = EpochSecrets.from_init_secret(suite, b"\x03" * suite.Nh, b"\x04" * suite.Nh, psk, context)
    joiner = joiner_secret(suite, b"\x03" * suite.Nh, b"\x04" * suite.Nh, context)
    new_member = EpochSecrets.from_joiner_secret(suite, joiner, psk, context)
    assert new_member == member
    assert welcome_secret(suite, joiner, psk) == member.welcome_secret
    assert suite.derive_secret(epoch_secret(suite, joiner, psk, context), b"init") == member.init_secret
    key, nonce = member.welcome_key_nonce()
    assert (len(key), len(nonce)) == (suite.Nk, suite.Nn)
    # No PSK is the all-zero psk_secret (§8.4).
    assert EpochSecrets.from_joiner_secret(suite, joiner, None, context) == EpochSecrets.from_joiner_secret(
        suite, joiner, bytes(suite.Nh), context
    )


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_external_init_round_trip(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    secrets = EpochSecrets.from_init_secret(suite, bytes(suite.Nh), bytes(suite.Nh), None, _context(suite_id).encode())
    external_priv, external_pub = secrets.external_key_pair()
    kem_output, init_secret = external_init_sender(suite, external_pub)
    assert len(init_secret) == suite.Nh
    assert external_init_receiver(suite, external_priv, kem_output) == init_secret
    other_priv, _ = suite.generate_key_pair()
    assert external_init_receiver(suite, other_priv, kem_output) != init_secret


def test_exporter_depends_on_label_context_length() -> None:
    suite = cipher_suite(1)
    secrets = EpochSecrets.from_init_secret(suite, bytes(32), bytes(32), None, _context().encode())
    base = secrets.export(b"SFrame 1.0 Base Key", b"", 16)
    assert len(base) == 16
    assert secrets.export(b"SFrame 1.0 Base Key", b"", 16) == base
    assert secrets.export(b"other", b"", 16) != base
    assert secrets.export(b"SFrame 1.0 Base Key", b"x", 16) != base
    assert len(secrets.export(b"SFrame 1.0 Base Key", b"", 48)) == 48


def test_confirmation_tag_helpers() -> None:
    suite = cipher_suite(1)
    secrets = EpochSecrets.from_init_secret(suite, bytes(32), bytes(32), None, _context().encode())
    tag = secrets.confirmation_tag(b"\x09" * 32)
    assert secrets.verify_confirmation_tag(b"\x09" * 32, tag)
    assert not secrets.verify_confirmation_tag(b"\x08" * 32, tag)


def test_secrets_stay_out_of_reprs() -> None:
    suite = cipher_suite(1)
    secrets = EpochSecrets.from_init_secret(suite, bytes(32), bytes(32), None, _context().encode())
    text = repr(secrets)
    for value in (secrets.encryption_secret, secrets.exporter_secret, secrets.init_secret, secrets.joiner_secret):
        assert value.hex() not in text
    tree = SecretTree(suite, secrets.encryption_secret, 2)
    key = tree.next_key(0, RatchetType.APPLICATION)
    assert key.key.hex() not in repr(key) and key.nonce.hex() not in repr(key)
    protection = MessageProtection(
        suite, _context(), secret_tree=tree, sender_data_secret=secrets.sender_data_secret,
        membership_key=secrets.membership_key,
    )
    assert secrets.sender_data_secret.hex() not in repr(protection)
    assert secrets.membership_key.hex() not in repr(protection)


# --- PSKs (§8.4) ------------------------------------------------------------------------------


def test_psk_secret_depends_on_order_and_type() -> None:
    suite = cipher_suite(1)
    first = (PreSharedKeyID.external(b"a", b"\x01" * 32), b"\x11" * 32)
    second = (
        PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, b"group", 3, b"\x02" * 32),
        b"\x22" * 32,
    )
    assert second[0].psktype == PSKType.RESUMPTION
    assert psk_secret(suite, []) == bytes(32)
    forward, backward = psk_secret(suite, [first, second]), psk_secret(suite, [second, first])
    assert forward != backward
    assert psk_secret(suite, [first]) != forward


# --- transcript hashes (§8.2) -------------------------------------------------------------------


def test_transcript_update_refuses_non_commit_content() -> None:
    suite = cipher_suite(1)
    content = FramedContent(b"g", 0, Sender.member(0), b"", b"application data")
    authenticated = AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, content, FramedContentAuthData(b"sig"))
    with pytest.raises(ValidationError):
        update_transcript_hashes(suite, b"", authenticated)


# --- secret tree (§9) ---------------------------------------------------------------------------


def _tree(n_leaves: int = 4, **limits: int) -> SecretTree:
    return SecretTree(cipher_suite(1), b"\x42" * 32, n_leaves, **limits)


def test_sender_and_receiver_trees_agree() -> None:
    sender, receiver = _tree(), _tree()
    for _ in range(3):
        sent = sender.next_key(2, RatchetType.APPLICATION)
        assert receiver.get_key(2, RatchetType.APPLICATION, sent.generation) == sent
    handshake = sender.next_key(2, RatchetType.HANDSHAKE)
    assert handshake.generation == 0
    assert handshake.key != receiver.get_key(2, RatchetType.APPLICATION, 3).key


def test_out_of_order_within_window() -> None:
    sender, receiver = _tree(), _tree()
    keys = [sender.next_key(1, RatchetType.APPLICATION) for _ in range(12)]
    assert receiver.get_key(1, RatchetType.APPLICATION, 11) == keys[11]
    order = list(range(1, 11))
    random.Random(7).shuffle(order)
    for generation in order:  # the 10 generations below the newest are kept
        assert receiver.get_key(1, RatchetType.APPLICATION, generation) == keys[generation]
    with pytest.raises(SecretTreeError):  # 11 below the newest: too old
        receiver.get_key(1, RatchetType.APPLICATION, 0)


def test_too_old_after_moving_on() -> None:
    receiver = _tree()
    receiver.get_key(0, RatchetType.HANDSHAKE, 3)
    receiver.get_key(0, RatchetType.HANDSHAKE, 20)
    with pytest.raises(SecretTreeError):
        receiver.get_key(0, RatchetType.HANDSHAKE, 5)  # 15 below the newest
    receiver.get_key(0, RatchetType.HANDSHAKE, 10)  # exactly 10 below: still kept


def test_forward_limit() -> None:
    receiver = _tree()
    with pytest.raises(SecretTreeError):
        receiver.get_key(0, RatchetType.APPLICATION, 1001)
    assert receiver.ratchet(0, RatchetType.APPLICATION).generation == 0
    receiver.get_key(0, RatchetType.APPLICATION, 1000)
    with pytest.raises(SecretTreeError):
        receiver.get_key(0, RatchetType.APPLICATION, 2002)
    receiver.get_key(0, RatchetType.APPLICATION, 2001)


def test_each_generation_only_once() -> None:
    receiver = _tree()
    receiver.get_key(3, RatchetType.APPLICATION, 4)
    with pytest.raises(SecretTreeError):
        receiver.get_key(3, RatchetType.APPLICATION, 4)
    receiver.get_key(3, RatchetType.APPLICATION, 2)  # skipped, still available once
    with pytest.raises(SecretTreeError):
        receiver.get_key(3, RatchetType.APPLICATION, 2)


def test_configurable_limits() -> None:
    receiver = _tree(max_past=2, max_forward=5)
    with pytest.raises(SecretTreeError):
        receiver.get_key(0, RatchetType.APPLICATION, 6)
    receiver.get_key(0, RatchetType.APPLICATION, 5)
    receiver.get_key(0, RatchetType.APPLICATION, 3)
    with pytest.raises(SecretTreeError):
        receiver.get_key(0, RatchetType.APPLICATION, 2)


def test_prepare_changes_nothing_until_consumed() -> None:
    receiver = _tree()
    pending = receiver.prepare_key(1, RatchetType.APPLICATION, 5)
    ratchet = receiver.ratchet(1, RatchetType.APPLICATION)
    assert ratchet.generation == 0
    assert receiver.get_key(1, RatchetType.APPLICATION, 5) == pending.key
    with pytest.raises(SecretTreeError):  # the ratchet moved: the pending step is stale
        receiver.consume(pending)


def test_bad_leaf_and_generation() -> None:
    tree = _tree(4)
    with pytest.raises(SecretTreeError):
        tree.get_key(4, RatchetType.APPLICATION, 0)
    with pytest.raises(SecretTreeError):
        tree.get_key(0, RatchetType.APPLICATION, -1)
    with pytest.raises(SecretTreeError):
        tree.get_key(0, RatchetType.APPLICATION, 1 << 32)


def test_state_round_trip_keeps_every_key() -> None:
    sender, receiver = _tree(), _tree()
    keys = [sender.next_key(1, RatchetType.APPLICATION) for _ in range(6)]
    receiver.get_key(1, RatchetType.APPLICATION, 5)  # skips 0-4: retained
    restored = SecretTree.from_state(cipher_suite(1), receiver.to_state())
    assert restored.to_state() == receiver.to_state()
    for generation in (4, 0, 2):
        assert restored.get_key(1, RatchetType.APPLICATION, generation) == keys[generation]
    with pytest.raises(SecretTreeError):  # consumed before the save
        restored.get_key(1, RatchetType.APPLICATION, 5)
    assert restored.get_key(3, RatchetType.APPLICATION, 0) == sender.next_key(3, RatchetType.APPLICATION)


def test_from_state_rejects_inconsistent_data() -> None:
    from dataclasses import replace

    state = _tree(4).to_state()
    secret = bytes(32)
    with pytest.raises(SecretTreeError):
        SecretTree.from_state(cipher_suite(1), replace(state, nodes=((99, secret),)))
    leaf_ratchet = _tree(4).ratchet(0, RatchetType.APPLICATION).to_state()
    with pytest.raises(SecretTreeError):
        SecretTree.from_state(cipher_suite(1), replace(state, ratchets=((7, leaf_ratchet, leaf_ratchet),)))


def test_parent_secrets_deleted_once_expanded() -> None:
    tree = _tree(4)
    tree.get_key(0, RatchetType.APPLICATION, 0)
    # Nodes 3 (root) and 1 were expanded and deleted, leaf 0 became ratchets:
    # only the unexpanded siblings 2 (leaf 1) and 5 (parent of leaves 2, 3) remain.
    assert sorted(tree._nodes) == [2, 5]
    tree.get_key(3, RatchetType.APPLICATION, 0)
    assert sorted(tree._nodes) == [2, 4]


# --- message protection (§6) --------------------------------------------------------------------


class _Epoch:
    """Two members' views of one suite-1 epoch; leaf 1 sends."""

    def __init__(self, suite_id: int = 1, padding_block: int = 0) -> None:
        self.suite: CipherSuite = cipher_suite(suite_id)
        suite = self.suite
        self.context = _context(suite_id)
        self.secrets = EpochSecrets.from_init_secret(
            suite, b"\x01" * suite.Nh, b"\x02" * suite.Nh, None, self.context.encode()
        )
        self.signature_priv, self.signature_pub = suite.generate_signature_key_pair()
        self.padding_block = padding_block
        self.sender, self.receiver = self.view(), self.view()

    def view(self) -> MessageProtection:
        return MessageProtection(
            self.suite,
            self.context,
            secret_tree=SecretTree(self.suite, self.secrets.encryption_secret, 2),
            sender_data_secret=self.secrets.sender_data_secret,
            membership_key=self.secrets.membership_key,
            padding_block=self.padding_block,
        )

    def content(self, body: bytes = b"hello", authenticated_data: bytes = b"") -> FramedContent:
        return FramedContent(self.context.group_id, self.context.epoch, Sender.member(1), authenticated_data, body)

    def key_of(self, leaf_index: int) -> bytes | None:
        return self.signature_pub if leaf_index == 1 else None

    def application_generation(self) -> int:
        return self.receiver.secret_tree.ratchet(1, RatchetType.APPLICATION).generation  # type: ignore[union-attr]


def _replace(message: PrivateMessage, **changes: Any) -> PrivateMessage:
    fields = {name: getattr(message, name) for name in PrivateMessage.__dataclass_fields__}
    fields.update(changes)
    return PrivateMessage(**fields)


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_private_round_trip_every_suite(suite_id: int) -> None:
    epoch = _Epoch(suite_id)
    for index in range(3):
        message = epoch.sender.protect_private(epoch.content(b"m%d" % index, b"ad"), epoch.signature_priv)
        received = epoch.receiver.unprotect_private(PrivateMessage.decode(message.encode()), epoch.key_of)
        assert received.content.body == b"m%d" % index
        assert received.content.authenticated_data == b"ad"
        assert received.content.sender == Sender.member(1)
        assert received.wire_format == WireFormat.MLS_PRIVATE_MESSAGE


def test_padding_block() -> None:
    epoch = _Epoch(padding_block=64)
    message = epoch.sender.protect_private(epoch.content(b"x" * 10), epoch.signature_priv)
    assert (len(message.ciphertext) - 16) % 64 == 0  # AEAD tag is 16 bytes
    assert epoch.receiver.unprotect_private(message, epoch.key_of).content.body == b"x" * 10


@pytest.mark.parametrize(
    ("field", "error"),
    [("ciphertext", CryptoError), ("encrypted_sender_data", CryptoError), ("authenticated_data", CryptoError)],
)
def test_tampered_private_message_changes_nothing(field: str, error: type[Exception]) -> None:
    epoch = _Epoch()
    message = epoch.sender.protect_private(epoch.content(authenticated_data=b"ad"), epoch.signature_priv)
    value = getattr(message, field)
    with pytest.raises(error):
        epoch.receiver.unprotect_private(_replace(message, **{field: _flip(value, len(value) - 1)}), epoch.key_of)
    assert epoch.application_generation() == 0
    assert epoch.receiver.unprotect_private(message, epoch.key_of).content.body == b"hello"


def test_private_message_replay_fails() -> None:
    epoch = _Epoch()
    message = epoch.sender.protect_private(epoch.content(), epoch.signature_priv)
    epoch.receiver.unprotect_private(message, epoch.key_of)
    with pytest.raises(SecretTreeError):
        epoch.receiver.unprotect_private(message, epoch.key_of)


def test_unknown_sender_changes_nothing() -> None:
    epoch = _Epoch()
    message = epoch.sender.protect_private(epoch.content(), epoch.signature_priv)
    with pytest.raises(UnknownSenderError):
        epoch.receiver.unprotect_private(message, lambda leaf_index: None)
    assert epoch.receiver.unprotect_private(message, epoch.key_of).content.body == b"hello"


def test_forged_signature_changes_nothing() -> None:
    epoch = _Epoch()
    forger_priv, _ = epoch.suite.generate_signature_key_pair()
    forged = epoch.view().protect_private(epoch.content(b"forged"), forger_priv)
    with pytest.raises(SignatureError):
        epoch.receiver.unprotect_private(forged, epoch.key_of)
    assert epoch.application_generation() == 0
    genuine = epoch.sender.protect_private(epoch.content(b"genuine"), epoch.signature_priv)
    assert epoch.receiver.unprotect_private(genuine, epoch.key_of).content.body == b"genuine"


def _seal_raw(epoch: _Epoch, plaintext: bytes, content_type: ContentType = ContentType.APPLICATION) -> PrivateMessage:
    """Encrypt an arbitrary PrivateMessageContent plaintext as leaf 1 would (§6.3)."""
    suite, context = epoch.suite, epoch.context
    ratchet_key = SecretTree(suite, epoch.secrets.encryption_secret, 2).next_key(1, RatchetType.APPLICATION)
    aad = PrivateContentAAD(context.group_id, context.epoch, content_type, b"").encode()
    ciphertext = suite.aead_seal(ratchet_key.key, ratchet_key.nonce, aad, plaintext)
    key, nonce = sender_data_key_nonce(suite, epoch.secrets.sender_data_secret, ciphertext)
    sender_data = SenderData(1, ratchet_key.generation, bytes(4)).encode()
    sender_aad = SenderDataAAD(context.group_id, context.epoch, content_type).encode()
    encrypted = suite.aead_seal(key, nonce, sender_aad, sender_data)
    return PrivateMessage(context.group_id, context.epoch, content_type, b"", encrypted, ciphertext)


def test_non_zero_padding_rejected_without_state_change() -> None:
    epoch = _Epoch()
    valid = epoch.view().protect_private(epoch.content(), epoch.signature_priv, reuse_guard=bytes(4))
    # Re-create that message's plaintext, with one non-zero padding byte appended.
    auth_plaintext = _open_plaintext(epoch, valid)
    with pytest.raises(DecodeError, match="padding"):
        epoch.receiver.unprotect_private(_seal_raw(epoch, auth_plaintext + b"\x00\x01"), epoch.key_of)
    assert epoch.application_generation() == 0
    zero_padded = _seal_raw(epoch, auth_plaintext + b"\x00\x00")
    assert epoch.receiver.unprotect_private(zero_padded, epoch.key_of).content.body == b"hello"


def _open_plaintext(epoch: _Epoch, message: PrivateMessage) -> bytes:
    suite, context = epoch.suite, epoch.context
    ratchet_key = SecretTree(suite, epoch.secrets.encryption_secret, 2).get_key(1, RatchetType.APPLICATION, 0)
    aad = PrivateContentAAD(context.group_id, context.epoch, ContentType.APPLICATION, b"").encode()
    plaintext = suite.aead_open(ratchet_key.key, ratchet_key.nonce, aad, message.ciphertext)
    assert PrivateMessageContent.decode_with(plaintext, ContentType.APPLICATION).body == b"hello"
    return plaintext


def test_wrong_epoch_or_group_rejected() -> None:
    epoch = _Epoch()
    message = epoch.sender.protect_private(epoch.content(), epoch.signature_priv)
    with pytest.raises(ValidationError):
        epoch.receiver.unprotect_private(_replace(message, epoch=message.epoch + 1), epoch.key_of)
    with pytest.raises(ValidationError):
        epoch.receiver.unprotect_private(_replace(message, group_id=b"other"), epoch.key_of)
    wrong = FramedContent(b"group", 99, Sender.member(1), b"", b"x")
    with pytest.raises(ValidationError):
        epoch.sender.protect_private(wrong, epoch.signature_priv)


def test_private_message_only_from_members() -> None:
    epoch = _Epoch()
    content = FramedContent(epoch.context.group_id, epoch.context.epoch, Sender.external(0), b"", b"x")
    with pytest.raises(ValidationError):
        epoch.sender.protect_private(content, epoch.signature_priv)


def _remove_proposal_content(epoch: _Epoch) -> FramedContent:
    proposal = Proposal(Remove(0))
    return FramedContent(epoch.context.group_id, epoch.context.epoch, Sender.member(1), b"", proposal)


@pytest.mark.parametrize("as_private", [False, True])
def test_commit_needs_confirmation_tag_and_feeds_transcript(as_private: bool) -> None:
    epoch = _Epoch()
    content = FramedContent(epoch.context.group_id, epoch.context.epoch, Sender.member(1), b"", Commit())
    protect = epoch.sender.protect_private if as_private else epoch.sender.protect_public
    with pytest.raises(ValidationError):
        protect(content, epoch.signature_priv)
    tag = epoch.secrets.confirmation_tag(b"\x07" * 32)
    message = protect(content, epoch.signature_priv, tag)
    if isinstance(message, PrivateMessage):
        received = epoch.receiver.unprotect_private(message, epoch.key_of)
        assert epoch.receiver.secret_tree.ratchet(1, RatchetType.HANDSHAKE).generation == 1  # type: ignore[union-attr]
    else:
        received = epoch.receiver.unprotect_public(message, epoch.signature_pub)
    assert received.auth.confirmation_tag == tag
    confirmed, interim = update_transcript_hashes(epoch.suite, b"", received)
    assert len(confirmed) == len(interim) == 32 and confirmed != interim


def test_public_message_round_trip_and_tamper() -> None:
    epoch = _Epoch()
    content = _remove_proposal_content(epoch)
    message = PublicMessage.decode(epoch.sender.protect_public(content, epoch.signature_priv).encode())
    assert epoch.receiver.unprotect_public(message, epoch.signature_pub).content == content

    bad_tag = PublicMessage(message.content, message.auth, _flip(message.membership_tag or b"\x00"))
    with pytest.raises(MembershipTagError):
        epoch.receiver.unprotect_public(bad_tag, epoch.signature_pub)

    changed = FramedContent(content.group_id, content.epoch, content.sender, b"changed", content.body)
    with pytest.raises(MembershipTagError):
        forged = PublicMessage(changed, message.auth, message.membership_tag)
        epoch.receiver.unprotect_public(forged, epoch.signature_pub)

    _, other_pub = epoch.suite.generate_signature_key_pair()
    with pytest.raises(SignatureError):
        epoch.receiver.unprotect_public(message, other_pub)


def test_public_message_forged_by_member_with_membership_key() -> None:
    """A member knows the membership key but not another member's signature key."""
    epoch = _Epoch()
    forger_priv, _ = epoch.suite.generate_signature_key_pair()
    forged = epoch.sender.protect_public(_remove_proposal_content(epoch), forger_priv)
    with pytest.raises(SignatureError):
        epoch.receiver.unprotect_public(forged, epoch.signature_pub)


def test_public_message_rules() -> None:
    epoch = _Epoch()
    with pytest.raises(ValidationError):  # application data only as PrivateMessage
        epoch.sender.protect_public(epoch.content(), epoch.signature_priv)
    with pytest.raises(ValidationError):  # a proposal carries no confirmation tag
        epoch.sender.protect_public(_remove_proposal_content(epoch), epoch.signature_priv, b"\x00" * 32)
    no_keys = MessageProtection(epoch.suite, epoch.context)
    with pytest.raises(ValidationError):
        no_keys.protect_public(_remove_proposal_content(epoch), epoch.signature_priv)
    with pytest.raises(ValidationError):
        no_keys.protect_private(epoch.content(), epoch.signature_priv)
