"""What the API returns: the MLS Web API's result dictionaries as frozen dataclasses.

Names and fields follow the Firefox prototype's WebIDL
(specs/mls-web-api-explainer-2025-02-webidl.md: ``MLSBytes``,
``MLSCommitOutput``, ``MLSGroupMember``, ``MLSGroupDetails``,
``MLSReceived``, ``MLSExporterOutput``) in snake_case; the JS API
(web/mls) returns objects with the same fields in camelCase, and
tests/contracts/mls_api.json holds both to that. Every value is public: an
RFC 9420 wire encoding (§6 ``MLSMessage``, §5.3 ``Credential``,
§12.4.3.3 ratchet tree) or an integer, never a ``mls.wire`` object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CommitOutput",
    "ExporterOutput",
    "ExtensionValue",
    "GroupDetails",
    "GroupMember",
    "MLSBytes",
    "ReInitDetails",
    "Received",
    "epoch_bytes",
]


def epoch_bytes(epoch: int) -> bytes:
    """An epoch as the Web API's ``groupEpoch``: uint64 big-endian, as in the GroupContext (§8.1)."""
    return epoch.to_bytes(8, "big")


@dataclass(frozen=True)
class MLSBytes:
    """Web API ``MLSBytes``: bytes tagged with what they are.

    ``type`` is one of the ``MLSObjectType`` values (``"client-identifier"``,
    ``"credential-basic"``, ``"key-package"``, ``"proposal"``,
    ``"application-message-ciphertext"``, ...). Every argument that takes
    bytes also takes an ``MLSBytes`` of a fitting type.
    """

    type: str
    content: bytes


@dataclass(frozen=True)
class CommitOutput:
    """Web API ``MLSCommitOutput``: the Commit for members, the Welcome for new members,
    the new epoch's GroupInfo (for external joins) and, only when the Welcome does not
    carry it (§12.4.3.3), the ratchet tree."""

    group_id: bytes
    client_id: bytes
    commit: bytes
    welcome: bytes | None = None
    group_info: bytes | None = None
    ratchet_tree: bytes | None = None
    type: str = "commit-output"


@dataclass(frozen=True)
class GroupMember:
    """Web API ``MLSGroupMember``: client identifier (Hash of the signature key), encoded
    Credential (§5.3) and leaf index. Also the authenticated sender of a received message."""

    client_id: bytes
    credential: bytes
    leaf_index: int


@dataclass(frozen=True)
class GroupDetails:
    """Web API ``MLSGroupDetails``: the membership at one epoch, and this member's place in it.

    ``leaf_count`` bounds every member's leaf index (the SFrame sender index,
    RFC 9605 §5.2); ``removed``: a Commit removed this member;
    ``reinit_pending``: a ReInit was committed (§11.2), the group takes no new work.
    """

    group_id: bytes
    group_epoch: bytes
    epoch: int
    members: tuple[GroupMember, ...]
    leaf_index: int
    leaf_count: int
    removed: bool = False
    reinit_pending: bool = False
    type: str = "group-info"


@dataclass(frozen=True)
class ExtensionValue:
    """One extension (§13): its type and its encoded ``extension_data``."""

    extension_type: int
    extension_data: bytes


@dataclass(frozen=True)
class ReInitDetails:
    """A committed ReInit (§12.1.5): the parameters of the group that replaces this one (§11.2)."""

    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[ExtensionValue, ...] = ()


@dataclass(frozen=True)
class Received:
    """Web API ``MLSReceived``: what ``receive`` (or ``apply_pending_commit``) found.

    ``type``: ``"application-message-plaintext"`` (``content`` is the
    plaintext), ``"proposal"`` (``content`` is the encoded Proposal, §12.1),
    ``"commit-output"`` (a proposal, as for ``"proposal"``, answered with the
    Commit in ``commit_output``: see ``GroupConfig.commit_received_proposals``)
    or ``"commit-processed"`` (``content`` is the Commit message). ``epoch``
    (and ``group_epoch``, its uint64 encoding) is the epoch the message belongs
    to, or for a Commit the epoch reached. ``sender`` is the MLS-authenticated
    sender (leaf index, credential, client id); None when the sender is no
    leaf (an external sender, a new member's proposal). ``own``: our own
    message echoed back. ``removed``: the Commit removed us. ``reinit``: the
    ReInit the Commit committed.
    """

    type: str
    group_id: bytes
    group_epoch: bytes
    epoch: int
    content: bytes = field(repr=False)
    sender: GroupMember | None = None
    authenticated_data: bytes = b""
    own: bool = False
    removed: bool = False
    reinit: ReInitDetails | None = None
    commit_output: CommitOutput | None = None


@dataclass(frozen=True)
class ExporterOutput:
    """Web API ``MLSExporterOutput``: ``secret = MLS-Exporter(label, context, length)`` of one epoch (§8.5)."""

    group_id: bytes
    group_epoch: bytes
    label: bytes
    context: bytes
    secret: bytes = field(repr=False)
    type: str = "exporter-output"
