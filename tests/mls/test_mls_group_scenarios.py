"""Group life cycles through the public ``mls`` API (RFC 9420 §12, §14, §15.3).

Complements tests/mls/test_mls_group_api.py with the scenarios that need more
than one step: adding many members at once, several members proposing in
the same epoch (and proposals that arrive too late), application messages
delivered out of order within the retention window, what a member can and
cannot do after a ReInit, and restarting every member from SQLite in the
middle of a group's life (with cached proposals, late messages and a
pending Commit) or after a failed write.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from conftest import agree, deliver
from mls import MLS, GroupConfig, GroupView, SQLiteStorage
from mls.api.records import GROUP as _GROUP, group_key as _group_key
from mls.errors import GroupInactiveError, MLSError, SecretTreeError, StaleCommitError, ValidationError, WrongEpochError
from mls.storage import StorageError
from mls.wire import MLSMessage, PublicMessage, Remove, Update

EXPORTS = [("SFrame 1.0 Base Key", b"", 48), ("another label", b"ctx", 16), ("x", b"\x00" * 40, 300)]


#: received proposals wait for an explicit commit(): these scenarios choose their committers
_BY_COMMIT = GroupConfig(commit_received_proposals=False)


def _identity(mls: MLS, name: str) -> tuple[bytes, bytes]:
    return mls.generate_identity().content, mls.generate_credential(name).content


def _group(n: int, config: GroupConfig | None = None) -> tuple[MLS, list[GroupView]]:
    """``n`` members (one shared ``MLS`` object), all added in one Commit.

    Received proposals wait for an explicit ``commit()`` (these scenarios
    choose their committers), unless ``config`` says otherwise.
    """
    mls = MLS(config=config if config is not None else _BY_COMMIT)
    creator = mls.group_create(*_identity(mls, "m0"))
    ids = [_identity(mls, f"m{i}") for i in range(1, n)]
    views = [creator]
    if ids:
        output = creator.add_many([mls.generate_key_package(c, cred) for c, cred in ids])
        creator.receive(output.commit)
        assert output.welcome is not None
        views += [mls.group_join(c, output.welcome) for c, _ in ids]
    return mls, views


def _stored(mls: MLS, view: GroupView) -> bytes | None:
    return mls.storage.get(_GROUP, _group_key(view.group_id, view.client_id))


def _proposal_list(commit: bytes) -> tuple:
    body = MLSMessage.decode(commit).body
    assert isinstance(body, PublicMessage)
    return body.content.body.proposals


# --- create, add many, export_secret everywhere --------------------------------------------------


def test_add_many_in_one_commit_then_more_into_blank_leaves() -> None:
    mls, views = _group(16)
    assert agree(views, EXPORTS) == 1
    assert [m.leaf_index for m in views[5].details().members] == list(range(16))
    secret_1 = views[0].export_secret("SFrame 1.0 Base Key", b"", 48).secret
    # the exporter really depends on label, context and epoch
    assert secret_1 != views[0].export_secret("SFrame 1.0 Base Key", b"x", 48).secret
    assert secret_1[:16] != views[0].export_secret("SFrame 1.0 Base Key", b"", 16).secret

    # remove three members in one Commit, then add four: three fill the blank leaves (§12.1.1)
    removed = [views[3], views[7], views[12]]
    output = views[1].remove(removed[0].client_id)
    deliver(output.commit, views)
    for view in removed[:1]:
        assert view.details().removed
    for target in removed[1:]:
        proposal = views[2].propose_remove(target.client_id)
        deliver(proposal, [v for v in views if v not in removed[:1]])
    output = views[4].commit()
    assert len(_proposal_list(output.commit)) == 2
    deliver(output.commit, [v for v in views if v is not removed[0]])
    members = [v for v in views if v not in removed]
    assert all(v.details().removed for v in removed)
    assert agree(members, EXPORTS) == 3
    assert views[0].export_secret("SFrame 1.0 Base Key", b"", 48) != secret_1

    newcomers = [_identity(mls, f"n{i}") for i in range(4)]
    output = views[15].add_many([mls.generate_key_package(c, cred) for c, cred in newcomers])
    deliver(output.commit, members)
    assert output.welcome is not None
    members += [mls.group_join(c, output.welcome) for c, _ in newcomers]
    assert agree(members, EXPORTS) == 4
    leaves = {m.client_id: m.leaf_index for m in members[0].details().members}
    assert sorted(leaves[c] for c, _ in newcomers) == [3, 7, 12, 16]
    for sender in (members[0], members[-1]):
        message = sender.send(b"to every one of 17")
        assert all(v.receive(message).content == b"to every one of 17" for v in members if v is not sender)


# --- concurrent proposals --------------------------------------------------------------------


def test_concurrent_proposals_from_several_members_one_commit_covers_them() -> None:
    """Four members propose in the same epoch (Add, Remove, Update, leave); each member
    receives the proposals in its own order; one Commit covers all four by reference."""
    mls, views = _group(6)
    a, b, c, d, e, f = views
    x_id, x_cred = _identity(mls, "x")
    e_leaf_before = e._state.tree.leaf(e._state.leaf_index).encryption_key  # type: ignore[attr-defined]
    proposals = [
        b.propose_add(mls.generate_key_package(x_id, x_cred)),
        c.propose_remove(d.client_id),
        e.propose_update(),
        f.propose_remove(f.client_id),
    ]
    rng = random.Random(4)
    for view in views:
        order = proposals[:]
        rng.shuffle(order)
        for message in order:
            assert view.receive(message).type == "proposal"
    output = a.commit()
    refs = _proposal_list(output.commit)
    assert len(refs) == 4 and all(isinstance(item.body, bytes) for item in refs)
    for view in views:
        view.receive(output.commit)
    assert d.details().removed and f.details().removed
    assert output.welcome is not None
    x = mls.group_join(x_id, output.welcome)
    remaining = [a, b, c, e, x]
    assert agree(remaining, EXPORTS) == 2
    assert e._state.tree.leaf(e._state.leaf_index).encryption_key != e_leaf_before  # type: ignore[attr-defined]
    assert {m.client_id for m in a.details().members} == {v.client_id for v in remaining}


def test_conflicting_proposals_the_committer_keeps_a_valid_list() -> None:
    """§12.2: two Removes of one leaf, an Update and a Remove of one leaf, and the
    committer's own Update proposal cannot all be in one Commit; the committer leaves
    the extra ones out and every member accepts the Commit."""
    mls, views = _group(6)
    a, b, c, d, e, f = views
    proposals = [
        b.propose_remove(d.client_id),
        c.propose_remove(d.client_id),
        e.propose_update(),
        f.propose_remove(e.client_id),
        a.propose_update(),
    ]
    for message in proposals:
        deliver(message, views)
    output = a.commit()
    listed = _proposal_list(output.commit)
    cached = {ref: p for ref, p in a._state.proposals.items()}  # type: ignore[attr-defined]
    bodies = [cached[item.body].proposal.body for item in listed]
    touched = [p.removed for p in bodies if isinstance(p, Remove)]
    updates = [cached[item.body] for item in listed if isinstance(cached[item.body].proposal.body, Update)]
    touched += [entry.sender.index for entry in updates]
    assert len(touched) == len(set(touched)), "no leaf is updated/removed twice"
    assert a._state.leaf_index not in touched  # type: ignore[attr-defined]
    assert d._state.leaf_index in touched  # type: ignore[attr-defined]
    for view in views:
        view.receive(output.commit)
    assert d.details().removed
    survivors = [v for v in views if not v.details().removed]
    assert a in survivors and agree(survivors, EXPORTS) == 2


def test_proposal_after_the_commit_of_its_epoch_is_refused_cleanly() -> None:
    mls, views = _group(4)
    a, b, c, d = views
    late = c.propose_update()  # a's commit below does not know it
    deliver(late, [c, d])
    output = a.update()
    deliver(output.commit, views)
    assert agree(views, EXPORTS) == 2
    for view in (a, b, d):
        before, epoch = _stored(mls, view), view.epoch
        with pytest.raises(WrongEpochError):
            view.receive(late)
        assert _stored(mls, view) == before and view.epoch == epoch
    # proposals of the old epoch are forgotten: a commit now carries none
    output = d.commit()
    assert _proposal_list(output.commit) == ()
    deliver(output.commit, views)
    # the proposer proposes again in the new epoch; it is committed
    again = c.propose_update()
    deliver(again, views)
    output = b.commit()
    assert len(_proposal_list(output.commit)) == 1
    deliver(output.commit, views)
    assert agree(views, EXPORTS) == 4


def test_commit_before_its_proposal_is_refused_then_applies() -> None:
    """A Commit that references a proposal the member has not received yet is rejected
    with no state change; once the proposal arrives, the same Commit applies."""
    mls, views = _group(3)
    a, b, c = views
    proposal = b.propose_remove(b.client_id)
    deliver(proposal, [a, b])
    output = a.commit()
    before = _stored(mls, c)
    with pytest.raises(ValidationError, match="unknown proposal"):
        c.receive(output.commit)
    assert _stored(mls, c) == before and c.epoch == 1
    c.receive(proposal)
    c.receive(output.commit)
    a.receive(output.commit)
    assert b.receive(output.commit).removed
    assert agree([a, c], EXPORTS) == 2


def test_commit_race_the_loser_proposals_are_proposed_again() -> None:
    """Two members commit in the same epoch, the loser's Commit covered another member's
    proposal; the delivery service keeps the winner; the loser is dropped cleanly, the
    proposal of the old epoch is gone and is made again."""
    mls, views = _group(4)
    a, b, c, d = views
    proposal = c.propose_remove(d.client_id)
    deliver(proposal, [b, c, d])  # a has not seen it
    winner = a.update()
    loser = b.commit()
    assert len(_proposal_list(loser.commit)) == 1
    deliver(winner.commit, views)
    assert not b.has_pending_commit and agree(views, EXPORTS) == 2
    for view in (a, c, d):
        with pytest.raises(StaleCommitError):
            view.receive(loser.commit)
    again = c.propose_remove(d.client_id)
    deliver(again, views)
    output = b.commit()
    deliver(output.commit, views)
    assert d.details().removed and agree([a, b, c], EXPORTS) == 3


# --- application messages out of order -------------------------------------------------------


def _read(view: GroupView, message: bytes) -> tuple[bytes | None, bytes, int]:
    received = view.receive(message)
    assert received.type == "application-message-plaintext" and received.sender is not None
    return received.sender.client_id, received.content, received.epoch


def test_application_messages_shuffled_from_several_senders() -> None:
    mls, views = _group(4)
    receiver, *senders = views
    sent = [(s, i, s.send(f"{s.client_id.hex()[:8]} #{i}".encode())) for s in senders for i in range(6)]
    random.Random(9).shuffle(sent)
    for sender, i, message in sent:
        assert _read(receiver, message) == (sender.client_id, f"{sender.client_id.hex()[:8]} #{i}".encode(), 1)


def test_application_messages_shuffled_across_an_epoch_change() -> None:
    mls, views = _group(3)
    a, b, c = views
    sent = [(1, b.send(f"e1 #{i}".encode())) for i in range(5)]
    output = a.update()
    deliver(output.commit, views)
    sent += [(2, b.send(f"e2 #{i}".encode())) for i in range(5)]
    output = c.update()  # a second epoch change before anything is read
    deliver(output.commit, views)
    sent += [(3, b.send(f"e3 #{i}".encode())) for i in range(3)]
    random.Random(5).shuffle(sent)
    for epoch, message in sent:
        sender, content, got_epoch = _read(a, message)
        assert sender == b.client_id and got_epoch == epoch and content.startswith(f"e{epoch} ".encode())
    # each message is read once only
    before = _stored(mls, a)
    with pytest.raises(MLSError):
        a.receive(sent[0][1])
    assert _stored(mls, a) == before


def test_out_of_order_window_edges_are_typed_errors() -> None:
    """§15.3: keys of at most ``max_past_generations`` skipped generations are kept, and a
    message more than ``max_forward_generations`` ahead is refused; both without state change."""
    mls, views = _group(2, GroupConfig(max_past_generations=3, max_forward_generations=5, commit_received_proposals=False))
    a, b = views
    messages = [b.send(f"#{i}".encode()) for i in range(8)]
    # 7 is 7 generations ahead of the next unused one (0): too far
    before = _stored(mls, a)
    with pytest.raises(SecretTreeError):
        a.receive(messages[7])
    assert _stored(mls, a) == before
    assert a.receive(messages[5]).content == b"#5"
    # generations 2, 3, 4 are kept (3 below the newest); 0 and 1 fell out of the window
    for i in (0, 1):
        before = _stored(mls, a)
        with pytest.raises(SecretTreeError):
            a.receive(messages[i])
        assert _stored(mls, a) == before
    assert [a.receive(messages[i]).content for i in (4, 2, 3, 7, 6)] == [b"#4", b"#2", b"#3", b"#7", b"#6"]


# --- ReInit --------------------------------------------------------------------------------------


def test_after_reinit_the_old_group_only_exports_and_reads_late_messages() -> None:
    mls, views = _group(3)
    a, b, c = views
    late = c.send(b"sent before the ReInit commit")
    new_group_id = b"the successor group"
    proposal = b.propose_reinit(group_id=new_group_id, cipher_suite=3)
    deliver(proposal, views)
    output = a.commit()
    assert len(_proposal_list(output.commit)) == 1
    results = [view.receive(output.commit) for view in views]
    assert results[0].own  # the committer learns of the ReInit from its echo too
    for result in results:
        assert result.reinit is not None
        assert (result.reinit.group_id, result.reinit.cipher_suite) == (new_group_id, 3)
    assert agree(views, EXPORTS) == 2
    assert all(v.details().reinit_pending for v in views)

    # the late message of the previous epoch is still readable
    assert a.receive(late).content == b"sent before the ReInit commit"
    # nothing new happens in the old group
    kp = mls.generate_key_package(*_identity(mls, "newcomer"))
    for attempt in (
        lambda: a.send(b"x"),
        a.update,
        a.commit,
        lambda: a.add(kp),
        lambda: a.propose_remove(b.client_id),
        lambda: a.propose_update(),
        a.group_info,
    ):
        with pytest.raises(GroupInactiveError):
            attempt()
    assert not a.has_pending_commit and a.epoch == 2

    # the new group: the ReInit's parameters, same members
    successor = MLS(cipher_suite=3)
    ids = [_identity(successor, f"m{i}") for i in range(3)]
    creator = successor.group_create(*ids[0], group_id=new_group_id)
    output = creator.add_many([successor.generate_key_package(c_id, cred) for c_id, cred in ids[1:]])
    creator.receive(output.commit)
    assert output.welcome is not None
    joined = [creator] + [successor.group_join(c_id, output.welcome) for c_id, _ in ids[1:]]
    assert joined[1].group_id == new_group_id and agree(joined, EXPORTS) == 1


def test_reinit_with_other_proposals_commits_a_valid_list() -> None:
    """§12.2: a Commit with a ReInit contains nothing else; the committer chooses."""
    mls, views = _group(3)
    a, b, c = views
    deliver(b.propose_reinit(cipher_suite=1), views)
    deliver(c.propose_update(), views)
    output = a.commit()
    listed = _proposal_list(output.commit)
    cached = a._state.proposals  # type: ignore[attr-defined]
    kinds = {type(cached[item.body].proposal.body).__name__ for item in listed}
    assert kinds in ({"ReInit"}, {"Update"})
    for view in views:
        view.receive(output.commit)
    assert agree(views, EXPORTS) == 2
    assert a.details().reinit_pending == (kinds == {"ReInit"})


# --- restart from storage in mid-life --------------------------------------------------------


class _Cluster:
    """Members each with their own SQLite file (as separate processes would be)."""

    def __init__(self, directory: Path, n: int) -> None:
        self.directory = directory
        self.objects = [MLS(storage=SQLiteStorage(directory / f"m{i}.sqlite"), config=_BY_COMMIT) for i in range(n)]
        ids = [_identity(m, f"m{i}") for i, m in enumerate(self.objects)]
        creator = self.objects[0].group_create(*ids[0])
        output = creator.add_many([m.generate_key_package(*i) for m, i in zip(self.objects[1:], ids[1:])])
        creator.receive(output.commit)
        assert output.welcome is not None
        self.views = [creator] + [m.group_join(i[0], output.welcome) for m, i in zip(self.objects[1:], ids[1:])]

    def restart(self) -> None:
        """Close every database and reopen it in a new ``MLS`` object: nothing in memory survives."""
        group_id = self.views[0].group_id
        client_ids = [v.client_id for v in self.views]
        for mls in self.objects:
            mls.storage.close()  # type: ignore[attr-defined]
        self.objects = [MLS(storage=SQLiteStorage(self.directory / f"m{i}.sqlite"), config=_BY_COMMIT) for i in range(len(client_ids))]
        views = [m.group_get(group_id, c) for m, c in zip(self.objects, client_ids)]
        assert all(v is not None for v in views)
        self.views = views  # type: ignore[assignment]

    def __iter__(self) -> Iterator[GroupView]:
        return iter(self.views)


def _snapshot(view: GroupView) -> tuple[int, bytes, bytes]:
    return view.epoch, view.export_secret("SFrame 1.0 Base Key", b"", 48), view.epoch_authenticator()


def test_restart_every_member_in_mid_life(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path, 4)
    a, b, c, d = cluster
    output = b.update()
    deliver(output.commit, cluster)
    late_old_epoch = c.send(b"epoch 2, read after the restart")
    output = c.update()
    deliver(output.commit, cluster)
    # in epoch 3: cached proposals, unread messages, a KeyPackage waiting for its Welcome
    deliver(d.propose_update(), cluster)
    deliver(b.propose_remove(c.client_id), cluster)
    unread = [c.send(f"unread #{i}".encode()) for i in range(4)]
    assert a.receive(unread[1]).content == b"unread #1"
    newcomer = MLS(storage=SQLiteStorage(tmp_path / "newcomer.sqlite"))
    n_id, n_cred = _identity(newcomer, "newcomer")
    kp = newcomer.generate_key_package(n_id, n_cred)
    before = [_snapshot(v) for v in cluster]
    newcomer.storage.close()  # type: ignore[attr-defined]

    cluster.restart()
    a, b, c, d = cluster
    assert [_snapshot(v) for v in cluster] == before
    assert a.receive(late_old_epoch).content == b"epoch 2, read after the restart"
    for i in (3, 0, 2):
        assert a.receive(unread[i]).content == f"unread #{i}".encode()
    with pytest.raises(MLSError):
        a.receive(unread[1])  # already read before the restart: its key is gone
    # the cached proposals survived: the Commit covers both, plus an Add
    output = a.add(kp)
    assert len(_proposal_list(output.commit)) == 3
    deliver(output.commit, cluster)
    assert c.details().removed
    newcomer = MLS(storage=SQLiteStorage(tmp_path / "newcomer.sqlite"))
    assert output.welcome is not None
    n = newcomer.group_join(n_id, output.welcome)
    members = [a, b, d, n]
    assert agree(members, EXPORTS) == 4
    # sender ratchets continue where they stopped, and survive a second restart
    message = d.send(b"after the restart")
    cluster.restart()
    a, b, c, d = cluster
    assert a.receive(message).content == b"after the restart"
    assert n.receive(message).content == b"after the restart"
    assert agree([a, b, d, n], EXPORTS) == 4


def test_restart_with_a_pending_commit_that_loses_the_race(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path, 3)
    a, b, c = cluster
    winner = a.update()
    loser = b.update()
    cluster.restart()
    a, b, c = cluster
    assert a.has_pending_commit and b.has_pending_commit
    deliver(winner.commit, cluster)
    assert not b.has_pending_commit and agree(list(cluster), EXPORTS) == 2
    with pytest.raises(StaleCommitError):
        c.receive(loser.commit)


class _DiskFailure:
    """A value whose serialization fails with an I/O error, in the middle of the transaction."""

    def __bytes__(self) -> bytes:
        raise sqlite3.OperationalError("disk I/O error")


class _FailingStorage(SQLiteStorage):
    """SQLite storage whose next ``write`` dies inside its transaction, after the deletes ran."""

    fail_next = False

    def write(self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()) -> None:
        if self.fail_next:
            self.fail_next = False
            puts = [*puts, ("crash", b"crash", _DiskFailure())]  # type: ignore[list-item]
        super().write(puts, deletes)


def test_a_failed_write_leaves_no_half_applied_change(tmp_path: Path) -> None:
    """One transaction per change: a write that fails half-way leaves the stored state as it was."""
    storage = _FailingStorage(tmp_path / "b.sqlite")
    joiner = MLS(storage=storage)
    b_id, b_cred = _identity(joiner, "b")
    key_package = joiner.generate_key_package(b_id, b_cred)
    mls = MLS()
    ga = mls.group_create(*_identity(mls, "a"))
    output = ga.add(key_package)
    ga.receive(output.commit)
    assert output.welcome is not None
    # joining writes the group and deletes the used KeyPackage: neither happens
    storage.fail_next = True
    with pytest.raises(StorageError):
        joiner.group_join(b_id, output.welcome)
    assert joiner.group_get(ga.group_id, b_id) is None
    gb = joiner.group_join(b_id, output.welcome)  # the KeyPackage's private keys are still there

    message_before = ga.send(b"epoch 1")
    commit = ga.update().commit
    stored = _stored(joiner, gb)
    storage.fail_next = True
    with pytest.raises(StorageError):
        gb.receive(commit)
    assert _stored(joiner, gb) == stored and gb.epoch == 1
    # after a restart from the file, the member is exactly where it was and continues
    storage.close()
    restarted = MLS(storage=SQLiteStorage(tmp_path / "b.sqlite"))
    gb = restarted.group_get(ga.group_id, b_id)  # type: ignore[assignment]
    assert gb is not None and gb.epoch == 1
    assert gb.receive(message_before).content == b"epoch 1"
    gb.receive(commit)
    ga.receive(commit)
    assert agree([ga, gb], EXPORTS) == 2
