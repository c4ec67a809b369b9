"""The delivery service's keyless ``PublicGroup`` (RFC 9420 §12.4.2, §12.4.3.1): it follows the
official passive-client vectors and live groups epoch by epoch, exactly as the members do, and
refuses every invalid message with a typed error and no state change."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mls import MLS, CommitProcessed, GroupConfig, GroupView, ProposalProcessed, PublicGroup, PublicMember
from mls.crypto import CipherSuite, cipher_suite
from mls.errors import (
    DecodeError,
    GroupInactiveError,
    InvalidArgumentTypeError,
    MLSError,
    MembershipTagError,
    MissingRatchetTreeError,
    SignatureError,
    StaleCommitError,
    StateFormatError,
    UnknownSenderError,
    ValidationError,
    WrongEpochError,
)
from mls.group import engine
from mls.group.external import external_proposal
from mls.group.key_package import key_package_ref
from mls.group.psk import PskStore, gather_psks, psk_secret_of
from mls.group.state import GroupState
from mls.group.welcome import JoinKeys, join_from_welcome
from mls.key_schedule import welcome_key_nonce, welcome_secret
from mls.message_protection import MessageProtection
from mls.transcript import interim_transcript_hash
from mls.tree import sign_leaf_node
from mls.vectors.passive_client_welcome import VECTOR_CONFIG
from mls.wire import Credential, ExternalSender, ExternalSenders, MLSMessage, Proposal, PublicMessage, Remove
from mls.wire.codec import Writer
from mls.wire.enums import SenderType, WireFormat
from mls.wire.framing import FramedContent, FramedContentAuthData, Sender
from mls.wire.group_context import GroupContext
from mls.wire.key_package import KeyPackage
from mls.wire.proposals import Add, Commit, ProposalOrRef, Update
from mls.wire.welcome import GroupInfo, GroupSecrets, Welcome

from conftest import SHARED

SUITE = cipher_suite(1)

# --- official vectors: the public view follows every epoch a member follows -------------------

PASSIVE_FILES = {"passive-client-handling-commit.json": 91, "passive-client-welcome.json": 56}
_SHARED_VECTORS = SHARED / "vectors" / "mls"


def _cases() -> list[tuple[str, int]]:
    return [(name, index) for name, count in sorted(PASSIVE_FILES.items()) for index in range(count)]


@pytest.mark.parametrize("name", sorted(PASSIVE_FILES))
def test_passive_vector_counts(vectors_dir: Path, name: str) -> None:
    """The files hold the published number of cases, so every case below runs."""
    assert len(json.loads((vectors_dir / "mls" / name).read_text())) == PASSIVE_FILES[name]


def _welcome_group_info(case: dict, suite: CipherSuite, psks: PskStore) -> bytes:  # type: ignore[type-arg]
    """The GroupInfo the passive client decrypts from its Welcome (§12.4.3.1), as an MLSMessage."""
    welcome = MLSMessage.decode(bytes.fromhex(case["welcome"])).body
    key_package = MLSMessage.decode(bytes.fromhex(case["key_package"])).body
    assert isinstance(welcome, Welcome) and isinstance(key_package, KeyPackage)
    ref = key_package_ref(suite, key_package)
    entry = next(e for e in welcome.secrets if e.new_member == ref)
    encrypted = entry.encrypted_group_secrets
    secrets = GroupSecrets.decode(
        suite.decrypt_with_label(
            bytes.fromhex(case["init_priv"]), b"Welcome", welcome.encrypted_group_info, encrypted.kem_output, encrypted.ciphertext
        )
    )
    psk_secret = psk_secret_of(suite, gather_psks(None, secrets.psks, psks))
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, secrets.joiner_secret, psk_secret))
    info = GroupInfo.decode(suite.aead_open(key, nonce, b"", welcome.encrypted_group_info))
    return MLSMessage(info).encode()


def _assert_same_epoch(public: PublicGroup, state: GroupState) -> None:
    """Epoch, tree hash, confirmed and interim transcript hashes, whole GroupContext and tree agree."""
    assert public.epoch == state.epoch
    assert public.tree_hash == state.context.tree_hash == state.tree.tree_hash()
    assert public.confirmed_transcript_hash == state.context.confirmed_transcript_hash
    assert public.interim_transcript_hash == state.interim_transcript_hash
    assert public.group_context == state.context.encode()
    assert public.export_ratchet_tree() == state.tree.encode()


@pytest.mark.parametrize("name,index", _cases())
def test_public_group_follows_passive_vector(vectors_dir: Path, name: str, index: int) -> None:
    """Built from the Welcome's GroupInfo, fed each epoch's proposals and Commit, the public view
    matches the passive member (which checks the vector's epoch authenticators) at every epoch."""
    case = json.loads((vectors_dir / "mls" / name).read_text())[index]
    suite = cipher_suite(int(case["cipher_suite"]))
    psks = PskStore((bytes.fromhex(p["psk_id"]), bytes.fromhex(p["psk"])) for p in case["external_psks"])
    key_package = MLSMessage.decode(bytes.fromhex(case["key_package"])).body
    assert isinstance(key_package, KeyPackage)
    keys = JoinKeys(
        key_package,
        bytes.fromhex(case["init_priv"]),
        bytes.fromhex(case["encryption_priv"]),
        bytes.fromhex(case["signature_priv"]),
    )
    tree = bytes.fromhex(case["ratchet_tree"]) if case["ratchet_tree"] is not None else None
    welcome = MLSMessage.decode(bytes.fromhex(case["welcome"])).body
    assert isinstance(welcome, Welcome)
    state = join_from_welcome(welcome, {key_package_ref(suite, key_package): keys}.get, VECTOR_CONFIG, ratchet_tree=tree, resolver=psks).state
    assert state.secrets.epoch_authenticator.hex() == case["initial_epoch_authenticator"]

    public = PublicGroup.from_group_info(_welcome_group_info(case, suite, psks), tree, config=VECTOR_CONFIG)
    _assert_same_epoch(public, state)
    for number, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            result = public.process(bytes.fromhex(proposal))
            assert isinstance(result, ProposalProcessed) and result.epoch == state.epoch
            state = engine.receive(state, bytes.fromhex(proposal), VECTOR_CONFIG, psks).state
            assert result.ref in state.proposals
        committed = public.process(bytes.fromhex(epoch["commit"]))
        assert isinstance(committed, CommitProcessed) and committed.epoch == state.epoch + 1
        state = engine.receive(state, bytes.fromhex(epoch["commit"]), VECTOR_CONFIG, psks).state
        assert state.secrets.epoch_authenticator.hex() == epoch["epoch_authenticator"], f"epochs[{number}]"
        _assert_same_epoch(public, state)
        assert public.proposal_refs() == ()
        assert PublicGroup.from_bytes(public.to_bytes(), config=VECTOR_CONFIG).to_bytes() == public.to_bytes()


# --- live groups of Python members -------------------------------------------------------------


def _raw(value: object) -> bytes:
    """The bytes of an API result: ``MLSBytes.content``, or the bytes themselves."""
    content = getattr(value, "content", value)
    assert isinstance(content, bytes)
    return content


#: Members commit only when the test says so (the server sees every proposal first).
MANUAL = GroupConfig(commit_received_proposals=False)


class Call:
    """Python members of one group, all in one ``MLS`` (one storage), and the server's ``PublicGroup``."""

    def __init__(self, names: list[str]) -> None:
        self.mls = MLS(config=MANUAL)
        self.ids: dict[str, bytes] = {}
        self.views: dict[str, GroupView] = {}
        first = names[0]
        self.views[first] = self.mls.group_create(self.identity(first), self.mls.generate_credential(first))
        self.public = PublicGroup.from_group_info(self.views[first].group_info())
        if len(names) > 1:
            output = self.views[first].add_many([self.key_package(name) for name in names[1:]])
            self.deliver(output.commit, welcome=output.welcome)

    def identity(self, name: str) -> bytes:
        if name not in self.ids:
            self.ids[name] = _raw(self.mls.generate_identity())
        return self.ids[name]

    def key_package(self, name: str) -> bytes:
        return _raw(self.mls.generate_key_package(self.identity(name), self.mls.generate_credential(name)))

    def deliver(self, commit: bytes, *, welcome: bytes | None = None) -> CommitProcessed:
        """The server accepts the Commit first, then every member (the committer too) receives it."""
        result = self.public.process(commit)
        assert isinstance(result, CommitProcessed)
        for view in self.views.values():
            view.receive(commit)
        self.views = {name: view for name, view in self.views.items() if not view.details().removed}
        if welcome is not None:
            for name, client_id in self.ids.items():
                if name not in self.views:
                    try:
                        self.views[name] = self.mls.group_join(client_id, welcome)
                    except MLSError:  # this client's KeyPackage is not in this Welcome
                        continue
        self.check()
        return result

    def propose(self, message: object) -> ProposalProcessed:
        message = _raw(message)
        result = self.public.process(message)
        assert isinstance(result, ProposalProcessed)
        for view in self.views.values():
            view.receive(message)
        return result

    def check(self) -> None:
        """The public view agrees with every member: epoch, GroupContext (tree hash, transcript), members."""
        public = self.public
        for view in self.views.values():
            info = MLSMessage.decode(view.group_info(external_pub=False)).body
            assert isinstance(info, GroupInfo)
            context = info.group_context
            assert public.epoch == view.epoch == context.epoch
            assert public.group_context == context.encode()
            assert public.tree_hash == context.tree_hash
            assert public.confirmed_transcript_hash == context.confirmed_transcript_hash
            assert public.interim_transcript_hash == interim_transcript_hash(
                SUITE, context.confirmed_transcript_hash, info.confirmation_tag
            )
            assert public.export_ratchet_tree() == view.ratchet_tree()
            details = view.details()
            assert [(m.leaf_index, m.credential, SUITE.hash(m.signature_key)) for m in public.members()] == [
                (m.leaf_index, m.credential, m.client_id) for m in details.members
            ]

    def leaf(self, name: str) -> int:
        return next(m.leaf_index for m in self.views[name].details().members if m.client_id == self.ids[name])


def _credential(name: str) -> bytes:
    return Credential.basic(name.encode()).encode()


def test_adds_removes_updates_and_a_restart_in_the_middle() -> None:
    call = Call(["alice", "bob", "carol"])
    assert call.public.epoch == 1
    output = call.views["bob"].add(call.key_package("dave"))
    result = call.deliver(output.commit, welcome=output.welcome)
    assert [(m.leaf_index, m.credential) for m in result.added] == [(3, _credential("dave"))]
    assert SUITE.hash(result.added[0].signature_key) == call.ids["dave"] and "dave" in call.views
    assert result.committer == call.leaf("bob") and not result.external
    result = call.deliver(call.views["carol"].update().commit)
    assert result.added == result.removed == result.updated == () and result.committer == 2
    # the server restarts: the stored view continues exactly where it was
    blob = call.public.to_bytes()
    call.public = PublicGroup.from_bytes(blob)
    assert call.public.to_bytes() == blob
    call.check()
    result = call.deliver(call.views["alice"].remove(call.ids["bob"]).commit)
    assert [(m.leaf_index, m.credential, SUITE.hash(m.signature_key)) for m in result.removed] == [
        (1, _credential("bob"), call.ids["bob"])
    ]
    assert "bob" not in call.views
    output = call.views["carol"].add(call.key_package("erin"))
    result = call.deliver(output.commit, welcome=output.welcome)
    assert [m.leaf_index for m in result.added] == [1]  # the blank leaf is reused
    assert all(isinstance(m, PublicMember) for m in call.public.members()) and len(call.public.members()) == 4


def test_welcome_joiners_follow_with_the_server() -> None:
    call = Call(["alice"])
    output = call.views["alice"].add_many([call.key_package("bob"), call.key_package("carol")])
    welcome_refs = tuple(entry.new_member for entry in MLSMessage.decode(output.welcome).body.secrets)
    result = call.deliver(output.commit, welcome=output.welcome)
    assert sorted(call.views) == ["alice", "bob", "carol"]
    assert [m.leaf_index for m in result.added] == [1, 2]
    # the KeyPackageRefs of the added KeyPackages are those the Welcome names its new members by
    assert result.key_package_refs == welcome_refs and len(set(welcome_refs)) == 2


def test_proposals_by_reference_from_several_members() -> None:
    call = Call(["alice", "bob", "carol", "dave"])
    update = call.propose(call.views["bob"].propose_update())
    assert (update.proposal_type, update.sender_type, update.sender_index) == (2, "member", 1)
    remove = call.propose(call.views["carol"].propose_remove(call.ids["dave"]))
    add = call.propose(call.views["dave"].propose_add(call.key_package("erin")))
    assert call.public.proposal_refs() == (update.ref, remove.ref, add.ref)
    output = call.views["alice"].commit()
    result = call.deliver(output.commit, welcome=output.welcome)
    assert call.public.proposal_refs() == ()
    assert [m.leaf_index for m in result.updated] == [1]
    assert [m.leaf_index for m in result.removed] == [3]
    assert [(m.leaf_index, m.credential) for m in result.added] == [(3, _credential("erin"))]
    assert "erin" in call.views


def test_a_member_leaves_by_proposing_its_own_removal() -> None:
    call = Call(["alice", "bob", "carol"])
    call.propose(call.views["carol"].propose_remove(call.ids["carol"]))
    result = call.deliver(call.views["bob"].commit().commit)
    assert [m.leaf_index for m in result.removed] == [2] and "carol" not in call.views


def test_external_joins_and_a_resync() -> None:
    call = Call(["alice", "bob"])
    view, output = call.mls.group_join_external(
        call.identity("carol"), call.mls.generate_credential("carol"), call.views["bob"].group_info()
    )
    result = call.public.process(output.commit)
    assert isinstance(result, CommitProcessed) and result.external and result.committer == 2
    assert [(m.leaf_index, m.credential) for m in result.added] == [(2, _credential("carol"))]
    for member in call.views.values():
        member.receive(output.commit)
    call.views["carol"] = view
    call.check()
    # a joiner given the GroupInfo without its tree, and the tree apart
    view, output = call.mls.group_join_external(
        call.identity("dave"),
        call.mls.generate_credential("dave"),
        call.views["alice"].group_info(ratchet_tree=False),
        call.views["alice"].ratchet_tree(),
    )
    result = call.public.process(output.commit)
    assert isinstance(result, CommitProcessed) and result.external and result.committer == 3
    for member in call.views.values():
        member.receive(output.commit)
    call.views["dave"] = view
    call.check()
    # the server builds its view the same way: GroupInfo without the tree, tree apart
    rebuilt = PublicGroup.from_group_info(
        call.views["alice"].group_info(ratchet_tree=False), call.views["alice"].ratchet_tree()
    )
    assert rebuilt.group_context == call.public.group_context
    with pytest.raises(MissingRatchetTreeError):
        PublicGroup.from_group_info(call.views["alice"].group_info(ratchet_tree=False))


def test_a_psk_commit_and_a_group_context_extensions_commit() -> None:
    call = Call(["alice", "bob"])
    call.mls.store_psk(b"shared-psk", bytes(32))
    call.deliver(call.views["alice"].add_psk(b"shared-psk").commit)
    psk = call.propose(call.views["bob"].propose_psk(b"shared-psk"))
    assert psk.proposal_type == 4
    call.deliver(call.views["alice"].commit().commit)
    call.deliver(call.views["bob"].add_resumption_psk(1).commit)
    private_key, public_key = SUITE.generate_signature_key_pair()
    senders = ExternalSenders((ExternalSender(public_key, Credential.basic(b"server")),))
    call.deliver(call.views["alice"].set_group_context_extensions([senders.to_extension()]).commit)
    # a proposal by the external sender the extension names is verified with its key
    context = GroupContext.decode(call.public.group_context)
    proposal = call.propose(external_proposal(context, 0, Proposal(Remove(0)), private_key))
    assert (proposal.sender_type, proposal.sender_index) == ("external", 0)
    result = call.deliver(call.views["bob"].commit().commit)
    assert [m.leaf_index for m in result.removed] == [0]
    other, _ = SUITE.generate_signature_key_pair()
    context = GroupContext.decode(call.public.group_context)
    before = call.public.to_bytes()
    with pytest.raises(SignatureError):
        call.public.process(external_proposal(context, 0, Proposal(Remove(1)), other))
    with pytest.raises(UnknownSenderError):
        call.public.process(external_proposal(context, 4, Proposal(Remove(1)), private_key))
    assert call.public.to_bytes() == before


def test_new_member_proposal_is_verified_with_its_key_package_key() -> None:
    call = Call(["alice", "bob"])
    key_package = MLSMessage.decode(call.key_package("carol")).body
    assert isinstance(key_package, KeyPackage)
    context = GroupContext.decode(call.public.group_context)
    content = FramedContent(context.group_id, context.epoch, Sender.new_member_proposal(), b"", Proposal(Add(key_package)))
    forged = MLSMessage(MessageProtection(SUITE, context).protect_public(content, SUITE.generate_signature_key_pair()[0]))
    _refused(call, forged.encode(), SignatureError)
    message = MLSMessage(MessageProtection(SUITE, context).protect_public(content, _private_key(call, "carol"))).encode()
    result = call.propose(message)
    assert (result.proposal_type, result.sender_type, result.sender_index) == (1, "new_member_proposal", None)
    output = call.views["bob"].commit()
    result = call.deliver(output.commit, welcome=output.welcome)
    assert [m.credential for m in result.added] == [_credential("carol")] and "carol" in call.views
    _refused(call, message, WrongEpochError)  # replayed into the next epoch


def test_reinit_ends_the_public_group() -> None:
    call = Call(["alice", "bob"])
    call.propose(call.views["bob"].propose_reinit())
    commit = call.views["alice"].commit().commit
    result = call.public.process(commit)
    assert isinstance(result, CommitProcessed) and result.reinit and not call.public.active
    for view in call.views.values():
        view.receive(commit)
        assert view.details().reinit_pending and view.epoch == call.public.epoch
    stored = PublicGroup.from_bytes(call.public.to_bytes())
    assert not stored.active
    message = call.views["alice"]._run(
        lambda state: (
            MLSMessage(
                MessageProtection(SUITE, state.context, membership_key=state.secrets.membership_key).protect_public(
                    FramedContent(state.group_id, state.epoch, Sender.member(0), b"", Proposal(Remove(1))),
                    state.signature_private_key,
                )
            ).encode(),
            state,
        )
    )
    with pytest.raises(GroupInactiveError):
        call.public.process(message)


# --- rejections: typed errors, no state change ------------------------------------------------


def _private_key(call: Call, name: str) -> bytes:
    return call.mls.identity(call.ids[name]).private_key


def _resign(call: Call, message: bytes, signer: str, **changes: object) -> bytes:
    """The PublicMessage with its FramedContent changed (``changes``) and signed again by ``signer``.

    The membership tag is kept as it was: a keyless view cannot check it.
    """
    public = MLSMessage.decode(message).body
    assert isinstance(public, PublicMessage)
    content = replace(public.content, **changes)  # type: ignore[arg-type]
    context = GroupContext.decode(call.public.group_context)
    signature = MessageProtection(SUITE, context).sign(WireFormat.MLS_PUBLIC_MESSAGE, content, _private_key(call, signer))
    tag = public.membership_tag if content.sender.sender_type == SenderType.MEMBER else None
    return MLSMessage(PublicMessage(content, FramedContentAuthData(signature, public.auth.confirmation_tag), tag)).encode()


def _commit_body(message: bytes) -> Commit:
    public = MLSMessage.decode(message).body
    assert isinstance(public, PublicMessage) and isinstance(public.content.body, Commit)
    return public.content.body


def _refused(call: Call, message: bytes, error: type[MLSError], match: str | None = None) -> None:
    before = call.public.to_bytes()
    with pytest.raises(error, match=match):
        call.public.process(message)
    assert call.public.to_bytes() == before


@pytest.fixture(scope="module")
def hostile() -> tuple[Call, bytes]:
    """A four-member group, Bob's cached Update proposals, and Alice's valid Commit (kept pending)."""
    call = Call(["alice", "bob", "carol", "dave"])
    call.propose(call.views["bob"].propose_update())
    return call, call.views["alice"].update().commit


def test_bad_signature(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    public = MLSMessage.decode(commit).body
    assert isinstance(public, PublicMessage)
    signature = bytearray(public.auth.signature)
    signature[5] ^= 1
    forged = replace(public, auth=replace(public.auth, signature=bytes(signature)))
    _refused(call, MLSMessage(forged).encode(), SignatureError)
    # signed by another member's key while naming Alice as sender
    _refused(call, _resign(call, commit, "bob"), SignatureError)


def test_bad_parent_hash(hostile: tuple[Call, bytes]) -> None:
    """The committer re-signs its path leaf with a wrong parent_hash: the leaf signature holds,
    the parent-hash check (§7.9.2) refuses it."""
    call, commit = hostile
    body = _commit_body(commit)
    assert body.path is not None
    leaf = replace(body.path.leaf_node, parent_hash=bytes(32))
    leaf = sign_leaf_node(SUITE, leaf, _private_key(call, "alice"), call.public.group_id, 0)
    path = replace(body.path, leaf_node=leaf)
    _refused(call, _resign(call, commit, "alice", body=replace(body, path=path)), ValidationError, "parent_hash")


def test_update_path_leaf_signed_for_another_leaf(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    body = _commit_body(commit)
    assert body.path is not None
    leaf = sign_leaf_node(SUITE, body.path.leaf_node, _private_key(call, "alice"), call.public.group_id, 3)
    path = replace(body.path, leaf_node=leaf)
    _refused(call, _resign(call, commit, "alice", body=replace(body, path=path)), SignatureError)


def _by_value(*proposals: Proposal) -> tuple[ProposalOrRef, ...]:
    return tuple(ProposalOrRef(p) for p in proposals)


def test_invalid_proposal_lists(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    body = _commit_body(commit)
    present = MLSMessage.decode(_raw(call.mls.generate_key_package(call.ids["carol"], _credential("carol")))).body
    assert isinstance(present, KeyPackage)
    cases = [
        (_by_value(Proposal(Add(present))), "signature_key is already used"),
        (_by_value(Proposal(Remove(7))), "blank or missing leaf"),
        (_by_value(Proposal(Remove(0))), "removes the committer"),
        (_by_value(Proposal(Remove(2)), Proposal(Remove(2))), "several Updates/Removes"),
    ]
    for proposals, match in cases:
        _refused(call, _resign(call, commit, "alice", body=replace(body, proposals=proposals)), ValidationError, match)


def test_two_updates_of_one_leaf(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    refs = call.public.proposal_refs()
    second = _raw(call.views["bob"].propose_update())
    result = call.public.process(second)
    assert isinstance(result, ProposalProcessed)
    body = _commit_body(commit)
    both = replace(body, proposals=(ProposalOrRef(refs[0]), ProposalOrRef(result.ref)))
    _refused(call, _resign(call, commit, "alice", body=both), ValidationError, "several Updates/Removes")
    # the Update from the committer itself
    alice_update = call.views["alice"]._run(lambda state: (engine.update_proposal(state, call.mls.config), state))
    mine = replace(body, proposals=_by_value(alice_update))
    _refused(call, _resign(call, commit, "alice", body=mine), ValidationError)


def test_unknown_proposal_reference(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    body = replace(_commit_body(commit), proposals=(ProposalOrRef(bytes(32)),))
    _refused(call, _resign(call, commit, "alice", body=body), ValidationError, "unknown proposal")


def test_invalid_proposals_are_refused_at_the_cache(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    public = MLSMessage.decode(_raw(call.views["carol"].propose_update())).body
    assert isinstance(public, PublicMessage)
    message = MLSMessage(public).encode()
    _refused(call, _resign(call, message, "carol", body=Proposal(Remove(9))), ValidationError, "blank or missing leaf")
    present = MLSMessage.decode(_raw(call.mls.generate_key_package(call.ids["dave"], _credential("dave")))).body
    assert isinstance(present, KeyPackage)
    _refused(call, _resign(call, message, "carol", body=Proposal(Add(present))), ValidationError)
    update = public.content.body
    assert isinstance(update, Proposal) and isinstance(update.body, Update)
    # carol's Update leaf presented as dave's: signed for another leaf index
    _refused(call, _resign(call, message, "dave", sender=Sender.member(3)), SignatureError)


def test_wrong_epoch_and_wrong_group(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    public = MLSMessage.decode(commit).body
    assert isinstance(public, PublicMessage)
    epoch = public.content.epoch
    _refused(call, _resign(call, commit, "alice", epoch=epoch + 1), WrongEpochError)
    _refused(call, _resign(call, commit, "alice", epoch=epoch - 1), StaleCommitError)
    _refused(call, _resign(call, commit, "alice", group_id=bytes(32)), ValidationError, "another group")
    other = Call(["x", "y"])
    _refused(call, other.views["x"].update().commit, ValidationError, "another group")


def test_commit_from_a_non_member_leaf(hostile: tuple[Call, bytes]) -> None:
    call, commit = hostile
    _refused(call, _resign(call, commit, "alice", sender=Sender.member(9)), UnknownSenderError)
    _refused(call, _resign(call, commit, "alice", sender=Sender.external(0)), UnknownSenderError)


def test_private_messages_are_refused(hostile: tuple[Call, bytes]) -> None:
    call, _ = hostile
    _refused(call, _raw(call.views["bob"].send(b"hello")), ValidationError, "application message")
    private = MLS(config=GroupConfig(handshake_wire_format=WireFormat.MLS_PRIVATE_MESSAGE, commit_received_proposals=False))
    view = private.group_create(private.generate_identity(), private.generate_credential("a"))
    public = PublicGroup.from_group_info(view.group_info())
    before = public.to_bytes()
    with pytest.raises(ValidationError, match="PrivateMessage"):
        public.process(view.update().commit)
    assert public.to_bytes() == before
    _refused(call, call.views["bob"].group_info(), ValidationError, "not a group handshake")
    _refused(call, call.key_package("zed"), ValidationError, "not a group handshake")


def _keyed_positions(commit: bytes) -> range:
    """Where a Commit PublicMessage ends: ``confirmation_tag<V>`` then ``membership_tag<V>`` (§6.2),
    neither covered by the signature; their bytes are checked only with the epoch's keys."""
    return range(len(commit) - 2 * SUITE.Nh - 1, len(commit))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_commit_is_refused(hostile: tuple[Call, bytes], data: st.DataObject) -> None:
    """Flipping bytes of a valid Commit anywhere the signature (or the framing) covers gives a typed
    error and no change; the two MACs (confirmation and membership tag) need keys (module docstring)."""
    call, commit = hostile
    keyed = _keyed_positions(commit)
    mutated = bytearray(commit)
    positions = data.draw(st.lists(st.integers(0, len(commit) - 1), min_size=1, max_size=3, unique=True))
    assume(not all(position in keyed and position != keyed.start + SUITE.Nh for position in positions))
    for position in positions:
        mutated[position] ^= data.draw(st.integers(1, 255))
    _refused(call, bytes(mutated), MLSError)


def test_a_forged_confirmation_tag_is_beyond_a_keyless_view(hostile: tuple[Call, bytes]) -> None:
    """Documented limit: only the epoch's confirmation_key checks the tag; the view accepts the
    Commit (and derives the interim hash from it) while every member refuses it."""
    call, commit = hostile
    public = MLSMessage.decode(commit).body
    assert isinstance(public, PublicMessage) and public.auth.confirmation_tag is not None
    forged = MLSMessage(replace(public, auth=replace(public.auth, confirmation_tag=bytes(SUITE.Nh)))).encode()
    restored = PublicGroup.from_bytes(call.public.to_bytes())
    assert isinstance(restored.process(forged), CommitProcessed)
    with pytest.raises(MembershipTagError):  # the membership tag covers the confirmation tag (§6.2)
        call.views["bob"].receive(forged)


@settings(max_examples=80, deadline=None)
@given(cut=st.integers(0, 100_000), extra=st.binary(min_size=0, max_size=4))
def test_truncated_or_extended_commit(hostile: tuple[Call, bytes], cut: int, extra: bytes) -> None:
    call, commit = hostile
    blob = commit[: cut % len(commit)] if not extra else commit + extra
    _refused(call, blob, DecodeError)


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=400))
def test_random_garbage(hostile: tuple[Call, bytes], blob: bytes) -> None:
    call, _ = hostile
    _refused(call, blob, MLSError)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=200), cut=st.integers(0, 10_000))
def test_corrupt_stored_blob(hostile: tuple[Call, bytes], blob: bytes, cut: int) -> None:
    call, _ = hostile
    stored = call.public.to_bytes()
    for corrupt in (blob, stored[: cut % len(stored)], stored + b"\x00", b"MLSP\x00\x02" + stored[6:]):
        with pytest.raises(StateFormatError):
            PublicGroup.from_bytes(corrupt)


def test_stored_blob_with_another_tree_is_refused(hostile: tuple[Call, bytes]) -> None:
    call, _ = hostile
    writer = Writer()
    writer.raw(b"MLSP")
    writer.u16(1)
    writer.u16(1)
    GroupContext.decode(call.public.group_context).write(writer)
    writer.opaque(Call(["p", "q", "r", "s"]).public.export_ratchet_tree())
    writer.opaque(call.public.interim_transcript_hash)
    writer.u8(0)
    writer.vector([], Writer.opaque)
    with pytest.raises(StateFormatError, match="tree hash"):
        PublicGroup.from_bytes(writer.getvalue())


def test_bad_group_info_inputs(hostile: tuple[Call, bytes]) -> None:
    call, _ = hostile
    info = call.views["carol"].group_info()
    message = MLSMessage.decode(info).body
    assert isinstance(message, GroupInfo)
    forged = replace(message, signature=bytes(len(message.signature)))
    with pytest.raises(SignatureError):
        PublicGroup.from_group_info(MLSMessage(forged).encode())
    with pytest.raises(ValidationError):
        PublicGroup.from_group_info(MLSMessage(replace(message, signer=9)).encode())
    with pytest.raises(DecodeError):
        PublicGroup.from_group_info(info[:-3])
    with pytest.raises(ValidationError):
        PublicGroup.from_group_info(call.key_package("zed"))
    without = call.views["carol"].group_info(ratchet_tree=False)
    with pytest.raises(DecodeError):
        PublicGroup.from_group_info(without, b"\x05\x01")


def test_group_info_with_the_tree_of_another_epoch() -> None:
    """The signer's leaf is unchanged, so the signature holds; the tree hash differs (§12.4.3.1)."""
    call = Call(["alice", "bob"])
    info = call.views["alice"].group_info(ratchet_tree=False)
    call.deliver(call.views["bob"].update().commit)
    with pytest.raises(ValidationError, match="tree hash"):
        PublicGroup.from_group_info(info, call.views["alice"].ratchet_tree())


def test_arguments_that_are_not_bytes(hostile: tuple[Call, bytes]) -> None:
    call, _ = hostile
    for value in (None, "a string", 5, [1, 2]):
        _refused(call, value, InvalidArgumentTypeError)  # type: ignore[arg-type]
        with pytest.raises(StateFormatError):
            PublicGroup.from_bytes(value)  # type: ignore[arg-type]


def test_valid_commit_still_accepted_after_the_rejections(hostile: tuple[Call, bytes]) -> None:
    """Runs after the rejection tests of this module: the untouched Commit is still valid."""
    call, commit = hostile
    result = call.public.process(commit)
    assert isinstance(result, CommitProcessed) and result.committer == 0
    for view in call.views.values():
        view.receive(commit)
    call.check()


# --- cost: the tree's cached hashes are reused (§7.8) -------------------------------------------


def _hashes_to_process_an_update(n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    call = Call(["alice"])
    output = call.views["alice"].add_many([call.key_package(f"m{i}") for i in range(n - 1)])
    call.public.process(output.commit)
    call.views["alice"].receive(output.commit)
    commit = call.views["alice"].update().commit
    calls = []
    original = CipherSuite.hash
    monkeypatch.setattr(CipherSuite, "hash", lambda self, data: calls.append(1) or original(self, data))
    result = call.public.process(commit)
    monkeypatch.setattr(CipherSuite, "hash", original)
    assert isinstance(result, CommitProcessed) and result.epoch == 2
    return len(calls)


def test_a_commit_costs_hashes_along_its_path_not_per_member(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 times the members, 4 more tree levels: a handful more hashes (tree and parent hashes
    of the path, §7.8, §7.9), far from one per member."""
    small = _hashes_to_process_an_update(16, monkeypatch)
    large = _hashes_to_process_an_update(256, monkeypatch)
    assert large <= small + 2 * 4 + 2
    assert large < 64
