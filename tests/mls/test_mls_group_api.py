"""The Web-API-shaped ``mls`` API end to end: groups of 2, 3 and 10 members (RFC 9420 §11-§14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mls import MLS, GroupConfig, GroupView, SQLiteStorage
from mls.errors import (
    CommitConflictError,
    GroupInactiveError,
    MissingPSKError,
    MissingRatchetTreeError,
    StaleCommitError,
    UnknownIdentityError,
    UnknownMemberError,
    ValidationError,
    WrongEpochError,
)
from mls.wire import ApplicationId, MLSMessage, PublicMessage, RequiredCapabilities, WireFormat


def _member(mls: MLS, name: str) -> tuple[bytes, bytes]:
    client_id = mls.generate_identity()
    return client_id, mls.generate_credential(name)


def _group(mls: MLS, n: int) -> list[GroupView]:
    """A group of ``n`` members built by successive adds; every member follows every commit."""
    creator, credential = _member(mls, "m0")
    views = [mls.group_create(creator, credential)]
    for i in range(1, n):
        client_id, credential = _member(mls, f"m{i}")
        output = views[0].add(mls.generate_key_package(client_id, credential))
        for view in views:
            view.receive(output.commit)
        assert output.welcome is not None
        views.append(mls.group_join(client_id, output.welcome))
    return views


def _same_epoch(views: list[GroupView]) -> None:
    epochs = {view.epoch for view in views}
    assert len(epochs) == 1
    assert len({view.epoch_authenticator() for view in views}) == 1
    assert len({view.export_secret("SFrame 1.0 Base Key", b"", 48) for view in views}) == 1


def test_explainer_basic_example() -> None:
    """The explainer's basic usage, step by step."""
    mls = MLS()
    a, b = mls.generate_identity(), mls.generate_identity()
    ac, bc = mls.generate_credential("alice"), mls.generate_credential("bob")
    akp = mls.generate_key_package(a, ac)
    gb = mls.group_create(b, bc)
    co1 = gb.add(akp)
    assert gb.receive(co1.commit).type == "commit-processed"
    ctx1 = gb.send("Hello Alice!")
    ga = mls.group_join(a, co1.welcome)
    received = ga.receive(ctx1)
    assert (received.type, received.content) == ("application-message-plaintext", b"Hello Alice!")
    assert (received.sender.client_id, received.sender.credential, received.sender.leaf_index) == (b.content, bc.content, 0)
    assert ga.group_id == gb.group_id and ga.client_id == a.content
    _same_epoch([ga, gb])


@pytest.mark.parametrize("suite", [1, 2, 3, 5, 7])
def test_three_members_add_remove_across_suites(suite: int) -> None:
    mls = MLS(cipher_suite=suite)
    ga, gb, gc = _group(mls, 3)
    _same_epoch([ga, gb, gc])
    message = gc.send(b"hi all")
    assert ga.receive(message).content == b"hi all" and gb.receive(message).content == b"hi all"
    output = gc.remove(gb.client_id)
    assert ga.receive(output.commit).removed is False
    removed = gb.receive(output.commit)
    assert removed.removed is True and gb.details().removed
    gc.receive(output.commit)
    _same_epoch([ga, gc])
    assert [m.client_id for m in ga.details().members] == [ga.client_id, gc.client_id]
    with pytest.raises(GroupInactiveError):
        gb.send(b"still here?")


def test_removed_member_cannot_decrypt_new_messages() -> None:
    mls = MLS()
    ga, gb, gc = _group(mls, 3)
    output = ga.remove(gc.client_id)
    for view in (ga, gb, gc):
        view.receive(output.commit)
    secret = ga.send(b"after removal")
    assert gb.receive(secret).content == b"after removal"
    with pytest.raises((GroupInactiveError, WrongEpochError)):
        gc.receive(secret)


