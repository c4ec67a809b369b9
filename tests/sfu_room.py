"""A test stand-in for the server's SFU bridge (issue 16): the ``sfu.*``
requests of docs/protocol.md carried out on a private Janus through
signaling.janus, one :class:`StandInRoom` per call, one ``request`` function
per member (what ``SignalingClient.request`` is for a CallPeer).

``relabel`` makes it misbehave on purpose: ``relabel(feed, claimed)`` says
which identity it reports as ``from`` for each feed (default: the truth).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from signaling.janus import JanusSession, VideoRoomHandle


class StandInRoom:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session: JanusSession | None = None
        self.room = 1000 + secrets.randbelow(10**9)
        self.secret = secrets.token_hex(8)
        #: feed -> identity of its publisher (the truth)
        self.publishers: dict[int, str] = {}
        self._handles: list[VideoRoomHandle] = []
        self._publisher_handles: dict[int, VideoRoomHandle] = {}
        self._subscribers: dict[str, tuple[VideoRoomHandle, set[int]]] = {}
        self.relabel: Callable[[int, str], str] = lambda feed, claimed: claimed
        #: every SDP the members sent (offers and answers) and Janus answered or offered
        self.client_sdps: list[str] = []
        self.janus_sdps: list[str] = []

    async def open(self) -> None:
        self.session = JanusSession(self.url)
        await self.session.create()
        owner = await self.session.attach()
        self._handles.append(owner)
        await owner.create_room(self.room, self.secret, publishers=16)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.destroy()

    def live_feeds(self) -> list[int]:
        """Feeds whose publisher connection is up (subscribable)."""
        return sorted(feed for feed, handle in self._publisher_handles.items() if handle.webrtc_up.is_set())

    def feeds_event(self) -> list[dict[str, Any]]:
        return [{"feed": feed, "from": self.relabel(feed, self.publishers[feed])} for feed in self.live_feeds()]

    def member(self, identity: str) -> Callable[..., Any]:
        async def request(type_: str, **fields: Any) -> dict[str, Any]:
            assert self.session is not None
            if type_ == "sfu.publish":
                handle = await self.session.attach()
                self.client_sdps.append(fields["jsep"]["sdp"])
                feed, answer = await handle.publish(self.room, fields["jsep"])
                self.janus_sdps.append(answer["sdp"])
                self.publishers[feed] = identity
                self._publisher_handles[feed] = handle
                return {"jsep": answer, "feed": feed}
            if type_ == "sfu.subscribe":
                wanted = set(fields["feeds"])
                known = self._subscribers.get(identity)
                if known is None:
                    handle = await self.session.attach()
                    streams, offer = await handle.join_subscriber(self.room, sorted(wanted))
                else:
                    handle, before = known
                    streams, offer = await handle.update(sorted(wanted - before), sorted(before - wanted))
                self._subscribers[identity] = (handle, wanted)
                if offer is not None:
                    self.janus_sdps.append(offer["sdp"])
                return {"jsep": offer, "streams": [
                    {"mid": s["mid"], "feed": s["feed_id"], "kind": s["type"],
                     "from": self.relabel(s["feed_id"], self.publishers.get(s["feed_id"], "")),
                     "active": s.get("active", True)}
                    for s in streams if "feed_id" in s]}
            if type_ == "sfu.start":
                handle, _ = self._subscribers[identity]
                self.client_sdps.append(fields["jsep"]["sdp"])
                await handle.start(fields["jsep"])
                return {}
            raise AssertionError(type_)
        return request
