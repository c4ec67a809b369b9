"""The state of one member in one epoch of one group (RFC 9420 §8, §9, §12).

``GroupState`` is what a member keeps between messages: the GroupContext,
the public ratchet tree and its own private keys (§4.2), the epoch secrets
(§8), the secret tree (§9), the proposals cached in this epoch (§12.1), a
pending Commit of its own (§12.4), the retained past epochs for late
application messages (§15.3) and the resumption PSKs (§8.6).

Operations that may fail never mutate a state in place before every check
has passed; the engine builds the next epoch as a new ``GroupState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto import CipherSuite
from mls.errors import GroupInactiveError, UnknownMemberError
from mls.key_schedule import EpochSecrets
from mls.message_protection import MessageProtection
from mls.secret_tree import SecretTree
from mls.tree import RatchetTree, TreeKEMPrivate
from mls.wire.extensions import ExternalSenders, RequiredCapabilities, find_extension
from mls.wire.enums import ExtensionType
from mls.wire.framing import Sender
from mls.wire.group_context import GroupContext
from mls.wire.proposals import Proposal, ReInit
from mls.wire.tree import LeafNode

__all__ = ["CachedProposal", "GroupState", "PastEpoch", "PendingCommit", "PublicView", "client_id_of"]


def client_id_of(suite: CipherSuite, signature_key: bytes) -> bytes:
    """The client identifier of a member: ``Hash(signature_key)`` (MLS Web API: identities are handles)."""
    return suite.hash(signature_key)


@dataclass(eq=False)
class PastEpoch:
    """What a previous epoch keeps to open late application messages (§15.3).

    Only the secret tree, the sender data secret, the GroupContext (signed
    over in FramedContentTBS) and each member's signature key are kept.
    """

    group_context: GroupContext
    secret_tree: SecretTree = field(repr=False)
    sender_data_secret: bytes = field(repr=False)
    #: the epoch's tree (in memory, shared: trees of ended epochs never change) ...
    tree: RatchetTree | None = field(default=None, repr=False)
    #: ... or, once reloaded from storage, each member's signature key by leaf
    signature_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    #: the stored form of ``member_signature_keys()`` once computed (serialize.py; it never changes)
    stored_signature_keys: bytes | None = field(default=None, repr=False)

    @property
    def epoch(self) -> int:
        return self.group_context.epoch

    def signature_key_of(self, leaf_index: int) -> bytes | None:
        """Signature key of the member at ``leaf_index`` in that epoch, or None."""
        if self.tree is None:
            return self.signature_keys.get(leaf_index)
        if not 0 <= leaf_index < self.tree.leaf_count:
            return None
        leaf = self.tree.leaf(leaf_index)
        return None if leaf is None else leaf.signature_key

    def member_signature_keys(self) -> dict[int, bytes]:
        """Every member's signature key by leaf index (for storage)."""
        if self.tree is None:
            return dict(self.signature_keys)
        return {leaf_index: leaf.signature_key for leaf_index, leaf in self.tree.members()}

    def protection(self, suite: CipherSuite) -> MessageProtection:
        """A MessageProtection able to open this epoch's PrivateMessages."""
        return MessageProtection(suite, self.group_context, self.secret_tree, self.sender_data_secret)


@dataclass
class CachedProposal:
    """A proposal received (or sent) in the current epoch, retrievable by ProposalRef (§12.1, §5.2).

    ``verified``: it passed its single-proposal checks (§12.1) when it entered
    the cache, signatures included (a KeyPackage's, §10.1; an Update's LeafNode,
    §7.3). A Commit that covers it checks it against the other proposals
    (§12.2) and the group again, but does not verify those signatures again.
    """

    ref: bytes
    proposal: Proposal
    sender: Sender
    verified: bool = False
    #: the stored form once computed (serialize.py; a cached proposal never changes)
    stored: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(eq=False)
class PendingCommit:
    """A Commit this member created and sent but has not merged yet (§12.4.1).

    ``message`` is the MLSMessage sent; the member merges ``next_state`` when
    the delivery service echoes exactly these bytes, or on
    ``apply_pending_commit``. ``welcome``/``group_info``/``ratchet_tree`` are
    kept so the output can be sent again; the ratchet tree (O(n) bytes) is
    encoded only when asked for, when the Welcome does not carry it.
    """

    message: bytes
    next_state: GroupState = field(repr=False)
    welcome: bytes | None = None
    group_info: bytes | None = None
    tree_apart: bool = False

    @property
    def ratchet_tree(self) -> bytes | None:
        """The new epoch's tree, for joiners whose Welcome lacks the ``ratchet_tree`` extension."""
        return self.next_state.tree.encode() if self.tree_apart else None


