"""The membership machine's trace files (tests/contracts/membership/, format in docs/membership.md).

Each trace scripts the other participants of a room; this harness plays
them with real MLS (``mls.MLS``) and the delivery service's part (the
room's group and epoch, sequence numbers, fan-out, Welcome routing), feeds
the machine under test (:class:`media.membership.Membership`) the events,
and matches the actions it returns by type and named fields.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from mls import MLS, GroupView

from media import membership as m
from mls.inspection import credential_identity

from conftest import CONTRACTS

TRACES = CONTRACTS / "membership"


def action_name(action: object) -> str:
    """``SubmitCommit`` -> ``submit_commit``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(action).__name__).lower()


def action_fields(action: object) -> dict[str, Any]:
    """The fields a trace may name, with tuples as lists and derived ones added."""
    out: dict[str, Any] = {}
    for f in fields(action):  # type: ignore[arg-type]
        value = getattr(action, f.name)
        if isinstance(value, (tuple, frozenset)):
            value = sorted(value) if isinstance(value, frozenset) else list(value)
        out[f.name] = value
    if isinstance(action, m.SubmitCommit):
        out["welcomes_to"] = [w.to for w in action.welcomes]
    if isinstance(action, m.ChatReceived):
        out["text"] = action.text.decode()
    return out


def matches(pattern: dict[str, Any], action: object) -> bool:
    if action_name(action) != pattern["action"]:
        return False
    values = action_fields(action)
    return all(key in values and values[key] == want for key, want in pattern.items() if key != "action")


