"""Bad input to the group engine: typed errors and no state change (RFC 9420 §6, §12.2, §12.4.2)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls import MLS, GroupView
from mls.api.records import GROUP as _GROUP, group_key as _group_key
from mls.crypto import cipher_suite
from mls.errors import (
    DecodeError,
    InvalidArgumentTypeError,
    MLSError,
    MembershipTagError,
    SignatureError,
    UnknownSenderError,
    ValidationError,
    WrongEpochError,
)
from mls.group.external import external_proposal
from mls.wire import Credential, ExternalSender, ExternalSenders, MLSMessage, Proposal, PublicMessage, Remove


def _pair() -> tuple[MLS, GroupView, GroupView]:
    mls = MLS()
    a, b = mls.generate_identity(), mls.generate_identity()
    ga = mls.group_create(a, mls.generate_credential("a"))
    output = ga.add(mls.generate_key_package(b, mls.generate_credential("b")))
    ga.receive(output.commit)
    return mls, ga, mls.group_join(b, output.welcome)


def _stored(mls: MLS, view: GroupView) -> bytes | None:
    return mls.storage.get(_GROUP, _group_key(view.group_id, view.client_id))


MLS_OBJ, GA, GB = _pair()
COMMIT = GA.update().commit  # stays pending in GA; GB must never move on a mutated copy


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_commit_raises_typed_error_and_keeps_state(data: st.DataObject) -> None:
    """Flipping bytes of a valid Commit is always rejected with an ``MLSError``; nothing changes."""
    mutated = bytearray(COMMIT)
    positions = data.draw(st.lists(st.integers(0, len(COMMIT) - 1), min_size=1, max_size=3, unique=True))
    for position in positions:
        mutated[position] ^= data.draw(st.integers(1, 255))
    before = _stored(MLS_OBJ, GB)
    epoch = GB.epoch
    with pytest.raises(MLSError):
        GB.receive(bytes(mutated))
    assert _stored(MLS_OBJ, GB) == before and GB.epoch == epoch


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_typed_errors(blob: bytes) -> None:
    before = _stored(MLS_OBJ, GB)
    with pytest.raises(MLSError):
        GB.receive(blob)
    assert _stored(MLS_OBJ, GB) == before


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 3))
def test_truncated_or_extended_commit(cut: int, extra: int) -> None:
    blob = COMMIT[: cut % len(COMMIT)] if extra == 0 else COMMIT + bytes(extra)
    before = _stored(MLS_OBJ, GB)
    with pytest.raises(MLSError):
        GB.receive(blob)
    assert _stored(MLS_OBJ, GB) == before


def test_unmodified_commit_still_applies_after_fuzzing() -> None:
    mls, ga, gb = _pair()
    output = ga.update()
    gb.receive(output.commit)
    ga.receive(output.commit)
    assert ga.epoch_authenticator() == gb.epoch_authenticator()


def test_forged_membership_tag_and_signature() -> None:
    mls, ga, gb = _pair()
    proposal = MLSMessage.decode(ga.propose_update().content).body
    assert isinstance(proposal, PublicMessage)
    before = _stored(mls, gb)
    bad_tag = replace(proposal, membership_tag=bytes(len(proposal.membership_tag or b"")))
    with pytest.raises(MembershipTagError):
        gb.receive(MLSMessage(bad_tag).encode())
    wrong_sender = replace(proposal, content=replace(proposal.content, sender=replace(proposal.content.sender, index=5)))
    with pytest.raises(UnknownSenderError):
        gb.receive(MLSMessage(wrong_sender).encode())
    assert _stored(mls, gb) == before


def test_message_of_another_group_or_epoch() -> None:
    mls, ga, gb = _pair()
    other_mls, other, _ = _pair()
    with pytest.raises(ValidationError):
        gb.receive(other.send(b"not yours"))
    message = MLSMessage.decode(ga.send(b"x").content).body
    future = replace(message, epoch=message.epoch + 5)
    with pytest.raises(WrongEpochError):
        gb.receive(MLSMessage(future).encode())


def test_replayed_application_message_is_rejected() -> None:
    mls, ga, gb = _pair()
    message = ga.send(b"once")
    assert gb.receive(message).content == b"once"
    with pytest.raises(MLSError):
        gb.receive(message)


def test_welcome_and_key_package_inputs() -> None:
    mls, ga, gb = _pair()
    with pytest.raises(DecodeError):
        ga.add(b"\x00\x01\x00\x05garbage")
    with pytest.raises(ValidationError):
        ga.add(ga.send(b"not a key package").content)
    with pytest.raises(InvalidArgumentTypeError):  # an MLSBytes of another type
        ga.add(ga.send(b"not a key package"))
    other = mls.generate_identity()
    with pytest.raises(MLSError):
        mls.group_join(other, ga.group_info())
    assert not ga.has_pending_commit


def test_forged_key_package_signature() -> None:
    mls, ga, gb = _pair()
    c = mls.generate_identity()
    key_package = MLSMessage.decode(mls.generate_key_package(c, mls.generate_credential("c")).content).body
    forged = replace(key_package, signature=bytes(len(key_package.signature)))
    with pytest.raises(SignatureError):
        ga.add(MLSMessage(forged).encode())
    assert not ga.has_pending_commit and ga.epoch == 1


def test_external_sender_proposal() -> None:
    """§12.1.8.1: a pre-provisioned external sender proposes a Remove; members commit it."""
    mls, ga, gb = _pair()
    suite = cipher_suite(1)
    private_key, public_key = suite.generate_signature_key_pair()
    senders = ExternalSenders((ExternalSender(public_key, Credential.basic(b"server")),))
    output = ga.set_group_context_extensions([senders.to_extension()])
    ga.receive(output.commit)
    gb.receive(output.commit)
    context = ga._state.context
    proposal = external_proposal(context, 0, Proposal(Remove(1)), private_key)
    answer = ga.receive(proposal)  # answered with a commit; the sender is no member leaf
    assert answer.type == "commit-output" and answer.sender is None and answer.commit_output is not None
    assert gb.receive(proposal).type == "proposal"  # it removes gb: gb does not commit it
    output = answer.commit_output
    ga.receive(output.commit)
    assert gb.receive(output.commit).removed
    # an unknown external sender index, or a forged signature, is rejected
    with pytest.raises(UnknownSenderError):
        ga.receive(external_proposal(ga._state.context, 3, Proposal(Remove(0)), private_key))
    other_private, _ = suite.generate_signature_key_pair()
    with pytest.raises(SignatureError):
        ga.receive(external_proposal(ga._state.context, 0, Proposal(Remove(0)), other_private))
