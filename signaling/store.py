"""The delivery service's storage interface (SQLite today, a shared store such as Redis later).

Every method that accepts a message returns only after the message is durable,
so the server can acknowledge it right away. The compare-and-set on the group
epoch lives here, not in the server, so that several servers sharing one store
still accept exactly one commit per epoch (RFC 9420 §14: the delivery service
orders handshake messages; §12.4 a commit moves the group from epoch n to n+1).
Each room also keeps the state of its keyless ``mls.PublicGroup`` (§12.4.2),
written in the same transaction as the handshake that produced it, so that a
restarted server validates the next handshake against the state its last
acknowledged one left.

What a room's log takes and keeps is the store's too (:class:`LogPolicy`):
per-epoch quotas on what members may write, and pruning by epochs, size and
age done in the transaction of the append that makes it necessary.

Several server instances may share one store (Redis; SQLite serves one
instance): the store is then also how they reach each other. Each room has a
*feed* (:class:`FeedItem`) carrying every accepted append's entries in
``seq`` order and the instances' signals (presence, relay, replace, group
reset), the identities admitted to the room, who is connected where
(:class:`Presence`, kept only while its instance heartbeats) and since when
the room's group has had no member connected (the abandoned-room rule). The
stored public view carries a version, so that an instance validating a
proposal against a view another instance has moved on gets
``Outcome.STALE_VIEW`` instead of overwriting it. A room that goes through
the SFU keeps its Janus room (:class:`SfuRoomRecord`), its topology and its
published feeds here too, so that its members on every instance meet in one
Janus room.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


class EntryKind(str, Enum):
    """What a log entry carries; the value is also the ``type`` of its event frame."""

    COMMIT = "commit"
    PROPOSAL = "proposal"
    WELCOME = "welcome"
    APPLICATION = "application"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One accepted message of a room's log, numbered by ``seq`` (1, 2, ... per room).

    ``epoch`` is the epoch the message belongs to: the epoch a commit or
    proposal was sent in, the epoch a Welcome lets its recipient join at, the
    epoch an application message was encrypted in. ``recipient`` is set for
    Welcomes only.
    """

    room: str
    seq: int
    kind: EntryKind
    sender: str
    epoch: int
    body: bytes = field(repr=False)
    group_id: bytes | None = None
    recipient: str | None = None


@dataclass(frozen=True, slots=True)
class RoomGroup:
    """The group a room carries: ``None`` fields until its creator registers it."""

    group_id: bytes | None
    epoch: int | None
    last_seq: int
    #: entries up to this ``seq`` were pruned from the log (0: none)
    pruned_seq: int = 0
    #: the log still holds every entry of the epochs after this one (-1: of every epoch)
    pruned_epoch: int = -1
    #: the version of the stored public view: incremented by every write of it (a
    #: handshake's ``public_group``, a group creation, :meth:`Store.reset_group`)
    public_version: int = 0


