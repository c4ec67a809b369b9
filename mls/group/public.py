"""A keyless public view of a group for the delivery service (RFC 9420 §12.4.2, §12.4.3.1, §16.5).

The delivery service sees every handshake message but holds no group secret.
``PublicGroup`` follows a group from its public state alone: the ratchet tree
(§7), the GroupContext (§8.1), the confirmed and interim transcript hashes
(§8.2) and the proposals cached in the current epoch (§12.1). It is built
from a signed GroupInfo, checked as a joiner checks it (§12.4.3.1, without
the secrets), and ``process`` accepts a Proposal or a Commit only when it is
a valid transition, doing every check of §12.4.2 that needs no secret:

* framing (§6): a PublicMessage of this group and epoch; the signature over
  ``FramedContentTBS`` by the sender's key: the member's leaf, the
  ``external_senders`` entry, the UpdatePath leaf of a ``new_member_commit``
  or the KeyPackage leaf of a ``new_member_proposal`` (§6.1);
* proposals (§12.1, §12.2): who may send which, each one validated when it
  enters the cache (KeyPackages §10.1, Update leaves §7.3, Remove targets,
  PSK ids), the committed list validated and applied as a member does;
* the UpdatePath (§7.5, §7.9, §12.4.2): leaf validation, one node per
  filtered-direct-path node with one ciphertext per resolution member,
  fresh keys, parent hash; the committer's credential successor rule (§5.3.1);
* external Commits (§12.4.3.2): one ExternalInit, at most one (resync) Remove;
* the new tree hash and confirmed transcript hash, giving the next GroupContext.

What it cannot check, because it needs a secret of the epoch: the
``membership_tag`` of members' PublicMessages (``membership_key``, §6.2), the
Commit's ``confirmation_tag`` (``confirmation_key``, §8.1), that the UpdatePath
ciphertexts decrypt (§7.6), the PSKs a Commit injects (§8.4) and the
ExternalInit ``kem_output`` (§8.3). A member that accepts what the delivery
service accepted still checks those; a Commit that fails them there is a
fault of its sender that the delivery service cannot see. PrivateMessages are
refused: handshakes must be PublicMessages for the delivery service to
validate them, and application messages are not its business.

Every refusal raises a typed error from ``mls.errors`` and leaves the
PublicGroup exactly as it was: the next state is built apart and swapped in
only when every check has passed. Processing a Commit reuses the tree's
cached hashes (§7.8), so it costs O(log n) hashes plus the path, not O(n).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto import CipherSuite, cipher_suite
from mls.errors import (
    DecodeError,
    GroupInactiveError,
    InvalidArgumentTypeError,
    MLSError,
    StaleCommitError,
    StateFormatError,
    ValidationError,
    WrongEpochError,
)
from mls.group.commit import merge_received_path
from mls.group.config import GroupConfig
from mls.group.group_info import verified_ratchet_tree
from mls.group.key_package import key_package_ref
from mls.group.framing import sender_signature_key
from mls.group.proposals import (
    apply_proposals,
    check_proposal,
    proposal_ref,
    resolve_proposals,
    validate_proposal_sender,
)
from mls.group.state import CachedProposal, PublicView
from mls.message_protection import FRAMED_CONTENT_TBS_LABEL
from mls.transcript import interim_transcript_hash, update_transcript_hashes
from mls.tree import RatchetTree
from mls.wire.codec import Reader, Writer
from mls.wire.enums import ContentType, SenderType, WireFormat
from mls.wire.framing import AuthenticatedContent, FramedContent, FramedContentTBS, PrivateMessage, PublicMessage, Sender
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Commit, Proposal
from mls.wire.tree import LeafNode
from mls.wire.welcome import GroupInfo

__all__ = ["CommitProcessed", "ProposalProcessed", "PublicGroup", "PublicMember"]

MAGIC = b"MLSP"
FORMAT_VERSION = 1

#: Exceptions that malformed input may raise below the typed layer; never let them escape.
_UNTYPED = (ValueError, KeyError, IndexError, OverflowError, TypeError)


@dataclass(frozen=True)
class PublicMember:
    """A leaf of the tree as the delivery service sees it: index, encoded Credential (§5.3), signature key."""

    leaf_index: int
    credential: bytes
    signature_key: bytes

    @classmethod
    def of(cls, leaf_index: int, leaf: LeafNode) -> PublicMember:
        return cls(leaf_index, leaf.credential.encode(), leaf.signature_key)


@dataclass(frozen=True)
class CommitProcessed:
    """What an accepted Commit changed (§12.4.2).

    ``committer`` is the committer's leaf index in the new epoch. ``added``
    holds the members added by Add proposals and, for an external Commit
    (``external``), the joiner itself; ``removed`` the removed leaves with
    the credential they had; ``updated`` the leaves replaced by Update
    proposals (their credential does not change, §5.3.1). ``reinit``: the
    Commit carried a ReInit, the group takes no more messages (§11.2).
    ``key_package_refs``: the KeyPackageRef (§5.2) of each KeyPackage an Add
    proposal added, in the order of ``added``: a Welcome names its new
    members by these (§12.4.3.1).
    """

    epoch: int
    committer: int
    added: tuple[PublicMember, ...]
    removed: tuple[PublicMember, ...]
    updated: tuple[PublicMember, ...]
    external: bool
    reinit: bool = False
    key_package_refs: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ProposalProcessed:
    """An accepted Proposal, now cached for this epoch under ``ref`` (its ProposalRef, §5.2).

    ``proposal_type`` is the §17.4 code point; ``sender_type`` the §6
    sender type name (``"member"``, ``"external"``, ``"new_member_proposal"``)
    and ``sender_index`` the member's leaf or the external sender's index.
    """

    epoch: int
    proposal_type: int
    sender_type: str
    sender_index: int | None
    ref: bytes


@dataclass(eq=False)
class _EpochState(PublicView):
    """One epoch of the public view; also the key-less state the proposal rules read (mls.group.proposals)."""

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    interim_transcript_hash: bytes
    proposals: dict[bytes, CachedProposal] = field(default_factory=dict)
    reinit: bool = False


class PublicGroup:
    """The delivery service's key-less view of one group (see the module docstring).

    Build it with ``from_group_info`` (a signed GroupInfo and the ratchet
    tree) or ``from_bytes`` (what ``to_bytes`` stored); feed it every
    handshake message with ``process``. ``config`` supplies the clock for
    leaf lifetime checks (``GroupConfig.received_now``); it is not stored.
    """

    __slots__ = ("_state", "_config")

    def __init__(self, state: _EpochState, config: GroupConfig) -> None:
        self._state = state
        self._config = config

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_group_info(
        cls, group_info: bytes, ratchet_tree: bytes | None = None, *, config: GroupConfig | None = None
    ) -> PublicGroup:
        """The view of the epoch a GroupInfo (an encoded MLSMessage) describes (§12.4.3.1).

        The tree comes from the GroupInfo's ``ratchet_tree`` extension or from
        ``ratchet_tree`` (encoded ``optional<Node> ratchet_tree<V>``). Checks
        the GroupInfo signature with its signer's leaf, every leaf (§7.3),
        parent hashes (§7.9.2) and the tree hash against the GroupContext.
        The interim transcript hash is derived from the confirmed one and
        the GroupInfo's ``confirmation_tag`` (§8.2), which a key-less view
        takes on trust (it cannot verify it). Raises ``DecodeError``,
        ``MissingRatchetTreeError``, ``ValidationError``, ``SignatureError``,
        ``UnsupportedCipherSuiteError``.
        """
        config = config if config is not None else GroupConfig()
        message = _decode(group_info, "group_info")
        info = message.body
        if not isinstance(info, GroupInfo):
            raise ValidationError("not a GroupInfo message")
        context = info.group_context
        suite = cipher_suite(context.cipher_suite)
        try:
            tree = verified_ratchet_tree(suite, info, ratchet_tree, config.received_now())
        except MLSError:
            raise
        except _UNTYPED as exc:
            raise DecodeError(f"ratchet tree: malformed ({type(exc).__name__})") from None
        interim = interim_transcript_hash(suite, context.confirmed_transcript_hash, info.confirmation_tag)
        return cls(_EpochState(suite, context, tree, interim), config)

    # --- accessors -----------------------------------------------------------------------

    @property
    def cipher_suite(self) -> int:
        return self._state.suite.suite_id

    @property
    def group_id(self) -> bytes:
        return self._state.group_id

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def tree_hash(self) -> bytes:
        """The tree hash of the current epoch's ratchet tree (§7.8), as in the GroupContext."""
        return self._state.context.tree_hash

    @property
    def confirmed_transcript_hash(self) -> bytes:
        return self._state.context.confirmed_transcript_hash

    @property
    def interim_transcript_hash(self) -> bytes:
        return self._state.interim_transcript_hash

    @property
    def group_context(self) -> bytes:
        """The current GroupContext, encoded (§8.1)."""
        return self._state.context.encode()

    @property
    def active(self) -> bool:
        """False once a ReInit was committed: the group takes no more messages (§11.2)."""
        return not self._state.reinit

    def members(self) -> tuple[PublicMember, ...]:
        """Every non-blank leaf, left to right."""
        return tuple(PublicMember.of(index, leaf) for index, leaf in self._state.tree.members())

    def proposal_refs(self) -> tuple[bytes, ...]:
        """ProposalRefs of the proposals cached in this epoch, in arrival order."""
        return tuple(self._state.proposals)

    def export_ratchet_tree(self) -> bytes:
        """The current tree as the ``ratchet_tree`` extension data (§12.4.3.3), for joiners."""
        return self._state.tree.encode()

    def __repr__(self) -> str:
        state = self._state
        return (
            f"PublicGroup(group_id={state.group_id.hex()[:16]}..., epoch={state.epoch}, "
            f"members={state.tree.member_count}, proposals={len(state.proposals)})"
        )

    # --- processing (§6, §12.1, §12.4.2) --------------------------------------------------

    def process(self, message: bytes) -> CommitProcessed | ProposalProcessed:
        """Accept a PublicMessage Proposal or Commit of the current epoch, or raise.

        Raises ``InvalidArgumentTypeError`` (not bytes), ``DecodeError`` (malformed bytes), ``ValidationError`` (a
        PrivateMessage, another group, an invalid proposal or Commit),
        ``WrongEpochError`` / ``StaleCommitError`` (another epoch),
        ``UnknownSenderError``, ``SignatureError``, ``GroupInactiveError``
        (after a ReInit). On any error the view is unchanged.
        """
        public = _public_message(_decode(message, "message"))
        state = self._state
        content = public.content
        _check_framing(state, content)
        authenticated = AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, content, public.auth)
        try:
            _verify_signature(state, authenticated)
            body = content.body
            if isinstance(body, Proposal):
                result: CommitProcessed | ProposalProcessed
                result, nxt = self._proposal(state, authenticated, body)
            else:
                assert isinstance(body, Commit)
                result, nxt = self._commit(state, authenticated, body)
        except MLSError:
            raise
        except _UNTYPED as exc:
            raise ValidationError(f"invalid handshake message ({type(exc).__name__})") from None
        self._state = nxt
        return result

    def _proposal(
        self, state: _EpochState, authenticated: AuthenticatedContent, proposal: Proposal
    ) -> tuple[ProposalProcessed, _EpochState]:
        """Validate a proposal on its own (§12.1) and cache it under its ProposalRef."""
        sender = authenticated.content.sender
        validate_proposal_sender(state, proposal, sender)  # type: ignore[arg-type]
        check_proposal(state, proposal, sender, self._config.received_now())
        ref = proposal_ref(state.suite, authenticated)
        proposals = dict(state.proposals)
        proposals[ref] = CachedProposal(ref, proposal, sender, verified=True)
        nxt = _EpochState(state.suite, state.context, state.tree, state.interim_transcript_hash, proposals)
        result = ProposalProcessed(
            state.epoch, int(proposal.proposal_type), SenderType(sender.sender_type).name.lower(), sender.index, ref
        )
        return result, nxt

    def _commit(
        self, state: _EpochState, authenticated: AuthenticatedContent, commit: Commit
    ) -> tuple[CommitProcessed, _EpochState]:
        """Validate a Commit as a member would, without its secrets (§12.4.2), and build the next epoch."""
        suite = state.suite
        sender = authenticated.content.sender
        external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
        committer = sender.index if sender.index is not None else -1
        if sender.sender_type != SenderType.MEMBER and not external:
            raise ValidationError("Commits come from members or new members (new_member_commit)")
        now = self._config.received_now()
        entries = resolve_proposals(state, commit.proposals, sender)  # type: ignore[arg-type]
        applied = apply_proposals(state, entries, sender, now=now)  # type: ignore[arg-type]
        if commit.path is None and (applied.path_required or external):
            raise ValidationError("this Commit requires an UpdatePath")
        tree = applied.tree
        if external:
            committer = tree.free_leaf()
            if committer == tree.leaf_count:
                tree.extend()
        extensions = applied.extensions
        if commit.path is not None:
            merge_received_path(state, applied, committer, commit.path, external=external, now=now)
        confirmed, interim = update_transcript_hashes(suite, state.interim_transcript_hash, authenticated)
        context = GroupContext(suite.suite_id, state.group_id, state.epoch + 1, tree.tree_hash(), confirmed, extensions)
        nxt = _EpochState(suite, context, tree, interim, {}, applied.reinit is not None)

        added = [PublicMember.of(leaf, key_package.leaf_node) for leaf, key_package in applied.added]
        if external:
            joiner = tree.leaf(committer)
            assert joiner is not None
            added.append(PublicMember.of(committer, joiner))
        removed = []
        for leaf_index in applied.removed:
            leaf = state.tree.leaf(leaf_index)
            assert leaf is not None
            removed.append(PublicMember.of(leaf_index, leaf))
        result = CommitProcessed(
            context.epoch,
            committer,
            tuple(added),
            tuple(removed),
            tuple(PublicMember.of(index, leaf) for index, leaf in applied.updated),
            external,
            nxt.reinit,
            tuple(key_package_ref(suite, key_package) for _, key_package in applied.added),
        )
        return result, nxt

    # --- storage -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A versioned encoding (magic ``b"MLSP"``, ``uint16`` version, RFC 9420 structs) for storage."""
        state = self._state
        writer = Writer()
        writer.raw(MAGIC)
        writer.u16(FORMAT_VERSION)
        writer.u16(state.suite.suite_id)
        state.context.write(writer)
        writer.opaque(state.tree.encode())
        writer.opaque(state.interim_transcript_hash)
        writer.u8(1 if state.reinit else 0)
        writer.vector(state.proposals.values(), _write_cached_proposal)
        return writer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, config: GroupConfig | None = None) -> PublicGroup:
        """Restore what ``to_bytes`` wrote; ``StateFormatError`` if corrupt or of another version.

        The tree is hashed once (O(n), filling the cache the next Commit
        reuses) and must match the stored GroupContext's tree hash.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StateFormatError(f"stored public group must be bytes, not {type(data).__name__}")
        try:
            reader = Reader(bytes(data))
            if reader.fixed(4, "magic") != MAGIC:
                raise StateFormatError("not a stored public group")
            version = reader.u16("format version")
            if version != FORMAT_VERSION:
                raise StateFormatError(f"unknown public group format version {version}")
            suite = cipher_suite(reader.u16("suite"))
            context = GroupContext.read(reader)
            tree = RatchetTree.decode(suite, reader.opaque("tree"))
            interim = reader.opaque("interim transcript hash")
            reinit = reader.u8("reinit")
            proposals = {p.ref: p for p in reader.vector(_read_cached_proposal, "proposals")}
            reader.finish("public group")
            if reinit not in (0, 1):
                raise StateFormatError("corrupt public group (reinit flag)")
            if context.cipher_suite != suite.suite_id or len(interim) != suite.Nh:
                raise StateFormatError("corrupt public group (cipher suite)")
            if tree.tree_hash() != context.tree_hash:
                raise StateFormatError("corrupt public group (tree hash)")
        except StateFormatError:
            raise
        except (MLSError, *_UNTYPED) as exc:
            raise StateFormatError(f"corrupt public group ({type(exc).__name__})") from None
        config = config if config is not None else GroupConfig()
        return cls(_EpochState(suite, context, tree, interim, proposals, reinit == 1), config)


# --- helpers --------------------------------------------------------------------------------


def _decode(data: bytes, what: str) -> MLSMessage:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentTypeError(f"{what} must be bytes, not {type(data).__name__}")
    try:
        return MLSMessage.decode(bytes(data))
    except DecodeError:
        raise
    except (MLSError, *_UNTYPED) as exc:
        raise DecodeError(f"{what}: malformed ({type(exc).__name__})") from None


def _public_message(message: MLSMessage) -> PublicMessage:
    """The PublicMessage a delivery service can validate; anything else is refused (§6)."""
    body = message.body
    if isinstance(body, PrivateMessage):
        if body.content_type == ContentType.APPLICATION:
            raise ValidationError("an application message (PrivateMessage) carries nothing a public view can check")
        raise ValidationError("a handshake sent as PrivateMessage cannot be validated without keys: send it as PublicMessage")
    if not isinstance(body, PublicMessage):
        raise ValidationError(f"a {type(body).__name__} is not a group handshake message")
    return body


def _check_framing(state: _EpochState, content: FramedContent) -> None:
    """Group, epoch and content type of a PublicMessage (§6, §6.2)."""
    if content.group_id != state.group_id:
        raise ValidationError("message is for another group")
    if content.epoch != state.epoch:
        if content.content_type == ContentType.COMMIT and content.epoch < state.epoch:
            raise StaleCommitError(f"Commit for epoch {content.epoch}, the group is at epoch {state.epoch}")
        raise WrongEpochError(f"message for epoch {content.epoch}, the group is at epoch {state.epoch}")
    if state.reinit:
        raise GroupInactiveError("the group was reinitialized (ReInit committed): it takes no more messages")
    if content.content_type == ContentType.APPLICATION:
        raise ValidationError("application data in a PublicMessage")


def _verify_signature(state: _EpochState, authenticated: AuthenticatedContent) -> None:
    """``VerifyWithLabel(key, "FramedContentTBS", FramedContentTBS, signature)`` (§6.1); no membership tag (§6.2)."""
    content = authenticated.content
    with_context = content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
    tbs = FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, content, state.context if with_context else None)
    state.suite.verify_with_label(
        sender_signature_key(state, content), FRAMED_CONTENT_TBS_LABEL, tbs.encode(), authenticated.auth.signature
    )


def _write_cached_proposal(writer: Writer, cached: CachedProposal) -> None:
    writer.opaque(cached.ref)
    cached.proposal.write(writer)
    cached.sender.write(writer)


def _read_cached_proposal(reader: Reader) -> CachedProposal:
    ref = reader.opaque("proposal ref")
    return CachedProposal(ref, Proposal.read(reader), Sender.read(reader))
