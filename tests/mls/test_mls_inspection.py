"""``mls.inspection``: keyless reading of MLS messages (RFC 9420 §6, §10, §12.4.3, §5.3, §5.2).

Real messages from ``mls.MLS`` groups, the official ``messages.json`` and
``welcome.json`` vectors case by case, and hypothesis fuzzing: malformed bytes
raise only ``DecodeError`` (or another ``MLSError``), never a bare exception.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls import MLS, GroupConfig
from mls.errors import DecodeError, InvalidArgumentTypeError, MLSError, UnsupportedCipherSuiteError, ValidationError
from mls.inspection import (
    ContentType,
    CredentialType,
    SenderType,
    WireFormat,
    credential_identity,
    inspect_credential,
    inspect_group_info,
    inspect_key_package,
    inspect_message,
    inspect_welcome,
)

from conftest import SHARED

MLS_VECTORS = SHARED / "vectors" / "mls"


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((MLS_VECTORS / name).read_text())


MESSAGES = _load("messages.json")
WELCOMES = _load("welcome.json")


class Call:
    """Alice creates a group, adds Bob with a Welcome, proposes and commits, sends a message."""

    def __init__(self, config: GroupConfig | None = None) -> None:
        self.alice_mls = MLS(config=config)
        self.bob_mls = MLS(config=config)
        self.alice = self.alice_mls.generate_identity().content
        self.bob = self.bob_mls.generate_identity().content
        self.alice_credential = self.alice_mls.generate_credential("alice").content
        self.bob_credential = self.bob_mls.generate_credential("bob").content
        self.group = self.alice_mls.group_create(self.alice, self.alice_credential, b"inspection-group")
        self.key_package = self.bob_mls.generate_key_package(self.bob, self.bob_credential).content
        self.add = self.group.add(self.key_package)
        self.group.apply_pending_commit()
        self.bob_group = self.bob_mls.group_join(self.bob, self.add.welcome)
        self.proposal = self.bob_group.propose_update().content
        self.application = self.group.send(b"hello bob").content
        self.group_info = self.group.group_info()


@pytest.fixture(scope="module")
def call() -> Call:
    return Call()


# -- real messages -----------------------------------------------------------------------------

def test_public_commit_header(call: Call) -> None:
    header = inspect_message(call.add.commit)
    assert header.wire_format is WireFormat.MLS_PUBLIC_MESSAGE
    assert header.is_framed
    assert header.group_id == b"inspection-group"
    assert header.epoch == 0  # a commit is framed in the epoch it leaves
    assert header.content_type is ContentType.COMMIT
    assert header.sender_type is SenderType.MEMBER
    assert header.leaf_index == 0


def test_public_proposal_header_names_the_proposer_leaf(call: Call) -> None:
    header = inspect_message(call.proposal)
    assert header.wire_format is WireFormat.MLS_PUBLIC_MESSAGE
    assert (header.group_id, header.epoch) == (b"inspection-group", 1)
    assert header.content_type is ContentType.PROPOSAL
    assert header.sender_type is SenderType.MEMBER
    bob_leaf = next(m.leaf_index for m in call.bob_group.details().members if m.client_id == call.bob)
    assert header.leaf_index == bob_leaf == 1


def test_external_sender_has_no_leaf_index(call: Call) -> None:
    """§6: an external sender's index points into external_senders (§12.1.8.1), not at a leaf."""
    data = bytearray(call.proposal)
    sender = 4 + 1 + len(b"inspection-group") + 8  # MLSMessage header, group_id<V>, epoch
    assert data[sender] == SenderType.MEMBER
    data[sender] = SenderType.EXTERNAL  # same encoding: type, then a uint32 index
    assert data[-33] == 32  # only a member's PublicMessage ends with a membership_tag<V> (§6.2)
    header = inspect_message(bytes(data[:-33]))
    assert header.sender_type is SenderType.EXTERNAL and header.leaf_index is None


def test_private_application_header_hides_the_sender(call: Call) -> None:
    header = inspect_message(call.application)
    assert header.wire_format is WireFormat.MLS_PRIVATE_MESSAGE
    assert header.is_framed
    assert (header.group_id, header.epoch) == (b"inspection-group", 1)
    assert header.content_type is ContentType.APPLICATION
    assert header.sender_type is None and header.leaf_index is None


