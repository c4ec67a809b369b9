"""The call page in an SFU room: headless Chromium and CallPeer bots through a private Janus (issue 16).

The signaling server (in process, ephemeral port) is configured with a
private Janus on loopback (media.cli.janus, the ``janus`` fixture of
tests/janus_peers.py) and ``sfu_above=0``, so every room goes through the
SFU.  The page publishes on one connection and subscribes to every other
member's streams on another, negotiated through the signaling connection
(``sfu.*``); the bots and the page form one MLS group; each decodes the
others' SFrame-encrypted media, which Janus forwards without a key.  The
page labels each received stream by the KIDs of its frames (the sender's
leaf, hence its MLS credential), never by the server's ``from``: a
WebSocket stand-in that swaps the ``from`` of the server's SFU messages is
flagged, and the tiles still show each bot's own video.  A misbehaving SFU
stand-in (the server's ``sfu.*`` side played in the pages' WebSocket route,
on the same real Janus) points one of a page's subscribed video streams at
another publisher without saying so: the page flags the stream
(``kid_changed``, ``from_mismatch``) and attributes its frames to the member
whose KID they carry.

Every test runs in a network namespace of its own holding only ``lo``
(tests/loopback_namespace.py): the server, Janus, the bots, the Playwright
driver and Chromium are started inside it, so Chromium, which sends ICE
checks from every interface it has, and Janus, which answers checks from any
address, can only meet on 127.0.0.1; the tests check that every selected
candidate pair is on loopback on both sides.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright; Janus is
Debian's /usr/bin/janus; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import BrowserContext, Page, WebSocketRoute

from media.call_peer import CallPeer
from media.cli.janus import JanusProcess
from media.sinks import VerifyingSink
from signaling.config import DEFAULT_STATIC_DIR, ServerConfig
from signaling.janus import JanusSession, VideoRoomHandle
from signaling.server import RunningServer, start_server

from janus_peers import janus  # noqa: F401  (the private Janus fixture)
from loopback_namespace import interfaces, loopback_namespace
from test_web_call import (  # noqa: F401  (fixtures and the page helpers of the mesh test)
    BOUND, READ_TILES, BrowserLog, browser, join, one_group, open_page, page_bundle, page_status, sink, until)

ROOM = "sfuroom"
BROWSER = "carla"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

#: The SDP of the page's two SFU connections, local and remote.
SFU_SDP = """
() => {
  const sfu = window.mlscall.call.sfu;
  return [sfu.publisher, sfu.subscriber].flatMap((pc) => [pc.localDescription.sdp, pc.remoteDescription.sdp]);
}
"""

#: The addresses of the candidate pair each of the page's SFU connections selected.
SELECTED_PAIRS = """
async () => {
  const sfu = window.mlscall.call.sfu;
  const pairs = [];
  for (const pc of [sfu.publisher, sfu.subscriber]) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        pairs.push([stats.get(pair.localCandidateId).address, stats.get(pair.remoteCandidateId).address]);
      }
    });
  }
  return pairs;
}
"""

#: Per remote identity shown, the kinds of the tracks its tile plays.
TILE_TRACKS = """
() => Object.fromEntries([...window.mlscall.call.remoteStreams].map(
  ([identity, stream]) => [identity, stream.getTracks().map((t) => t.kind).sort()]))
"""

StartBot = Callable[[str], Awaitable[CallPeer]]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """The test (autouse: before the other fixtures of its scope start Janus, the server,
    the bots and Chromium) runs in a network namespace whose only interface is ``lo``."""
    with loopback_namespace():
        assert interfaces() == ["lo"]
        yield


def bot_selected_pairs(bot: CallPeer) -> list[tuple[str, str]]:
    """(local, remote) addresses of the nominated ICE pairs of ``bot``'s two SFU connections."""
    assert bot.sfu is not None
    pairs = []
    for pc in bot.sfu.connections():
        transports = {t.receiver.transport.transport for t in pc.getTransceivers() if t.receiver.transport}
        for transport in transports:
            for pair in transport.iceGatherer._connection._nominated.values():
                pairs.append((pair.local_candidate.host, pair.remote_addr[0]))
    return pairs


