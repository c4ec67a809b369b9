"""Test helper: an MLS participant driving a SignalingClient by hand.

The delivery service validates every handshake against the room's keyless
PublicGroup (RFC 9420 §12.4.2), so tests of the server speak real MLS: the
creator registers its GroupInfo (§12.4.3), members commit PublicMessages and
send application data as PrivateMessages (§6.3). A ``Participant`` keeps its
own ``mls.GroupView`` and applies what the server accepted, as a member does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mls import MLS, CommitOutput, GroupView
from signaling.client import SignalingClient
from signaling.server import RunningServer


class Participant:
    """One identity of a room: its signaling connection and its MLS state."""

    def __init__(self, client: SignalingClient, identity: str) -> None:
        self.client = client
        self.identity = identity
        self.mls = MLS()
        self.client_id = self.mls.generate_identity().content
        self.credential = self.mls.generate_credential(identity).content
        self.group: GroupView | None = None

    def __repr__(self) -> str:
        return f"Participant({self.identity!r})"

    @classmethod
    async def joined(cls, server: RunningServer, clients: list[SignalingClient], identity: str,
                     room: str, **join: Any) -> Participant:
        """A participant whose client has joined ``room`` (``join``: ``since``, ``epoch``)."""
        client = SignalingClient(server.ws_url, room, server.server.tokens.mint(room, identity, 600))
        clients.append(client)
        await client.connect(**join)
        return cls(client, identity)

    @property
    def view(self) -> GroupView:
        assert self.group is not None, f"{self.identity} is not in a group"
        return self.group

    def key_package(self) -> bytes:
        return self.mls.generate_key_package(self.client_id, self.credential).content

    async def publish(self, count: int = 1) -> dict[str, Any]:
        return await self.client.publish_key_packages([self.key_package() for _ in range(count)])

    async def create(self) -> dict[str, Any]:
        """Create a group and register it as the room's (its GroupInfo carries the tree)."""
        group = self.mls.group_create(self.client_id, self.credential)
        reply = await self.client.create_group(group.group_id, group.epoch, group.group_info())
        self.group = group
        return reply

    async def submit(self, output: CommitOutput, welcomes: dict[str, bytes] | None = None) -> dict[str, Any]:
        """Send our pending commit; apply it when acknowledged, discard it when refused."""
        view = self.view
        try:
            reply = await self.client.commit(view.group_id, view.epoch, output.commit, welcomes=welcomes)
        except Exception:
            view.discard_pending_commit()
            raise
        view.apply_pending_commit()
        return reply

    async def add(self, *others: Participant) -> dict[str, Any]:
        """Claim each one's KeyPackage, commit the Adds with one Welcome for all, and let them join."""
        packages = [await self.client.claim_key_package(other.identity) for other in others]
        output = self.view.add_many(packages)
        assert output.welcome is not None
        reply = await self.submit(output, {other.identity: output.welcome for other in others})
        for other in others:
            other.group = other.mls.group_join(other.client_id, output.welcome)
        return reply

    async def update(self) -> dict[str, Any]:
        return await self.submit(self.view.update())

    def send(self, text: bytes) -> bytes:
        """An application message of our current epoch (a PrivateMessage)."""
        return self.view.send(text).content


async def group_of(server: RunningServer, clients: list[SignalingClient], identities: Iterable[str],
                   room: str) -> list[Participant]:
    """Participants that joined ``room``, the first creating the group and adding the others."""
    members = [await Participant.joined(server, clients, identity, room) for identity in identities]
    creator, *others = members
    await creator.create()
    for other in others:
        await other.publish()
    if others:
        await creator.add(*others)
    return members
