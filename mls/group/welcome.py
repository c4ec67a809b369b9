"""Welcome messages: creating them for added members and joining from one (RFC 9420 §12.4.3.1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mls.crypto import cipher_suite
from mls.errors import NoMatchingKeyPackageError, ValidationError
from mls.group.config import GroupConfig
from mls.group.group_info import verified_ratchet_tree
from mls.group.key_package import key_package_ref
from mls.group.psk import PskResolver, gather_psks, psk_secret_of
from mls.group.state import GroupState
from mls.key_schedule import EpochSecrets, welcome_key_nonce, welcome_secret
from mls.transcript import interim_transcript_hash
from mls.tree import RatchetTree, TreeKEMPrivate
from mls.wire.crypto_structs import HPKECiphertext
from mls.wire.enums import PSKType, ResumptionPSKUsage
from mls.wire.key_package import KeyPackage
from mls.wire.psk import PreSharedKeyID
from mls.wire.welcome import EncryptedGroupSecrets, GroupInfo, GroupSecrets, PathSecret, Welcome

__all__ = ["JoinKeys", "Joined", "build_welcome", "join_from_welcome"]

_WELCOME = b"Welcome"


def build_welcome(
    next_state: GroupState,
    group_info: GroupInfo,
    added: Sequence[tuple[int, KeyPackage]],
    psk_ids: Sequence[PreSharedKeyID],
    path_secret_for: Callable[[int], bytes | None] | None,
) -> Welcome:
    """One Welcome for every member added by the Commit (§12.4.3.1).

    The GroupInfo is sealed with the key and nonce from ``welcome_secret``;
    each new member gets the ``joiner_secret``, the path secret of its lowest
    common ancestor with the committer (if the Commit has a path) and the PSK
    ids, encrypted to its KeyPackage ``init_key``.
    """
    suite = next_state.suite
    key, nonce = next_state.secrets.welcome_key_nonce()
    encrypted_group_info = suite.aead_seal(key, nonce, b"", group_info.encode())
    recipients = []
    for leaf_index, key_package in added:
        path_secret = path_secret_for(leaf_index) if path_secret_for is not None else None
        group_secrets = GroupSecrets(
            next_state.secrets.joiner_secret,
            PathSecret(path_secret) if path_secret is not None else None,
            tuple(psk_ids),
        )
        recipients.append((key_package.init_key, group_secrets.encode()))
    sealed = suite.encrypt_with_label_many(_WELCOME, encrypted_group_info, recipients)
    secrets = [
        EncryptedGroupSecrets(key_package_ref(suite, key_package), HPKECiphertext(kem_output, ciphertext))
        for (_, key_package), (kem_output, ciphertext) in zip(added, sealed)
    ]
    return Welcome(suite.suite_id, tuple(secrets), encrypted_group_info)


@dataclass(frozen=True)
class JoinKeys:
    """A KeyPackage of ours and its private keys, found by KeyPackageRef."""

    key_package: KeyPackage
    init_private_key: bytes = field(repr=False)
    encryption_private_key: bytes = field(repr=False)
    signature_private_key: bytes = field(repr=False)


@dataclass
class Joined:
    """The result of joining: the state, the KeyPackageRef used and the PSKs injected."""

    state: GroupState
    key_package_ref: bytes
    psk_ids: tuple[PreSharedKeyID, ...]


def join_from_welcome(
    welcome: Welcome,
    find_keys: Callable[[bytes], JoinKeys | None],
    config: GroupConfig,
    *,
    ratchet_tree: RatchetTree | bytes | None = None,
    resolver: PskResolver | None = None,
) -> Joined:
    """Join a group from a Welcome (§12.4.3.1).

    ``find_keys(ref)`` returns our KeyPackage and keys for a KeyPackageRef, or
    None. The tree comes from the GroupInfo's ``ratchet_tree`` extension or
    ``ratchet_tree``. Raises ``NoMatchingKeyPackageError``, ``MissingRatchetTreeError``,
    ``MissingPSKError``, ``ValidationError``, ``CryptoError``, ``DecodeError``.
    """
    suite = cipher_suite(welcome.cipher_suite)
    for entry in welcome.secrets:
        keys = find_keys(entry.new_member)
        if keys is not None:
            break
    else:
        raise NoMatchingKeyPackageError("the Welcome is not addressed to any of our KeyPackages")
    if keys.key_package.cipher_suite != welcome.cipher_suite:
        raise ValidationError("Welcome cipher suite differs from the KeyPackage's")
    encrypted = entry.encrypted_group_secrets
    group_secrets = GroupSecrets.decode(
        suite.decrypt_with_label(
            keys.init_private_key, _WELCOME, welcome.encrypted_group_info, encrypted.kem_output, encrypted.ciphertext
        )
    )
    special = [
        psk
        for psk in group_secrets.psks
        if psk.psktype == PSKType.RESUMPTION and psk.usage in (ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH)
    ]
    if len(special) > 1:
        raise ValidationError("a Welcome may carry at most one reinit/branch resumption PSK")
    psk_secret = psk_secret_of(suite, gather_psks(None, group_secrets.psks, resolver))
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, group_secrets.joiner_secret, psk_secret))
    group_info = GroupInfo.decode(suite.aead_open(key, nonce, b"", welcome.encrypted_group_info))
    context = group_info.group_context
    if context.cipher_suite != welcome.cipher_suite:
        raise ValidationError("GroupInfo cipher suite differs from the Welcome's")
    if special and context.epoch != 1:
        raise ValidationError("a group started with a reinit/branch PSK must be at epoch 1")

    tree = verified_ratchet_tree(suite, group_info, ratchet_tree, config.received_now(), config.verify_batch)
    mine = keys.key_package.leaf_node
    my_leaf = next((i for i, leaf in tree.members() if leaf.signature == mine.signature and leaf == mine), None)
    if my_leaf is None:
        raise ValidationError("our KeyPackage's leaf is not in the tree")
    private = TreeKEMPrivate.for_leaf(my_leaf, keys.encryption_private_key, keys.key_package.leaf_node.encryption_key)
    if group_secrets.path_secret is not None:
        private.apply_path_secret(tree, group_info.signer, group_secrets.path_secret.path_secret)

    secrets = EpochSecrets.from_joiner_secret(suite, group_secrets.joiner_secret, psk_secret, context.encode())
    if not secrets.verify_confirmation_tag(context.confirmed_transcript_hash, group_info.confirmation_tag):
        raise ValidationError("GroupInfo confirmation_tag does not verify")
    state = GroupState(
        suite=suite,
        context=context,
        tree=tree,
        private=private,
        signature_private_key=keys.signature_private_key,
        secrets=secrets,
        interim_transcript_hash=interim_transcript_hash(
            suite, context.confirmed_transcript_hash, group_info.confirmation_tag
        ),
        confirmation_tag=group_info.confirmation_tag,
        secret_tree=config.secret_tree(secrets, tree.leaf_count),
        resumption_psks={context.epoch: secrets.resumption_psk},
        padding_block=config.padding_block,
    )
    return Joined(state, entry.new_member, group_secrets.psks)
