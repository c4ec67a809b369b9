"""``GroupView``: one client's view of one group (MLS Web API ``MLSGroupView``).

Commits (RFC 9420 §12.4) are never applied when created: they stay pending
until the delivery service echoes them back through ``receive`` (§14), or
``apply_pending_commit``. Proposals (§12.1) are cached until a Commit covers
them; with ``GroupConfig.commit_received_proposals`` (the default, as in the
explainer) ``receive`` of another member's proposal answers with that Commit.
Every operation is one unit of work (``mls.api.unit_of_work``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from mls.api import records
from mls.api.arguments import (
    as_bytes,
    as_credential,
    as_epoch,
    as_exporter_length,
    as_extensions,
    as_key_package,
    as_key_packages,
)
from mls.api.reinit import create_successor, reinit_details
from mls.api.results import (
    CommitOutput,
    ExporterOutput,
    GroupDetails,
    GroupMember,
    MLSBytes,
    Received,
    epoch_bytes,
)
from mls.crypto import cipher_suite as suite_of
from mls.errors import InvalidOperationError, MissingPSKError, NoPendingCommitError
from mls.group import engine
from mls.group.commit import create_commit, fresh_nonce
from mls.group.config import GroupConfig
from mls.group.group_info import build_group_info
from mls.group.state import GroupState, PendingCommit, client_id_of
from mls.wire.enums import ProtocolVersion, ResumptionPSKUsage, SenderType
from mls.wire.extensions import Extension
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Add, GroupContextExtensions, PreSharedKey, Proposal, ReInit, Remove
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode

if TYPE_CHECKING:
    from mls.api.client import MLS

__all__ = ["GroupView"]

T = TypeVar("T")

_CLIENT_ID = ("client-identifier",)


def _member(state: GroupState, leaf_index: int, leaf: LeafNode) -> GroupMember:
    return GroupMember(client_id_of(state.suite, leaf.signature_key), leaf.credential.encode(), leaf_index)


class GroupView:
    """One client's view of one group (Web API ``MLSGroupView``)."""

    def __init__(self, mls: MLS, group_id: bytes, client_id: bytes) -> None:
        self._mls = mls
        self.group_id = group_id
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"GroupView(group_id={self.group_id.hex()[:16]}..., epoch={self.epoch})"

    @property
    def _state(self) -> GroupState:
        return self._mls.states.load(self.group_id, self.client_id)

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def leaf_index(self) -> int:
        """This member's leaf index (the SFrame sender index, RFC 9605 §5.2)."""
        return self._state.leaf_index

    @property
    def leaf_count(self) -> int:
        """Leaves of the ratchet tree: a bound above every member's leaf index."""
        return self._state.tree.leaf_count

    @property
    def config(self) -> GroupConfig:
        return self._mls.config

    @property
    def has_pending_commit(self) -> bool:
        return self._state.pending is not None

    def _run(self, operation: Callable[[GroupState], tuple[T, GroupState]]) -> T:
        return self._mls.states.run(self.group_id, self.client_id, operation)

    # --- commits -------------------------------------------------------------------------

    def _output(self, pending: PendingCommit) -> CommitOutput:
        return CommitOutput(
            self.group_id, self.client_id, pending.message, pending.welcome, pending.group_info, pending.ratchet_tree
        )

    def _commit(
        self, by_value: Sequence[Proposal] = (), include_cached: bool = True, force_path: bool | None = None
    ) -> CommitOutput:
        def operation(state: GroupState) -> tuple[CommitOutput, GroupState]:
            pending = create_commit(
                state,
                self.config,
                by_value=by_value,
                include_cached=include_cached,
                force_path=force_path,
                resolver=self._mls.resolve_psk,
            )
            return self._output(pending), state

        return self._run(operation)

    def add(self, key_package: object) -> CommitOutput:
        """Commit an Add of the KeyPackage's client (plus pending proposals); Welcome included."""
        return self._commit([Proposal(Add(as_key_package(key_package)))])

    def add_many(self, key_packages: Sequence[object]) -> CommitOutput:
        """Commit Adds for several clients at once (one Welcome for all)."""
        return self._commit([Proposal(Add(key_package)) for key_package in as_key_packages(key_packages)])

    def remove(self, client_id: object) -> CommitOutput:
        """Commit the removal of a member (not self: propose that instead, §12.2)."""
        leaf = self._state.member_leaf(as_bytes(client_id, "client_id", _CLIENT_ID))
        if leaf == self._state.leaf_index:
            raise InvalidOperationError("a member cannot commit its own removal: use propose_remove")
        return self._commit([Proposal(Remove(leaf))])

    def update(self) -> CommitOutput:
        """Commit with a fresh UpdatePath: new leaf and path keys (post-compromise security, §12.4)."""
        return self._commit(include_cached=True, force_path=True)

    def commit(self) -> CommitOutput:
        """Commit every valid pending proposal of this epoch (§12.4)."""
        return self._commit()

    def close(self) -> CommitOutput:
        """Commit the removal of every other member."""
        state = self._state
        return self._commit([Proposal(Remove(i)) for i, _ in state.tree.members() if i != state.leaf_index])

    def set_group_context_extensions(self, extensions: Sequence[Extension]) -> CommitOutput:
        """Commit a GroupContextExtensions proposal (§12.1.7): replaces every GroupContext extension."""
        return self._commit([Proposal(GroupContextExtensions(as_extensions(extensions, "extensions")))])

    def add_psk(self, psk_id: object) -> CommitOutput:
        """Commit a PreSharedKey proposal for a stored external PSK (§12.1.4)."""
        return self._commit([self._psk_proposal(as_bytes(psk_id, "psk_id", text=True))])

    def add_resumption_psk(self, epoch: int) -> CommitOutput:
        """Commit a resumption PSK (usage application) of an earlier epoch of this group (§8.6)."""
        return self._commit([self._resumption_proposal(epoch)])

    def apply_pending_commit(self) -> Received:
        """Merge our pending Commit without waiting for the delivery service to echo it."""

        def operation(state: GroupState) -> tuple[Received, GroupState]:
            if state.pending is None:
                raise NoPendingCommitError("no pending Commit")
            message = state.pending.message
            me = _member(state, state.leaf_index, state.own_leaf)
            nxt = engine.apply_pending_commit(state, self.config)
            received = Received(
                "commit-processed",
                self.group_id,
                epoch_bytes(nxt.epoch),
                nxt.epoch,
                message,
                me,
                own=True,
                reinit=reinit_details(nxt.reinit),
            )
            return received, nxt

        return self._run(operation)

    def reinit_successor(
        self, key_packages: Sequence[object], credential: object = None
    ) -> tuple[GroupView, CommitOutput]:
        """Create the group that this group's committed ReInit asks for (§11.2, step 3).

        The new group has the ReInit's group id, version, cipher suite and
        extensions, and this member's signature key (``credential`` defaults
        to its current one). Its first Commit adds ``key_packages`` (KeyPackages
        in the new cipher suite from other members of this group) and injects
        this group's ``resumption_psk`` of its last epoch as a resumption PSK
        with usage ``reinit``, which the Welcome names. Returns the new group's
        view, already at epoch 1, and the ``CommitOutput`` whose ``welcome``
        the other members pass to ``MLS.group_join``. One member does this;
        the application picks which (e.g. the ReInit's committer).
        """
        packages = as_key_packages(key_packages)
        leaf_credential = as_credential(credential) if credential is not None else None
        states = self._mls.states
        state, pending = create_successor(
            states, self.config, self._mls.resolve_psk, self._state, self.client_id, packages, leaf_credential
        )
        states.store(state.group_id, self.client_id, state)
        output = CommitOutput(
            state.group_id, self.client_id, pending.message, pending.welcome, pending.group_info, pending.ratchet_tree
        )
        return GroupView(self._mls, state.group_id, self.client_id), output

    def discard_pending_commit(self) -> None:
        """Forget our pending Commit (e.g. the delivery service rejected it)."""

        def operation(state: GroupState) -> tuple[None, GroupState]:
            state.pending = None
            return None, state

        self._run(operation)

    # --- proposals ------------------------------------------------------------------------

    def _propose(self, proposal: Proposal) -> MLSBytes:
        def operation(state: GroupState) -> tuple[MLSBytes, GroupState]:
            return MLSBytes("proposal", engine.propose(state, proposal, self.config)), state

        return self._run(operation)

    def propose_add(self, key_package: object) -> MLSBytes:
        """An Add proposal (MLSMessage) for the group to commit."""
        return self._propose(Proposal(Add(as_key_package(key_package))))

    def propose_remove(self, client_id: object) -> MLSBytes:
        """A Remove proposal; proposing one's own removal is how a member leaves."""
        return self._propose(Proposal(Remove(self._state.member_leaf(as_bytes(client_id, "client_id", _CLIENT_ID)))))

    def propose_update(self) -> MLSBytes:
        """An Update proposal with a fresh leaf key (§12.1.2)."""

        def operation(state: GroupState) -> tuple[MLSBytes, GroupState]:
            proposal = engine.update_proposal(state, self.config)
            return MLSBytes("proposal", engine.propose(state, proposal, self.config)), state

        return self._run(operation)

    def _psk_proposal(self, psk_id: bytes) -> Proposal:
        if self._mls.storage.get(records.PSK, psk_id) is None:
            raise MissingPSKError("no external PSK stored under this id")
        return Proposal(PreSharedKey(PreSharedKeyID.external(psk_id, fresh_nonce(self._state))))

    def _resumption_proposal(self, epoch: int) -> Proposal:
        psk = PreSharedKeyID.resumption(
            ResumptionPSKUsage.APPLICATION, self.group_id, as_epoch(epoch), fresh_nonce(self._state)
        )
        return Proposal(PreSharedKey(psk))

    def propose_psk(self, psk_id: object) -> MLSBytes:
        """A PreSharedKey proposal for a stored external PSK (§12.1.4)."""
        return self._propose(self._psk_proposal(as_bytes(psk_id, "psk_id", text=True)))

    def propose_group_context_extensions(self, extensions: Sequence[Extension]) -> MLSBytes:
        """A GroupContextExtensions proposal (§12.1.7)."""
        return self._propose(Proposal(GroupContextExtensions(as_extensions(extensions, "extensions"))))

    def propose_reinit(
        self, group_id: object = None, cipher_suite: int | None = None, extensions: Sequence[Extension] = ()
    ) -> MLSBytes:
        """A ReInit proposal (§12.1.5): once committed, the group stops and is recreated (§11.2)."""
        state = self._state
        new_group_id = (
            as_bytes(group_id, "group_id", ("group-identifier",), text=True)
            if group_id is not None
            else os.urandom(state.suite.Nh)
        )
        suite_id = cipher_suite if cipher_suite is not None else state.suite.suite_id
        suite_of(suite_id)
        reinit = ReInit(new_group_id, ProtocolVersion.MLS10, suite_id, as_extensions(extensions, "extensions"))
        return self._propose(Proposal(reinit))

    # --- messages -------------------------------------------------------------------------

    def send(self, message: object, authenticated_data: object = b"") -> MLSBytes:
        """Encrypt application data for the group (PrivateMessage of the current epoch)."""
        data = as_bytes(message, "message", ("application-message-plaintext",), text=True)
        aad = as_bytes(authenticated_data, "authenticated_data", text=True)

        def operation(state: GroupState) -> tuple[MLSBytes, GroupState]:
            state.check_active()
            if state.pending is not None:
                raise InvalidOperationError("a Commit is pending: merge or discard it before sending application data (§12.4)")
            return MLSBytes("application-message-ciphertext", engine.send_application(state, data, aad)), state

        return self._run(operation)

    def receive(self, message: object) -> Received:
        """Process an MLSMessage of this group: application data, a proposal, or a Commit
        (another member's, or our own echoed back, which merges our pending Commit).

        Another member's proposal is answered with a Commit of the pending
        proposals (``type`` ``"commit-output"``, ``commit_output``) when
        ``GroupConfig.commit_received_proposals`` is set, no Commit of ours is
        pending, the group is active and no pending proposal removes us (a member
        cannot commit its own removal, §12.2).
        """
        data = as_bytes(message, "message")

        def operation(state: GroupState) -> tuple[Received, GroupState]:
            result = engine.receive(state, data, self.config, self._mls.resolve_psk)
            nxt = result.state
            sender = self._sender(state, result)
            staged = result.staged
            is_commit = result.kind is engine.ReceiveKind.COMMIT
            # our own Commit echoed back is merged without staging: its ReInit is in the new state
            reinit = staged.reinit if staged is not None else (nxt.reinit if result.own and is_commit else None)
            kind = result.kind.value
            output = None
            if result.kind is engine.ReceiveKind.PROPOSAL and not result.own and self._answers(nxt):
                output = self._output(create_commit(nxt, self.config, resolver=self._mls.resolve_psk))
                kind = "commit-output"
            received = Received(
                kind,
                self.group_id,
                epoch_bytes(result.epoch),
                result.epoch,
                result.content,
                sender,
                result.authenticated_data,
                own=result.own,
                removed=staged is not None and staged.removed_self,
                reinit=reinit_details(reinit),
                commit_output=output,
            )
            return received, nxt

        return self._run(operation)

    def _answers(self, state: GroupState) -> bool:
        """Whether ``receive`` answers a received proposal with a Commit (see ``receive``)."""
        if not self.config.commit_received_proposals or state.pending is not None:
            return False
        if state.removed or state.reinit is not None:
            return False
        me = state.leaf_index
        return not any(
            isinstance(cached.proposal.body, Remove) and cached.proposal.body.removed == me
            for cached in state.proposals.values()
        )

    def _sender(self, before: GroupState, result: engine.ReceiveResult) -> GroupMember | None:
        """The MLS-authenticated sender of a received message (§6.1), as a member."""
        if result.own:
            return _member(before, before.leaf_index, before.own_leaf)
        key = result.sender_key
        sender = result.sender
        if key is None:
            return None
        if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:  # the joiner's leaf in the new tree
            tree = result.state.tree
        elif sender.sender_type == SenderType.MEMBER and sender.index is not None:
            tree = before.tree
            if result.kind is engine.ReceiveKind.APPLICATION and result.epoch != before.epoch:
                past = next((p for p in before.past if p.epoch == result.epoch), None)
                if past is not None and past.tree is not None:
                    tree = past.tree
            leaf = tree.leaf(sender.index) if sender.index < tree.leaf_count else None
            if leaf is not None and leaf.signature_key == key:
                return _member(before, sender.index, leaf)
            # else a late message of a past epoch whose tree was not kept (restarted since):
            # the sender's leaf in the current tree, if it still has that signature key
        else:
            return None
        for index, leaf in tree.members():
            if leaf.signature_key == key:
                return _member(before, index, leaf)
        return None

    # --- secrets and information ---------------------------------------------------------

    def export_secret(self, label: object, context: object, length: int) -> ExporterOutput:
        """``MLS-Exporter(label, context, length)`` of the current epoch (§8.5)."""
        label_bytes = as_bytes(label, "label", ("exporter-label",), text=True)
        context_bytes = as_bytes(context, "context", ("exporter-context",), text=True)
        size = as_exporter_length(length)
        state = self._state
        secret = state.secrets.export(label_bytes, context_bytes, size)
        return ExporterOutput(self.group_id, epoch_bytes(state.epoch), label_bytes, context_bytes, secret)

    def epoch_authenticator(self) -> bytes:
        """The current epoch's ``epoch_authenticator`` (§8.7)."""
        return self._state.secrets.epoch_authenticator

    def details(self) -> GroupDetails:
        """Members (client id, credential, leaf index) at the current epoch, and this member's place."""
        state = self._state
        members = tuple(_member(state, index, leaf) for index, leaf in state.tree.members())
        return GroupDetails(
            self.group_id,
            epoch_bytes(state.epoch),
            state.epoch,
            members,
            state.leaf_index,
            state.tree.leaf_count,
            removed=state.removed,
            reinit_pending=state.reinit is not None,
        )

    def group_info(self, *, ratchet_tree: bool | None = None, external_pub: bool = True) -> bytes:
        """A signed GroupInfo of the current epoch (MLSMessage), for external joins (§12.4.3.2)."""
        state = self._state
        state.check_active()
        include = self.config.ratchet_tree_in_group_info if ratchet_tree is None else ratchet_tree
        return MLSMessage(build_group_info(state, ratchet_tree=include, external_pub=external_pub)).encode()

    def ratchet_tree(self) -> bytes:
        """The current ratchet tree, encoded as ``optional<Node> ratchet_tree<V>`` (§12.4.3.3)."""
        return self._state.tree.encode()

    def delete_state(self) -> None:
        """Delete this client's state of this group."""
        self._mls.states.delete(self.group_id, self.client_id)
