"""The call page in headless Chromium with aiortc bots, end to end on 127.0.0.1.

The signaling server (in process, ephemeral port, temporary database) serves
the page (web/public, bundled by ``npm --prefix web run build``); two
:class:`media.call_peer.CallPeer` bots and the browser join one room.  The
browser's MLS client (JS over ts-mls) and the bots' Python MLS form one
group; media flows SFrame-encrypted both ways; a third bot joins and the
first leaves mid-call; an MLS application message typed into the page
reaches the server as ciphertext only.  A screenshot of the page with three
participants is saved under artifacts/.  The signaling server is also
restarted mid-call (same port and database): the page rejoins with its log
cursor, stays in its group and keeps decrypting the bots' video.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright; no browser
is downloaded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

from media.call_peer import CallOptions, CallPeer
from media.sinks import VerifyingSink
from media.stats import FailureKind
from media.verification import verification_code
from signaling.config import DEFAULT_STATIC_DIR, ServerConfig
from signaling.server import RunningServer, start_server

from conftest import REPO_ROOT
from web_page import CHROMIUM, CHROMIUM_FLAGS, browser_decrypted, page_status

ARTIFACTS = REPO_ROOT / "artifacts"
ROOM = "webcall"
#: the browser's identity: "alice-bot" and "bob-bot" offer to it, it offers to "carol-bot"
BROWSER = "carla"
BOUND = 30.0  # seconds before a wait gives up (a bound, not a measurement)
MARKER = "marker-7f3c1e: the server must never read this"

#: Reads the frame counter media/counter.py draws into the bots' pictures
#: (32 bits in 8 x 4 blocks of 8 x 8 pixels, read at each block's 4 x 4
#: centre against mid-grey; a 24-bit counter and the low byte of the CRC-32
#: of its 3 big-endian bytes) from the rendered <video> of each tile.
READ_TILES = """
(names) => {
  const crcTable = Array.from({length: 256}, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const out = {};
  for (const name of names) {
    const video = document.querySelector(`.tile[data-identity="${name}"] video`);
    if (!video || video.videoWidth < 64 || video.videoHeight < 32) { out[name] = null; continue; }
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const context = canvas.getContext('2d', {willReadFrequently: true});
    context.drawImage(video, 0, 0);
    const {data, width, height} = context.getImageData(0, 0, canvas.width, canvas.height);
    const luma = (x, y) => {
      const i = (y * width + x) * 4;
      return 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    };
    let word = 0;
    for (let i = 0; i < 32; i += 1) {
      const row = i >> 3, column = i & 7;
      let total = 0;
      for (let y = row * 8 + 2; y < row * 8 + 6; y += 1)
        for (let x = column * 8 + 2; x < column * 8 + 6; x += 1) total += luma(x, y);
      word = ((word << 1) | (total > 128 * 16 ? 1 : 0)) >>> 0;
    }
    const counter = word >>> 8;
    const valid = (crc32([counter >>> 16, (counter >>> 8) & 0xff, counter & 0xff]) & 0xff) === (word & 0xff);
    let sum = 0, hash = 0;
    for (let y = 0; y < height; y += 1)
      for (let x = 0; x < width; x += 1) {
        const l = luma(x, y);
        sum += l;
        hash = (Math.imul(hash, 31) + Math.round(l)) >>> 0;
      }
    out[name] = {counter: valid ? counter : null, mean: sum / (width * height), hash, width, height};
  }
  return out;
}
"""

#: The addresses of the browser's ICE candidate pairs that succeeded.
SUCCEEDED_PAIRS = """
async () => {
  const pairs = [];
  for (const [remote, link] of window.mlscall.call.links) {
    const stats = await link.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded') {
        pairs.push([remote, stats.get(s.localCandidateId).address, stats.get(s.remoteCandidateId).address]);
      }
    });
  }
  return pairs;
}
"""

StartBot = Callable[[str], Awaitable[CallPeer]]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="session")
def page_bundle() -> Path:
    """Bundle the page (esbuild, about a second) so the test runs today's sources."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to bundle the call page (see .ci/setup)"
    proc = subprocess.run([npm, "--prefix", str(REPO_ROOT / "web"), "run", "--silent", "build"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    bundle = DEFAULT_STATIC_DIR / "dist" / "main.js"
    assert bundle.is_file()
    return bundle


@pytest.fixture
async def server(tmp_path: Path, page_bundle: Path) -> AsyncIterator[RunningServer]:
    db = tmp_path / "db" / "calls.db"
    db.parent.mkdir()
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=db, secret=b"w" * 32,
                                              static_dir=DEFAULT_STATIC_DIR))
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


