"""Reinitialization through the public API (RFC 9420 §11.2, §12.1.5, §12.4.3.1).

A ReInit proposal is committed, the old group stops, one member creates the
successor with ``GroupView.reinit_successor`` (the ReInit's group id, version,
cipher suite and extensions; a resumption PSK with usage ``reinit`` of the
old group's last epoch in the key schedule and the Welcome), and the others
join it from the Welcome. A Welcome whose reinit PSK does not come from the
ReInit epoch of the old group, or whose group does not match the ReInit, is
refused and changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import agree, deliver
from mls import MLS, GroupView
from mls.crypto import cipher_suite
from mls.errors import CryptoError, GroupInactiveError, MissingPSKError, ValidationError
from mls.group import engine
from mls.group.commit import create_commit
from mls.group.key_package import create_leaf_node
from mls.wire import MLSMessage, PublicMessage
from mls.wire.enums import CredentialType, ResumptionPSKUsage
from mls.wire.extensions import RequiredCapabilities
from mls.wire.proposals import Add, Proposal
from mls.wire.psk import PreSharedKeyID

EXPORTS = [("SFrame 1.0 Base Key", b"", 16), ("another label", b"ctx", 48)]


class Member:
    """One client with its own ``MLS`` object (its own storage)."""

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.name = name
        self.mls = MLS(path) if path is not None else MLS()
        self.client_id = self.mls.generate_identity().content
        self.credential = self.mls.generate_credential(name)

    def key_package(self, suite: int | None = None) -> bytes:
        return self.mls.generate_key_package(self.client_id, self.credential, cipher_suite=suite).content


def _group(members: list[Member]) -> list[GroupView]:
    creator = members[0].mls.group_create(members[0].client_id, members[0].credential)
    output = creator.add_many([m.key_package() for m in members[1:]])
    creator.receive(output.commit)
    assert output.welcome is not None
    return [creator] + [m.mls.group_join(m.client_id, output.welcome) for m in members[1:]]


def _reinit(views: list[GroupView], proposer: int, committer: int, **reinit: object) -> None:
    """``proposer`` proposes a ReInit, ``committer`` commits it, every member processes the Commit.

    Every other member answers the proposal with a Commit of its own (as the Web
    API does); the delivery service keeps the committer's, which drops the others.
    """
    proposal = views[proposer].propose_reinit(**reinit)  # type: ignore[arg-type]
    answers = [view.receive(proposal) for view in views]
    output = answers[committer].commit_output if committer != proposer else views[committer].commit()
    assert output is not None
    for view in views:
        received = view.receive(output.commit)
        assert received.reinit is not None and not view.has_pending_commit
    assert all(v.details().reinit_pending for v in views)


def _suite_of(welcome: bytes) -> int:
    return MLSMessage.decode(welcome).body.cipher_suite  # type: ignore[union-attr]


# --- the full scenario --------------------------------------------------------------------------


def test_reinit_to_a_new_cipher_suite_and_group_id() -> None:
    members = [Member(f"m{i}") for i in range(4)]
    old = _group(members)
    late = old[3].send(b"sent in the old group")
    new_group_id = b"successor of the old group"
    _reinit(old, proposer=1, committer=0, group_id=new_group_id, cipher_suite=3)
    old_epoch = agree(old, EXPORTS)
    old_export = old[0].export_secret("SFrame 1.0 Base Key", b"", 16)

    # a member other than the committer recreates the group (§11.2: steps may be done by different members)
    creator = 2
    key_packages = [m.key_package(suite=3) for i, m in enumerate(members) if i != creator]
    new, output = old[creator].reinit_successor(key_packages)
    assert (new.group_id, new.epoch, new.client_id) == (new_group_id, 1, members[creator].client_id)
    assert output.welcome is not None and _suite_of(output.welcome) == 3
    assert not new.has_pending_commit  # the first Commit is merged: nobody else is in epoch 0
    joined = {creator: new}
    for i, m in enumerate(members):
        if i != creator:
            joined[i] = m.mls.group_join(m.client_id, output.welcome)
    views = [joined[i] for i in range(4)]
    assert agree(views, EXPORTS) == 1
    assert {v.group_id for v in views} == {new_group_id}
    assert {m.client_id for m in views[0].details().members} == {m.client_id for m in members}
    assert views[0].export_secret("SFrame 1.0 Base Key", b"", 16) != old_export

    # messages flow both ways, and the group goes on
    assert views[1].receive(views[3].send(b"hello in suite 3")).content == b"hello in suite 3"
    assert views[3].receive(views[0].send(b"and back")).content == b"and back"
    update = views[1].update()
    deliver(update.commit, views)
    assert agree(views, EXPORTS) == 2

    # the old group is still there: stopped, but it reads late messages and exports
    assert old[0].receive(late).content == b"sent in the old group"
    assert old[0].epoch == old_epoch and old[0].export_secret("SFrame 1.0 Base Key", b"", 16) == old_export
    with pytest.raises(GroupInactiveError):
        old[0].send(b"x")


def test_reinit_keeping_the_group_id_replaces_the_old_state(tmp_path: Path) -> None:
    """Same suite, same group id, new extensions; every member on SQLite, restarted before the successor."""
    members = [Member(f"m{i}", tmp_path / f"m{i}.db") for i in range(3)]
    old = _group(members)
    group_id = old[0].group_id
    extensions = (RequiredCapabilities(credential_types=(CredentialType.BASIC,)).to_extension(),)
    _reinit(old, proposer=2, committer=1, group_id=group_id, cipher_suite=1, extensions=extensions)
    for m in members:  # every process restarts between the ReInit and the successor
        m.mls.close()
        m.mls = MLS(tmp_path / f"{m.name}.db")
    old = [m.mls.group_get(group_id, m.client_id) for m in members]  # type: ignore[misc]
    assert all(v is not None and v.details().reinit_pending for v in old)

    new, output = old[0].reinit_successor([m.key_package() for m in members[1:]])
    assert output.welcome is not None and _suite_of(output.welcome) == 1
    views = [new] + [m.mls.group_join(m.client_id, output.welcome) for m in members[1:]]
    assert agree(views, EXPORTS) == 1
    assert views[0]._state.context.extensions == extensions  # type: ignore[attr-defined]
    assert not views[2].details().reinit_pending  # the stored state is now the successor's
    assert views[0].receive(views[2].send(b"same id, new epoch 1")).content == b"same id, new epoch 1"
    for m in members:
        m.mls.close()


def test_the_first_commit_carries_no_reinit_psk_proposal() -> None:
    """§11.2: a PreSharedKey proposal with usage reinit is invalid; the PSK is in the Welcome only."""
    members = [Member("a"), Member("b")]
    old = _group(members)
    _reinit(old, 0, 0, cipher_suite=1)
    _, output = old[0].reinit_successor([members[1].key_package()])
    body = MLSMessage.decode(output.commit).body
    assert isinstance(body, PublicMessage)
    kinds = [type(item.body.body).__name__ for item in body.content.body.proposals]  # type: ignore[union-attr]
    assert kinds == ["Add"]


def test_a_joiner_without_the_old_group_cannot_join() -> None:
    """The Welcome names the old group's resumption PSK: a member that dropped that group lacks it."""
    members = [Member("a"), Member("b"), Member("c")]
    old = _group(members)
    _reinit(old, 0, 0, group_id=b"next", cipher_suite=3)
    _, output = old[0].reinit_successor([members[1].key_package(3), members[2].key_package(3)])
    assert output.welcome is not None
    old[1].delete_state()
    with pytest.raises(MissingPSKError):
        members[1].mls.group_join(members[1].client_id, output.welcome)
    assert members[1].mls.group_get(b"next", members[1].client_id) is None
    assert members[2].mls.group_join(members[2].client_id, output.welcome).epoch == 1


