"""The signaling server of a stress run, as a process it can kill and restart.

:class:`ServerProcess` runs ``python -m media.cli serve`` on 127.0.0.1 with
a database in a directory of its own, reads the ``listening on URL`` line,
and can be killed with SIGKILL (no clean shutdown: whatever was not durable
is lost, as after a crash) and restarted on the same database and port.
Given a Janus (``sfu``), the server sends the room's media through it
(issue 16).
Tokens are minted from the server's secret file, which survives restarts,
so participants can be given tokens while the server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import IO

from signaling.tokens import TokenAuthority, load_or_create_secret

from ..errors import MediaError

REPO_ROOT = Path(__file__).resolve().parents[2]
#: bound of a start (seconds)
START_TIMEOUT = 30.0
TOKEN_TTL = 3600


class ServerStartError(MediaError):
    """The server process did not start listening."""


class ServerProcess:
    """``mlscall serve`` as a child process on 127.0.0.1."""

    def __init__(self, directory: Path, *, port: int = 0, log_level: str = "warning",
                 sfu: str | None = None, sfu_above: int = 0) -> None:
        """``sfu``: the Janus HTTP API base the server sends rooms through once
        more than ``sfu_above`` participants are connected (``mlscall serve
        --sfu URL --sfu-above N``); None for mesh calls only."""
        self.directory = directory
        self.sfu = sfu
        self.sfu_above = sfu_above
        self.db = directory / "stress.db"
        self.port = port
        self.log_level = log_level
        self.url: str | None = None
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._tokens: TokenAuthority | None = None

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, starts={self.starts}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def ws_url(self) -> str:
        assert self.url is not None
        return self.url.replace("http://", "ws://", 1) + "/ws"

    def mint(self, room: str, identity: str) -> str:
        """A token for ``identity`` in ``room``, signed with the server's secret."""
        if self._tokens is None:
            self._tokens = TokenAuthority(load_or_create_secret(Path(f"{self.db}.secret")))
        return self._tokens.mint(room, identity, TOKEN_TTL)

    async def start(self) -> str:
        """Start (again, on the same port once known); the base URL."""
        if self.running:
            raise ServerStartError("the server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        static = self.directory / "no-static"
        static.mkdir(exist_ok=True)
        sfu = [] if self.sfu is None else ["--sfu", self.sfu, "--sfu-above", str(self.sfu_above)]
        if self._log is None:
            self._log = open(self.directory / "server.log", "ab")  # noqa: SIM115 (closed in stop)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.cli", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--db", str(self.db), "--static", str(static),
            "--log-level", self.log_level, *sfu,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=self._log,
            stdin=asyncio.subprocess.DEVNULL)
        assert self._process.stdout is not None
        try:
            line = (await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT)).decode()
        except TimeoutError:
            await self.kill()
            raise ServerStartError(f"no 'listening on' line within {START_TIMEOUT:g} s") from None
        if not line.startswith("listening on http://"):
            await self.kill()
            raise ServerStartError(f"the server did not start (see {self.directory / 'server.log'})")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.starts += 1
        return self.url

    async def kill(self) -> None:
        """SIGKILL the process (its PID only) and reap it."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), START_TIMEOUT)

    async def restart(self, down: float) -> str:
        """SIGKILL, stay down ``down`` seconds, start on the same database and port."""
        await self.kill()
        await asyncio.sleep(down)
        return await self.start()

    async def stop(self) -> None:
        """End the process cleanly (SIGTERM, then SIGKILL after a bound)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10.0)
            except TimeoutError:
                await self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
