"""``mlscall bot`` end to end: a server process, the bot process, and an
in-process call peer talking to it over 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from media.call_peer import CallPeer
from media.sinks import TrackReport, VerifyingSink
from media.stats import FailureKind
from signaling.client import fetch_token

from conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOM = "bots"
BOUND = 60.0  # seconds before a wait gives up (a bound, not a measurement)


async def mlscall(*args: str, stdout: int | None = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.cli", *args, cwd=REPO_ROOT,
        stdout=stdout, stderr=asyncio.subprocess.PIPE)


def field(summary: str, name: str) -> int:
    match = re.search(rf"^  {name}:\s+(\d+)", summary, re.MULTILINE)
    assert match, (name, summary)
    return int(match.group(1))


async def test_bot_joins_streams_and_prints_its_summary(tmp_path: Path) -> None:
    server = await mlscall("serve", "--host", "127.0.0.1", "--port", "0", "--db", str(tmp_path / "s.db"),
                           "--static", str(tmp_path / "no-static"))
    alice: CallPeer | None = None
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), BOUND)).decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        token = await fetch_token(url, ROOM, "alice")
        alice = CallPeer(url.replace("http://", "ws://") + "/ws", ROOM, token, sinks=[VerifyingSink()])
        await alice.start()

        record = tmp_path / "call.mp4"
        bot = await mlscall("bot", "--server", url, "--room", ROOM, "--name", "bot", "--duration", "4",
                            "--record", str(record))
        out, err = await asyncio.wait_for(bot.communicate(), BOUND)
        summary, status = out.decode(), err.decode()
        assert bot.returncode == 0, status

        assert summary.startswith("summary for bot:"), summary
        assert field(summary, "frames sent") > 0
        decrypted = field(summary, "frames decrypted")
        assert field(summary, "frames received") >= decrypted > 0
        assert field(summary, "frames decoded") > 0
        assert re.search(r"^  failures:\s+\d+ \(unknown_kid \d+, authentication 0, replay 0, malformed 0, held_expired 0\)$",
                         summary, re.MULTILINE), summary
        assert re.search(r"^  epochs seen:\s+1 \(welcome, 2 members\)", summary, re.MULTILINE), summary
        assert "bot: 2 in room, 2 in group, epoch 1 |" in status  # the live status line
        assert (tmp_path / "call-alice.mp4").stat().st_size > 0
        assert f"recorded:         {tmp_path / 'call-alice.mp4'}" in summary

        # alice received the bot's pattern: decrypted, decoded, no gap after the first keyframe
        sink = alice.sinks[0]
        assert isinstance(sink, VerifyingSink)
        reports: dict[str, TrackReport] = {}
        for remote, report in sink.all_reports():
            assert remote == "bot"
            reports[report.kind] = report
        assert reports["video"].frames > 0 and reports["audio"].frames > 0
        assert reports["video"].missing == 0 and reports["video"].unreadable == 0
        assert alice.status().failures[FailureKind.AUTHENTICATION] == 0
    finally:
        if alice is not None:
            await alice.stop()
        server.terminate()
        await asyncio.wait_for(server.wait(), BOUND)