class BrowserLog:
    """Console errors and uncaught exceptions of the page (none expected), and the rest for diagnostics."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.lines: list[str] = []
        #: console errors expected in a test (e.g. the browser's own note of a refused WebSocket)
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        self.lines.append(f"{message.type}: {message.text}")
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.errors.append(f"console.error: {message.text}")

    def tail(self) -> str:
        return "\n".join(self.lines[-30:])


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, permissions=["camera", "microphone"],
            viewport={"width": 1100, "height": 900})
        try:
            yield context
        finally:
            await context.close()


async def open_page(context: BrowserContext, url: str) -> tuple[Page, BrowserLog]:
    page = await context.new_page()
    log = BrowserLog(page)
    await page.goto(url)
    return page, log


async def join(page: Page, name: str | None = None) -> None:
    """Join from the form (the name prefilled by the page unless given)."""
    if name is not None:
        await page.fill("input[name=name]", name)
    await page.click("button[name=join]")


async def until(predicate: Callable[[], Awaitable[bool]], what: str, log: BrowserLog) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not await predicate():
        assert not log.errors, log.errors
        assert loop.time() < deadline, f"not reached within {BOUND} s: {what}\n{log.tail()}"
        await asyncio.sleep(0.1)


def sink(bot: CallPeer) -> VerifyingSink:
    verifying = bot.sinks[0]
    assert isinstance(verifying, VerifyingSink)
    return verifying


def one_group(page_view: dict[str, Any], bots: list[CallPeer]) -> bool:
    """Browser and bots at one epoch with the same members and verification code."""
    if not page_view:
        return False
    names = sorted([page_view["identity"], *(bot.identity for bot in bots)])
    statuses = [bot.status() for bot in bots]
    return (page_view["members"] == names and page_view["epoch"] is not None
            and all(list(s.members) == names and s.epoch == page_view["epoch"]
                    and s.verification == page_view["verification"] for s in statuses))


def assert_all_sealed(page_view: dict[str, Any], remotes: set[str]) -> None:
    """Every frame the browser's encoders sent to ``remotes`` went through its SFrame transform."""
    assert set(page_view["links"]) == remotes
    for remote, link in page_view["links"].items():
        assert link["failed"] is None, (remote, link)
        for kind in ("audio", "video"):
            counters = link["counters"][kind]
            assert counters["sent"] > 0 and counters["encrypted"] > 0, (remote, kind, counters)
            assert counters["encrypted"] >= counters["sent"] - 15, (remote, kind, counters)


def browser_failures(page_view: dict[str, Any], kind: str) -> int:
    return sum(stream["failures"][kind] for streams in page_view["remotes"].values()
               for stream in streams.values())


