"""Adversarial review of the ``mls`` public API (RFC 9420 §6, §7.3, §8, §12.2, §12.4).

Every hostile input is refused with a typed ``MLSError`` and leaves the
stored state of the receiving member exactly as it was. Forged handshake
messages are signed and membership-tagged by a real member (an insider), so
that the protocol check under test, not the signature, is what refuses them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mls.group.commit as commit_module
import mls.group.external as external_module
from mls import MLS, GroupView, MemoryStorage
from mls.api.records import GROUP as _GROUP, KEY_PACKAGE as _KEY_PACKAGE, group_key as _group_key
from mls.crypto import cipher_suite
from mls.errors import (
    DecodeError,
    GroupInactiveError,
    InvalidArgumentTypeError,
    MLSError,
    NoMatchingKeyPackageError,
    SecretTreeError,
    SignatureError,
    UnknownSenderError,
    ValidationError,
    WrongEpochError,
)
from mls.group.config import GroupConfig
from mls.group.external import join_by_external_commit
from mls.group.key_package import default_capabilities
from mls.group.state import GroupState
from mls.message_protection import MessageProtection
from mls.secret_tree import HashRatchetState, RatchetType, SecretTree
from mls.tree import create_update_path, sign_leaf_node
from mls.wire import MLSMessage, PublicMessage
from mls.wire.credentials import Credential
from mls.wire.enums import LeafNodeSource
from mls.wire.framing import FramedContent, Sender
from mls.wire.proposals import Add, Commit, Proposal, ProposalOrRef, Remove, Update
from mls.wire.tree import LeafNode

# --- helpers ---------------------------------------------------------------------------------


def _group(names: str, storage: MemoryStorage | None = None) -> tuple[MLS, list[GroupView]]:
    """A group of ``len(names)`` members created by the first, all at the same epoch."""
    mls = MLS(storage)
    ids = [mls.generate_identity() for _ in names]
    creator = mls.group_create(ids[0], mls.generate_credential(names[0]))
    if len(names) == 1:
        return mls, [creator]
    packages = [mls.generate_key_package(i, mls.generate_credential(n)) for i, n in zip(ids[1:], names[1:])]
    output = creator.add_many(packages)
    creator.receive(output.commit)
    assert output.welcome is not None
    return mls, [creator, *(mls.group_join(i, output.welcome) for i in ids[1:])]


def _state(mls: MLS, view: GroupView) -> GroupState:
    return mls.states.load(view.group_id, view.client_id)


def _stored(mls: MLS, view: GroupView) -> bytes | None:
    return mls.storage.get(_GROUP, _group_key(view.group_id, view.client_id))


def _public(state: GroupState, body: object, *, sender: Sender | None = None, key: bytes | None = None,
            tag: bytes | None = None) -> bytes:
    """``body`` framed, signed and membership-tagged in ``state``'s epoch (an insider's forgery)."""
    content = FramedContent(
        state.group_id, state.epoch, sender or Sender.member(state.leaf_index), b"", body  # type: ignore[arg-type]
    )
    if isinstance(body, Commit) and tag is None:
        tag = bytes(state.suite.Nh)  # never verifies: checks before the confirmation tag must refuse
    protection = state.protection()
    message = protection.protect_public(content, key or state.signature_private_key, confirmation_tag=tag)
    return MLSMessage(message).encode()


def _forged_commit(mls: MLS, view: GroupView, proposals: list[Proposal | bytes]) -> bytes:
    return _public(_state(mls, view), Commit(tuple(ProposalOrRef(p) for p in proposals), None))


def _refused(mls: MLS, view: GroupView, data: bytes, error: type[BaseException], match: str | None = None) -> None:
    """``view.receive(data)`` raises ``error`` and changes neither the stored state nor the epoch."""
    before, epoch = _stored(mls, view), view.epoch
    with pytest.raises(error, match=match):
        view.receive(data)
    assert _stored(mls, view) == before
    assert view.epoch == epoch


def _still_works(sender: GroupView, *receivers: GroupView) -> None:
    message = sender.send(b"still in sync")
    for receiver in receivers:
        assert receiver.receive(message).content == b"still in sync"


# --- §12.2 proposal list validation -----------------------------------------------------------


def test_commit_adding_an_existing_member_is_refused() -> None:
    mls, (a, b, c) = _group("abc")
    fresh = MLSMessage.decode(mls.generate_key_package(b.client_id, mls.generate_credential("b")).content).body
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Add(fresh))]), ValidationError, "signature_key is already used")
    _still_works(a, b, c)


def test_commit_adding_the_same_client_twice_is_refused() -> None:
    mls, (a, b) = _group("ab")
    d = mls.generate_identity()
    kp1 = MLSMessage.decode(mls.generate_key_package(d, mls.generate_credential("d")).content).body
    kp2 = MLSMessage.decode(mls.generate_key_package(d, mls.generate_credential("d")).content).body
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Add(kp1)), Proposal(Add(kp2))]), ValidationError, "same client")


@pytest.mark.parametrize("leaf", [3, 7, 2**16, 2**32 - 1])
def test_commit_removing_a_non_member_is_refused(leaf: int) -> None:
    mls, (a, b, c) = _group("abc")
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Remove(leaf))]), ValidationError, "blank or missing leaf")


def test_commit_removing_a_blank_leaf_is_refused() -> None:
    mls, (a, b, c) = _group("abc")
    output = a.remove(c.client_id)
    a.receive(output.commit)
    b.receive(output.commit)
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Remove(2))]), ValidationError, "blank or missing leaf")


def test_commit_removing_the_committer_or_one_leaf_twice_is_refused() -> None:
    mls, (a, b, c) = _group("abc")
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Remove(0))]), ValidationError, "removes the committer")
    twice = [Proposal(Remove(2)), Proposal(Remove(2))]
    _refused(mls, b, _forged_commit(mls, a, twice), ValidationError, "several Updates/Removes")


def test_commit_by_reference_to_unknown_proposals_is_refused() -> None:
    mls, (a, b) = _group("ab")
    for ref in (bytes(32), b"\x01" * 32, b"", b"\xff" * 200):
        _refused(mls, b, _forged_commit(mls, a, [ref]), ValidationError, "unknown proposal")


def test_commit_with_another_suites_key_package_is_refused() -> None:
    mls, (a, b) = _group("ab")
    other = MLS(cipher_suite=3)
    w = other.generate_identity()
    package = other.generate_key_package(w, other.generate_credential("w"))
    with pytest.raises(ValidationError, match="cipher suite"):
        a.add(package)
    with pytest.raises(ValidationError, match="cipher suite"):
        a.propose_add(package)
    assert not a.has_pending_commit
    body = MLSMessage.decode(package.content).body
    _refused(mls, b, _forged_commit(mls, a, [Proposal(Add(body))]), ValidationError, "cipher suite")


def test_proposals_from_a_removed_member_are_refused() -> None:
    mls, (a, b, c) = _group("abc")
    stale = c.propose_update()  # c's proposal of the epoch it is removed in
    output = a.remove(c.client_id)
    a.receive(output.commit)
    b.receive(output.commit)
    _refused(mls, b, stale, WrongEpochError)
    # c's key, c's leaf, in the new epoch (membership-tagged by b, an accomplice)
    c_key = _state(mls, c).signature_private_key
    forged = _public(_state(mls, b), Proposal(Remove(0)), sender=Sender.member(2), key=c_key)
    _refused(mls, a, forged, UnknownSenderError)
    _still_works(a, b)


def test_update_proposal_taking_another_members_credential_is_refused() -> None:
    mls, (a, b, c) = _group("abc")
    state = _state(mls, b)
    leaf = state.own_leaf
    _, public_key = state.suite.generate_key_pair()
    impostor = LeafNode(
        public_key, leaf.signature_key, Credential.basic(b"a"), leaf.capabilities, LeafNodeSource.UPDATE,
        extensions=leaf.extensions,
    )
    signed = sign_leaf_node(state.suite, impostor, state.signature_private_key, state.group_id, state.leaf_index)
    _refused(mls, a, _public(state, Proposal(Update(signed))), ValidationError, "credential")
    _refused(mls, c, _public(state, Proposal(Update(signed))), ValidationError, "credential")


def test_commit_path_taking_another_members_credential_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    mls, (a, b, c) = _group("abc")
    real = create_update_path

    def impostor_path(tree, sender, **kwargs):  # type: ignore[no-untyped-def]
        template = replace(tree.leaf(sender), credential=Credential.basic(b"a"))
        return real(tree, sender, leaf_template=template, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(commit_module, "create_update_path", impostor_path)
        forged = b.update().commit
    _refused(mls, c, forged, ValidationError, "credential")
    b.discard_pending_commit()
    genuine = b.update().commit  # the same Commit without the impostor credential is accepted
    assert c.receive(genuine).type == "commit-processed"


def test_external_resync_cannot_remove_another_member() -> None:
    """§12.2: the Remove of an external Commit is the joiner's own old leaf (same credential)."""
    mls, (a, b, c) = _group("abc")
    info = MLSMessage.decode(a.group_info()).body
    suite = cipher_suite(1)
    private_key, public_key = suite.generate_signature_key_pair()
    template = LeafNode(b"", public_key, Credential.basic(b"mallory"), default_capabilities(),
                        LeafNodeSource.COMMIT, parent_hash=b"")
    with pytest.raises(ValidationError, match="credential"):
        join_by_external_commit(info, template, private_key, GroupConfig(), resync_leaf=1)
    with pytest.MonkeyPatch.context() as patch:  # a joiner that skips its own check
        patch.setattr(external_module, "check_successor_credential", lambda old, new: None)
        hostile = join_by_external_commit(info, template, private_key, GroupConfig(), resync_leaf=1).commit
    _refused(mls, a, hostile, ValidationError, "credential")
    _refused(mls, c, hostile, ValidationError, "credential")
    _still_works(a, b, c)


