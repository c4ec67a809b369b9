"""A private redis-server for tests: Debian's ``/usr/bin/redis-server`` on 127.0.0.1.

Each :class:`RedisServer` listens on a free loopback port (no other address, no
Unix socket), keeps its files in a directory of its own, writes an append-only
file (``appendonly yes``, ``appendfsync always`` unless told otherwise) and
never an RDB snapshot (``save ''``). It is stopped by its process id, never by
name; :meth:`RedisServer.kill` SIGKILLs it and :meth:`RedisServer.start` brings
it back on the same directory and port, which is how the durability tests
check what an acknowledged write survives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = "/usr/bin/redis-server"
#: seconds a start or stop may take before the launcher gives up (a bound, not a measurement)
BOUND = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _PortTaken(Exception):
    """The port chosen for a first start was taken meanwhile."""


class RedisServer:
    """One redis-server process on 127.0.0.1, its data under ``directory``."""

    def __init__(self, directory: Path, *, appendfsync: str = "always", port: int | None = None) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = free_port() if port is None else port
        #: a port of our choosing may be taken by another program before the first start: then
        #: another is chosen; once started, or when the caller chose it, the port stays
        self._port_fixed = port is not None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the server (again, on the same directory and port) and wait until it answers."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("redis-server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                self._start_once()
            except _PortTaken:
                self.port = free_port()
                continue
            self._port_fixed = True
            return
        raise RuntimeError("redis-server found no free port")

    def _start_once(self) -> None:
        log = self.directory / "redis.log"
        log.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--unixsocket", "",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", self.appendfsync,
             "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + BOUND
        while not self._answers():
            if self._process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                if "Address already in use" in tail and not self._port_fixed:
                    raise _PortTaken(self.port)
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {BOUND} s")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Whether the server answers PING (and has loaded its append-only file)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the server (it flushes its append-only file) and wait for it to exit."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server: nothing gets flushed that was not already."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=BOUND)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
