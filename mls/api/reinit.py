"""The successor of a reinitialized group (RFC 9420 §11.2).

Once a ReInit is committed, the old group stops. One member creates the new
group the ReInit describes, adds the others' KeyPackages and injects the old
group's ``resumption_psk`` of its last epoch as a resumption PSK with usage
``reinit`` (named in the Welcome; no PreSharedKey proposal may carry it).
Joiners accept such a Welcome only from their own state of the old group, for
the epoch that committed the ReInit, and only if the new group has the
ReInit's group id, version, cipher suite and extensions.
"""

from __future__ import annotations

from collections.abc import Sequence

from mls.api.arguments import as_identity_suite
from mls.api.results import ExtensionValue, ReInitDetails
from mls.api.unit_of_work import GroupStates
from mls.errors import GroupInactiveError, InvalidOperationError, MissingPSKError, ValidationError
from mls.group import engine
from mls.group.commit import create_commit, fresh_nonce
from mls.group.config import GroupConfig
from mls.group.key_package import create_leaf_node
from mls.group.psk import PskResolver
from mls.group.state import GroupState, PendingCommit
from mls.wire.credentials import Credential
from mls.wire.enums import ProtocolVersion, PSKType, ResumptionPSKUsage
from mls.wire.key_package import KeyPackage
from mls.wire.proposals import Add, Proposal, ReInit
from mls.wire.psk import PreSharedKeyID

__all__ = ["check_reinit_join", "create_successor", "reinit_details", "reinit_join_resolver"]


def reinit_details(reinit: ReInit | None) -> ReInitDetails | None:
    """A committed ReInit as public values."""
    if reinit is None:
        return None
    extensions = tuple(ExtensionValue(int(e.extension_type), e.extension_data) for e in reinit.extensions)
    return ReInitDetails(reinit.group_id, int(reinit.version), int(reinit.cipher_suite), extensions)


def reinit_join_resolver(states: GroupStates, client_id: bytes, resolve: PskResolver) -> PskResolver:
    """PSKs for a Welcome: a ``reinit`` resumption PSK comes only from this client's state of
    the old group, and only from the epoch that committed the ReInit (§11.2); others from ``resolve``."""

    def resolver(psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype != PSKType.RESUMPTION or psk_id.usage != ResumptionPSKUsage.REINIT:
            return resolve(psk_id)
        assert psk_id.psk_group_id is not None
        if not states.exists(psk_id.psk_group_id, client_id):
            raise MissingPSKError("the Welcome's reinit PSK names a group this client is not a member of")
        old = states.load(psk_id.psk_group_id, client_id)
        if old.reinit is None:
            raise ValidationError("the Welcome's reinit PSK names a group in which no ReInit was committed (§11.2)")
        if psk_id.psk_epoch != old.epoch:
            raise ValidationError("the Welcome's reinit PSK is not of the epoch that committed the ReInit (§11.2)")
        return old.secrets.resumption_psk

    return resolver


def check_reinit_join(states: GroupStates, state: GroupState, psk_ids: Sequence[PreSharedKeyID], client_id: bytes) -> None:
    """§11.2: the group a reinit PSK starts has the version, cipher suite, group id and
    extensions of the ReInit committed in the old group (the PSK resolver found that group)."""
    for psk in psk_ids:
        if psk.psktype != PSKType.RESUMPTION or psk.usage != ResumptionPSKUsage.REINIT:
            continue
        assert psk.psk_group_id is not None
        reinit = states.load(psk.psk_group_id, client_id).reinit
        context = state.context
        if reinit is None or (reinit.group_id, reinit.version, reinit.cipher_suite, reinit.extensions) != (
            context.group_id,
            context.version,
            context.cipher_suite,
            context.extensions,
        ):
            raise ValidationError("the Welcome does not match the ReInit of the old group (§11.2)")


def create_successor(
    states: GroupStates,
    config: GroupConfig,
    resolve: PskResolver,
    old: GroupState,
    client_id: bytes,
    key_packages: Sequence[KeyPackage],
    credential: Credential | None,
) -> tuple[GroupState, PendingCommit]:
    """The new group's state at epoch 1 and its first Commit (see ``GroupView.reinit_successor``)."""
    if old.removed:
        raise GroupInactiveError("this member was removed from the group")
    reinit = old.reinit
    if reinit is None:
        raise InvalidOperationError("no ReInit was committed in this group (§11.2)")
    if reinit.version != ProtocolVersion.MLS10:
        raise ValidationError(f"the ReInit asks for protocol version {reinit.version}, which is not implemented")
    suite = as_identity_suite(old.suite.suite_id, reinit.cipher_suite)
    others = {leaf.signature_key for index, leaf in old.tree.members() if index != old.leaf_index}
    seen: set[bytes] = set()
    for key_package in key_packages:
        if key_package.cipher_suite != suite.suite_id:
            raise ValidationError("a KeyPackage is not of the ReInit's cipher suite")
        signature_key = key_package.leaf_node.signature_key
        if signature_key not in others:
            raise ValidationError("a KeyPackage is not from another member of the reinitialized group (§11.2)")
        if signature_key in seen:
            raise ValidationError("two KeyPackages of the same member")
        seen.add(signature_key)
    if reinit.group_id != old.group_id and states.exists(reinit.group_id, client_id):
        raise InvalidOperationError("this client already has a group with the ReInit's group id")
    leaf_credential = credential if credential is not None else old.own_leaf.credential
    leaf, encryption_private_key = create_leaf_node(suite, old.signature_private_key, old.signature_key, leaf_credential, config)
    state = engine.create_group(
        suite,
        old.signature_private_key,
        leaf,
        encryption_private_key,
        config,
        group_id=reinit.group_id,
        extensions=reinit.extensions,
    )
    reinit_psk = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, old.group_id, old.epoch, fresh_nonce(state))
    pending = create_commit(
        state,
        config,
        by_value=[Proposal(Add(key_package)) for key_package in key_packages],
        include_cached=False,
        resolver=resolve,
        injected_psks=[(reinit_psk, old.secrets.resumption_psk)],
    )
    return engine.apply_pending_commit(state, config), pending
