"""Model-based test of the membership machine (docs/membership.md, "The model-based test").

Two to five :class:`media.membership.Membership` machines share one room of
an in-process copy of the delivery service's sequencing (docs/protocol.md):
one commit per epoch by compare and set on the room's (group id, epoch), a
room log with ordered fan-out (commits to every connection, the sender
included; each Welcome to its recipient, or kept for its next join), catch-up
after ``since``, a KeyPackage directory, ``group.create`` for a room without a
group, and abandoned rooms (a group none of whose holders is connected is
dropped; waiting newcomers get ``group_reset``). Hypothesis drives joins,
leaves, crashes (a machine restarted from its persisted MLS storage),
reconnects, ticks, and the order in which requests are sequenced and events
delivered (races and delays).

After every step: members of one group in one epoch have the same epoch
authenticator (RFC 9420 §8.7), and the sequencer accepted at most one commit
per epoch. When the room is quiet (everything sequenced and delivered, timers
ticked) the group's members are, within a bounded number of rounds, exactly
the participants present, all in one epoch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from mls import MLS

from media import membership as m

NAMES = ("ann", "ben", "cat", "dan", "eve")
#: seconds between ticks of the model's clock
TICK = 0.3
#: quiet rounds (deliver everything, then one tick) within which the room must converge
SETTLE_ROUNDS = 60
#: the machines' timing: a waiting participant rejoins well within the settling rounds
CONFIG = m.MembershipConfig(rejoin_after=5.0)


@dataclass
class Entry:
    """One room log entry: ``to`` None for every member, else the Welcome's recipient."""

    seq: int
    event: m.Event
    to: str | None = None


@dataclass
class Participant:
    name: str
    mls: MLS
    machine: m.Membership
    connected: bool = False
    #: whether the server counts this connection as a member of the room's group
    #: (joined with a cursor, created the group, committed, or was sent a Welcome)
    counted: bool = False
    inbox: deque[m.Event] = field(default_factory=deque)


class Room:
    """The delivery service's sequencing for one room (docs/protocol.md), in process."""

    def __init__(self) -> None:
        self.group_id: bytes | None = None
        self.epoch = 0
        self.log: list[Entry] = []
        self.seq = 0
        self.directory: dict[str, list[bytes]] = {}
        #: requests waiting to be sequenced: (participant name, action)
        self.requests: deque[tuple[str, m.SubmitCommit]] = deque()
        #: identities with a Welcome kept for their next join
        self.waiting: set[str] = set()
        #: (group id, epoch) -> commits accepted for it
        self.accepted: dict[tuple[bytes, int], int] = {}

    def append(self, event: m.Event, to: str | None = None) -> Entry:
        entry = Entry(self.seq + 1, event, to)
        self.seq += 1
        self.log.append(entry)
        return entry


