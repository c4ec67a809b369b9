"""The call page in headless Firefox ESR with aiortc bots, end to end on 127.0.0.1.

The same call as tests/web/test_web_call.py's first test, in Debian's
``firefox-esr`` instead of Chromium: the signaling server (in process,
ephemeral port) serves the page, two :class:`media.call_peer.CallPeer` bots
and the browser form one MLS group, SFrame-encrypted media flows both ways
(the bots' frame counters read from the pixels of the page's tiles), an MLS
application message typed into the page reaches a bot, and the browser
leaves. Firefox is driven by web/test/firefox-driver.mjs (puppeteer-core
over WebDriver BiDi; no browser download, no geckodriver), which mirrors the
few Playwright Page methods the Chromium test's helpers use, so both tests
share those helpers and checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_web_call import (  # noqa: F401 (page_bundle, server and start_bot are fixtures)
    BROWSER,
    MARKER,
    READ_TILES,
    ROOM,
    BrowserLog,
    StartBot,
    assert_all_sealed,
    browser_decrypted,
    browser_failures,
    join,
    one_group,
    page_bundle,
    page_status,
    server,
    sink,
    start_bot,
    until,
)

from media.stats import FailureKind
from media.verification import verification_code
from signaling.server import RunningServer

from conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIREFOX = Path("/usr/bin/firefox-esr")
DRIVER = REPO_ROOT / "web" / "test" / "firefox-driver.mjs"
BOUND = 60.0  # seconds for Firefox to start (a bound, not a measurement)


class FirefoxPage:
    """One Firefox page behind web/test/firefox-driver.mjs, with the Playwright
    ``Page`` methods test_web_call's helpers call (awaitables of the same names)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.version = ""
        self._ids = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._handlers: dict[str, list[Callable[[Any], None]]] = {"console": [], "pageerror": []}
        self._ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            event = message.get("event")
            if event == "ready":
                self._ready.set_result(message["version"])
            elif event == "console":
                for handler in self._handlers["console"]:
                    handler(SimpleNamespace(type=message["type"], text=message["text"]))
            elif event == "pageerror":
                for handler in self._handlers["pageerror"]:
                    handler(message["text"])
            else:
                future = self._waiting.pop(message["id"])
                if message["ok"]:
                    future.set_result(message["value"])
                else:
                    future.set_exception(AssertionError(f"firefox-driver: {message['error']}"))
        for future in [self._ready, *self._waiting.values()]:
            if not future.done():
                future.set_exception(AssertionError("firefox-driver ended"))

    async def ready(self) -> str:
        async with asyncio.timeout(BOUND):
            self.version = await self._ready
        return self.version

    def on(self, event: str, handler: Callable[[Any], None]) -> None:
        self._handlers[event].append(handler)

    async def _call(self, op: str, *args: Any) -> Any:
        assert self.process.stdin is not None
        self._ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._ids] = future
        self.process.stdin.write(json.dumps({"id": self._ids, "op": op, "args": list(args)}).encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(BOUND):
            return await future

    async def goto(self, url: str) -> None:
        await self._call("goto", url)

    async def fill(self, selector: str, value: str) -> None:
        await self._call("fill", selector, value)

    async def click(self, selector: str) -> None:
        await self._call("click", selector)

    async def evaluate(self, source: str, arg: Any = None) -> Any:
        return await self._call("evaluate", source, arg)

    async def input_value(self, selector: str) -> str:
        value: str = await self._call("inputValue", selector)
        return value

    async def is_visible(self, selector: str) -> bool:
        return bool(await self._call("isVisible", selector))

    async def text_content(self, selector: str) -> str:
        value: str = await self._call("textContent", selector)
        return value

    async def close(self) -> None:
        assert self.process.stdin is not None
        if self.process.returncode is None:
            self.process.stdin.write(b'{"op": "close"}\n')
            await self.process.stdin.drain()
            try:
                async with asyncio.timeout(BOUND):
                    await self.process.wait()
            except TimeoutError:  # the driver's group: node and the Firefox it started
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        await self._reader


@pytest.fixture
async def firefox(tmp_path: Path) -> AsyncIterator[FirefoxPage]:
    node = shutil.which("node")
    assert node is not None, "node is needed to drive Firefox (see .ci/setup)"
    assert FIREFOX.is_file(), f"{FIREFOX} is missing: .ci/setup installs Debian's firefox-esr"
    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    process = await asyncio.create_subprocess_exec(
        node, str(DRIVER), str(profile), cwd=REPO_ROOT / "web",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True)
    page = FirefoxPage(process)
    try:
        yield page
    finally:
        await page.close()


async def test_firefox_and_bots_hold_one_encrypted_call(
        server: RunningServer, start_bot: StartBot, firefox: FirefoxPage) -> None:  # noqa: F811
    assert (await firefox.ready()).startswith("firefox/")
    page = firefox
    log = BrowserLog(page)  # type: ignore[arg-type]
    alice = await start_bot("alice-bot")
    bob = await start_bot("bob-bot")

    await page.goto(f"{server.url}/?room={ROOM}&video=320x240")
    assert await page.input_value("input[name=room]") == ROOM
    await join(page, BROWSER)  # type: ignore[arg-type]

    # -- one MLS group: Firefox (ts-mls) and the bots (Python) -------------------------------
    async def joined() -> bool:
        return one_group(await page_status(page), [alice, bob])  # type: ignore[arg-type]
    await until(joined, "Firefox in the bots' group, equal epochs and verification codes", log)
    view = await page_status(page)  # type: ignore[arg-type]
    assert alice.group is not None
    assert view["verification"] == verification_code(alice.group.epoch_authenticator())
    assert await page.text_content(".verify .code") == view["verification"]
    assert await page.is_visible("#call") and not await page.is_visible("#join")

    # -- the bots decrypt and decode Firefox's fake camera and microphone --------------------
    async def bots_decode() -> bool:
        return all(sink(bot).frames(BROWSER, kind) >= 30 for bot in (alice, bob) for kind in ("video", "audio"))
    await until(bots_decode, "30 decoded frames of each kind from Firefox at both bots", log)
    for bot in (alice, bob):
        failures = bot.links[BROWSER].stats().failures
        assert failures[FailureKind.AUTHENTICATION] == 0 and failures[FailureKind.MALFORMED] == 0
    assert_all_sealed(await page_status(page), {"alice-bot", "bob-bot"})  # type: ignore[arg-type]

    # -- Firefox decrypts and renders the bots' test pattern, counter advancing --------------
    remotes = ["alice-bot", "bob-bot"]

    async def rendering() -> bool:
        tiles = await page.evaluate(READ_TILES, remotes)
        return all(tile is not None and tile["counter"] is not None for tile in tiles.values())
    await until(rendering, "the bots' counters readable in Firefox's tiles", log)
    first = await page.evaluate(READ_TILES, remotes)
    await asyncio.sleep(1.0)
    second = await page.evaluate(READ_TILES, remotes)
    view = await page_status(page)  # type: ignore[arg-type]
    for name in remotes:
        before, after = first[name], second[name]
        assert after["counter"] > before["counter"], (name, before, after)
        assert after["hash"] != before["hash"], (name, before, after)  # not frozen
        assert browser_decrypted(view, name) > 0
    assert browser_failures(view, "authentication") == 0 and browser_failures(view, "syntax") == 0

    async def badges_say_encrypted() -> bool:
        texts = [await page.text_content(f'.tile[data-identity="{name}"] .badge[data-kind="video"]')
                 for name in remotes]
        return texts == ["video encrypted", "video encrypted"]
    await until(badges_say_encrypted, "each remote tile's video indicator saying it decrypts", log)

    # -- chat: an MLS application message from Firefox, read by a bot ------------------------
    await page.fill("input[name=message]", MARKER)
    await page.click(".compose button")

    async def sent() -> bool:
        return any(m["text"] == MARKER for m in (await page_status(page))["messages"])  # type: ignore[arg-type]
    await until(sent, "Firefox's message sent", log)
    entries = [e for e in await server.server.store.read_log(ROOM, "bob-bot")
               if e.kind == "application" and e.sender == BROWSER]
    assert len(entries) == 1 and MARKER.encode() not in entries[0].body  # the server holds ciphertext

    async def bots_read() -> bool:
        return all(any(c.sender == BROWSER and c.text == MARKER.encode() for c in bot.chat) for bot in (alice, bob))
    await until(bots_read, "both bots read Firefox's message, MLS-authenticated as its sender", log)
    alice.send_chat("hello from alice-bot")

    async def page_reads() -> bool:
        messages = (await page_status(page))["messages"]  # type: ignore[arg-type]
        return any(m["from"] == "alice-bot" and m["text"] == "hello from alice-bot" for m in messages)
    await until(page_reads, "Firefox reads alice-bot's message", log)

    # -- leaving: the bots see Firefox go and remove it from the group -----------------------
    await page.click("button.leave")

    async def left() -> bool:
        return (await page.is_visible("#join") and not await page.is_visible("#call")
                and BROWSER not in bob.status().present
                and list(bob.status().members) == ["alice-bot", "bob-bot"])
    await until(left, "Firefox left and was removed from the group", log)
    assert not log.errors, log.errors