async def test_browser_and_bots_hold_one_encrypted_call(
        server: RunningServer, start_bot: StartBot, browser: BrowserContext, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="signaling")
    alice = await start_bot("alice-bot")
    bob = await start_bot("bob-bot")

    page, log = await open_page(browser, f"{server.url}/?room={ROOM}&video=320x240")
    assert await page.input_value("input[name=room]") == ROOM  # prefilled from ?room=
    await join(page, BROWSER)

    # -- one MLS group: the browser (ts-mls) and the bots (Python) ---------------------------
    async def joined() -> bool:
        return one_group(await page_status(page), [alice, bob])
    await until(joined, "the browser in the bots' group, equal epochs and verification codes", log)
    view = await page_status(page)
    assert alice.group is not None and bob.group is not None
    assert view["verification"] == verification_code(alice.group.epoch_authenticator())
    assert alice.group.epoch_authenticator() == bob.group.epoch_authenticator()
    assert await page.text_content(".verify .code") == view["verification"]
    assert await page.is_visible("#call") and not await page.is_visible("#join")
    assert view["epochs"][-1]["cause"] == "welcome"  # added by the committer, alice-bot
    assert view["warnings"] == [] and view["blockedSenders"] == [] and await page.is_hidden(".warnings")

    async def labelled() -> bool:  # tiles name each participant's MLS leaf (alice-bot created the group)
        return await page.text_content('.tile[data-identity="alice-bot"] .leaf') == "leaf 0"
    await until(labelled, "alice-bot's tile labelled with its MLS leaf", log)

    # -- the bots decode the browser's fake camera (and microphone) --------------------------
    async def bots_decode() -> bool:
        return all(sink(bot).frames(BROWSER, kind) >= 30 for bot in (alice, bob) for kind in ("video", "audio"))
    await until(bots_decode, "30 decoded frames of each kind from the browser at both bots", log)
    for bot in (alice, bob):
        stats = bot.links[BROWSER].stats()
        assert stats.frames_decrypted >= 60
        assert stats.failures[FailureKind.AUTHENTICATION] == 0 and stats.failures[FailureKind.MALFORMED] == 0

    assert_all_sealed(await page_status(page), {"alice-bot", "bob-bot"})
    pairs = await page.evaluate(SUCCEEDED_PAIRS)
    assert {remote for remote, *_ in pairs} == {"alice-bot", "bob-bot"}
    assert all(address in ("127.0.0.1", "::1") for _, *addresses in pairs for address in addresses), pairs

    # -- the browser renders the bots' test pattern, counter advancing -----------------------
    remotes = ["alice-bot", "bob-bot"]

    async def rendering() -> bool:
        tiles = await page.evaluate(READ_TILES, remotes)
        return all(tile is not None and tile["counter"] is not None for tile in tiles.values())
    await until(rendering, "the bots' counters readable in the rendered tiles", log)
    first = await page.evaluate(READ_TILES, remotes)
    await asyncio.sleep(1.0)
    second = await page.evaluate(READ_TILES, remotes)
    for name in remotes:
        before, after = first[name], second[name]
        assert after["counter"] is not None and after["counter"] > before["counter"], (name, before, after)
        assert after["mean"] > 40, (name, after)  # not black
        assert after["hash"] != before["hash"], (name, before, after)  # not frozen
        assert (after["width"], after["height"]) == (96, 64)

    # -- an MLS application message: ciphertext for the server, plaintext for members --------
    await page.fill("input[name=message]", MARKER)
    await page.click(".compose button")

    async def sent() -> bool:
        return any(m["text"] == MARKER for m in (await page_status(page))["messages"])
    await until(sent, "the page's message sent", log)
    entries = [e for e in await server.server.store.read_log(ROOM, "bob-bot")
               if e.kind == "application" and e.sender == BROWSER]
    assert len(entries) == 1
    ciphertext = entries[0].body


    async def bob_reads() -> bool:  # a member reads it, from the MLS-authenticated sender
        return any(c.sender == BROWSER and c.text == MARKER.encode() for c in bob.chat)
    await until(bob_reads, "bob-bot's membership machine shows the page's message from carla", log)
    stored = b"".join(path.read_bytes() for path in (tmp_path / "db").iterdir() if path.is_file())
    assert ciphertext in stored  # the files hold the message...
    assert MARKER.encode() not in stored  # ...encrypted only
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("signaling"))
    assert f"application room={ROOM}" in server_log
    assert MARKER not in server_log

    # -- a bot joins, another leaves: the browser keeps decrypting ---------------------------
    carol = await start_bot("carol-bot")

    async def four() -> bool:
        return one_group(await page_status(page), [alice, bob, carol])
    await until(four, "carol-bot added: one group of four", log)
    after_join = await page_status(page)
    await alice.stop()

    async def three() -> bool:
        return one_group(await page_status(page), [bob, carol])
    await until(three, "alice-bot removed: one group of three", log)
    after_leave = await page_status(page)
    assert after_leave["epoch"] == after_join["epoch"] + 1
    final_epoch = str(after_leave["epoch"])

    async def decrypting() -> bool:
        view = await page_status(page)
        return all(browser_decrypted(view, name) >= browser_decrypted(after_leave, name) + 30
                   and view["remotes"][name]["video"]["byEpoch"].get(final_epoch, 0) > 0
                   for name in ("bob-bot", "carol-bot"))
    await until(decrypting, "the browser decrypting bob-bot and carol-bot in the final epoch", log)
    view = await page_status(page)
    assert browser_decrypted(view, "bob-bot") > browser_decrypted(after_join, "bob-bot")
    assert browser_failures(view, "authentication") == 0 and browser_failures(view, "syntax") == 0
    assert view["framesDropped"] == 0 and view["sendingEpoch"] == view["epoch"]
    assert_all_sealed(view, {"bob-bot", "carol-bot"})
    for bot in (bob, carol):
        stats = bot.links[BROWSER].stats()
        assert stats.failures[FailureKind.AUTHENTICATION] == 0
        assert any(r.frames_by_epoch.get(view["epoch"], 0) > 0 for r in stats.receivers)

    # -- the screenshot: three participants, every stream indicator green --------------------
    async def green() -> bool:
        classes = await page.eval_on_selector_all(
            ".tile:not(.local) .badge", "badges => badges.map(b => b.className)")
        return len(classes) == 4 and all(c == "badge ok" for c in classes)
    await until(green, "every stream indicator of the two remote tiles green", log)
    assert await page.locator(".tile").count() == 3
    assert await page.text_content(".bar .epoch") == f"epoch {view['epoch']}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "web-call.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of the call page: {screenshot}")

    # -- leaving: the bots see the browser go and remove it ---------------------------------
    await page.click("button.leave")

    async def left() -> bool:
        return (await page.is_visible("#join") and not await page.is_visible("#call")
                and BROWSER not in bob.status().present
                and list(bob.status().members) == ["bob-bot", "carol-bot"])
    await until(left, "the browser left and was removed from the group", log)
    assert not log.errors, log.errors