def test_ten_members_self_update_and_proposals_by_reference() -> None:
    mls = MLS(config=GroupConfig(commit_received_proposals=False))
    views = _group(mls, 10)
    _same_epoch(views)
    # self-update (post-compromise security): the committer's leaf key changes
    before = views[4].details()
    old_tree = views[4].ratchet_tree()
    output = views[4].update()
    for view in views:
        view.receive(output.commit)
    _same_epoch(views)
    assert views[4].ratchet_tree() != old_tree and views[4].details().members == before.members
    # proposals by reference from two other members, committed by a third
    p1 = views[7].propose_remove(views[8].client_id)
    p2 = views[2].propose_update()
    for proposal in (p1, p2):
        for view in views:
            assert view.receive(proposal).type == "proposal"
    output = views[0].commit()
    commit = MLSMessage.decode(output.commit).body
    assert isinstance(commit, PublicMessage)
    assert len(commit.content.body.proposals) == 2
    assert all(isinstance(item.body, bytes) for item in commit.content.body.proposals)
    for view in views:
        view.receive(output.commit)
    remaining = [v for i, v in enumerate(views) if i != 8]
    _same_epoch(remaining)
    assert len(views[0].details().members) == 9


def test_own_commit_echo_equals_apply_pending_commit() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    output = ga.update()
    echoed = ga.receive(output.commit)
    assert echoed.own and echoed.type == "commit-processed"
    gb.receive(output.commit)
    _same_epoch([ga, gb])
    output = gb.update()
    applied = gb.apply_pending_commit()
    assert applied.epoch == gb.epoch
    ga.receive(output.commit)
    _same_epoch([ga, gb])
    # after merging locally, the echo is an old-epoch commit
    with pytest.raises(StaleCommitError):
        gb.receive(output.commit)


def test_commit_race_loser_discards_pending_and_reproposes() -> None:
    mls = MLS()
    ga, gb, gc = _group(mls, 3)
    d, dc = _member(mls, "dave")
    e, ec = _member(mls, "erin")
    winner = ga.add(mls.generate_key_package(d, dc))
    loser = gb.add(mls.generate_key_package(e, ec))
    with pytest.raises(CommitConflictError):
        gb.update()
    # the delivery service keeps the first commit of the epoch
    for view in (ga, gb, gc):
        view.receive(winner.commit)
    gd = mls.group_join(d, winner.welcome)
    assert not gb.has_pending_commit
    _same_epoch([ga, gb, gc, gd])
    with pytest.raises(StaleCommitError):
        gc.receive(loser.commit)
    # the loser makes its add again, in the new epoch
    again = gb.add(mls.generate_key_package(e, ec))
    for view in (ga, gb, gc, gd):
        view.receive(again.commit)
    ge = mls.group_join(e, again.welcome)
    _same_epoch([ga, gb, gc, gd, ge])


def test_late_application_message_within_past_epochs() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    late = [gb.send(f"epoch {gb.epoch}".encode())]
    for _ in range(5):
        output = ga.update()
        ga.receive(output.commit)
        gb.receive(output.commit)
        late.append(gb.send(f"epoch {gb.epoch}".encode()))
    # newest first: the current epoch and the 4 retained ones decrypt, older do not
    current = ga.epoch
    for message in late[::-1]:
        epoch = MLSMessage.decode(message.content).body.epoch
        if current - epoch <= 4:
            assert ga.receive(message).content == f"epoch {epoch}".encode()
        else:
            with pytest.raises(WrongEpochError):
                ga.receive(message)


def test_past_epochs_is_configurable() -> None:
    mls = MLS(config=GroupConfig(past_epochs=0))
    ga, gb = _group(mls, 2)
    message = gb.send(b"late")
    output = ga.update()
    ga.receive(output.commit)
    gb.receive(output.commit)
    with pytest.raises(WrongEpochError):
        ga.receive(message)


def test_external_and_resumption_psk() -> None:
    mls = MLS(config=GroupConfig(commit_received_proposals=False))
    ga, gb, gc = _group(mls, 3)
    mls.store_psk(b"psk-1", b"\x11" * 32)
    output = gb.add_psk(b"psk-1")
    for view in (ga, gb, gc):
        view.receive(output.commit)
    _same_epoch([ga, gb, gc])
    proposal = gc.propose_psk("psk-1")
    for view in (ga, gb):
        view.receive(proposal)
    output = ga.commit()
    for view in (ga, gb, gc):
        view.receive(output.commit)
    _same_epoch([ga, gb, gc])
    output = ga.add_resumption_psk(ga.epoch - 1)
    for view in (ga, gb, gc):
        view.receive(output.commit)
    _same_epoch([ga, gb, gc])