@pytest.fixture
async def server(tmp_path: Path, page_bundle: Path, janus: JanusProcess) -> AsyncIterator[RunningServer]:  # noqa: F811
    db = tmp_path / "db" / "calls.db"
    db.parent.mkdir()
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=db, secret=b"s" * 32,
                                              static_dir=DEFAULT_STATIC_DIR, sfu_url=janus.url, sfu_above=0))
    yield running
    await running.close()


@pytest.fixture
async def start_bot(server: RunningServer) -> AsyncIterator[StartBot]:
    bots: list[CallPeer] = []

    async def start(identity: str) -> CallPeer:
        token = server.server.tokens.mint(ROOM, identity, 600)
        bot = CallPeer(server.ws_url, ROOM, token, sinks=[VerifyingSink()])
        bots.append(bot)
        await bot.start()
        return bot

    yield start
    for bot in bots:
        await bot.stop()


#: bound of the waits of the 8-participant call (seconds): eight encoders share two cores
LARGE_CALL_BOUND = 120.0


async def until_within(predicate: Callable[[], Awaitable[bool]], what: Callable[[], str], log: BrowserLog,
                       bound: float) -> None:
    """As test_web_call.until with another bound; ``what()`` says what is still missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not await predicate():
        assert not log.errors, log.errors
        assert loop.time() < deadline, f"not reached within {bound} s: {what()}\n{log.tail()}"
        await asyncio.sleep(0.25)


def page_decrypted(view: dict[str, Any], remote: str, kind: str) -> int:
    return view["remotes"].get(remote, {}).get(kind, {}).get("decrypted", 0)


async def decoding_tiles(page: Page, log: BrowserLog, remotes: list[str], bound: float = BOUND) -> None:
    """The page renders each remote's test pattern in the tile named after it, the counter advancing."""
    async def rendering() -> bool:
        tiles = await page.evaluate(READ_TILES, remotes)
        return all(tile is not None and tile["counter"] is not None for tile in tiles.values())
    await until_within(rendering, lambda: f"the counters of {remotes} readable in their tiles", log, bound)
    first = await page.evaluate(READ_TILES, remotes)

    async def advanced() -> bool:
        now = await page.evaluate(READ_TILES, remotes)
        return all(now[name] is not None and now[name]["counter"] is not None
                   and now[name]["counter"] > first[name]["counter"] and now[name]["hash"] != first[name]["hash"]
                   for name in remotes)
    await until_within(advanced, lambda: f"the counters of {remotes} advancing in their tiles", log, bound)


async def test_browser_and_bots_through_janus(start_bot: StartBot, server: RunningServer,
                                              browser: BrowserContext) -> None:  # noqa: F811
    alice = await start_bot("alice-bot")
    bob = await start_bot("bob-bot")
    page, log = await open_page(browser, f"{server.url}/?room={ROOM}&video=320x240")
    await join(page, BROWSER)

    async def joined() -> bool:
        return one_group(await page_status(page), [alice, bob])
    await until(joined, "the page in the bots' group, equal epochs and verification codes", log)
    view = await page_status(page)
    assert view["topology"] == "sfu"
    assert view["links"] == {}  # no mesh link: media goes through the SFU only

    # -- the bots decode the page's camera and microphone through Janus ----------------------
    async def bots_decode() -> bool:
        return all(sink(bot).frames(BROWSER, kind) >= 30 for bot in (alice, bob) for kind in ("video", "audio"))
    await until(bots_decode, "30 decoded frames of each kind from the page at both bots", log)

    # -- the page decodes the bots' video, each in the tile of its MLS credential ------------
    await decoding_tiles(page, log, ["alice-bot", "bob-bot"])
    assert await page.evaluate(TILE_TRACKS) == {"alice-bot": ["audio", "video"], "bob-bot": ["audio", "video"]}

    async def audio_decrypted() -> bool:
        view = await page_status(page)
        return all(page_decrypted(view, name, "audio") >= 50 for name in ("alice-bot", "bob-bot"))
    await until(audio_decrypted, "50 audio frames decrypted from each bot", log)

    view = await page_status(page)
    sfu = view["sfu"]
    assert sfu["interrupted"] is False and sfu["failed"] is None, sfu
    assert sfu["publisher"]["state"] == "connected" and sfu["subscriber"]["state"] == "connected", sfu
    # the streams are the bots' by their frames' KIDs, which here agree with the server
    streams = {(s["identity"], s["kind"]) for s in sfu["streams"]}
    assert streams == {(name, kind) for name in ("alice-bot", "bob-bot") for kind in ("audio", "video")}, sfu
    assert all(s["identity"] == s["from"] == s["firstIdentity"] and not s["flagged"] for s in sfu["streams"]), sfu
    assert sfu["flags"] == {"kidChanged": 0, "fromMismatch": 0}
    assert view["warnings"] == [] and await page.is_hidden(".warnings")
    # every frame the page's encoders sent went through its SFrame transform
    for kind in ("audio", "video"):
        counters = sfu["counters"][kind]
        assert counters["sent"] > 0 and counters["encrypted"] >= counters["sent"] - 15, (kind, counters)
    assert view["failures"]["authentication"] == 0 and view["failures"]["syntax"] == 0
    for bot in (alice, bob):
        assert list(bot.status().members) == view["members"]

    # no audio level negotiated on either connection
    for sdp in await page.evaluate(SFU_SDP):
        assert AUDIO_LEVEL not in sdp
    # both sides of every connection's selected pair are on loopback, at the page and the bots
    pairs = await page.evaluate(SELECTED_PAIRS)
    assert len(pairs) == 2 and all(pair == ["127.0.0.1", "127.0.0.1"] for pair in pairs), pairs
    for bot in (alice, bob):
        pairs = bot_selected_pairs(bot)
        assert len(pairs) == 2 and set(pairs) == {("127.0.0.1", "127.0.0.1")}, pairs
    assert not log.errors, log.errors