# --- refusals by the creator ---------------------------------------------------------------------


def test_no_successor_without_a_committed_reinit() -> None:
    members = [Member("a"), Member("b")]
    old = _group(members)
    with pytest.raises(ValidationError):
        old[0].reinit_successor([members[1].key_package()])
    deliver(old[1].propose_reinit(group_id=b"next"), old)  # proposed, not committed
    with pytest.raises(ValidationError):
        old[0].reinit_successor([members[1].key_package()])
    assert members[0].mls.group_get(b"next", members[0].client_id) is None
    assert old[0].epoch == 1 and not old[0].details().reinit_pending


def test_successor_key_packages_are_checked() -> None:
    members = [Member("a"), Member("b"), Member("c")]
    outsider = Member("eve")
    old = _group(members)
    _reinit(old, 1, 1, group_id=b"next", cipher_suite=3)
    b3, c3 = members[1].key_package(3), members[2].key_package(3)
    for key_packages, match in (
        ([b3, outsider.key_package(3)], "not from another member"),  # not a member of the old group
        ([b3, members[2].key_package()], "cipher suite"),  # suite 1, the ReInit says 3
        ([b3, b3], "same member"),
        ([members[0].key_package(3)], "not from another member"),  # the creator itself
        ([b"not a key package"], "version"),  # DecodeError, a ValueError
    ):
        with pytest.raises((ValidationError, ValueError), match=match):
            old[0].reinit_successor(key_packages)
        assert members[0].mls.group_get(b"next", members[0].client_id) is None
    new, _ = old[0].reinit_successor([b3, c3])
    assert new.epoch == 1
    with pytest.raises(ValidationError):  # a second successor for the same ReInit
        old[0].reinit_successor([b3, c3])