def test_private_handshake_header() -> None:
    call = Call(GroupConfig(handshake_wire_format=WireFormat.MLS_PRIVATE_MESSAGE))
    header = inspect_message(call.add.commit)
    assert header.wire_format is WireFormat.MLS_PRIVATE_MESSAGE
    assert (header.epoch, header.content_type) == (0, ContentType.COMMIT)
    assert header.sender_type is None


def test_key_package(call: Call) -> None:
    summary = inspect_key_package(call.key_package)
    assert summary.cipher_suite == 1
    assert summary.credential.credential_type is CredentialType.BASIC
    assert summary.credential.identity == b"bob"
    assert summary.credential.encoded == call.bob_credential
    # the Welcome that added Bob is addressed to this KeyPackage's ref (§12.4.3.1)
    assert inspect_welcome(call.add.welcome).key_package_refs == (summary.ref,)
    assert len(summary.ref) == 32  # SHA-256 (suite 1)
    # one identity, one signature key: a second KeyPackage differs in ref only
    again = inspect_key_package(call.bob_mls.generate_key_package(call.bob, call.bob_credential).content)
    assert again.signature_key == summary.signature_key and again.ref != summary.ref
    other = inspect_key_package(call.alice_mls.generate_key_package(call.alice, call.alice_credential).content)
    assert other.signature_key != summary.signature_key


def test_key_package_of_another_suite() -> None:
    mls = MLS(cipher_suite=7)
    client = mls.generate_identity()
    summary = inspect_key_package(mls.generate_key_package(client, mls.generate_credential("p384")).content)
    assert summary.cipher_suite == 7
    assert len(summary.ref) == 48  # SHA-384


def test_welcome(call: Call) -> None:
    summary = inspect_welcome(call.add.welcome)
    assert summary.cipher_suite == 1
    assert inspect_message(call.add.welcome).wire_format is WireFormat.MLS_WELCOME
    assert not inspect_message(call.add.welcome).is_framed
    assert inspect_message(call.add.welcome).group_id is None


def test_group_info(call: Call) -> None:
    summary = inspect_group_info(call.group_info)
    assert (summary.group_id, summary.epoch, summary.cipher_suite) == (b"inspection-group", 1, 1)
    assert inspect_group_info(call.add.group_info).epoch == 1
    assert inspect_message(call.group_info).wire_format is WireFormat.MLS_GROUP_INFO


def test_credential(call: Call) -> None:
    summary = inspect_credential(call.alice_credential)
    assert summary.credential_type is CredentialType.BASIC
    assert summary.identity == b"alice"
    assert summary.encoded == call.alice_credential
    member = call.group.details().members[0]
    assert inspect_credential(member.credential).identity == b"alice"


def test_unknown_credential_type_has_no_identity() -> None:
    encoded = (0x0F00).to_bytes(2, "big") + bytes([3]) + b"xyz"  # credential_type 0x0f00, one <V> vector
    summary = inspect_credential(encoded)
    assert summary.credential_type == 0x0F00 and summary.identity is None
    assert summary.encoded == encoded


def test_credential_identity_is_text_or_none(call: Call) -> None:
    assert credential_identity(call.alice_credential) == "alice"
    not_text = (1).to_bytes(2, "big") + bytes([2]) + b"\xff\xfe"  # a basic credential, identity not UTF-8
    assert inspect_credential(not_text).identity == b"\xff\xfe"
    unknown_type = (0x0F00).to_bytes(2, "big") + bytes([3]) + b"xyz"
    for encoded in (not_text, unknown_type, b"", b"\x00", call.key_package):
        assert credential_identity(encoded) is None


def test_summaries_are_frozen(call: Call) -> None:
    header = inspect_message(call.add.commit)
    with pytest.raises(FrozenInstanceError):
        header.epoch = 5  # type: ignore[misc]


# -- wrong kind, wrong type --------------------------------------------------------------------

def test_wrong_kind_of_message_is_a_validation_error(call: Call) -> None:
    for reader, message in [(inspect_key_package, call.add.commit), (inspect_welcome, call.key_package),
                            (inspect_group_info, call.add.welcome), (inspect_key_package, call.group_info),
                            (inspect_welcome, call.application)]:
        with pytest.raises(ValidationError):
            reader(message)


def test_message_is_not_a_credential(call: Call) -> None:
    with pytest.raises(DecodeError):
        inspect_credential(call.key_package)