def test_missing_psk_is_a_typed_error_and_changes_nothing() -> None:
    sender, receiver = MLS(), MLS()
    creator, credential = _member(sender, "a")
    ga = sender.group_create(creator, credential)
    b, bc = _member(receiver, "b")
    output = ga.add(receiver.generate_key_package(b, bc))
    ga.receive(output.commit)
    gb = receiver.group_join(b, output.welcome)
    sender.store_psk(b"only-a", b"\x22" * 32)
    output = ga.add_psk(b"only-a")
    epoch = gb.epoch
    with pytest.raises(MissingPSKError):
        gb.receive(output.commit)
    assert gb.epoch == epoch
    receiver.store_psk(b"only-a", b"\x22" * 32)
    gb.receive(output.commit)
    ga.receive(output.commit)
    _same_epoch([ga, gb])


def test_external_join_via_group_info() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    joiner, credential = _member(mls, "late joiner")
    gj, output = mls.group_join_external(joiner, credential, ga.group_info())
    for view in (ga, gb):
        received = view.receive(output.commit)
        assert received.type == "commit-processed" and received.sender is not None
        assert (received.sender.client_id, received.sender.leaf_index) == (joiner.content, 2)
    _same_epoch([ga, gb, gj])
    message = gj.send(b"joined on my own")
    assert ga.receive(message).content == b"joined on my own"


def test_external_join_with_tree_supplied_apart() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    joiner, credential = _member(mls, "j")
    info = ga.group_info(ratchet_tree=False)
    with pytest.raises(MissingRatchetTreeError):
        mls.group_join_external(joiner, credential, info)
    gj, output = mls.group_join_external(joiner, credential, info, ratchet_tree=ga.ratchet_tree())
    ga.receive(output.commit)
    gb.receive(output.commit)
    _same_epoch([ga, gb, gj])


def test_welcome_without_tree_needs_tree_supplied_apart() -> None:
    mls = MLS(config=GroupConfig(ratchet_tree_in_welcome=False, ratchet_tree_in_group_info=False))
    creator, credential = _member(mls, "a")
    ga = mls.group_create(creator, credential)
    b, bc = _member(mls, "b")
    output = ga.add(mls.generate_key_package(b, bc))
    ga.receive(output.commit)
    with pytest.raises(MissingRatchetTreeError):
        mls.group_join(b, output.welcome)
    gb = mls.group_join(b, output.welcome, ratchet_tree=output.ratchet_tree)
    _same_epoch([ga, gb])


def test_group_context_extensions() -> None:
    mls = MLS()
    ga, gb, gc = _group(mls, 3)
    extensions = [ApplicationId(b"call-42").to_extension(), RequiredCapabilities(credential_types=(1,)).to_extension()]
    output = gb.set_group_context_extensions(extensions)
    for view in (ga, gb, gc):
        view.receive(output.commit)
    _same_epoch([ga, gb, gc])
    assert ga._state.context.extensions == tuple(extensions)
    # a requirement no member supports is rejected before anything is sent
    with pytest.raises(ValidationError):
        ga.set_group_context_extensions([RequiredCapabilities(extension_types=(0xFF00,)).to_extension()])
    assert not ga.has_pending_commit


def test_reinit_proposal_stops_the_group() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    proposal = ga.propose_reinit(cipher_suite=1)
    answer = gb.receive(proposal)  # answered with a commit (GroupConfig.commit_received_proposals)
    assert answer.type == "commit-output" and answer.sender is not None and answer.sender.leaf_index == 0
    output = answer.commit_output
    assert output is not None
    received = ga.receive(output.commit)
    gb.receive(output.commit)
    assert received.reinit is not None and received.reinit.cipher_suite == 1
    assert (received.reinit.version, received.reinit.extensions) == (1, ())
    assert ga.details().reinit_pending and gb.details().reinit_pending
    with pytest.raises(GroupInactiveError):
        ga.send(b"no more")
    with pytest.raises(GroupInactiveError):
        gb.update()