async def test_browser_commits_adds_and_removes(
        server: RunningServer, start_bot: StartBot, browser: BrowserContext) -> None:
    """The browser first in the room: it creates the group and, as the member
    with the lowest leaf index, commits the bots' Adds and a Remove.  It is
    already sending when the bots arrive: bob-bot offers to it ("bob-bot" <
    "carla"), it offers to dave-bot."""
    page, log = await open_page(browser, f"{server.url}/?room={ROOM}&video=320x240")
    await join(page, BROWSER)

    async def created() -> bool:
        view = await page_status(page)
        return bool(view) and view["epoch"] == 0 and view["members"] == [BROWSER]
    await until(created, "the browser's group created", log)
    bob = await start_bot("bob-bot")
    dave = await start_bot("dave-bot")

    async def three() -> bool:
        return one_group(await page_status(page), [bob, dave])
    await until(three, "both bots added by the browser", log)
    view = await page_status(page)
    causes = [e["cause"] for e in view["epochs"]]
    assert causes[0] == "create" and set(causes[1:]) == {"own"} and view["conflicts"] == 0
    assert [e.cause for e in bob.epochs][0] == "welcome" and [e.cause for e in dave.epochs][0] == "welcome"

    async def flowing() -> bool:
        view = await page_status(page)
        return all(sink(bot).frames(BROWSER, "video") >= 20 and browser_decrypted(view, bot.identity) >= 20
                   for bot in (bob, dave))
    await until(flowing, "video both ways between the browser and each bot", log)
    view = await page_status(page)
    assert {remote: link["offerer"] for remote, link in view["links"].items()} == {"bob-bot": False, "dave-bot": True}
    assert_all_sealed(view, {"bob-bot", "dave-bot"})
    for bot in (bob, dave):
        failures = bot.links[BROWSER].stats().failures
        assert failures[FailureKind.AUTHENTICATION] == 0 and failures[FailureKind.MALFORMED] == 0
        # the page sent each bot nothing before adding it, then only under its Welcome's epoch
        assert failures[FailureKind.UNKNOWN_KID] == 0 and failures[FailureKind.HELD_EXPIRED] == 0, failures
    pairs = await page.evaluate(SUCCEEDED_PAIRS)
    assert pairs and all(address in ("127.0.0.1", "::1") for _, *addresses in pairs for address in addresses)

    await dave.stop()

    async def two() -> bool:
        return one_group(await page_status(page), [bob])
    await until(two, "dave-bot removed by the browser", log)
    removed = await page_status(page)
    assert removed["epochs"][-1]["cause"] == "own" and removed["epochs"][-1]["members"] == 2

    async def decrypting() -> bool:
        view = await page_status(page)
        return view["remotes"]["bob-bot"]["video"]["byEpoch"].get(str(removed["epoch"]), 0) >= 20
    await until(decrypting, "the browser decrypting bob-bot in the final epoch", log)
    view = await page_status(page)
    assert browser_failures(view, "authentication") == 0 and view["framesDropped"] == 0
    assert bob.links[BROWSER].stats().failures[FailureKind.AUTHENTICATION] == 0
    assert not log.errors, log.errors