#: The local port of the page's subscribing connection's selected candidate pair.
SUBSCRIBER_PORT = """
async () => {
  const stats = await window.mlscall.call.sfu.subscriber.getStats();
  for (const s of stats.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      return stats.get(stats.get(s.selectedCandidatePairId).localCandidateId).port;
    }
  }
  return null;
}
"""

#: bound of the wait for Chromium to give up a connection Janus hung up (seconds)
ICE_FAILURE_BOUND = 90.0


async def page_decoding_a_bot(start_bot: StartBot, server: RunningServer, browser: BrowserContext,
                              video: str) -> tuple[CallPeer, Page, BrowserLog]:
    """Bot alice-bot and the page (sending ``video``, WxH) in one group through Janus, the page
    decoding the bot."""
    alice = await start_bot("alice-bot")
    page, log = await open_page(browser, f"{server.url}/?room={ROOM}&video={video}")
    await join(page, BROWSER)

    async def decoding() -> bool:
        view = await page_status(page)
        return one_group(view, [alice]) and page_decrypted(view, "alice-bot", "video") >= 30
    await until(decoding, "the page decoding alice-bot through Janus", log)
    return alice, page, log


async def hang_up_subscriber(server: RunningServer, janus: JanusProcess, identity: str) -> None:  # noqa: F811
    """Janus hangs up ``identity``'s subscribing PeerConnection (Janus API ``hangup``), behind the server's back."""
    sfu = server.server.delivery.sfu
    assert sfu is not None
    handle = sfu.rooms[ROOM].members[identity].subscriber
    assert handle is not None
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{janus.url}/{handle.session.session_id}/{handle.handle_id}",
                             json={"janus": "hangup", "transaction": "test-hangup"}) as response:
            assert (await response.json())["janus"] == "success"


async def test_the_page_makes_a_failed_connection_anew(start_bot: StartBot, server: RunningServer,
                                                       janus: JanusProcess,  # noqa: F811
                                                       browser: BrowserContext) -> None:  # noqa: F811
    """Janus hangs up the page's subscribing connection (as when it lost it to the network):
    Chromium declares it failed, and the page makes both connections anew, the subscription
    from scratch (``restart``), and decodes the bot again."""
    alice, page, log = await page_decoding_a_bot(start_bot, server, browser, "160x120")
    port = await page.evaluate(SUBSCRIBER_PORT)
    assert isinstance(port, int)
    await hang_up_subscriber(server, janus, BROWSER)

    async def recovered() -> bool:
        sfu = (await page_status(page))["sfu"]
        return sfu["recoveries"] >= 1 and sfu["subscriber"] is not None and sfu["subscriber"]["state"] == "connected"
    await until_within(recovered, lambda: "the page's connections made anew", log, ICE_FAILURE_BOUND)
    assert await page.evaluate(SUBSCRIBER_PORT) != port
    before = await page_status(page)

    async def decoding_again() -> bool:
        view = await page_status(page)
        return (page_decrypted(view, "alice-bot", "video") >= page_decrypted(before, "alice-bot", "video") + 30
                and sink(alice).frames(BROWSER, "video") > 0)
    await until(decoding_again, "the page decoding alice-bot again on its new connection", log)
    await decoding_tiles(page, log, ["alice-bot"])
    after = await page_status(page)
    assert after["sfu"]["recoveries"] == 1 and after["sfu"]["publishes"] == 2
    assert after["epoch"] == before["epoch"]  # no MLS change
    assert not log.errors, log.errors