class Outcome(str, Enum):
    ACCEPTED = "accepted"
    CONFLICT = "conflict"
    WRONG_GROUP = "wrong_group"
    NO_GROUP = "no_group"
    QUOTA_EXCEEDED = "quota_exceeded"
    #: the request's ``public_version`` is not the stored view's: another instance changed
    #: the view since this one read it (validate again against the stored view)
    STALE_VIEW = "stale_view"


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One item of a room's feed, seen by every instance subscribed to the room.

    ``entries`` are the log entries one accepted append produced, in ``seq``
    order (empty for a signal); ``signal`` a JSON-able message between
    instances that is not in the log (presence, relay, replace, group reset,
    SFU notices); ``origin`` the instance id that caused the item.
    ``resync`` marks an item the store itself makes (no entries, no signal)
    once the feed is subscribed again after its connection broke: what was
    published meanwhile is lost to the feed, so the consumer reads the log
    after the last ``seq`` it delivered now instead of at the room's next
    entry.
    """

    entries: tuple[LogEntry, ...] = ()
    signal: dict[str, Any] | None = None
    origin: str = ""
    resync: bool = False


@dataclass(frozen=True, slots=True)
class Presence:
    """Where an identity of a room is connected: the ``instance`` holding its connection,
    and whether it waits, a newcomer, for a member of the group to add it."""

    instance: str
    waiting: bool


@dataclass(frozen=True, slots=True)
class SfuRoomRecord:
    """A room's Janus room (issue 16, signaling.sfu), shared by the instances: its numeric id,
    its ``secret`` (never shown) and its ``generation``, counted up each time the room was
    re-created in a restarted Janus."""

    janus_room: int
    secret: str = field(repr=False)
    generation: int


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """What each room's log takes within one epoch, and what it keeps (``None``: no limit).

    Quotas count application messages and proposals, the entries a member may
    send as often as it likes, per epoch of the room's group: per sender
    (``sender_*``) and for the whole room (``room_*``), in entries and in
    bytes of MLS message. Commits and their Welcomes are never counted (one
    commit per epoch makes progress and starts fresh quotas), so application
    data cannot starve the handshakes that move the group on.

    Pruning: once a commit starts epoch ``E``, every entry sequenced before the
    commit that started ``E - epochs`` goes. Besides, after each append the
    oldest entries go while the log holds more than ``max_bytes`` of MLS
    messages, or while they are older than ``max_age`` seconds (by the store's
    clock), except what a newcomer needs to join: the commit that started the
    current epoch and the epoch's Welcomes and proposals (application
    messages of the current epoch may go), and the entries of that append
    itself. So a room's log holds at most ``max_bytes`` plus the current
    epoch's handshakes (within the room quota) plus one append.
    """

    epochs: int | None = 1000
    max_bytes: int | None = 64 * 1024 * 1024
    max_age: float | None = 3600.0
    sender_bytes: int | None = 8 * 1024 * 1024
    sender_entries: int | None = 2000
    room_bytes: int | None = 64 * 1024 * 1024
    room_entries: int | None = 20_000

    def __post_init__(self) -> None:
        for name in ("epochs", "max_bytes", "sender_bytes", "sender_entries", "room_bytes",
                     "room_entries"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (None: no limit)")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("max_age must be positive (None: no limit)")


@dataclass(frozen=True, slots=True)
class QuotaExceeded:
    """Which per-epoch quota of :class:`LogPolicy` a refused request would have exceeded."""

    #: "sender" or "room"
    scope: str
    #: "bytes" or "entries"
    unit: str
    limit: int


@dataclass(frozen=True, slots=True)
class WelcomeRecord:
    """A Welcome (RFC 9420 §12.4.3.1) addressed to the identity of the member it adds."""

    recipient: str
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class GroupCreateRequest:
    """The room's group registered by its creator at ``epoch``: ``public_group`` is the
    keyless view built from the creator's GroupInfo and ratchet tree (§12.4.3)."""

    sender: str
    group_id: bytes
    epoch: int
    public_group: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """A commit for ``epoch`` (§12.4), with the Welcomes for the members it adds.

    ``public_group`` is the room's PublicGroup after the commit (``to_bytes``),
    stored with it; ``None`` leaves the stored state as it is (a server that
    does not validate, benchmarks only). ``public_version`` is the version of
    the stored view it was derived from (``None``: not checked); the store
    refuses the request with ``STALE_VIEW`` when the stored version differs.
    """

    sender: str
    group_id: bytes
    epoch: int
    commit: bytes = field(repr=False)
    welcomes: tuple[WelcomeRecord, ...] = ()
    public_group: bytes | None = field(default=None, repr=False)
    public_version: int | None = None


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """A standalone proposal (§12.1) sent in ``epoch``; ``public_group`` and
    ``public_version`` as for a commit (the PublicGroup caches the proposal until the
    epoch's commit, so two instances accepting proposals in one epoch must not overwrite
    each other's view)."""

    sender: str
    group_id: bytes
    epoch: int
    proposal: bytes = field(repr=False)
    public_group: bytes | None = field(default=None, repr=False)
    public_version: int | None = None


@dataclass(frozen=True, slots=True)
class ApplicationRequest:
    """An application message (a PrivateMessage, §6.3) encrypted in ``epoch``."""

    sender: str
    epoch: int
    ciphertext: bytes = field(repr=False)