@pytest.mark.e2e
async def test_demo_page_joins_the_bots(page_bundle: Path, browser: BrowserContext) -> None:
    """The README's first command, ``mlscall demo``: the address it prints
    serves the page, and the page joins the two bots' call."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.cli", "demo", "--port", "0", "--duration", "60", "--self-update", "600",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert demo.stdout is not None
        address = None
        async with asyncio.timeout(BOUND):
            while address is None:
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo ended before printing the page address"
                found = re.search(r"Open (http://127\.0\.0\.1:\d+/\?room=demo) in a browser", line)
                address = found.group(1) if found else None
        page, log = await open_page(browser, address + "&video=320x240")
        name = await page.input_value("input[name=name]")
        assert name.startswith("guest-")  # prefilled: one click joins
        await join(page)

        async def in_call() -> bool:
            view = await page_status(page)
            return (bool(view) and view["members"] == sorted(["alice-bot", "bob-bot", name])
                    and view["sendingEpoch"] == view["epoch"]
                    and all(browser_decrypted(view, bot) >= 20 for bot in ("alice-bot", "bob-bot")))
        await until(in_call, "the page in the demo's group, decrypting both bots", log)
        view = await page_status(page)
        assert browser_failures(view, "authentication") == 0
        # the page tries to rejoin the server that is going away: the browser notes each refusal
        log.allowed.append(re.compile(r"WebSocket connection to '.*' failed"))
        demo.send_signal(signal.SIGINT)  # the demo ends and prints each bot's summary
        async with asyncio.timeout(BOUND):
            output = (await demo.stdout.read()).decode()
            assert await demo.wait() == 0
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    codes = re.findall(r"summary for (\S+):\n(?:  .*\n)*?  verification:\s+([\d ]+)\n", output)
    assert codes == [("alice-bot", view["verification"]), ("bob-bot", view["verification"])]
    assert not log.errors, log.errors


async def test_page_survives_a_server_restart(
        page_bundle: Path, browser: BrowserContext, tmp_path: Path) -> None:
    """The signaling server stops mid-call and starts again on the same port
    with the same database.  The page's membership machine rejoins with its
    log cursor (``since``) and stays in the same group; media, peer to peer,
    goes on decrypting; after the restart the group still changes (a third
    bot is added) with the page following."""
    db = tmp_path / "db" / "calls.db"
    db.parent.mkdir()

    def config(port: int) -> ServerConfig:
        return ServerConfig(host="127.0.0.1", port=port, db_path=db, secret=b"r" * 32,
                            static_dir=DEFAULT_STATIC_DIR)

    running = await start_server(config(0))
    bots: list[CallPeer] = []

    async def start(identity: str) -> CallPeer:
        token = running.server.tokens.mint(ROOM, identity, 600)
        bot = CallPeer(running.ws_url, ROOM, token, sinks=[VerifyingSink()],
                       options=CallOptions(reconnect_timeout=BOUND))
        bots.append(bot)
        await bot.start()
        return bot

    try:
        alice = await start("alice-bot")
        bob = await start("bob-bot")
        page, log = await open_page(browser, f"{running.url}/?room={ROOM}&video=320x240")
        # the browser's own console note of a WebSocket refused while the server is down
        log.allowed.append(re.compile(r"WebSocket connection to '.*' failed"))
        await join(page, BROWSER)

        async def joined() -> bool:
            return one_group(await page_status(page), [alice, bob])
        await until(joined, "the browser in the bots' group", log)

        async def decrypting_both() -> bool:
            view = await page_status(page)
            return all(browser_decrypted(view, name) >= 20 for name in ("alice-bot", "bob-bot"))
        await until(decrypting_both, "the browser decrypting both bots", log)
        before = await page_status(page)
        assert before["reconnects"] == 0 and before["connected"]

        # -- the server goes away and comes back on the same port, same database -------------
        port = running.port
        await running.close()

        async def disconnected() -> bool:
            return not (await page_status(page))["connected"]
        await until(disconnected, "the page sees the signaling connection drop", log)
        running = await start_server(config(port))

        async def back() -> bool:
            view = await page_status(page)
            return (view["connected"] and view["reconnects"] >= 1 and not view["ended"]
                    and all(bot.client.connected for bot in (alice, bob))
                    and sorted(view["present"]) == ["alice-bot", "bob-bot"])
        await until(back, "the page and the bots rejoined the restarted server", log)
        after = await page_status(page)
        assert after["groupId"] == before["groupId"] and after["epoch"] == before["epoch"]
        assert one_group(after, [alice, bob])
        assert not after["removed"] and after["warnings"] == []

        async def still_decrypting() -> bool:
            view = await page_status(page)
            epoch = str(view["epoch"])
            return all(browser_decrypted(view, name) >= browser_decrypted(after, name) + 30
                       and view["remotes"][name]["video"]["byEpoch"].get(epoch, 0) > 0
                       for name in ("alice-bot", "bob-bot"))
        await until(still_decrypting, "the bots' video still decrypting in the page after the restart", log)

        # -- the restarted server sequences the next commit; the page follows ----------------
        carol = await start("carol-bot")

        async def four() -> bool:
            return one_group(await page_status(page), [alice, bob, carol])
        await until(four, "carol-bot added after the restart: one group of four", log)
        view = await page_status(page)
        assert view["groupId"] == before["groupId"] and view["epoch"] == before["epoch"] + 1
        assert browser_failures(view, "authentication") == 0 and browser_failures(view, "syntax") == 0
        assert not log.errors, log.errors
    finally:
        for bot in bots:
            await bot.stop()
        await running.close()
