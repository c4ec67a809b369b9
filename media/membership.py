"""Call membership as one sans-I/O state machine (RFC 9420 §12, §14; RFC 9605 §5.2).

:class:`Membership` decides, for one participant of a room of the signaling
server (docs/protocol.md), who commits, whom to add or remove, when to install
an epoch and switch sending keys, and whom to trust.  It owns the MLS group
(``mls.MLS`` / ``GroupView``) and the client's persisted record, and does no
I/O: the driver (:class:`media.call_peer.CallPeer`, the page's call.js) feeds
it typed events (:data:`Event`) through :meth:`Membership.handle` and carries
out the typed actions (:data:`Action`) it returns, in order, feeding the
answers of requests back as events.  The rules, the event and action
catalogue and the trace format shared with the JS port are in
docs/membership.md.

Members check what the delivery service says (DESIGN.md, trust model): a
member is a leaf (never looked up by name); a commit's new leaf for an
identity that already has one, or for an identity never present in the room,
is flagged (a :class:`TrustWarning`), left out of the members shown, never
trusted for media, and removed by the committer; a Welcome is joined only for
the room's group and only if its leaves are present participants, one each;
a chat message's sender is its MLS-authenticated leaf (§6.1); the signature
key of each identity is remembered (trust on first use, §5.3.1 leaves this
to the application) and a changed key blocks that leaf's media until the
application accepts it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from mls import MLS, GroupView
from mls.errors import MLSError
from mls.inspection import credential_identity, inspect_key_package

#: the MLS storage namespace of the client records (one per identity)
RECORD_NAMESPACE = "mlscall.membership"


def key_package_identity(key_package: bytes) -> str | None:
    """The identity in a KeyPackage's leaf credential (RFC 9420 §10), or None."""
    try:
        credential = inspect_key_package(key_package).credential
    except MLSError:
        return None
    return credential_identity(credential.encoded)


# -- events (driver -> machine) ---------------------------------------------------------


@dataclass(frozen=True)
class RoomJoined:
    """The join reply: who we are, who else is here, the room's group."""

    identity: str
    present: tuple[str, ...]
    group_id: bytes | None
    epoch: int | None


@dataclass(frozen=True)
class PresenceJoined:
    """A ``presence`` ``join``; ``resumed``: the joiner catches up from its cursor (it kept
    its group state), as the server says (docs/protocol.md)."""

    identity: str
    resumed: bool


@dataclass(frozen=True)
class PresenceLeft:
    """A ``presence`` ``leave``; ``dropped``: its connection ended without a ``leave``
    request, so it may come back (docs/protocol.md)."""

    identity: str
    dropped: bool


@dataclass(frozen=True)
class CommitDelivered:
    """A ``commit`` log entry; ``sender`` is the server's ``from`` (a claim)."""

    seq: int
    sender: str
    group_id: bytes
    epoch: int
    commit: bytes = field(repr=False)


@dataclass(frozen=True)
class ProposalDelivered:
    seq: int
    sender: str
    group_id: bytes
    epoch: int
    proposal: bytes = field(repr=False)


@dataclass(frozen=True)
class WelcomeDelivered:
    seq: int
    sender: str
    group_id: bytes
    epoch: int
    welcome: bytes = field(repr=False)


@dataclass(frozen=True)
class ApplicationDelivered:
    seq: int
    sender: str
    epoch: int
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class RequestAccepted:
    """The ``ack`` of one of our requests (``epoch`` as the reply says)."""

    request: int
    epoch: int | None = None


@dataclass(frozen=True)
class RequestRefused:
    """An ``error`` reply: ``code`` is the server's (docs/protocol.md)."""

    request: int
    code: str
    epoch: int | None = None


@dataclass(frozen=True)
class RequestUnanswered:
    """No answer (timeout, connection lost): the outcome is unknown."""

    request: int


@dataclass(frozen=True)
class KeyPackagesClaimed:
    """Everything the directory handed out for a :class:`ClaimKeyPackages`, oldest first."""

    request: int
    key_packages: tuple[tuple[str, tuple[bytes, ...]], ...] = field(repr=False)


@dataclass(frozen=True)
class GroupReset:
    """The server dropped the room's abandoned group."""


