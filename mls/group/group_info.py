"""GroupInfo creation and verification (RFC 9420 §12.4.3, §12.4.3.2, §12.4.3.3)."""

from __future__ import annotations

from dataclasses import replace

from mls.crypto import CipherSuite
from mls.crypto.signature import BatchVerifier, verify_serially
from mls.errors import MissingRatchetTreeError, ValidationError
from mls.group.state import GroupState, required_capabilities_of
from mls.tree import RatchetTree, validate_ratchet_tree
from mls.wire.enums import ExtensionType
from mls.wire.extensions import Extension, ExternalPub, find_extension
from mls.wire.tree import RatchetTreeExtension
from mls.wire.welcome import GroupInfo, GroupInfoTBS

__all__ = ["build_group_info", "external_pub_of", "verified_ratchet_tree"]

_GROUP_INFO_TBS = b"GroupInfoTBS"


def build_group_info(state: GroupState, *, ratchet_tree: bool, external_pub: bool) -> GroupInfo:
    """A signed GroupInfo for the state's epoch (§12.4.3), optionally with the
    ``ratchet_tree`` (§12.4.3.3) and ``external_pub`` (§12.4.3.2) extensions."""
    extensions: list[Extension] = []
    if ratchet_tree:
        extensions.append(Extension(ExtensionType.RATCHET_TREE, state.tree.encode()))
    if external_pub:
        extensions.append(ExternalPub(state.secrets.external_key_pair()[1]).to_extension())
    unsigned = GroupInfo(state.context, tuple(extensions), state.confirmation_tag, state.leaf_index)
    signature = state.suite.sign_with_label(
        state.signature_private_key, _GROUP_INFO_TBS, GroupInfoTBS(unsigned).encode()
    )
    return replace(unsigned, signature=signature)


def verified_ratchet_tree(
    suite: CipherSuite,
    group_info: GroupInfo,
    supplied: RatchetTree | bytes | None,
    now: int | None,
    verify_batch: BatchVerifier = verify_serially,
) -> RatchetTree:
    """The ratchet tree a joiner takes from a GroupInfo (§12.4.3.1), ready to rely on.

    The tree comes from the ``ratchet_tree`` extension or ``supplied``; the
    GroupInfo signature is verified with the signer's leaf and the tree is
    validated against the GroupContext. ``now`` checks leaf lifetimes
    (None: not checked); ``verify_batch`` verifies the leaf signatures.
    """
    tree = _ratchet_tree_for(suite, group_info, supplied)
    _verify_group_info(suite, group_info, tree)
    context = group_info.group_context
    validate_ratchet_tree(
        tree,
        group_id=context.group_id,
        tree_hash=context.tree_hash,
        now=now,
        required_capabilities=required_capabilities_of(context.extensions),
        verify_batch=verify_batch,
    )
    return tree


def _ratchet_tree_for(
    suite: CipherSuite, group_info: GroupInfo, supplied: RatchetTree | bytes | None
) -> RatchetTree:
    """The tree of a GroupInfo: its ``ratchet_tree`` extension, else the one supplied apart."""
    extension = find_extension(group_info.extensions, ExtensionType.RATCHET_TREE)
    if extension is not None:
        return RatchetTree.from_extension(suite, RatchetTreeExtension.from_extension(extension))
    if isinstance(supplied, RatchetTree):
        return supplied.copy()
    if supplied is not None:
        return RatchetTree.decode(suite, supplied)
    raise MissingRatchetTreeError("no ratchet_tree extension and no tree supplied")


def _verify_group_info(suite: CipherSuite, group_info: GroupInfo, tree: RatchetTree) -> None:
    """Verify the GroupInfo signature with the signer's leaf key (§12.4.3.1)."""
    if not 0 <= group_info.signer < tree.leaf_count:
        raise ValidationError("GroupInfo signer is outside the tree")
    signer = tree.leaf(group_info.signer)
    if signer is None:
        raise ValidationError("GroupInfo signer leaf is blank")
    suite.verify_with_label(signer.signature_key, _GROUP_INFO_TBS, GroupInfoTBS(group_info).encode(), group_info.signature)


def external_pub_of(group_info: GroupInfo) -> bytes:
    """The ``external_pub`` extension of a GroupInfo (§12.4.3.2); ``ValidationError`` if absent."""
    extension = find_extension(group_info.extensions, ExtensionType.EXTERNAL_PUB)
    if extension is None:
        raise ValidationError("GroupInfo has no external_pub extension: external join impossible")
    return ExternalPub.from_extension(extension).external_pub