def test_a_new_suite_with_another_signature_scheme_is_refused() -> None:
    members = [Member("a"), Member("b")]
    old = _group(members)
    with pytest.raises(ValidationError):
        members[1].key_package(suite=2)  # P-256: this Ed25519 identity cannot sign for it
    _reinit(old, 0, 0, cipher_suite=2)
    with pytest.raises(ValidationError):
        old[0].reinit_successor([])


# --- refusals by joiners -------------------------------------------------------------------------


def _forged_welcome(
    creator: Member,
    old: GroupView,
    key_packages: list[bytes],
    *,
    group_id: bytes,
    suite_id: int,
    psk_group_id: bytes,
    psk_epoch: int,
    psk_secret: bytes,
) -> bytes:
    """A successor Welcome built like ``reinit_successor`` does, with chosen parameters and PSK."""
    state = old._state  # type: ignore[attr-defined]
    suite = cipher_suite(suite_id)
    config = creator.mls.config
    leaf, encryption_key = create_leaf_node(
        suite, state.signature_private_key, state.signature_key, state.own_leaf.credential, config
    )
    fresh = engine.create_group(suite, state.signature_private_key, leaf, encryption_key, config, group_id=group_id)
    psk = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, psk_group_id, psk_epoch, os.urandom(suite.Nh))
    adds = [Proposal(Add(MLSMessage.decode(kp).body)) for kp in key_packages]  # type: ignore[arg-type]
    pending = create_commit(fresh, config, by_value=adds, injected_psks=[(psk, psk_secret)])
    assert pending.welcome is not None
    return pending.welcome


def test_a_welcome_whose_psk_does_not_match_the_old_group_is_refused() -> None:
    members = [Member("a"), Member("b"), Member("c")]
    old = _group(members)
    side = _group([members[0], members[1]])  # another group of a and b, never reinitialized
    new_group_id = b"the successor"
    _reinit(old, 2, 0, group_id=new_group_id, cipher_suite=3)
    a, b = members[0], members[1]
    state = old[0]._state  # type: ignore[attr-defined]
    assert state.epoch == 2 and 1 in state.resumption_psks
    b3 = b.key_package(3)
    right = dict(group_id=new_group_id, suite_id=3, psk_group_id=old[0].group_id, psk_epoch=2)
    cases: list[tuple[type[Exception], str, dict, list[bytes]]] = [
        # the PSK of an earlier epoch than the one that committed the ReInit
        (ValidationError, "not of the epoch", {**right, "psk_epoch": 1, "psk_secret": state.resumption_psks[1]}, [b3]),
        # the right PSK id with another secret: the Welcome does not even decrypt
        (CryptoError, "AEAD", {**right, "psk_secret": os.urandom(32)}, [b3]),
        # the right PSK, but a group that is not the one the ReInit asked for
        (ValidationError, "does not match", {**right, "group_id": b"another id", "psk_secret": state.secrets.resumption_psk}, [b3]),
        (ValidationError, "does not match", {**right, "suite_id": 1, "psk_secret": state.secrets.resumption_psk}, [b.key_package()]),
        # the resumption PSK of a group in which no ReInit was committed
        (
            ValidationError,
            "no ReInit was committed",
            {**right, "psk_group_id": side[0].group_id, "psk_epoch": 1, "psk_secret": side[0]._state.secrets.resumption_psk},  # type: ignore[attr-defined]
            [b3],
        ),
        # a group b was never in
        (MissingPSKError, "not a member", {**right, "psk_group_id": b"unknown group", "psk_epoch": 2, "psk_secret": os.urandom(32)}, [b3]),
    ]
    for error, match, parameters, key_packages in cases:
        welcome = _forged_welcome(a, old[0], key_packages, **parameters)
        with pytest.raises(error, match=match):
            b.mls.group_join(b.client_id, welcome)
        for gid in (new_group_id, b"another id"):
            assert b.mls.group_get(gid, b.client_id) is None
        assert old[1].details().reinit_pending and old[1].epoch == 2

    # the genuine Welcome (forged the same way, with the right PSK) is accepted: the checks are the only difference
    genuine = _forged_welcome(a, old[0], [b3], **right, psk_secret=state.secrets.resumption_psk)
    assert b.mls.group_join(b.client_id, genuine).group_id == new_group_id