class MembershipModel(RuleBasedStateMachine):
    #: the machines' configuration
    config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.room = Room()
        self.people: dict[str, Participant] = {}
        self.now = 0.0

    # -- the driver ------------------------------------------------------------------------

    def feed(self, who: Participant, event: m.Event) -> None:
        for action in who.machine.handle(event):
            self.perform(who, action)

    def perform(self, who: Participant, action: m.Action) -> None:
        room = self.room
        if isinstance(action, m.PublishKeyPackage):
            room.directory.setdefault(who.name, []).append(action.key_package)
        elif isinstance(action, m.ClaimKeyPackages):
            claimed = tuple((name, tuple(room.directory.pop(name, []))) for name in action.identities)
            who.inbox.append(m.KeyPackagesClaimed(action.request, claimed))
        elif isinstance(action, m.CreateGroup):
            if room.group_id is None:
                room.group_id, room.epoch = action.group_id, action.epoch
                who.counted = True
                who.inbox.append(m.RequestAccepted(action.request, action.epoch))
            else:
                who.inbox.append(m.RequestRefused(action.request, "wrong_group", room.epoch))
        elif isinstance(action, m.SubmitCommit):
            room.requests.append((who.name, action))
        elif isinstance(action, m.Rejoin):
            self.disconnect(who, dropped=False)  # CallPeer leaves, then rejoins
            self.connect(who, reconnect=True)

    def sequence(self) -> None:
        """The sequencer takes the oldest request: compare and set on (group id, epoch)."""
        room = self.room
        name, action = room.requests.popleft()
        sender = self.people[name]
        if not sender.connected:
            return  # its connection is gone: the request with it
        if room.group_id is None or action.group_id != room.group_id:
            sender.inbox.append(m.RequestRefused(action.request, "wrong_group", room.epoch))
            return
        if action.epoch != room.epoch:
            sender.inbox.append(m.RequestRefused(action.request, "conflict", room.epoch))
            return
        key = (room.group_id, room.epoch)
        room.accepted[key] = room.accepted.get(key, 0) + 1
        sender.counted = True
        commit = room.append(m.CommitDelivered(room.seq + 1, name, room.group_id, room.epoch, action.commit))
        room.epoch += 1
        sender.inbox.append(m.RequestAccepted(action.request, room.epoch))
        for person in self.people.values():
            if person.connected:
                person.inbox.append(commit.event)
        for welcome in action.welcomes:
            entry = room.append(m.WelcomeDelivered(room.seq + 1, name, room.group_id, room.epoch,
                                                   welcome.welcome), to=welcome.to)
            recipient = self.people.get(welcome.to)
            if recipient is not None and recipient.connected:
                recipient.inbox.append(entry.event)
                recipient.counted = True
            else:
                room.waiting.add(welcome.to)

    def replay(self, who: Participant, since: int | None) -> None:
        """Catch-up (docs/protocol.md, ``join``): after ``since``, or from the latest Welcome."""
        log = self.room.log
        if since is None:
            welcomes = [i for i, e in enumerate(log) if e.to == who.name]
            start = welcomes[-1] if welcomes else len(log)
        else:
            start = next((i for i, e in enumerate(log) if e.seq > since), len(log))
        for entry in log[start:]:
            if entry.to is None or entry.to == who.name:
                who.inbox.append(entry.event)

    def abandon_check(self) -> None:
        """A group none of whose members (as the server counts them) is connected is dropped
        (abandoned rooms), once the room is quiet (the server waits --abandon-after)."""
        room = self.room
        if room.group_id is None or any(p.counted for p in self.connected()):
            return
        room.group_id, room.epoch = None, 0
        room.directory.clear()
        room.requests.clear()
        room.waiting.clear()
        for person in self.people.values():
            if person.connected:
                person.inbox.append(m.GroupReset())

    def connected(self) -> list[Participant]:
        return [p for p in self.people.values() if p.connected]

    def connect(self, who: Participant, *, reconnect: bool) -> None:
        others = sorted(p.name for p in self.connected() if p is not who)
        who.connected = True
        room = self.room
        group = room.group_id
        epoch = room.epoch if group is not None else None
        who.counted = who.name in room.waiting
        room.waiting.discard(who.name)
        if reconnect:
            self.feed(who, m.Reconnected(tuple(others), group, epoch, self.now))
        else:
            self.feed(who, m.RoomJoined(who.name, tuple(others), group, epoch))
        # a member catches up after its cursor; anyone else joins as a newcomer
        since = who.machine.resume_cursor() if who.machine.group is not None else None
        who.counted = who.counted or since is not None
        self.replay(who, since)
        for person in self.connected():
            if person is not who:
                person.inbox.append(m.PresenceJoined(who.name, since is not None))

    def disconnect(self, who: Participant, *, dropped: bool) -> None:
        """The connection drops (``dropped``) or its participant leaves: what it had not sent
        or received yet is lost with it."""
        who.connected = False
        who.counted = False
        who.inbox.clear()
        self.room.requests = deque(r for r in self.room.requests if r[0] != who.name)
        for person in self.connected():
            person.inbox.append(m.PresenceLeft(who.name, dropped))

    # -- rules -----------------------------------------------------------------------------

    @initialize(names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=5, unique=True))
    def start(self, names: list[str]) -> None:
        """Two to five participants join one after the other."""
        for name in names:
            mls = MLS()
            person = self.people[name] = Participant(name, mls, m.Membership(mls, self.config))
            self.connect(person, reconnect=False)

    @precondition(lambda self: len(self.connected()) < 5)
    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        """A participant joins; one who crashed comes back from its stored state."""
        name = data.draw(st.sampled_from([n for n in NAMES if n not in {p.name for p in self.connected()}]))
        person = self.people.get(name)
        if person is None:
            mls = MLS()
            person = self.people[name] = Participant(name, mls, m.Membership(mls, self.config))
        else:
            person.machine = m.Membership(person.mls, self.config)  # restarted from its persisted state
        self.connect(person, reconnect=False)

    @precondition(lambda self: bool(self.connected()))
    @rule(data=st.data(), crash=st.booleans())
    def leave(self, data: st.DataObject, crash: bool) -> None:
        """A participant leaves (its state deleted) or crashes (its storage kept)."""
        person = data.draw(st.sampled_from(self.connected()))
        self.disconnect(person, dropped=crash)
        if not crash:
            person.mls.storage.clear()

    @precondition(lambda self: bool(self.connected()))
    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        """The signaling connection drops and comes back: undelivered events are lost, caught up from the log."""
        person = data.draw(st.sampled_from(self.connected()))
        self.disconnect(person, dropped=True)
        self.connect(person, reconnect=True)

    @precondition(lambda self: bool(self.room.requests))
    @rule()
    def sequence_one(self) -> None:
        self.sequence()

    @precondition(lambda self: any(p.inbox for p in self.connected()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        person = data.draw(st.sampled_from([p for p in self.connected() if p.inbox]))
        self.feed(person, person.inbox.popleft())

    @precondition(lambda self: bool(self.connected()))
    @rule(data=st.data())
    def self_update(self, data: st.DataObject) -> None:
        person = data.draw(st.sampled_from(self.connected()))
        self.feed(person, m.SelfUpdateWanted())

    @rule()
    def tick(self) -> None:
        self.now += TICK
        for person in self.connected():
            self.feed(person, m.Tick(self.now))

    @rule()
    def quiet(self) -> None:
        """Deliver everything and tick: the group converges to the participants present."""
        for _ in range(SETTLE_ROUNDS):
            self.abandon_check()
            self.drain()
            if self.converged():
                return
            self.tick()
        raise AssertionError(f"no convergence: {self.describe()}")

    def drain(self) -> None:
        for _ in range(10_000):
            if self.room.requests:
                self.sequence()
            elif busy := [p for p in self.connected() if p.inbox]:
                self.feed(busy[0], busy[0].inbox.popleft())
            else:
                return
        raise AssertionError("the room never went quiet")

    def converged(self) -> bool:
        here = self.connected()
        if not here:
            return True
        names = sorted(p.name for p in here)
        epochs = set()
        for person in here:
            group = person.machine.group
            if group is None or group.group_id != self.room.group_id:
                return False
            if sorted(person.machine.members()) != names or len(person.machine.leaves()) != len(names):
                return False
            epochs.add(group.epoch)
        return len(epochs) == 1

    def describe(self) -> str:
        def short(group_id: bytes | None) -> str:
            return "-" if group_id is None else group_id[:3].hex()
        room = f"room group {short(self.room.group_id)} epoch {self.room.epoch}: "
        return room + "; ".join(
            f"{p.name}: group {short(p.machine.group.group_id if p.machine.group else None)}"
            f" epoch {p.machine.epoch} members {sorted(p.machine.members())}"
            f" leaves {len(p.machine.leaves())} present {sorted(p.machine.present)}" for p in self.connected())

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def one_authenticator_per_epoch(self) -> None:
        seen: dict[tuple[bytes, int], bytes] = {}
        for person in self.people.values():
            group = person.machine.group
            if group is None:
                continue
            key = (group.group_id, group.epoch)
            authenticator = group.epoch_authenticator()
            assert seen.setdefault(key, authenticator) == authenticator, f"{person.name} disagrees at {key[1]}"

    @invariant()
    def one_commit_per_epoch(self) -> None:
        assert all(count == 1 for count in self.room.accepted.values())

    def teardown(self) -> None:
        self.quiet()


class MembershipModelWithGrace(MembershipModel):
    """The same with ``reconnect_grace``: a member who leaves keeps its leaf a while, and one
    back with its state (a resumed join) is not replaced."""

    config = m.MembershipConfig(rejoin_after=5.0, reconnect_grace=1.0)


SETTINGS = settings(
    max_examples=50, stateful_step_count=30, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
MembershipModel.TestCase.settings = SETTINGS
MembershipModelWithGrace.TestCase.settings = SETTINGS
test_membership_model = MembershipModel.TestCase
test_membership_model_with_grace = MembershipModelWithGrace.TestCase