@dataclass(frozen=True)
class Reconnected:
    """Rejoined after an outage (the catch-up entries follow as deliveries)."""

    present: tuple[str, ...]
    group_id: bytes | None
    epoch: int | None
    now: float


@dataclass(frozen=True)
class ReconnectRefused:
    """The rejoin was refused (``log_truncated``: the log moved on without us)."""

    code: str


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class SelfUpdateWanted:
    """Commit an UpdatePath (RFC 9420 §12.4) soon, retrying after conflicts."""


@dataclass(frozen=True)
class KeyAccepted:
    """The application accepts the changed signature key of ``identity``."""

    identity: str


@dataclass(frozen=True)
class SendChat:
    text: bytes = field(repr=False)


Event = (RoomJoined | PresenceJoined | PresenceLeft | CommitDelivered | ProposalDelivered
         | WelcomeDelivered | ApplicationDelivered | RequestAccepted | RequestRefused
         | RequestUnanswered | KeyPackagesClaimed | GroupReset | Reconnected | ReconnectRefused
         | Tick | SelfUpdateWanted | KeyAccepted | SendChat)


# -- actions (machine -> driver) --------------------------------------------------------


@dataclass(frozen=True)
class PublishKeyPackage:
    key_package: bytes = field(repr=False)


@dataclass(frozen=True)
class ClaimKeyPackages:
    """Claim every available KeyPackage of each identity; answer with :class:`KeyPackagesClaimed`."""

    request: int
    identities: tuple[str, ...]


@dataclass(frozen=True)
class CreateGroup:
    """``group.create`` with the GroupInfo (ratchet tree in its extension)."""

    request: int
    group_id: bytes
    epoch: int
    group_info: bytes = field(repr=False)


@dataclass(frozen=True)
class AddressedWelcome:
    to: str
    welcome: bytes = field(repr=False)


@dataclass(frozen=True)
class SubmitCommit:
    request: int
    group_id: bytes
    epoch: int
    commit: bytes = field(repr=False)
    welcomes: tuple[AddressedWelcome, ...] = ()
    #: "add", "remove" or "update"
    purpose: str = ""
    #: the identities added or removed
    identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallEpoch:
    """Receive under ``epoch`` now (RFC 9605 §5.2: ``exporter`` gives the base key)."""

    epoch: int
    exporter: GroupView
    own_index: int
    leaf_count: int
    #: "create", "welcome", "own" (our accepted commit) or "commit"
    cause: str
    #: the members shown (trusted leaves' identities), sorted
    members: tuple[str, ...]
    #: leaves whose frames must not be shown (flagged, or a changed key not accepted)
    blocked_senders: frozenset[int]


@dataclass(frozen=True)
class SwitchSendingKey:
    """Send under ``epoch`` ``after`` seconds from now (0: at once)."""

    epoch: int
    after: float


@dataclass(frozen=True)
class MediaTrust:
    """The leaves whose frames must not be shown changed (same epoch)."""

    epoch: int
    blocked_senders: frozenset[int]


@dataclass(frozen=True)
class TrustWarning:
    """Something the server said that members do not accept at face value.

    ``kind``: "duplicate_identity" (a second leaf for an identity), "not_present"
    (a leaf for an identity never present in the room), "foreign_welcome" (a
    Welcome for another group), "welcome_members" (a Welcome whose leaves are
    not the room's participants), "key_changed" (another signature key for a
    known identity), "sender_mismatch" (the server's ``from`` is not the
    MLS-authenticated sender).
    """

    kind: str
    identity: str
    leaf_index: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class ChatReceived:
    """An application message; ``sender`` is the MLS-authenticated leaf's identity."""

    sender: str
    leaf_index: int
    text: bytes = field(repr=False)
    epoch: int = 0


@dataclass(frozen=True)
class SendApplication:
    epoch: int
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class GroupLeft:
    """We hold no group any more: "removed", "wrong_group" or "welcome_refused"."""

    reason: str


@dataclass(frozen=True)
class Rejoin:
    """Rejoin the room on a new connection: with catch-up (``catch_up``, the log skipped
    epochs we need) or as a newcomer (waiting too long: the committer may hold a leaf of
    ours from an earlier connection, which a new connection makes it replace)."""

    catch_up: bool
    reason: str


@dataclass(frozen=True)
class CallEnded:
    reason: str