def test_not_bytes_is_a_type_error() -> None:
    for reader in (inspect_message, inspect_key_package, inspect_welcome, inspect_group_info, inspect_credential):
        with pytest.raises(InvalidArgumentTypeError):
            reader("00010001")  # type: ignore[arg-type]


def test_key_package_of_an_unknown_suite(call: Call) -> None:
    data = bytearray(call.key_package)
    assert data[4:8] == bytes([0, 1, 0, 1])  # MLSMessage header, then KeyPackage version mls10, suite 1
    data[6:8] = (0x0A0A).to_bytes(2, "big")  # a GREASE value (§13.5): no known hash
    with pytest.raises(UnsupportedCipherSuiteError):
        inspect_key_package(bytes(data))


def test_trailing_and_truncated_bytes(call: Call) -> None:
    for message in (call.add.commit, call.application, call.key_package, call.add.welcome, call.group_info):
        with pytest.raises(DecodeError):
            inspect_message(message + b"\x00")
        with pytest.raises(DecodeError):
            inspect_message(message[:-1])


# -- official vectors (messages.json, welcome.json), one case each -------------------------------

@pytest.mark.parametrize("case", range(len(MESSAGES)))
def test_messages_vector(case: int) -> None:
    vector = MESSAGES[case]
    kinds = {
        "public_message_application": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.APPLICATION),
        "public_message_proposal": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.PROPOSAL),
        "public_message_commit": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.COMMIT),
    }
    for field, (wire_format, content_type) in kinds.items():
        header = inspect_message(bytes.fromhex(vector[field]))
        assert (header.wire_format, header.content_type) == (wire_format, content_type)
        assert header.sender_type is not None and isinstance(header.group_id, bytes)
    private = inspect_message(bytes.fromhex(vector["private_message"]))
    assert private.wire_format is WireFormat.MLS_PRIVATE_MESSAGE and private.sender_type is None
    key_package = bytes.fromhex(vector["mls_key_package"])
    summary = inspect_key_package(key_package)
    assert inspect_credential(summary.credential.encoded) == summary.credential
    assert summary.credential.encoded in key_package and summary.signature_key in key_package
    welcome = inspect_welcome(bytes.fromhex(vector["mls_welcome"]))
    assert welcome.key_package_refs and all(ref in bytes.fromhex(vector["mls_welcome"]) for ref in welcome.key_package_refs)
    group_info = inspect_group_info(bytes.fromhex(vector["mls_group_info"]))
    assert group_info.group_id in bytes.fromhex(vector["mls_group_info"])


@pytest.mark.parametrize("case", range(len(WELCOMES)), ids=lambda i: f"suite-{WELCOMES[i]['cipher_suite']}")
def test_welcome_vector_is_for_its_key_package(case: int) -> None:
    """The KeyPackageRef we compute (§5.2) is the one another implementation put in the Welcome."""
    vector = WELCOMES[case]
    key_package = inspect_key_package(bytes.fromhex(vector["key_package"]))
    welcome = inspect_welcome(bytes.fromhex(vector["welcome"]))
    assert key_package.cipher_suite == welcome.cipher_suite == vector["cipher_suite"]
    assert key_package.ref in welcome.key_package_refs


# -- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
READERS = [inspect_message, inspect_key_package, inspect_welcome, inspect_group_info, inspect_credential]
SAMPLES = [bytes.fromhex(MESSAGES[0][field]) for field in
           ("mls_welcome", "mls_group_info", "mls_key_package", "public_message_commit", "private_message")]


def _only_mls_errors(data: bytes) -> None:
    for reader in READERS:
        try:
            reader(data)
        except MLSError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_garbage(data: bytes) -> None:
    _only_mls_errors(data)


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_truncated_and_mutated(sample: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sample)))
    _only_mls_errors(sample[:cut])
    position = data.draw(st.integers(0, len(sample) - 1))
    mutated = bytearray(sample)
    mutated[position] = data.draw(st.integers(0, 255))
    _only_mls_errors(bytes(mutated))
    if cut < len(sample):
        with pytest.raises(DecodeError):
            inspect_message(sample[:cut])


def test_fuzz_header_prefixes() -> None:
    """Every framed wire format with a short or empty body is a DecodeError, not an IndexError."""
    for wire_format in range(0, 8):
        for tail in (b"", b"\x00", b"\x40", b"\xff\xff\xff\xff"):
            with pytest.raises(DecodeError):
                inspect_message(b"\x00\x01" + wire_format.to_bytes(2, "big") + tail)