def test_close_removes_everyone_else() -> None:
    mls = MLS()
    views = _group(mls, 4)
    output = views[1].close()
    for view in views:
        view.receive(output.commit)
    assert [m.client_id for m in views[1].details().members] == [views[1].client_id]
    assert all(view.details().removed for i, view in enumerate(views) if i != 1)


def test_persistence_round_trip_through_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "mls.sqlite"
    mls = MLS(storage=SQLiteStorage(path))
    ga, gb, gc = _group(mls, 3)
    pending = ga.update()  # pending commit survives the restart too
    first = gb.send(b"before restart")
    group_id, ids = ga.group_id, [v.client_id for v in (ga, gb, gc)]
    mls.storage.close()  # type: ignore[attr-defined]

    restarted = MLS(storage=SQLiteStorage(path))
    views = [restarted.group_get(group_id, client_id) for client_id in ids]
    assert all(view is not None for view in views)
    ra, rb, rc = views  # type: ignore[misc]
    assert ra.receive(first).content == b"before restart"
    assert ra.receive(pending.commit).own
    rb.receive(pending.commit)
    rc.receive(pending.commit)
    _same_epoch([ra, rb, rc])
    # sender ratchets resumed where they stopped: no key reuse, still decryptable
    message = rb.send(b"after restart")
    assert rc.receive(message).content == b"after restart"
    assert restarted.group_get(b"no such group", ids[0]) is None


def test_delete_state() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    gb.delete_state()
    assert mls.group_get(gb.group_id, gb.client_id) is None
    assert mls.group_get(ga.group_id, ga.client_id) is not None
    mls.delete_state()
    assert mls.group_get(ga.group_id, ga.client_id) is None
    with pytest.raises(UnknownIdentityError):
        mls.generate_key_package(ga.client_id, b"\x00\x01\x01a")


def test_group_id_from_message_and_details() -> None:
    mls = MLS()
    ga, gb = _group(mls, 2)
    assert mls.group_id_from_message(ga.send(b"x")) == ga.group_id
    assert mls.group_id_from_message(ga.send(b"x").content) == ga.group_id
    assert mls.group_id_from_message(ga.group_info()) == ga.group_id
    details = gb.details()
    assert [m.leaf_index for m in details.members] == [0, 1]
    assert details.members[1].credential == mls.generate_credential("m1").content
    assert (details.leaf_index, details.leaf_count, details.epoch) == (1, 2, 1)
    assert details.group_epoch == (1).to_bytes(8, "big")
    with pytest.raises(UnknownMemberError):
        ga.remove(b"nobody")


def test_private_handshake_messages() -> None:
    mls = MLS(config=GroupConfig(handshake_wire_format=WireFormat.MLS_PRIVATE_MESSAGE, commit_received_proposals=False))
    ga, gb, gc = _group(mls, 3)
    proposal = gc.propose_update()
    assert MLSMessage.decode(proposal.content).wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    assert gc.receive(proposal).own
    ga.receive(proposal)
    gb.receive(proposal)
    output = ga.commit()
    assert MLSMessage.decode(output.commit).wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    for view in (ga, gb, gc):
        view.receive(output.commit)
    _same_epoch([ga, gb, gc])


def test_key_package_lifetime_starts_in_the_past() -> None:
    now = 1_800_000_000
    mls = MLS(config=GroupConfig(clock=lambda: now))
    client_id, credential = _member(mls, "a")
    key_package = MLSMessage.decode(mls.generate_key_package(client_id, credential).content).body
    lifetime = key_package.leaf_node.lifetime
    assert lifetime.not_before == now - 3600
    assert lifetime.not_after - now == 90 * 24 * 3600


def test_expired_key_package_is_rejected() -> None:
    clock = [1_800_000_000]
    mls = MLS(config=GroupConfig(clock=lambda: clock[0]))
    ga = mls.group_create(*_member(mls, "a"))
    b, bc = _member(mls, "b")
    key_package = mls.generate_key_package(b, bc)
    clock[0] += 100 * 24 * 3600
    with pytest.raises(ValidationError):
        ga.add(key_package)
    assert not ga.has_pending_commit and ga.epoch == 0