def test_external_resync_of_the_same_identity_is_accepted() -> None:
    mls, (a, b) = _group("ab")
    info = MLSMessage.decode(a.group_info()).body
    state = _state(mls, b)
    leaf = state.own_leaf
    template = LeafNode(b"", leaf.signature_key, leaf.credential, leaf.capabilities, LeafNodeSource.COMMIT,
                        parent_hash=b"")
    joined = join_by_external_commit(info, template, state.signature_private_key, GroupConfig(), resync_leaf=1)
    received = a.receive(joined.commit)
    assert received.type == "commit-processed" and [m.leaf_index for m in a.details().members] == [0, 1]


# --- §12.4.2 a Commit that removes the receiver ----------------------------------------------


def test_removed_member_still_validates_the_update_path() -> None:
    mls, (a, b, c) = _group("abc")
    genuine = a.remove(b.client_id).commit
    message = MLSMessage.decode(genuine).body
    assert isinstance(message, PublicMessage)
    commit = message.content.body
    assert isinstance(commit, Commit) and commit.path is not None
    leaf = commit.path.leaf_node
    broken = replace(commit, path=replace(commit.path, leaf_node=replace(leaf, signature=bytes(len(leaf.signature)))))
    forged = _public(_state(mls, a), broken, tag=message.auth.confirmation_tag)
    _refused(mls, b, forged, SignatureError)
    assert not b.details().removed
    assert b.receive(genuine).removed  # the genuine Commit does remove b


