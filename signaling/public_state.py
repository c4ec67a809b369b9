"""A room's keyless view of its MLS group and the rules the server enforces with it.

The delivery service holds no group secret, but with handshakes sent as
PublicMessages (RFC 9420 §6.2) it can follow the group from its public state
alone: an ``mls.PublicGroup`` (§12.4.2 without the secrets), built from the
creator's signed GroupInfo and ratchet tree (§12.4.3). As the authentication
service of its rooms (§5.3, §16.4), the server ties every leaf to a room token:

* the creator's GroupInfo holds one leaf, whose basic credential is the
  creator's token identity;
* a commit or proposal comes from the leaf whose credential is its sender's
  token identity (or is an external commit, §12.4.3.2, whose new leaf is);
  it is accepted only when the PublicGroup accepts it as a valid transition;
* a commit adds only identities admitted to the room (holding a valid token
  and having joined it) and never gives one identity two leaves;
* each Welcome attached to a commit (§12.4.3.1) names only KeyPackages that
  commit adds (their KeyPackageRefs, §5.2) and goes to the identity of one.

A refused message raises :class:`~signaling.errors.SignalingError` with a
typed code and leaves the state exactly as it was. What this cannot check
without the epoch's secrets (membership tags, confirmation tags, that a
Welcome really carries this group) is left to the members.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from mls import GroupConfig, PublicGroup, PublicMember
from mls.errors import MLSError
from mls.inspection import SenderType, WireFormat, credential_identity, inspect_message, inspect_welcome

from .errors import ErrorCode, SignalingError
from .store import WelcomeRecord


def _invalid(err: MLSError, what: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_HANDSHAKE, f"{what}: {type(err).__name__}: {err}")


class PublicState:
    """One room's ``PublicGroup``, its stored encoding and the token identity of each leaf.

    ``encoded`` is what the store holds (``PublicGroup.to_bytes``): every
    accepted handshake returns the new encoding for the store to write with
    it, and a refusal found after ``PublicGroup.process`` restores the group
    from it.
    """

    __slots__ = ("group", "encoded", "leaves", "_config")

    def __init__(self, group: PublicGroup, encoded: bytes | None = None,
                 config: GroupConfig | None = None) -> None:
        self.group = group
        self.encoded = group.to_bytes() if encoded is None else encoded
        self._config = config
        #: leaf index -> token identity of its credential (None: not a basic UTF-8 identity)
        self.leaves: dict[int, str | None] = {
            member.leaf_index: credential_identity(member.credential) for member in group.members()}

    def __repr__(self) -> str:
        return f"PublicState({self.group!r})"

    @classmethod
    def load(cls, encoded: bytes, config: GroupConfig | None = None) -> PublicState:
        """The state the store kept (``StateFormatError`` if corrupt)."""
        return cls(PublicGroup.from_bytes(encoded, config=config), encoded, config)

    @classmethod
    def create(cls, creator: str, group_id: bytes, epoch: int, group_info: bytes,
               ratchet_tree: bytes | None, config: GroupConfig | None = None) -> PublicState:
        """The view of a new group from its creator's GroupInfo (§12.4.3) and tree.

        The GroupInfo must verify, be for ``group_id`` at ``epoch`` and hold one
        leaf only, the creator's, whose credential names ``creator``.
        """
        try:
            group = PublicGroup.from_group_info(group_info, ratchet_tree, config=config)
        except MLSError as err:
            raise _invalid(err, "group_info") from None
        if group.group_id != group_id or group.epoch != epoch:
            raise SignalingError(ErrorCode.INVALID_HANDSHAKE,
                                 "group_info: another group or epoch than the envelope's")
        state = cls(group, None, config)
        if list(state.leaves.values()) != [creator]:
            if creator not in state.leaves.values():
                raise SignalingError(ErrorCode.IDENTITY_MISMATCH,
                                     "the creator's credential must name its token identity")
            raise SignalingError(ErrorCode.INVALID_HANDSHAKE, "a new group holds its creator alone")
        return state

    # -- who is in the group -------------------------------------------------------------

    def is_member(self, identity: str) -> bool:
        return identity in self.leaves.values()

    def _check_sender(self, sender: str, message: bytes) -> SenderType:
        """The sender type of a handshake PublicMessage; a member sender must be ``sender``'s leaf."""
        try:
            header = inspect_message(message)
        except MLSError as err:
            raise _invalid(err, "not an MLSMessage") from None
        if header.wire_format is not WireFormat.MLS_PUBLIC_MESSAGE:
            raise SignalingError(ErrorCode.INVALID_HANDSHAKE,
                                 "handshakes travel as PublicMessage (RFC 9420 §6.2), "
                                 f"not as {header.wire_format.name.lower()}")
        assert header.sender_type is not None
        if header.sender_type is SenderType.MEMBER:
            owner = self.leaves.get(header.leaf_index if header.leaf_index is not None else -1)
            if not self.is_member(sender):
                raise SignalingError(ErrorCode.NOT_MEMBER, "the sender has no leaf in the room's group")
            if owner != sender:
                raise SignalingError(ErrorCode.IDENTITY_MISMATCH,
                                     "the message is signed as another member's leaf")
        return header.sender_type

    # -- handshakes ----------------------------------------------------------------------

    def proposal(self, sender: str, proposal: bytes) -> bytes:
        """Accept a member's proposal (§12.1) into the view; the new encoding."""
        if self._check_sender(sender, proposal) is not SenderType.MEMBER:
            raise SignalingError(ErrorCode.NOT_MEMBER, "proposals come from members of the group")
        try:
            self.group.process(proposal)
        except MLSError as err:
            raise _invalid(err, "proposal refused") from None
        self.encoded = self.group.to_bytes()
        return self.encoded

    def commit(self, sender: str, commit: bytes, welcomes: Sequence[WelcomeRecord],
               admitted: Container[str]) -> bytes:
        """Accept a commit (§12.4.2) and its Welcomes; the new encoding."""
        # a member, or an external joiner (§12.4.3.2) whose new leaf is checked below
        if self._check_sender(sender, commit) not in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
            raise SignalingError(ErrorCode.NOT_MEMBER, "commits come from members or external joiners")
        try:
            result = self.group.process(commit)
        except MLSError as err:
            raise _invalid(err, "commit refused") from None
        try:
            leaves = self._next_leaves(sender, result.added, result.removed, result.external, admitted)
            self._check_welcomes(welcomes, result.added, result.key_package_refs)
        except SignalingError:
            self.group = PublicGroup.from_bytes(self.encoded, config=self._config)
            raise
        self.leaves = leaves
        self.encoded = self.group.to_bytes()
        return self.encoded

    def _next_leaves(self, sender: str, added: Sequence[PublicMember], removed: Sequence[PublicMember],
                     external: bool, admitted: Container[str]) -> dict[int, str | None]:
        """The leaves after a commit, refusing a leaf for an identity not admitted or a second
        leaf for one identity."""
        leaves = dict(self.leaves)
        for member in removed:
            leaves.pop(member.leaf_index, None)
        if external:
            joiner = credential_identity(added[-1].credential)
            if joiner != sender:
                raise SignalingError(ErrorCode.IDENTITY_MISMATCH,
                                     "an external joiner's credential must name its token identity")
            if any(self.leaves.get(member.leaf_index) != sender for member in removed):
                raise SignalingError(ErrorCode.INVALID_HANDSHAKE,
                                     "an external commit removes only its sender's old leaf")
        for member in added:
            identity = credential_identity(member.credential)
            if identity is None or identity not in admitted:
                raise SignalingError(ErrorCode.NOT_ADMITTED,
                                     "the commit adds a credential of no identity admitted to the room")
            if identity in leaves.values():
                raise SignalingError(ErrorCode.DUPLICATE_IDENTITY,
                                     f"the commit gives {identity!r} a second leaf")
            leaves[member.leaf_index] = identity
        return leaves

    def _check_welcomes(self, welcomes: Sequence[WelcomeRecord], added: Sequence[PublicMember],
                        refs: Sequence[bytes]) -> None:
        """Each Welcome names only KeyPackages this commit adds, among them its recipient's."""
        owners = {ref: credential_identity(member.credential) for ref, member in zip(refs, added)}
        for welcome in welcomes:
            try:
                summary = inspect_welcome(welcome.body)
            except MLSError as err:
                raise SignalingError(ErrorCode.INVALID_WELCOME,
                                     f"welcome for {welcome.recipient!r}: {type(err).__name__}") from None
            named = summary.key_package_refs
            if (summary.cipher_suite != self.group.cipher_suite or not named
                    or any(ref not in owners for ref in named)):
                raise SignalingError(ErrorCode.INVALID_WELCOME, f"the welcome for {welcome.recipient!r} "
                                     "names a KeyPackage this commit does not add")
            if welcome.recipient not in {owners[ref] for ref in named}:
                raise SignalingError(ErrorCode.INVALID_WELCOME, f"the welcome for {welcome.recipient!r} "
                                     "adds another identity")