class ScriptedPeer:
    """Another participant, played by the harness with real MLS."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mls = MLS()
        self.client_id = self.mls.generate_identity().content
        self.credential = self.mls.generate_credential(name).content
        self.group: GroupView | None = None

    def key_package(self) -> bytes:
        return self.mls.generate_key_package(self.client_id, self.credential).content


class Harness:
    def __init__(self, trace: dict[str, Any]) -> None:
        self.me: str = trace["me"]
        config = dict(trace.get("config", {}))
        denied = set(config.pop("deny", ()))
        self.machine = m.Membership(MLS(), m.MembershipConfig(
            admit=(lambda identity: identity not in denied) if denied else None, **config))
        self.peers: dict[str, ScriptedPeer] = {}
        self.room_group: bytes | None = None
        self.room_epoch = 0
        self.seq = 0
        #: the newest action of each type the machine returned
        self.last: dict[str, Any] = {}
        #: the machine's accepted commits: (seq, epoch, bytes)
        self.accepted: list[tuple[int, int, bytes]] = []
        self.held: list[m.Event] = []

    def peer(self, name: str) -> ScriptedPeer:
        if name not in self.peers:
            self.peers[name] = ScriptedPeer(name)
        return self.peers[name]

    def feed(self, event: m.Event) -> list[m.Action]:
        actions = self.machine.handle(event)
        for action in actions:
            self.last[action_name(action)] = action
        return actions

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- the delivery service's part -----------------------------------------------------

    def fan_out(self, commit: bytes, sender: str) -> None:
        """An accepted commit reaches every scripted member but its sender."""
        for peer in self.peers.values():
            if peer.name != sender and peer.group is not None and peer.group.group_id == self.room_group:
                received = peer.group.receive(commit)
                if received.removed:
                    peer.group.delete_state()
                    peer.group = None
        self.room_epoch += 1

    def join_scripted(self, welcome: bytes, names: list[str]) -> None:
        for name in names:
            peer = self.peers.get(name)
            if peer is not None and peer.group is None:
                try:
                    peer.group = peer.mls.group_join(peer.client_id, welcome)
                except Exception:  # a throwaway (ghost) client's KeyPackage: not this peer's
                    peer.group = None

    def my_key_package(self) -> bytes:
        published = self.last.get("publish_key_package")
        assert published is not None, "the machine published no KeyPackage"
        return published.key_package

    # -- steps ---------------------------------------------------------------------------

    def run(self, step: dict[str, Any]) -> list[m.Action]:
        if "check" in step:
            self.check(step["check"])
            return []
        if "peer" in step:
            return self.peer_step(step)
        return self.event_step(step)

    def check(self, want: dict[str, Any]) -> None:
        machine = self.machine
        if "members" in want:
            assert sorted(machine.members()) == want["members"]
        if "epoch" in want:
            assert machine.epoch == want["epoch"]
        if "blocked" in want:
            assert sorted(machine.blocked_senders()) == want["blocked"]
        if "conflicts" in want:
            assert machine.conflicts == want["conflicts"]
        if "leaves" in want:
            assert len(machine.leaves()) == want["leaves"]
        if "ended" in want:
            assert machine.ended == want["ended"]
        if "away" in want:
            assert sorted(machine.away) == want["away"]

    def request_of(self, step: dict[str, Any]) -> Any:
        action = self.last.get(step["of"])
        assert action is not None, f"no {step['of']} to answer"
        return action

    def event_step(self, step: dict[str, Any]) -> list[m.Action]:
        kind = step["event"]
        now = float(step.get("now", 0.0))
        if kind == "joined":
            group = self.room_group if step.get("group") == "room" else None
            return self.feed(m.RoomJoined(self.me, tuple(step.get("present", ())), group,
                                      self.room_epoch if group is not None else None))
        if kind == "presence_joined":
            return self.feed(m.PresenceJoined(step["identity"], bool(step.get("resumed", False))))
        if kind == "presence_left":
            return self.feed(m.PresenceLeft(step["identity"], bool(step.get("dropped", False))))
        if kind == "tick":
            return self.feed(m.Tick(now))
        if kind == "self_update_wanted":
            return self.feed(m.SelfUpdateWanted())
        if kind == "group_reset":
            self.room_group = None
            self.room_epoch = 0
            for peer in self.peers.values():
                peer.group = None
            return self.feed(m.GroupReset())
        if kind == "reconnected":
            group = {"room": self.room_group, "other": b"another group"}.get(step.get("group", "room"))
            return self.feed(m.Reconnected(tuple(step.get("present", ())), group,
                                           self.room_epoch if group is not None else None, now))
        if kind == "reconnect_refused":
            return self.feed(m.ReconnectRefused(step["code"]))
        if kind == "key_accepted":
            return self.feed(m.KeyAccepted(step["identity"]))
        if kind == "send_chat":
            return self.feed(m.SendChat(step["text"].encode()))
        if kind == "deliver_held":
            out = []
            for event in self.held:
                out.extend(self.feed(event))
            self.held = []
            return out
        if kind == "echo":
            seq, epoch, commit = self.accepted[-1]
            assert self.room_group is not None
            return self.feed(m.CommitDelivered(seq, self.me, self.room_group, epoch, commit))
        if kind == "accepted":
            action = self.request_of(step)
            if isinstance(action, m.CreateGroup):
                self.room_group, self.room_epoch = action.group_id, action.epoch
                return self.feed(m.RequestAccepted(action.request, action.epoch))
            assert isinstance(action, m.SubmitCommit)
            assert action.group_id == self.room_group and action.epoch == self.room_epoch, \
                "the sequencer accepts one commit per epoch"
            seq = self.next_seq()
            self.accepted.append((seq, action.epoch, action.commit))
            self.fan_out(action.commit, self.me)
            for welcome in action.welcomes:
                self.join_scripted(welcome.welcome, [welcome.to])
            if step.get("silent"):
                return []  # sequenced, but the answer comes with an "answer" step
            return self.feed(m.RequestAccepted(action.request, action.epoch + 1))
        if kind == "answer":
            action = self.request_of(step)
            return self.feed(m.RequestAccepted(action.request, action.epoch + 1))
        if kind == "refused":
            action = self.request_of(step)
            return self.feed(m.RequestRefused(action.request, step["code"], self.room_epoch))
        if kind == "unanswered":
            return self.feed(m.RequestUnanswered(self.request_of(step).request))
        if kind == "claimed":
            action = self.request_of(step)
            assert isinstance(action, m.ClaimKeyPackages)
            missing = set(step.get("none", ()))
            packages = tuple((identity, () if identity in missing else (self.peer(identity).key_package(),))
                             for identity in action.identities)
            return self.feed(m.KeyPackagesClaimed(action.request, packages))
        raise AssertionError(f"unknown event {kind!r}")

    def peer_step(self, step: dict[str, Any]) -> list[m.Action]:
        peer = self.peer(step["peer"])
        if step.get("creates"):
            peer.group = peer.mls.group_create(peer.client_id, peer.credential)
            self.room_group, self.room_epoch = peer.group.group_id, 0
            return []
        if step.get("restarts"):
            self.peers[peer.name] = ScriptedPeer(peer.name)  # a new signature key, no state
            return []
        if "chat" in step:
            assert peer.group is not None
            ciphertext = peer.group.send(step["chat"].encode()).content
            return self.deliver(m.ApplicationDelivered(self.next_seq(), step.get("from", peer.name),
                                                       peer.group.epoch, ciphertext), step)
        if "welcomes_me" in step:
            # a group of the peer's own, the machine added from its newest KeyPackage
            group = peer.mls.group_create(peer.client_id, peer.credential)
            for name in step["welcomes_me"].get("with", ()):
                group.add(self.peer(name).key_package())
                group.apply_pending_commit()
            output = group.add(self.my_key_package())
            group.apply_pending_commit()
            assert output.welcome is not None
            claimed = self.room_group if step["welcomes_me"].get("claims_room") else group.group_id
            assert claimed is not None
            return self.deliver(m.WelcomeDelivered(self.next_seq(), peer.name, claimed, group.epoch,
                                                   output.welcome), step)
        commits = step["commits"]
        group = peer.group
        assert group is not None and group.group_id == self.room_group and group.epoch == self.room_epoch
        added: list[str] = []
        if "add" in commits:
            packages = []
            for name in commits["add"]:
                if name == self.me:
                    packages.append(self.my_key_package())
                else:
                    other = self.peer(name)
                    # an identity that has a leaf already gets a second one from a throwaway client
                    source = other if other.group is None else ScriptedPeer(name)
                    packages.append(source.key_package())
                added.append(name)
            output = group.add_many(packages)
        elif "remove" in commits:
            leaf = commits.get("leaf")
            victims = [x for x in group.details().members
                       if credential_identity(x.credential) == commits["remove"]
                       and (leaf is None or x.leaf_index == leaf)]
            output = group.remove(victims[0].client_id)
        else:
            output = group.update()
        group.apply_pending_commit()
        epoch = self.room_epoch
        seq = self.next_seq()
        self.fan_out(output.commit, peer.name)
        if output.welcome is not None:
            self.join_scripted(output.welcome, [x for x in added if x != self.me])
        assert self.room_group is not None
        out = self.deliver(m.CommitDelivered(seq, peer.name, self.room_group, epoch, output.commit), step)
        if self.me in added and output.welcome is not None:
            out += self.deliver(m.WelcomeDelivered(self.next_seq(), peer.name, self.room_group, epoch + 1,
                                                   output.welcome), step)
        return out

    def deliver(self, event: m.Event, step: dict[str, Any]) -> list[m.Action]:
        if step.get("hold"):
            self.held.append(event)
            return []
        return self.feed(event)


def expect(step: dict[str, Any], actions: list[m.Action], where: str) -> None:
    position = 0
    for pattern in step.get("expect", ()):
        while position < len(actions) and not matches(pattern, actions[position]):
            position += 1
        assert position < len(actions), \
            f"{where}: no {pattern} among {[(action_name(a), action_fields(a)) for a in actions]}"
        position += 1
    names = {action_name(a) for a in actions}
    for absent in step.get("absent", ()):
        assert absent not in names, f"{where}: unexpected {absent} in {sorted(names)}"


TRACE_FILES = sorted(TRACES.glob("*.json"))


def test_the_traces_cover_the_issue() -> None:
    covered = {json.loads(p.read_text())["covers"] for p in TRACE_FILES}
    assert {"create", "join_by_welcome", "batched_adds", "leave_remove", "conflict_retry", "echo",
            "reconnect_catch_up", "self_update_timer", "admit_policy", "group_reset", "log_truncated",
            "ghost_add", "impostor_add", "foreign_welcome", "changed_key", "forged_chat_sender",
            "resumed_join", "leave_grace"} <= covered


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: p.stem)
def test_trace(path: Path) -> None:
    trace = json.loads(path.read_text())
    harness = Harness(trace)
    for number, step in enumerate(trace["steps"]):
        actions = harness.run(step)
        expect(step, actions, f"{path.name} step {number}")