AppendRequest = GroupCreateRequest | CommitRequest | ProposalRequest | ApplicationRequest


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The answer to one request: its log entries if accepted, and the group epoch after it."""

    outcome: Outcome
    epoch: int | None
    entries: tuple[LogEntry, ...] = ()
    #: set with ``QUOTA_EXCEEDED``: the quota the request would have exceeded
    quota: QuotaExceeded | None = None


class Store(Protocol):
    """Durable state of the delivery service. All methods are coroutines."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def group_state(self, room: str) -> RoomGroup: ...

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        """Apply ``requests`` in order, atomically and durably; one result per request.

        A group creation is accepted iff the room has no group (else
        ``WRONG_GROUP``); it registers ``group_id`` at ``epoch`` and logs
        nothing. A commit is accepted iff the room's group is ``group_id`` at
        ``epoch`` (``NO_GROUP`` without a group): the first commit for an epoch
        wins, later ones get ``CONFLICT`` with the current epoch. The commit
        moves the group to ``epoch + 1``; it and then its Welcomes (at
        ``epoch + 1``) take the next sequence numbers. A proposal needs the
        group at ``epoch``. A commit or proposal whose ``public_version`` is
        not ``None`` and differs from the stored view's version (after the
        group and epoch checks) gets ``STALE_VIEW``, nothing written. An
        accepted request's ``public_group`` (when not ``None``) becomes the
        room's stored PublicGroup in the same transaction, and the view's
        version goes up by one per such request (a group creation's too), so
        the next request of the same call derived from this one's view
        carries ``public_version + 1``. Application messages and proposals
        within the epoch's quotas are accepted (``QUOTA_EXCEEDED`` otherwise,
        nothing written).

        The store prunes as its :class:`LogPolicy` says, in the same
        transaction (``pruned_seq``, ``pruned_epoch`` of :class:`RoomGroup`
        say what is gone).

        Each accepted request with entries publishes one :class:`FeedItem`
        (its entries, ``origin``) on the room's feed, in ``seq`` order, in the
        same atomic step that assigns the seqs (or, SQLite, right after the
        transaction commits and before this returns).
        """
        ...

    async def read_entries(self, room: str, *, after_seq: int, up_to_seq: int | None = None,
                           limit: int | None = None) -> list[LogEntry]:
        """Every entry (whoever may read it, Welcomes included) after ``after_seq`` up to
        ``up_to_seq``, in sequence order, at most ``limit``: the fan-out fills a feed's gaps
        with these."""
        ...

    async def read_log(self, room: str, reader: str, *, after_seq: int = 0,
                       min_epoch: int | None = None, up_to_seq: int | None = None,
                       limit: int | None = None, max_bytes: int | None = None) -> list[LogEntry]:
        """Entries after ``after_seq`` (up to ``up_to_seq``, at ``min_epoch`` or later) that
        ``reader`` may see, in sequence order: one page of at most ``limit`` entries that ends
        with the entry that reaches ``max_bytes`` bytes of MLS message, if one does.

        ``reader`` sees every commit and proposal, Welcomes addressed to it, and
        application messages of other senders.
        """
        ...

    async def count_log(self, room: str, reader: str, *, after_seq: int, up_to_seq: int,
                        min_epoch: int | None = None) -> int:
        """How many entries :meth:`read_log` would give ``reader`` in ``(after_seq, up_to_seq]``."""
        ...

    async def latest_welcome_seq(self, room: str, recipient: str) -> int | None: ...

    async def public_group(self, room: str) -> tuple[bytes, int] | None:
        """The room's stored PublicGroup (``PublicGroup.to_bytes``) and its version, ``None``
        without a group."""
        ...

    async def reset_group(self, room: str) -> None:
        """Forget the room's group: its log entries, KeyPackages, PublicGroup (its version goes
        up by one) and admitted identities go, the room has no group again and nothing pruned
        (a catch-up meets the new group, not a refusal); sequence numbers keep counting up."""
        ...

    # -- the feed: fan-out and signals across instances --------------------------------------

    async def subscribe(self, room: str, handler: Callable[[FeedItem], None]) -> None:
        """Until :meth:`unsubscribe`, call ``handler`` (synchronously, from the store's own
        reader, in order) with every :class:`FeedItem` of ``room`` from any instance, this
        one included. One handler per room; subscribing again replaces it. Items may be lost
        (a reconnect): a consumer fills the seq gaps with :meth:`read_entries`, and a store
        whose feed can lose items hands a ``resync`` item once it is subscribed again."""
        ...

    async def unsubscribe(self, room: str) -> None:
        """Stop the feed of ``room`` for this instance."""
        ...

    async def signal(self, room: str, message: dict[str, Any], origin: str) -> None:
        """Publish ``message`` (JSON-able) as a FeedItem without entries to every instance
        subscribed to ``room``, this one included."""
        ...

    # -- admission and presence across instances ---------------------------------------------

    async def admit(self, room: str, identity: str) -> None:
        """Remember that ``identity`` joined ``room`` with a valid token: a commit may add it."""
        ...

    async def admitted(self, room: str) -> frozenset[str]:
        """The identities admitted to ``room`` since its group was last reset."""
        ...

    async def set_presence(self, room: str, identity: str, instance: str, waiting: bool) -> None:
        """``identity`` is connected to ``room`` through ``instance`` (``waiting``: a newcomer
        waiting to be added); replaces any earlier presence of the identity."""
        ...

    async def drop_presence(self, room: str, identity: str, instance: str) -> None:
        """Forget the presence of ``identity`` if ``instance`` still holds it."""
        ...

    async def presence(self, room: str) -> dict[str, Presence]:
        """Who is connected to ``room``, by identity: only through instances alive
        (:meth:`heartbeat`)."""
        ...

    async def sweep_presence(self, room: str) -> list[str]:
        """Forget the presence in ``room`` held by instances no longer alive (no
        :meth:`heartbeat` within their ttl); the identities this call dropped, each of them
        reported to one caller only (each drop is atomic: held by that dead instance still),
        so exactly one instance announces each one's leave. An identity back through a live
        instance meanwhile is held by that one and stays."""
        ...

    async def heartbeat(self, instance: str, ttl: float) -> None:
        """``instance`` is alive for ``ttl`` more seconds."""
        ...

    async def empty_since(self, room: str) -> float | None:
        """Since when (seconds, the config clock) ``room`` has had none of its group's members
        connected on any instance, if noted (:meth:`set_empty_since`)."""
        ...

    async def set_empty_since(self, room: str, when: float | None) -> None:
        """Note (``None``: forget) since when ``room`` has had no member of its group connected."""
        ...

    # -- the room's SFU state across instances (signaling.sfu) --------------------------------

    async def sfu_room(self, room: str) -> SfuRoomRecord | None:
        """The room's Janus room, if an instance has claimed one (:meth:`claim_sfu_room`)."""
        ...

    async def claim_sfu_room(self, room: str, record: SfuRoomRecord) -> SfuRoomRecord:
        """Store ``record`` as the room's Janus room if the room has none or only one of a
        lower generation (then its published feeds go too: they were the old Janus's), in one
        atomic step; return the record stored afterwards (the winner's, if another instance's
        claim came first)."""
        ...

    async def switch_to_sfu(self, room: str) -> bool:
        """Note that the room goes through the SFU; True only for the call that switched it."""
        ...

    async def sfu_switched(self, room: str) -> bool:
        """Whether the room goes through the SFU (:meth:`switch_to_sfu`)."""
        ...

    async def set_sfu_feed(self, room: str, feed: int, identity: str) -> None:
        """``identity`` publishes ``feed`` in the room's Janus room."""
        ...

    async def drop_sfu_feed(self, room: str, feed: int) -> bool:
        """Forget the published ``feed``; True if the room had it."""
        ...

    async def sfu_feeds(self, room: str) -> dict[int, str]:
        """The room's published feeds, from every instance: feed id -> identity."""
        ...

    async def clear_sfu(self, room: str) -> None:
        """Forget the room's SFU state (Janus room, topology, feeds): nobody is left in it."""
        ...

    async def publish_key_packages(self, room: str, identity: str,
                                   key_packages: Sequence[bytes], limit: int) -> int | None:
        """Store ``key_packages``; the number now available, or ``None`` (nothing stored) above ``limit``."""
        ...

    async def claim_key_package(self, room: str, identity: str) -> bytes | None:
        """Remove and return one KeyPackage of ``identity`` atomically (oldest first)."""
        ...