def swap_from(frame: str, names: dict[str, str]) -> str:
    """The server's frame with the ``from`` of its SFU streams and feeds swapped as ``names`` says."""
    message = json.loads(frame)
    for entry in message.get("streams", []) + message.get("feeds", []):
        if isinstance(entry, dict) and entry.get("from") in names:
            entry["from"] = names[entry["from"]]
    return json.dumps(message)


async def test_a_server_naming_other_senders_is_flagged(start_bot: StartBot, server: RunningServer,
                                                         browser: BrowserContext) -> None:  # noqa: F811
    """A misbehaving server stand-in (between the page and the server) says alice-bot's
    streams are bob-bot's and the reverse: the page flags every stream, and still shows
    each bot's media in its own tile (attributed by KID)."""
    alice = await start_bot("alice-bot")
    bob = await start_bot("bob-bot")
    swapped = {"alice-bot": "bob-bot", "bob-bot": "alice-bot"}
    page = await browser.new_page()

    async def stand_in(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        upstream.on_message(lambda frame: ws.send(swap_from(frame, swapped) if isinstance(frame, str) else frame))

    await page.route_web_socket(f"{server.ws_url}", stand_in)
    log = BrowserLog(page)
    await page.goto(f"{server.url}/?room={ROOM}&video=320x240")
    await join(page, BROWSER)

    async def joined() -> bool:
        return one_group(await page_status(page), [alice, bob])
    await until(joined, "the page in the bots' group", log)

    async def flagged() -> bool:
        sfu = (await page_status(page)).get("sfu") or {}
        return sfu.get("flags", {}).get("fromMismatch", 0) >= 4
    await until(flagged, "all four streams flagged: their KIDs name another member than the server's from", log)
    view = await page_status(page)
    for stream in view["sfu"]["streams"]:
        assert stream["flagged"] and stream["identity"] == swapped[stream["from"]], stream
    kinds = sorted((w["kind"], w["identity"]) for w in view["warnings"])
    assert kinds == sorted(("sfu_from_mismatch", name) for name in ("alice-bot", "bob-bot") for _ in range(2)), kinds
    assert await page.is_visible(".warnings")
    assert await page.locator(".tile.relabelled").count() == 2
    # each tile still plays the media of the member whose KID its frames carry
    await decoding_tiles(page, log, ["alice-bot", "bob-bot"])
    async def bots_decode() -> bool:  # the bots decode the page as usual
        return all(sink(bot).frames(BROWSER, kind) >= 10 for bot in (alice, bob) for kind in ("video", "audio"))
    await until(bots_decode, "the bots decoding the page", log)
    assert not log.errors, log.errors


@pytest.mark.e2e
async def test_eight_participants_decode_each_other(start_bot: StartBot, server: RunningServer,
                                                    browser: BrowserContext) -> None:  # noqa: F811
    """The page and 7 bots through Janus: every participant decodes every other's video and audio."""
    names = [f"bot-{n}" for n in range(1, 8)]
    bots = [await start_bot(name) for name in names]
    page, log = await open_page(browser, f"{server.url}/?room={ROOM}&video=320x240")
    await join(page, BROWSER)

    async def joined() -> bool:
        return one_group(await page_status(page), bots)
    await until_within(joined, lambda: "eight participants in one group", log, LARGE_CALL_BOUND)
    missing: list[tuple[str, str, str]] = []

    async def everyone_decodes() -> bool:
        view = await page_status(page)
        page_sfu.update(reconnects=view["reconnects"], feed=view["sfu"]["feed"], publishes=view["sfu"]["publishes"],
                        interrupted=view["sfu"]["interrupted"], failed=view["sfu"]["failed"])
        missing[:] = [(BROWSER, name, kind) for name in names for kind in ("audio", "video")
                      if page_decrypted(view, name, kind) < 20]
        missing.extend((bot.identity, other, kind) for bot in bots for other in [BROWSER, *names]
                       if other != bot.identity for kind in ("audio", "video") if sink(bot).frames(other, kind) < 20)
        return not missing
    def still_missing() -> str:
        receivers = {bot.identity: [(r.kind, r.frames_decrypted, r.keyframes_decrypted,
                                     {k.value: n for k, n in r.failures.items() if n})
                                    for stats in bot.link_stats() for r in stats.receivers]
                     for bot in bots if any(m[0] == bot.identity for m in missing)}
        return (f"every participant decoding 20 frames of each kind from every other; missing "
                f"(receiver, sender, kind): {missing}; their SFrame receivers: {receivers}; "
                f"decoded by the bots' sinks from the page: {[sink(bot).reports.get(BROWSER) for bot in bots]}; "
                f"the page: {page_sfu}")
    page_sfu: dict[str, Any] = {}
    await until_within(everyone_decodes, still_missing, log, LARGE_CALL_BOUND)
    await decoding_tiles(page, log, names, LARGE_CALL_BOUND)
    view = await page_status(page)
    assert view["sfu"]["flags"] == {"kidChanged": 0, "fromMismatch": 0} and view["warnings"] == []
    assert view["failures"]["authentication"] == 0 and view["failures"]["syntax"] == 0
    assert not log.errors, log.errors


async def test_janus_restart_resumes_the_page(start_bot: StartBot, server: RunningServer, janus: JanusProcess,  # noqa: F811
                                              browser: BrowserContext) -> None:  # noqa: F811
    """Janus killed mid-call: the page shows the media interrupted; Janus back: it republishes and
    resubscribes (sfu.up), with no MLS change, and decodes the bot again."""
    alice, page, log = await page_decoding_a_bot(start_bot, server, browser, "320x240")
    before = await page_status(page)

    janus.kill()

    async def interrupted() -> bool:
        return bool(((await page_status(page)).get("sfu") or {}).get("interrupted"))
    await until(interrupted, "the page showing the SFU interrupted", log)
    assert "media server is interrupted" in (await page.text_content(".notice") or "")

    janus.start()

    async def resumed() -> bool:
        view = await page_status(page)
        return (not view["sfu"]["interrupted"]
                and page_decrypted(view, "alice-bot", "video") >= page_decrypted(before, "alice-bot", "video") + 30
                and sink(alice).frames(BROWSER, "video") > 0)
    await until(resumed, "the page decoding alice-bot again after Janus came back", log)
    await decoding_tiles(page, log, ["alice-bot"])
    after = await page_status(page)
    assert after["epoch"] == before["epoch"] and after["verification"] == before["verification"]  # no MLS change
    assert not log.errors, log.errors


class SfuStandIn:
    """The server's ``sfu.*`` side, played in the pages' WebSocket route on a real Janus.

    Frames of the signaling protocol pass between page and server unchanged,
    except: join replies say ``topology: "sfu"`` (unless the room is to start
    as a mesh: then :meth:`go_sfu` sends the ``topology`` event); the page's ``sfu.publish``,
    ``sfu.subscribe`` and ``sfu.start`` are answered here from one Janus room
    (docs/protocol.md shapes: ``feed``, ``jsep``, ``streams``); ``sfu.feeds``
    is pushed to every page when a publisher is up.  :meth:`switch` makes it
    misbehave: one subscribed m-line of a page then carries another feed's
    stream, and nothing tells the page.
    """

    def __init__(self, session: JanusSession, room: int) -> None:
        self.session = session
        self.room = room
        #: whether join replies say the room is an SFU room
        self.sfu_at_join = True
        self.feeds: dict[int, str] = {}
        #: identity -> (its WebSocket route, its subscriber handle, the feeds it subscribed)
        self.pages: dict[str, tuple[WebSocketRoute, VideoRoomHandle | None, list[int]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[str] = []

    def route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        identity: list[str] = []

        def from_page(frame: str | bytes) -> None:
            message = json.loads(frame)
            if str(message.get("type", "")).startswith("sfu."):
                task = asyncio.ensure_future(self._answer(ws, identity[0], message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                server.send(frame)

        def from_server(frame: str | bytes) -> None:
            message = json.loads(frame)
            if message.get("type") == "ack" and "identity" in message and "members" in message:
                message["topology"] = "sfu" if self.sfu_at_join else "mesh"
                identity[:] = [message["identity"]]
                self.pages[message["identity"]] = (ws, None, [])
            ws.send(json.dumps(message))

        ws.on_message(from_page)
        server.on_message(from_server)

    async def _answer(self, ws: WebSocketRoute, identity: str, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "ack", "re": message["id"]}
        _, subscriber, subscribed = self.pages[identity]
        try:
            if message["type"] == "sfu.publish":
                handle = await self.session.attach()
                reply["feed"], reply["jsep"] = await handle.publish(self.room, message["jsep"])
                ws.send(json.dumps(reply))
                await asyncio.wait_for(handle.webrtc_up.wait(), 15)
                self.feeds[reply["feed"]] = identity
                feeds = {"type": "sfu.feeds", "feeds": [{"feed": f, "from": i} for f, i in self.feeds.items()]}
                for route, _, _ in self.pages.values():
                    route.send(json.dumps(feeds))
                return
            if message["type"] == "sfu.subscribe":
                wanted = list(message["feeds"])
                if subscriber is None:
                    subscriber = await self.session.attach()
                    streams, reply["jsep"] = await subscriber.join_subscriber(self.room, wanted)
                else:
                    streams, reply["jsep"] = await subscriber.update(
                        [f for f in wanted if f not in subscribed], [f for f in subscribed if f not in wanted])
                self.pages[identity] = (ws, subscriber, wanted)
                reply["streams"] = [{"mid": s["mid"], "feed": s["feed_id"], "from": self.feeds.get(s["feed_id"]),
                                     "kind": s["type"]} for s in streams if s.get("active", True) and "feed_id" in s]
            elif message["type"] == "sfu.start":
                assert subscriber is not None
                await subscriber.start(message["jsep"])
        except Exception as exc:  # the page sees an error reply; the test sees it in self.errors
            self.errors.append(f"{message['type']} of {identity}: {exc!r}")
            reply = {"type": "error", "re": message["id"], "code": "sfu_unavailable", "message": str(exc)}
        ws.send(json.dumps(reply))

    def go_sfu(self) -> None:
        """The room switches to the SFU while live: every page gets the ``topology`` event."""
        self.sfu_at_join = True
        for route, _, _ in self.pages.values():
            route.send(json.dumps({"type": "topology", "topology": "sfu"}))

    async def switch(self, identity: str, sub_mid: str, feed: int, mid: str) -> None:
        """Janus's ``switch``: the page's m-line ``sub_mid`` now carries ``feed``'s stream ``mid``."""
        _, subscriber, _ = self.pages[identity]
        assert subscriber is not None
        await subscriber.request({"request": "switch", "streams": [{"feed": feed, "mid": mid, "sub_mid": sub_mid}]})


@pytest.fixture
async def stand_in(janus: JanusProcess) -> AsyncIterator[SfuStandIn]:  # noqa: F811
    session = JanusSession(janus.url)
    await session.create()
    room = random.randrange(1, 1 << 30)
    await (await session.attach()).create_room(room, "stand-in secret", 8)
    yield SfuStandIn(session, room)
    await session.destroy()


@pytest.fixture
async def mesh_server(tmp_path: Path, page_bundle: Path) -> AsyncIterator[RunningServer]:  # noqa: F811
    """A server without an SFU: the stand-in plays its SFU side."""
    db = tmp_path / "db" / "calls.db"
    db.parent.mkdir()
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=db, secret=b"m" * 32,
                                              static_dir=DEFAULT_STATIC_DIR))
    yield running
    await running.close()


async def test_a_stream_switched_to_another_publisher_is_flagged(
        mesh_server: RunningServer, stand_in: SfuStandIn, browser: BrowserContext) -> None:  # noqa: F811
    names = ["anna", "bert", "cora"]
    pages: dict[str, tuple[Page, BrowserLog]] = {}
    for name in names:
        page = await browser.new_page()
        await page.route_web_socket(mesh_server.ws_url, stand_in.route)
        log = BrowserLog(page)
        await page.goto(f"{mesh_server.url}/?room={ROOM}&video=160x120")
        await join(page, name)
        pages[name] = (page, log)
    anna, log = pages["anna"]

    async def all_decrypt() -> bool:
        views = {name: await page_status(page) for name, (page, _) in pages.items()}
        return all(view.get("members") == names and page_decrypted(view, other, "video") >= 20
                   for name, view in views.items() for other in names if other != name)
    await until(all_decrypt, "three pages in one group, each decrypting the others' video through Janus", log)
    assert stand_in.errors == []
    view = await page_status(anna)
    assert view["sfu"]["flags"] == {"kidChanged": 0, "fromMismatch": 0} and view["warnings"] == []
    streams = {(s["from"], s["kind"]): s for s in view["sfu"]["streams"]}
    assert all(s["identity"] == s["from"] for s in streams.values())

    # the stand-in misbehaves: anna's m-line of bert's video now carries cora's video
    bert_video, cora_video = streams[("bert", "video")], streams[("cora", "video")]
    cora_feed_mid = "1"  # the page publishes audio then video: mids 0 and 1
    await stand_in.switch("anna", bert_video["mid"], cora_video["feed"], cora_feed_mid)

    async def flagged() -> bool:
        return (await page_status(anna))["sfu"]["flags"] == {"kidChanged": 1, "fromMismatch": 1}
    await until(flagged, "the switched stream flagged: cora's KID on a stream first bert's, said to be bert's", log)
    view = await page_status(anna)
    switched = next(s for s in view["sfu"]["streams"] if s["label"] == bert_video["label"])
    assert switched["flagged"] and switched["identity"] == "cora" and switched["firstIdentity"] == "bert"
    assert switched["from"] == "bert"
    assert sorted((w["kind"], w["identity"]) for w in view["warnings"]) == [
        ("sfu_from_mismatch", "cora"), ("sfu_kid_changed", "cora")]
    assert await anna.locator('.tile.relabelled[data-identity="cora"]').count() == 1
    assert await anna.locator(".warnings li").count() == 2
    # its frames count as cora's: bert's video stops growing at anna, cora's goes on
    before = view

    async def attributed() -> bool:
        now = await page_status(anna)
        return (page_decrypted(now, "cora", "video") >= page_decrypted(before, "cora", "video") + 40
                and page_decrypted(now, "bert", "video") == page_decrypted(before, "bert", "video"))
    await until(attributed, "the switched stream's frames counted as cora's, none more as bert's", log)
    for page, page_log in pages.values():
        assert not page_log.errors, page_log.errors


async def test_a_mesh_room_moves_to_the_sfu_while_live(
        mesh_server: RunningServer, stand_in: SfuStandIn, browser: BrowserContext) -> None:  # noqa: F811
    """Two pages in a mesh; the ``topology`` event: both close their mesh link and go on through Janus."""
    stand_in.sfu_at_join = False
    pages: dict[str, tuple[Page, BrowserLog]] = {}
    for name in ("anna", "bert"):
        page = await browser.new_page()
        await page.route_web_socket(mesh_server.ws_url, stand_in.route)
        log = BrowserLog(page)
        await page.goto(f"{mesh_server.url}/?room={ROOM}&video=160x120")
        await join(page, name)
        pages[name] = (page, log)
    (anna, log), (bert, _) = pages["anna"], pages["bert"]

    async def mesh_media() -> bool:
        a, b = await page_status(anna), await page_status(bert)
        return (a.get("topology") == "mesh" and list(a["links"]) == ["bert"] and list(b["links"]) == ["anna"]
                and page_decrypted(a, "bert", "video") >= 20 and page_decrypted(b, "anna", "video") >= 20)
    await until(mesh_media, "the two pages exchanging media on their mesh link", log)
    before = {name: await page_status(page) for name, (page, _) in pages.items()}

    stand_in.go_sfu()

    async def sfu_media() -> bool:
        views = {name: await page_status(page) for name, (page, _) in pages.items()}
        return all(view["topology"] == "sfu" and view["links"] == {} and view["sfu"]["streams"]
                   and all(s["identity"] == other for s in view["sfu"]["streams"])
                   and page_decrypted(view, other, "video") >= page_decrypted(before[name], other, "video") + 40
                   for (name, view), other in zip(views.items(), ("bert", "anna")))
    await until(sfu_media, "both pages decrypting each other through Janus, their mesh link closed", log)
    after = await page_status(anna)
    assert after["epoch"] == before["anna"]["epoch"]  # the move changes no MLS state
    assert after["sfu"]["flags"] == {"kidChanged": 0, "fromMismatch": 0}
    assert stand_in.errors == []
    for _, page_log in pages.values():
        assert not page_log.errors, page_log.errors