Action = (PublishKeyPackage | ClaimKeyPackages | CreateGroup | SubmitCommit | InstallEpoch
          | SwitchSendingKey | MediaTrust | TrustWarning | ChatReceived | SendApplication | GroupLeft
          | Rejoin | CallEnded)


# -- configuration and persisted record ---------------------------------------------------


@dataclass(frozen=True)
class MembershipConfig:
    """The machine's timing and policy (``media.call_peer.CallOptions`` maps onto it)."""

    #: sender transition after our own commit is accepted (seconds)
    confirm_delay: float = 0.2
    #: sender transition after another member's commit (seconds)
    switch_delay: float = 0.3
    #: while waiting to be added, publish a fresh KeyPackage this often
    key_package_interval: float = 1.0
    #: commit an UpdatePath this often (seconds), None for never
    self_update_interval: float | None = None
    #: participants present before our reconnection count as present this long, and a
    #: member whose connection dropped keeps its leaf this long (0: removed at once)
    reconnect_grace: float = 0.0
    #: which participants may be in the group (None: everyone present)
    admit: Callable[[str], bool] | None = None
    #: a newcomer waiting this long in a room whose group has members present rejoins
    #: (seconds, None for never)
    rejoin_after: float | None = 30.0


@dataclass
class ClientRecord:
    """What survives a restart: our signature identity, group, cursor and known keys.

    ``known_keys``: identity -> hex client id (RFC 9420 §5.3: the hash of the
    signature key) first seen for it (trust on first use).
    """

    identity: str
    client_id: bytes
    group_id: bytes | None = None
    last_seq: int = 0
    known_keys: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({
            "identity": self.identity, "client_id": self.client_id.hex(),
            "group_id": None if self.group_id is None else self.group_id.hex(),
            "last_seq": self.last_seq, "known_keys": self.known_keys,
        }, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ClientRecord:
        raw = json.loads(data)
        return cls(raw["identity"], bytes.fromhex(raw["client_id"]),
                   None if raw["group_id"] is None else bytes.fromhex(raw["group_id"]),
                   int(raw["last_seq"]), dict(raw["known_keys"]))


@dataclass(frozen=True)
class Leaf:
    """A member as shown: a leaf, its identity and whether it is trusted."""

    leaf_index: int
    identity: str
    client_id: bytes
    #: "" (trusted), "duplicate_identity", "not_present" or "key_changed"
    flag: str = ""


@dataclass
class _Request:
    kind: str
    epoch: int = 0
    identities: tuple[str, ...] = ()


class Membership:
    """One participant's membership rules (see the module docstring)."""

    def __init__(self, mls: MLS, config: MembershipConfig | None = None, *,
                 observer: Callable[[Event | Action], None] | None = None) -> None:
        self.mls = mls
        self.config = config or MembershipConfig()
        #: called with every event handled and every action returned, in order
        self.observer = observer
        self.identity = ""
        self.record: ClientRecord | None = None
        self.group: GroupView | None = None
        self.present: set[str] = set()
        #: everyone seen present since we joined
        self.seen: set[str] = set()
        self.room_group: bytes | None = None
        self.removed = False
        #: our commits refused because another one won the epoch
        self.conflicts = 0
        #: KeyPackages we published
        self.key_packages_published = 0
        self.ended = False
        self._credential = b""
        self._creating: GroupView | None = None
        self._requests: dict[int, _Request] = {}
        self._next_request = 1
        self._update_wanted = False
        self._next_update: float | None = None
        self._stale: set[str] = set()
        self._resuming: dict[str, float] = {}
        #: members whose connection dropped -> until when their leaves are kept (None: set
        #: by the next tick, so the grace counts from a current clock)
        self._away: dict[str, float | None] = {}
        self._published_at: float | None = None
        self._waiting_since: float | None = None
        self._now = 0.0
        #: leaf index -> flag of the current epoch's untrusted leaves
        self._flags: dict[int, str] = {}
        #: leaf index -> client id of the leaves already checked
        self._checked: dict[int, bytes] = {}
        self._out: list[Action] = []

    def __repr__(self) -> str:
        epoch = None if self.group is None else self.group.epoch
        return f"Membership({self.identity or '?'!r}, epoch={epoch})"

    # -- queries -------------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        return None if self.group is None else self.group.epoch

    @property
    def client_id(self) -> bytes:
        """Our MLS client id (the hash of our signature key; empty before joining)."""
        return b"" if self.record is None else self.record.client_id

    @property
    def busy(self) -> bool:
        """A request of ours that changes the group is unanswered."""
        return any(r.kind != "publish" for r in self._requests.values())

    def leaves(self) -> tuple[Leaf, ...]:
        """Every leaf of the group with its identity and flag (empty if none)."""
        if self.group is None:
            return ()
        out = []
        for member in self.group.details().members:
            identity = credential_identity(member.credential) or ""
            out.append(Leaf(member.leaf_index, identity, member.client_id,
                            self._flags.get(member.leaf_index, "")))
        return tuple(out)

    def members(self) -> dict[str, int]:
        """Identity -> leaf index of the members shown: leaves not flagged as ghosts or impostors."""
        return {leaf.identity: leaf.leaf_index for leaf in self.leaves()
                if leaf.flag in ("", "key_changed")}

    def blocked_senders(self) -> frozenset[int]:
        return frozenset(self._flags)

    @property
    def resuming(self) -> frozenset[str]:
        """Participants present before our reconnection, not back yet."""
        return frozenset(self._resuming)

    @property
    def away(self) -> frozenset[str]:
        """Members who left and whose leaves are kept for ``reconnect_grace``."""
        return frozenset(self._away)

    def resume_cursor(self) -> int | None:
        """The log ``seq`` to catch up after, when restarted as a member (else None)."""
        if self.record is None or self.record.group_id is None:
            return None
        return self.record.last_seq

    # -- input ---------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; the actions to carry out, in order."""
        self._out = []
        if self.observer is not None:
            self.observer(event)
        handler = getattr(self, "_on_" + type(event).__name__)
        handler(event)
        out, self._out = self._out, []
        if self.observer is not None:
            for action in out:
                self.observer(action)
        return out

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _request(self, kind: str, epoch: int = 0, identities: tuple[str, ...] = ()) -> int:
        number = self._next_request
        self._next_request += 1
        self._requests[number] = _Request(kind, epoch, identities)
        return number

    # -- presence ------------------------------------------------------------------------

    def _on_RoomJoined(self, event: RoomJoined) -> None:
        self.identity = event.identity
        self._credential = self.mls.generate_credential(self.identity).content
        self._load_record()
        self.present = set(event.present) - {self.identity}
        self.seen |= self.present
        self.room_group = event.group_id
        record = self.record
        assert record is not None
        if record.group_id is not None and record.group_id == event.group_id:
            self.group = self.mls.group_get(record.group_id, record.client_id)
            if self.group is not None:
                if self.group.has_pending_commit and event.epoch == self.group.epoch:
                    self.group.discard_pending_commit()  # it did not get in before we stopped
                self._checked = {leaf.leaf_index: leaf.client_id for leaf in self.leaves()}
                self._epoch_changed("welcome")  # restarted: the state we stored
                return
        if record.group_id is not None:
            self._forget_group()
        if self.room_group is None and self._smallest():
            self._create_group()
        else:
            self._publish()

    def _on_PresenceJoined(self, event: PresenceJoined) -> None:
        remote = event.identity
        if remote == self.identity:
            return
        self.seen.add(remote)
        self._resuming.pop(remote, None)
        self._away.pop(remote, None)
        self.present.add(remote)
        if not event.resumed and remote in self.members():
            # back without its state: the old leaf goes, then it is added again
            self._stale.add(remote)
        self._reconcile()

    def _on_PresenceLeft(self, event: PresenceLeft) -> None:
        remote = event.identity
        if event.dropped and self.config.reconnect_grace > 0 and remote in self.present \
                and remote in self.members():
            # it may be back soon (a dropped connection, another instance): its leaf stays meanwhile
            self.present.discard(remote)
            self._resuming.pop(remote, None)
            self._away[remote] = None
        else:
            self._left(remote)
        self._reconcile()

    def _left(self, remote: str) -> None:
        self._resuming.pop(remote, None)
        self._away.pop(remote, None)
        self.present.discard(remote)
        if self.group is None and self._creating is None and self.room_group is None \
                and not self.removed and self._smallest():
            self._create_group()  # whoever would have created the group left first

    def _on_GroupReset(self, event: GroupReset) -> None:
        if self.group is not None or self._creating is not None:
            return  # only newcomers waiting to be added are told
        self.room_group = None
        if self._smallest():
            self._create_group()
        else:
            self._publish()  # the old group's KeyPackages went with it

    def _on_Reconnected(self, event: Reconnected) -> None:
        self._now = max(self._now, event.now)
        if self.group is not None and event.group_id is not None and event.group_id != self.group.group_id:
            self._forget_group()  # the room was started afresh while we were away
            self._emit(GroupLeft("wrong_group"))
            self._publish()
        self.room_group = event.group_id
        here = set(event.present) - {self.identity}
        self.seen |= here
        for remote in self.present - here:
            self._resuming[remote] = event.now + self.config.reconnect_grace
        group = self.group
        if group is not None and group.has_pending_commit and event.epoch == group.epoch:
            group.discard_pending_commit()  # the room is still at its epoch: not accepted
        self._requests.clear()  # their answers are lost with the old connection
        creating, self._creating = self._creating, None
        if creating is not None and creating.group_id == event.group_id:
            self._created(creating)  # our group.create got in
        elif creating is not None:
            creating.delete_state()
            if event.group_id is None and self._smallest():
                self._create_group()
            else:
                self._publish()
        for remote in sorted(here - self.present):
            self.present.add(remote)
            was_away = remote in self._away
            self._away.pop(remote, None)
            if not was_away and remote in self.members():
                self._stale.add(remote)  # back while we were away, maybe without its state
        self._reconcile()

    def _on_ReconnectRefused(self, event: ReconnectRefused) -> None:
        self.ended = True
        self._emit(CallEnded(event.code))

    # -- timers --------------------------------------------------------------------------

    def _on_Tick(self, event: Tick) -> None:
        self._now = max(self._now, event.now)
        for remote in [r for r, deadline in self._away.items() if deadline is None]:
            self._away[remote] = self._now + self.config.reconnect_grace
        gone = [r for r, deadline in (*self._resuming.items(), *self._away.items())
                if deadline is not None and deadline <= self._now]
        for remote in gone:
            self._left(remote)  # did not come back in time
        interval = self.config.self_update_interval
        if interval is not None and self.group is not None:
            if self._next_update is None:
                self._next_update = self._now + interval
            elif self._now >= self._next_update:
                self._update_wanted = True
                self._next_update = self._now + interval
        self._maintain()
        self._check_waiting()

    def _check_waiting(self) -> None:
        """Waiting for a Welcome in a room with a group: after ``rejoin_after``, rejoin (as a
        newcomer, which the server does not count as a member of an abandoned group)."""
        limit = self.config.rejoin_after
        if self.group is not None or self._creating is not None or self.room_group is None \
                or limit is None or self.ended:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._now
        elif self._now - self._waiting_since >= limit:
            self._waiting_since = self._now
            self._emit(Rejoin(False, f"waited {limit:g} s to be added"))

    def _on_SelfUpdateWanted(self, event: SelfUpdateWanted) -> None:
        self._update_wanted = True
        self._maintain()

    def _maintain(self) -> None:
        if self.ended:
            return
        self._reconcile()
        if self.group is None and self._creating is None and (
                self._published_at is None
                or self._now - self._published_at >= self.config.key_package_interval):
            self._publish()  # still waiting: a fresh one, to be added
        group = self.group
        if self._update_wanted and group is not None and not group.has_pending_commit and not self.busy:
            output = group.update()
            self._submit(output.commit, (), "update", ())

    # -- requests ------------------------------------------------------------------------

    def _publish(self) -> None:
        assert self.record is not None
        self._published_at = self._now
        self.key_packages_published += 1
        package = self.mls.generate_key_package(self.record.client_id, self._credential)
        self._emit(PublishKeyPackage(package.content))

    def _create_group(self) -> None:
        assert self.record is not None
        group = self.mls.group_create(self.record.client_id, self._credential)
        self._creating = group
        number = self._request("create", group.epoch)
        self._emit(CreateGroup(number, group.group_id, group.epoch, group.group_info()))

    def _submit(self, commit: bytes, welcomes: tuple[AddressedWelcome, ...], purpose: str,
                identities: tuple[str, ...]) -> None:
        group = self.group
        assert group is not None
        number = self._request(purpose, group.epoch, identities)
        self._emit(SubmitCommit(number, group.group_id, group.epoch, commit, welcomes, purpose, identities))

    def _on_RequestAccepted(self, event: RequestAccepted) -> None:
        request = self._requests.pop(event.request, None)
        if request is None:
            return
        if request.kind == "create":
            group, self._creating = self._creating, None
            assert group is not None
            self._created(group)
            return
        group = self.group
        if group is None or not group.has_pending_commit or group.epoch != request.epoch:
            return  # its echo came first and merged it, or the group moved on
        group.apply_pending_commit()
        self.room_group = group.group_id
        if request.kind == "update":
            self._update_wanted = False
        self._epoch_changed("own")
        self._reconcile()

    def _created(self, group: GroupView) -> None:
        """The room's group is the one we created."""
        self.group = group
        self.room_group = group.group_id
        self.removed = False
        self._checked = {}
        self._epoch_changed("create")
        self._reconcile()

    def _on_RequestRefused(self, event: RequestRefused) -> None:
        request = self._requests.pop(event.request, None)
        if request is None:
            return
        if request.kind == "create":
            creating, self._creating = self._creating, None
            if creating is not None:
                creating.delete_state()
            self._publish()  # another group got there first: wait to be added to it
            return
        group = self.group
        if group is None:
            return
        if group.has_pending_commit and group.epoch == request.epoch:
            group.discard_pending_commit()
        if event.code == "conflict":
            self.conflicts += 1  # the winner is next in the log; the work is retried if still needed
        elif event.code == "wrong_group":
            # the room carries another group (it won the room, or ours was dropped as abandoned)
            self._forget_group()
            self.room_group = None
            self._emit(GroupLeft("wrong_group"))
            self._publish()

    def _on_RequestUnanswered(self, event: RequestUnanswered) -> None:
        # a commit stays pending: the log brings its echo (merged) or the winner (replaces it)
        request = self._requests.pop(event.request, None)
        if request is not None and request.kind == "create" and self._creating is not None:
            self._requests[event.request] = request  # the reconnect reply tells

    def _on_KeyPackagesClaimed(self, event: KeyPackagesClaimed) -> None:
        request = self._requests.pop(event.request, None)
        group = self.group
        if request is None or group is None or group.has_pending_commit:
            return
        members = self.members()
        chosen: dict[str, bytes] = {}
        for identity, packages in event.key_packages:
            if identity not in request.identities or identity in members or identity not in self.present:
                continue
            # the directory hands out the oldest first; older ones may be of an earlier run
            for package in reversed(packages):
                if key_package_identity(package) == identity:
                    chosen[identity] = package
                    break
        if not chosen:
            return  # not published yet: the next tick retries
        try:
            output = group.add_many(list(chosen.values()))
        except MLSError:
            return  # e.g. a KeyPackage that does not validate: the next tick claims afresh
        assert output.welcome is not None
        welcomes = tuple(AddressedWelcome(identity, output.welcome) for identity in sorted(chosen))
        self._submit(output.commit, welcomes, "add", tuple(sorted(chosen)))

    # -- the log -------------------------------------------------------------------------

    def _seen_seq(self, seq: int) -> None:
        if self.record is not None and seq > self.record.last_seq:
            self.record.last_seq = seq
            self._save()

    def _on_CommitDelivered(self, event: CommitDelivered) -> None:
        self._seen_seq(event.seq)
        if self.room_group is None:
            self.room_group = event.group_id
        group = self.group
        if group is None or event.group_id != group.group_id:
            return  # not (yet) a member: the Welcome brings us in
        if event.epoch < group.epoch:
            return  # our own commit, applied when it was accepted
        if event.epoch > group.epoch:
            self._emit(Rejoin(True, f"a commit for epoch {event.epoch} while at {group.epoch}"))
            return
        try:
            received = group.receive(event.commit)
        except MLSError:
            return  # a commit the server accepted but we cannot process: its sender's fault
        if received.removed:
            self._forget_group()
            self.removed = True
            self._emit(GroupLeft("removed"))
            self._publish()
        elif received.type == "commit-processed":
            if received.own:
                for number, request in list(self._requests.items()):
                    if request.kind in ("add", "remove", "update") and request.epoch == event.epoch:
                        del self._requests[number]
                        if request.kind == "update":
                            self._update_wanted = False
            self._epoch_changed("own" if received.own else "commit")
            self._reconcile()

    def _on_ProposalDelivered(self, event: ProposalDelivered) -> None:
        self._seen_seq(event.seq)
        group = self.group
        if group is None or event.group_id != group.group_id or event.epoch != group.epoch:
            return
        try:
            received = group.receive(event.proposal)
        except MLSError:
            return
        if received.type == "commit-output":
            group.discard_pending_commit()  # our next commit includes it by reference

    def _on_WelcomeDelivered(self, event: WelcomeDelivered) -> None:
        self._seen_seq(event.seq)
        if self.group is not None or self.record is None:
            return
        try:
            group = self.mls.group_join(self.record.client_id, event.welcome)
        except MLSError:
            return  # e.g. a Welcome for a KeyPackage of an earlier run
        expected = self.room_group if self.room_group is not None else event.group_id
        problem = None
        if group.group_id != expected or group.group_id != event.group_id:
            problem = TrustWarning("foreign_welcome", event.sender, None,
                                   "the Welcome is not for the room's group")
        else:
            counts: dict[str, int] = {}
            for member in group.details().members:
                identity = credential_identity(member.credential) or ""
                counts[identity] = counts.get(identity, 0) + 1
                if identity != self.identity and identity not in self.present | self.seen:
                    problem = TrustWarning("welcome_members", identity, member.leaf_index,
                                           "a leaf of the Welcome is no participant of the room")
                    break
            doubled = [identity for identity, n in counts.items() if n > 1]
            if problem is None and doubled:
                problem = TrustWarning("welcome_members", doubled[0], None,
                                       "the Welcome gives one identity two leaves")
        if problem is not None:
            group.delete_state()
            self._emit(problem)
            self._emit(GroupLeft("welcome_refused"))
            self._publish()
            return
        self.group = group
        self.room_group = group.group_id
        self.removed = False
        self._checked = {}
        self._epoch_changed("welcome")

    def _on_ApplicationDelivered(self, event: ApplicationDelivered) -> None:
        self._seen_seq(event.seq)
        group = self.group
        if group is None:
            return
        try:
            received = group.receive(event.ciphertext)
        except MLSError:
            return
        sender = received.sender
        if received.type != "application-message-plaintext" or sender is None:
            return
        identity = credential_identity(sender.credential) or ""
        if identity != event.sender:
            self._emit(TrustWarning("sender_mismatch", identity, sender.leaf_index,
                                    f"the server says it is from {event.sender!r}"))
        if sender.leaf_index in self._flags:
            self._emit(TrustWarning(self._flags[sender.leaf_index], identity, sender.leaf_index,
                                    "a chat message from an untrusted leaf"))
            return
        self._emit(ChatReceived(identity, sender.leaf_index, received.content, received.epoch))

    def _on_SendChat(self, event: SendChat) -> None:
        group = self.group
        if group is None or group.has_pending_commit:
            return
        self._emit(SendApplication(group.epoch, group.send(event.text).content))

    def _on_KeyAccepted(self, event: KeyAccepted) -> None:
        assert self.record is not None
        changed = False
        for leaf in self.leaves():
            if leaf.identity == event.identity and leaf.flag == "key_changed":
                self.record.known_keys[leaf.identity] = leaf.client_id.hex()
                del self._flags[leaf.leaf_index]
                changed = True
        if changed and self.group is not None:
            self._save()
            self._emit(MediaTrust(self.group.epoch, self.blocked_senders()))

    # -- rules ---------------------------------------------------------------------------

    def _smallest(self) -> bool:
        return all(self.identity < other for other in self.present)

    def _admitted(self, identity: str) -> bool:
        return self.config.admit is None or self.config.admit(identity)

    def _check_leaves(self) -> None:
        """Check the leaves this epoch brought (new, or with another signature key)."""
        assert self.record is not None and self.group is not None
        members = self.group.details().members
        current = {m.leaf_index: m.client_id for m in members}
        self._flags = {i: f for i, f in self._flags.items() if self._checked.get(i) == current.get(i)}
        established: dict[str, int] = {}
        for member in members:
            if self._checked.get(member.leaf_index) == member.client_id \
                    and self._flags.get(member.leaf_index) in (None, "key_changed"):
                established[credential_identity(member.credential) or ""] = member.leaf_index
        known = self.record.known_keys
        for member in sorted(members, key=lambda m: m.leaf_index):
            if self._checked.get(member.leaf_index) == member.client_id:
                continue
            identity = credential_identity(member.credential) or ""
            flag = ""
            if identity in established and established[identity] != member.leaf_index:
                flag = "duplicate_identity"
            elif identity != self.identity and identity not in self.present | self.seen:
                flag = "not_present"
            elif identity in known and known[identity] != member.client_id.hex():
                flag = "key_changed"
            else:
                known.setdefault(identity, member.client_id.hex())
                established[identity] = member.leaf_index
            if flag:
                self._flags[member.leaf_index] = flag
                self._emit(TrustWarning(flag, identity, member.leaf_index))
        self._checked = current

    def _epoch_changed(self, cause: str) -> None:
        """Check the new epoch's leaves, then give it to SFrame (RFC 9605 §5.2)."""
        group = self.group
        assert group is not None and self.record is not None
        self._check_leaves()
        self.record.group_id = group.group_id
        self._save()
        details = group.details()
        members = self.members()
        self._stale &= set(members)
        self._away = {r: deadline for r, deadline in self._away.items() if r in members}  # leaves kept
        self._emit(InstallEpoch(details.epoch, group, details.leaf_index, details.leaf_count, cause,
                                tuple(sorted(members)), self.blocked_senders()))
        delay = {"own": self.config.confirm_delay, "commit": self.config.switch_delay}.get(cause, 0.0)
        self._emit(SwitchSendingKey(details.epoch, delay))

    def _committer(self) -> bool:
        """The present member shown with the lowest leaf index commits (not a stale one:
        back on a new connection, it may have lost the group's state)."""
        here = {identity: leaf for identity, leaf in self.members().items()
                if identity == self.identity
                or (identity in self.present and identity not in self._stale)}
        return bool(here) and min(here, key=here.__getitem__) == self.identity

    def _reconcile(self) -> None:
        """As the committer, bring the group to the admitted participants present."""
        group = self.group
        if group is None or group.has_pending_commit or self.busy or self.ended:
            return
        if not self._committer():
            return
        members = self.members()
        joiners = tuple(sorted(x for x in self.present if x not in members and self._admitted(x)))
        # a joiner refuses a Welcome naming a participant it never saw present (_on_WelcomeDelivered):
        # with joiners waiting, the leaves of members away go first (their grace is cut short)
        wanted = self.present | set(self._resuming) | (set() if joiners else set(self._away))
        for leaf in sorted(self.leaves(), key=lambda x: x.leaf_index):
            if leaf.identity == self.identity and leaf.leaf_index == group.leaf_index:
                continue
            if leaf.flag in ("duplicate_identity", "not_present") or leaf.identity not in wanted \
                    or leaf.identity in self._stale or not self._admitted(leaf.identity):
                output = group.remove(leaf.client_id)
                self._submit(output.commit, (), "remove", (leaf.identity,))
                return  # one epoch at a time; the next tick continues
        # nor may it name a member present before our reconnection and not back yet: joiners wait
        if joiners and not any(identity in self._resuming for identity in members):
            self._emit(ClaimKeyPackages(self._request("claim", group.epoch, joiners), joiners))

    # -- the persisted record ------------------------------------------------------------

    def _load_record(self) -> None:
        stored = self.mls.storage.get(RECORD_NAMESPACE, self.identity.encode())
        if stored is not None:
            record = ClientRecord.decode(stored)
            try:
                self.mls.identity(record.client_id)
            except MLSError:
                record = None
            if record is not None:
                self.record = record
                return
        self.record = ClientRecord(self.identity, self.mls.generate_identity().content)
        self.record.known_keys[self.identity] = self.record.client_id.hex()
        self._save()

    def _save(self) -> None:
        if self.record is not None:
            self.mls.storage.write([(RECORD_NAMESPACE, self.identity.encode(), self.record.encode())])

    def _forget_group(self) -> None:
        if self.group is not None:
            self.group.delete_state()
        self.group = None
        self._flags = {}
        self._checked = {}
        if self.record is not None:
            self.record.group_id = None
            self._save()