class PublicView:
    """What any view of one epoch answers from public state alone: the GroupContext (§8.1),
    the ratchet tree's leaves (§7) and the GroupContext extensions (§11.1, §12.1.8).

    Shared by a member's ``GroupState`` and the keyless ``PublicGroup``
    (mls.group.public), so the proposal rules (mls.group.proposals) and the
    choice of a sender's signature key (mls.group.framing) read either.
    """

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def signature_key_of(self, leaf_index: int) -> bytes | None:
        """Signature key of the member at ``leaf_index``, or None (blank or outside the tree)."""
        if not 0 <= leaf_index < self.tree.leaf_count:
            return None
        leaf = self.tree.leaf(leaf_index)
        return None if leaf is None else leaf.signature_key

    def required_capabilities(self) -> RequiredCapabilities | None:
        return required_capabilities_of(self.context.extensions)

    def external_senders(self) -> ExternalSenders | None:
        extension = find_extension(self.context.extensions, ExtensionType.EXTERNAL_SENDERS)
        return None if extension is None else ExternalSenders.from_extension(extension)


@dataclass(eq=False)
class GroupState(PublicView):
    """One member's view of one epoch of a group."""

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    private: TreeKEMPrivate = field(repr=False)
    signature_private_key: bytes = field(repr=False)
    secrets: EpochSecrets = field(repr=False)
    interim_transcript_hash: bytes
    confirmation_tag: bytes
    secret_tree: SecretTree = field(repr=False)
    proposals: dict[bytes, CachedProposal] = field(default_factory=dict, repr=False)
    #: encryption_key -> private key of our own Update proposals in this epoch (§12.1.2)
    update_keys: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    #: digests of handshake messages we sent this epoch, recognised when echoed back
    own_messages: set[bytes] = field(default_factory=set, repr=False)
    pending: PendingCommit | None = field(default=None, repr=False)
    past: list[PastEpoch] = field(default_factory=list, repr=False)
    resumption_psks: dict[int, bytes] = field(default_factory=dict, repr=False)
    reinit: ReInit | None = None
    removed: bool = False
    padding_block: int = 0
    _protection: MessageProtection | None = field(default=None, repr=False)

    # --- identity --------------------------------------------------------------------

    @property
    def leaf_index(self) -> int:
        """Our own leaf index (§4.2)."""
        return self.private.leaf_index

    @property
    def own_leaf(self) -> LeafNode:
        leaf = self.tree.leaf(self.leaf_index)
        if leaf is None:
            raise GroupInactiveError("this member's leaf is blank")
        return leaf

    @property
    def signature_key(self) -> bytes:
        return self.own_leaf.signature_key

    @property
    def client_id(self) -> bytes:
        return client_id_of(self.suite, self.signature_key)

    def check_active(self) -> None:
        """``GroupInactiveError`` if this member was removed or the group was reinitialized."""
        if self.removed:
            raise GroupInactiveError("this member was removed from the group")
        if self.reinit is not None:
            raise GroupInactiveError("the group was reinitialized (ReInit committed, §11.2)")

    # --- members --------------------------------------------------------------------

    def member_leaf(self, client_id: bytes) -> int:
        """Leaf index of the member with this client identifier; ``UnknownMemberError`` if none."""
        for leaf_index, leaf in self.tree.members():
            if client_id_of(self.suite, leaf.signature_key) == client_id:
                return leaf_index
        raise UnknownMemberError("no member with this client identifier")

    # --- message protection ---------------------------------------------------------

    def protection(self) -> MessageProtection:
        """The MessageProtection of the current epoch (cached; rebuilt if ``padding_block`` changed)."""
        if self._protection is None or self._protection.padding_block != self.padding_block:
            self._protection = MessageProtection(
                self.suite,
                self.context,
                self.secret_tree,
                self.secrets.sender_data_secret,
                self.secrets.membership_key,
                self.padding_block,
            )
        return self._protection

    def as_past_epoch(self) -> PastEpoch:
        """This epoch reduced to what late application messages need (§15.3)."""
        return PastEpoch(self.context, self.secret_tree, self.secrets.sender_data_secret, self.tree)


def required_capabilities_of(extensions: tuple) -> RequiredCapabilities | None:  # type: ignore[type-arg]
    """The ``required_capabilities`` extension (§11.1) among GroupContext extensions, if any."""
    extension = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    return None if extension is None else RequiredCapabilities.from_extension(extension)
