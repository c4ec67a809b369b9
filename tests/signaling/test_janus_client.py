"""signaling.janus against a private Janus (media.cli.janus; issue 16).

Room create/destroy in e2ee mode, a publisher and a multistream subscriber
exchanging media, subscriber updates, Janus's refusals as typed errors (no SDP
or secret in messages or logs), and a SIGKILLed Janus seen as a lost session.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import aiohttp
import pytest
from janus_peers import Publisher, Subscriber, janus  # noqa: F401  (fixture)

from conftest import until
from media.cli.janus import JanusProcess
from signaling.errors import ErrorCode
from signaling.janus import JanusSession, SfuRefused, SfuUnavailable

pytestmark = pytest.mark.e2e


def _room() -> int:
    return 1000 + secrets.randbelow(10**9)


async def test_publish_subscribe_update_through_janus(janus: JanusProcess) -> None:
    session = JanusSession(janus.url)
    await session.create()
    publishers = [Publisher(), Publisher()]
    subscriber = Subscriber()
    try:
        owner = await session.attach()
        room, secret = _room(), secrets.token_hex(8)
        await owner.create_room(room, secret, publishers=16)
        feeds = []
        for publisher in publishers:
            handle = await session.attach()
            feed, answer = await handle.publish(room, {"type": "offer", "sdp": await publisher.offer()})
            assert answer["type"] == "answer"
            await publisher.accept(answer["sdp"])
            await asyncio.wait_for(handle.webrtc_up.wait(), 30)
            feeds.append(feed)
        assert len(set(feeds)) == 2

        viewer = await session.attach()
        streams, offer = await viewer.join_subscriber(room, feeds[:1])
        assert offer is not None and {s["feed_id"] for s in streams} == {feeds[0]}
        await viewer.start({"type": "answer", "sdp": await subscriber.answer(offer["sdp"])})
        await until(lambda: len(subscriber.frames) == 2 and min(subscriber.frames.values()) >= 5,
                    "the first feed's audio and video")

        streams, offer = await viewer.update(subscribe=feeds[1:], unsubscribe=[])
        assert offer is not None
        assert {s.get("feed_id") for s in streams if s.get("active", True)} == set(feeds)
        await viewer.start({"type": "answer", "sdp": await subscriber.answer(offer["sdp"])})
        await until(lambda: len(subscriber.frames) == 4 and min(subscriber.frames.values()) >= 5,
                    "both feeds' audio and video on one connection")

        streams, offer = await viewer.update(subscribe=[], unsubscribe=feeds[:1])
        assert {s.get("feed_id") for s in streams if s.get("active", True) and "feed_id" in s} == {feeds[1]}
        await viewer.detach()
        await owner.destroy_room(room, secret)
        with pytest.raises(SfuRefused) as refused:
            await owner.destroy_room(room, secret)
        assert refused.value.code == ErrorCode.NOT_FOUND and refused.value.janus_code == 426
    finally:
        await subscriber.close()
        for publisher in publishers:
            await publisher.close()
        await session.destroy()


async def test_refusals_are_typed_and_leak_nothing(janus: JanusProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="signaling")
    session = JanusSession(janus.url)
    await session.create()
    publisher = Publisher()
    try:
        handle = await session.attach()
        room, secret = _room(), secrets.token_hex(8)
        await handle.create_room(room, secret, publishers=4)
        offer = await publisher.offer()

        with pytest.raises(SfuRefused) as clear:  # require_e2ee: a publish without e2ee is refused
            await (await session.attach()).request({"request": "joinandconfigure", "room": room, "ptype": "publisher"},
                                                   {"type": "offer", "sdp": offer})
        assert clear.value.janus_code == 433 and clear.value.code == ErrorCode.SFU_REFUSED

        with pytest.raises(SfuRefused) as wrong:
            await handle.destroy_room(room, "not-the-" + secret)
        assert wrong.value.janus_code == 433

        with pytest.raises(SfuRefused) as missing:
            await (await session.attach()).publish(room + 1, {"type": "offer", "sdp": offer})
        assert missing.value.janus_code == 426 and missing.value.code == ErrorCode.NOT_FOUND

        viewer = await session.attach()
        with pytest.raises(SfuRefused) as no_feed:
            await viewer.join_subscriber(room, [12345])
        assert no_feed.value.janus_code == 428

        for error in (clear.value, wrong.value, missing.value, no_feed.value):
            assert secret not in str(error) and "v=0" not in str(error)
        ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("signaling"))
        assert secret not in ours and "v=0" not in ours
        assert session.alive
    finally:
        await publisher.close()
        await session.destroy()


async def test_killed_janus_loses_the_session(janus: JanusProcess) -> None:
    losses: list[str] = []
    session = JanusSession(janus.url, on_lost=losses.append)
    await session.create()
    try:
        handle = await session.attach()
        janus.kill()
        await until(lambda: bool(losses), "the long poll notices Janus is gone")
        assert len(losses) == 1 and not session.alive
        with pytest.raises(SfuUnavailable) as gone:
            await handle.create_room(_room(), "s", publishers=2)
        assert gone.value.code == ErrorCode.SFU_UNAVAILABLE

        janus.start()
        fresh = JanusSession(janus.url)
        await fresh.create()
        try:
            await (await fresh.attach()).create_room(_room(), "s", publishers=2)
        finally:
            await fresh.destroy()
        assert len(losses) == 1
    finally:
        await session.destroy()


async def test_unreachable_janus_is_unavailable(janus: JanusProcess) -> None:
    janus.stop()
    session = JanusSession(janus.url)
    with pytest.raises(SfuUnavailable):
        await session.create()


async def test_keepalives_notice_a_session_janus_dropped(janus: JanusProcess) -> None:
    losses: list[str] = []
    session = JanusSession(janus.url, on_lost=losses.append, keepalive=0.1)
    await session.create()
    try:
        await asyncio.sleep(0.5)  # several keepalives answered: still alive
        assert session.alive and not losses
        async with aiohttp.ClientSession() as http:  # dropped as Janus's session timeout would
            await http.post(f"{janus.url}/{session.session_id}", json={"janus": "destroy", "transaction": "t"})
        await until(lambda: bool(losses), "a keepalive finds the session gone (before the 30 s long poll ends)",
                    bound=5)
        assert not session.alive
    finally:
        await session.destroy()