# --- §11.2 / §12.4.2 after a ReInit ----------------------------------------------------------


def test_no_handshake_is_accepted_after_a_reinit_commit() -> None:
    mls, (a, b) = _group("ab")
    b.receive(a.propose_reinit())
    output = a.commit()
    a.receive(output.commit)
    b.receive(output.commit)
    assert b.details().reinit_pending
    _refused(mls, b, _public(_state(mls, a), Proposal(Remove(1))), GroupInactiveError)
    with pytest.raises(GroupInactiveError):
        a.send(b"no")


# --- §12.4.3.1 Welcome, §12.4.3.2 GroupInfo ----------------------------------------------------


def test_welcome_for_another_key_package_leaves_our_key_package() -> None:
    mls, (a,) = _group("a")
    d, e = mls.generate_identity(), mls.generate_identity()
    output = a.add(mls.generate_key_package(d, mls.generate_credential("d")))
    mls.generate_key_package(e, mls.generate_credential("e"))
    packages = len(mls.storage.keys(_KEY_PACKAGE))
    with pytest.raises(NoMatchingKeyPackageError):
        mls.group_join(e, output.welcome)
    assert len(mls.storage.keys(_KEY_PACKAGE)) == packages


def test_truncated_or_mistreed_welcome_is_refused_and_the_key_package_kept() -> None:
    mls = MLS(config=GroupConfig(ratchet_tree_in_welcome=False))
    x, y = mls.generate_identity(), mls.generate_identity()
    gx = mls.group_create(x, mls.generate_credential("x"))
    output = gx.add(mls.generate_key_package(y, mls.generate_credential("y")))
    gx.receive(output.commit)
    welcome, tree = output.welcome, output.ratchet_tree
    assert welcome is not None and tree is not None
    other_mls, (other,) = _group("o")
    cases: list[tuple[bytes, bytes | None, type[MLSError]]] = [
        *((welcome[:cut], tree, DecodeError) for cut in (0, 1, 3, 10, len(welcome) // 2, len(welcome) - 1)),
        (welcome + b"\x00", tree, DecodeError),
        (welcome, None, ValidationError),
        (welcome, tree[:-1], DecodeError),
        (welcome, b"\xbf\xff\xff\xff", DecodeError),
        (welcome, b"\x40\x00", DecodeError),
        (welcome, other.ratchet_tree(), SignatureError),
    ]
    for data, supplied, error in cases:
        with pytest.raises(error):
            mls.group_join(y, data, supplied)
        assert mls.group_get(gx.group_id, y) is None
    assert mls.group_join(y, welcome, tree).epoch == 1


def test_group_info_with_bad_signature_or_context_is_refused() -> None:
    mls, (a, b) = _group("ab")
    d = mls.generate_identity()
    info_bytes = a.group_info()
    info = MLSMessage.decode(info_bytes).body
    context = info.group_context
    forged = [
        (replace(info, signature=bytes(len(info.signature))), SignatureError),
        (replace(info, group_context=replace(context, epoch=context.epoch + 1)), SignatureError),
        (replace(info, group_context=replace(context, tree_hash=bytes(len(context.tree_hash)))), SignatureError),
        (replace(info, confirmation_tag=bytes(len(info.confirmation_tag))), SignatureError),
        (replace(info, signer=1), SignatureError),
        (replace(info, signer=9), ValidationError),
        (replace(info, signer=2**32 - 1), ValidationError),
    ]
    credential = mls.generate_credential("d")
    for body, error in forged:
        with pytest.raises(error):
            mls.group_join_external(d, credential, MLSMessage(body).encode())
        assert mls.group_get(a.group_id, d) is None
    for cut in (0, 5, len(info_bytes) - 1):
        with pytest.raises(DecodeError):
            mls.group_join_external(d, credential, info_bytes[:cut])
    view, output = mls.group_join_external(d, credential, info_bytes)
    assert a.receive(output.commit).type == "commit-processed" and view.epoch == a.epoch


# --- §6 framing: huge lengths, generations, replays, other groups ----------------------------


@pytest.mark.parametrize(
    "blob",
    [
        b"\x00\x01\x00\x01\xbf\xff\xff\xff" + bytes(16),  # PublicMessage, group_id of 2^30-1 bytes
        b"\x00\x01\x00\x02\xbf\xff\xff\xff" + bytes(16),  # PrivateMessage
        b"\x00\x01\x00\x03\xbf\xff\xff\xff" + bytes(16),  # Welcome
        b"\x00\x01\x00\x04\x00\x01\xbf\xff\xff\xff",  # GroupInfo
        b"\x00\x01\x00\x05\x00\x01\x00\x01\xbf\xff\xff\xff",  # KeyPackage
        b"\x00\x01\x00\x01\xc0\x00\x00\x00\x00",  # invalid varint prefix
        b"\x00\x01\x00\x01\x80\x00\x00\x01\x00",  # non-minimal varint
        b"\x00\x01\xff\xff",  # unknown wire format
        b"\xff\xff\x00\x01",  # unknown version
    ],
)
def test_huge_or_bad_length_claims_are_decode_errors(blob: bytes) -> None:
    mls, (a, b) = _group("ab")
    _refused(mls, b, blob, DecodeError)
    with pytest.raises(DecodeError):
        mls.group_join(b.client_id, blob)
    with pytest.raises(DecodeError):
        a.add(blob)


def _private_at_generation(mls: MLS, view: GroupView, generation: int) -> bytes:
    """An application message of ``view`` that claims ratchet ``generation`` (key material wrong)."""
    state = _state(mls, view)
    state.secret_tree.ratchet(state.leaf_index, RatchetType.APPLICATION)
    saved = state.secret_tree.to_state()
    ratchets = tuple(
        (leaf, handshake, HashRatchetState(app.secret, generation) if leaf == state.leaf_index else app)
        for leaf, handshake, app in saved.ratchets
    )
    tree = SecretTree.from_state(state.suite, replace(saved, ratchets=ratchets))
    protection = MessageProtection(state.suite, state.context, tree, state.secrets.sender_data_secret)
    content = FramedContent(state.group_id, state.epoch, Sender.member(state.leaf_index), b"", b"future")
    return MLSMessage(protection.protect_private(content, state.signature_private_key)).encode()


@pytest.mark.parametrize("generation", [1001, 10**6, 2**32 - 1])
def test_far_future_generation_is_refused_without_ratcheting(generation: int) -> None:
    mls, (a, b) = _group("ab")
    _refused(mls, b, _private_at_generation(mls, a, generation), SecretTreeError, "ahead")
    _still_works(a, b)


def test_replayed_reflected_and_foreign_application_messages() -> None:
    mls, (a, b, c) = _group("abc")
    other_mls, (x, y) = _group("xy")
    first = a.send(b"one")
    assert b.receive(first).content == b"one"
    _refused(mls, b, first, SecretTreeError)  # replay
    _refused(mls, a, first, SecretTreeError)  # our own message reflected
    _refused(mls, b, x.send(b"foreign"), ValidationError, "another group")
    _still_works(a, b, c)


def test_restarted_member_never_reuses_a_generation() -> None:
    """State is stored after every send: a new process on the same storage goes on, never back (§9.2)."""
    storage = MemoryStorage()
    mls, (a, b) = _group("ab", storage)
    first = a.send(b"1")
    restarted = MLS(storage).group_get(a.group_id, a.client_id)
    assert restarted is not None
    second = restarted.send(b"2")
    assert b.receive(first).content == b"1"
    assert b.receive(second).content == b"2"  # a reused generation would be refused as consumed


# --- API argument types -------------------------------------------------------------------------


def test_wrong_argument_types_are_typed_errors_and_change_nothing() -> None:
    mls, (a, b) = _group("ab")
    credential = mls.generate_credential("z")
    z = mls.generate_identity()
    calls = {
        "receive None": lambda: b.receive(None),  # type: ignore[arg-type]
        "receive int": lambda: b.receive(5),  # type: ignore[arg-type]
        "receive str": lambda: b.receive("AAEAAQ=="),  # type: ignore[arg-type]
        "add None": lambda: a.add(None),  # type: ignore[arg-type]
        "add str": lambda: a.add("key package"),  # type: ignore[arg-type]
        "propose_add list": lambda: a.propose_add([1, 2]),  # type: ignore[arg-type]
        "remove None": lambda: a.remove(None),  # type: ignore[arg-type]
        "send None": lambda: a.send(None),  # type: ignore[arg-type]
        "send aad int": lambda: a.send(b"x", 5),  # type: ignore[arg-type]
        "export label None": lambda: a.export_secret(None, b"", 16),  # type: ignore[arg-type]
        "resumption epoch str": lambda: a.add_resumption_psk("1"),  # type: ignore[arg-type]
        "resumption epoch float": lambda: a.add_resumption_psk(1.0),  # type: ignore[arg-type]
        "gce bytes": lambda: a.set_group_context_extensions([b"x"]),  # type: ignore[list-item]
        "gce None": lambda: a.propose_group_context_extensions(None),  # type: ignore[arg-type]
        "gce str": lambda: a.propose_group_context_extensions("ext"),  # type: ignore[arg-type]
        "reinit extensions": lambda: a.propose_reinit(extensions=[3]),  # type: ignore[list-item]
        "join welcome None": lambda: mls.group_join(z, None),  # type: ignore[arg-type]
        "join welcome str": lambda: mls.group_join(z, "welcome"),  # type: ignore[arg-type]
        "join tree int": lambda: mls.group_join(z, b"\x00", 5),  # type: ignore[arg-type]
        "join external int": lambda: mls.group_join_external(z, credential, 5),  # type: ignore[arg-type]
        "create extensions": lambda: mls.group_create(z, credential, extensions=[5]),  # type: ignore[list-item]
        "create credential str": lambda: mls.group_create(z, "z"),  # type: ignore[arg-type]
        "credential None": lambda: mls.generate_credential(None),  # type: ignore[arg-type]
        "key package credential int": lambda: mls.generate_key_package(z, 7),  # type: ignore[arg-type]
        "group_get None": lambda: mls.group_get(None, z),  # type: ignore[arg-type]
        "store_psk None": lambda: mls.store_psk(b"id", None),  # type: ignore[arg-type]
        "group_id_from_message str": lambda: mls.group_id_from_message("x"),  # type: ignore[arg-type]
    }
    before = {v.client_id: _stored(mls, v) for v in (a, b)}
    for name, call in calls.items():
        with pytest.raises(InvalidArgumentTypeError) as info:
            call()
        assert isinstance(info.value, TypeError) and isinstance(info.value, MLSError), name
    assert {v.client_id: _stored(mls, v) for v in (a, b)} == before
    assert not a.has_pending_commit and mls.group_get(a.group_id, z) is None
    _still_works(a, b)


# --- secrets never in reprs or error messages ---------------------------------------------------


def _secret_values(mls: MLS, view: GroupView) -> list[bytes]:
    state = _state(mls, view)
    s = state.secrets
    values = [
        state.signature_private_key, s.init_secret, s.joiner_secret, s.welcome_secret, s.sender_data_secret,
        s.encryption_secret, s.exporter_secret, s.external_secret, s.confirmation_key, s.membership_key,
        s.resumption_psk, s.epoch_authenticator,
    ]
    values += [key for node in state.private.nodes() if (key := state.private.private_key(node)) is not None]
    return values


def _leaks(text: str, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s.hex() in text or repr(s)[2:-1] in text or str(list(s))[1:-1] in text]


def test_secrets_never_reach_reprs_or_error_messages() -> None:
    mls, (a, b) = _group("ab")
    secrets = _secret_values(mls, a) + _secret_values(mls, b)
    message = a.send(b"top secret plaintext")
    received = b.receive(message)
    output = a.update()
    state = _state(mls, a)
    objects: list[object] = [
        mls, a, b, received, output, state, state.secrets, state.private, state.secret_tree,
        state.protection(), state.pending, state.as_past_epoch(), state.secret_tree.to_state(),
        state.secret_tree.next_key(0, RatchetType.APPLICATION), a.details(), mls.storage,
    ]
    texts = [repr(obj) for obj in objects]
    assert "top secret plaintext" not in repr(received)
    hostile = [
        lambda: b.receive(message),
        lambda: b.receive(_private_at_generation(mls, a, 5000)),
        lambda: b.receive(output.commit[:-3]),
        lambda: b.receive(_forged_commit(mls, a, [Proposal(Remove(9))])),
        lambda: mls.group_join(b.client_id, b"\x00\x01\x00\x03" + bytes(8)),
        lambda: a.export_secret(b"x", b"", 0),
    ]
    for call in hostile:
        with pytest.raises(MLSError) as info:
            call()
        texts.append(str(info.value))
        texts.append(repr(info.value))
    leaked = [(text[:80], _leaks(text, secrets)) for text in texts if _leaks(text, secrets)]
    assert leaked == []


# --- hypothesis: random proposal lists in insider Commits --------------------------------------

_MLS_H, (_A_H, _B_H, _C_H) = _group("abc")
_KP_D = MLSMessage.decode(_MLS_H.generate_key_package(_MLS_H.generate_identity(), _MLS_H.generate_credential("d")).content).body
_KP_B = MLSMessage.decode(_MLS_H.generate_key_package(_B_H.client_id, _MLS_H.generate_credential("b")).content).body

_proposal = st.one_of(
    st.builds(lambda i: Proposal(Remove(i)), st.integers(0, 2**32 - 1)),
    st.sampled_from([Proposal(Add(_KP_D)), Proposal(Add(_KP_B)), Proposal(Remove(0)), Proposal(Remove(2))]),
    st.binary(min_size=0, max_size=40),  # by reference: unknown
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_proposal, min_size=0, max_size=5))
def test_insider_commits_with_random_proposal_lists_are_refused(proposals: list[Proposal | bytes]) -> None:
    """No path and a wrong confirmation tag: whatever the list, it is refused and nothing moves."""
    forged = _forged_commit(_MLS_H, _A_H, proposals)
    before = _stored(_MLS_H, _B_H)
    with pytest.raises(MLSError):
        _B_H.receive(forged)
    assert _stored(_MLS_H, _B_H) == before and _B_H.epoch == _A_H.epoch
