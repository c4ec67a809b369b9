"""Where the peers of a stress run live: in the run's process
(:class:`LocalPeer`) or in worker processes (:class:`RemotePeer` through a
:class:`WorkerProcess`, see :mod:`media.stress.worker`).  The driver
(:mod:`media.stress.run`) sees the same handle either way: start, end (leave
or crash), ask for a self-update or a crash after the next commit, and a
:class:`PeerView` of the peer's state (for a remote peer, the worker's
latest, at most :data:`media.stress.worker.STATE_INTERVAL` old).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any, Protocol

from ..call_peer import CallOptions
from ..errors import MediaError
from ..sinks import VerifyingSink
from ..transform import HoldLimits
from .peer import Ledger, ObservedPeer, PeerTotals, PeerTraffic, PeerView, counting_sources
from .server import REPO_ROOT
from .channel import WorkerSetup, read_message, write_message

logger = logging.getLogger(__name__)

#: added to a remote request's own bound (the worker answers after it)
MARGIN = 5.0


class WorkerError(MediaError):
    """A worker process failed, or a peer it hosts could not start."""


class PeerHandle(Protocol):
    identity: str

    async def start(self, timeout: float) -> None: ...

    async def end(self, how: str, timeout: float) -> PeerTotals: ...

    def view(self) -> PeerView: ...

    def totals(self) -> PeerTotals: ...

    def request_self_update(self) -> None: ...

    def crash_after_next_commit(self) -> None: ...


class LocalPeer:
    """A peer in the run's own process."""

    def __init__(self, identity: str, peer: ObservedPeer) -> None:
        self.identity = identity
        self.peer = peer

    @classmethod
    def create(cls, identity: str, ledger: Ledger, ws_url: str, room: str, token: str,
               options: CallOptions, hold: HoldLimits | None = HoldLimits()) -> LocalPeer:
        return cls(identity, ObservedPeer(ledger, ws_url, room, token, name=identity,
                                          sources=counting_sources(), sinks=[VerifyingSink()],
                                          options=options, hold=hold))

    async def start(self, timeout: float) -> None:
        await asyncio.wait_for(self.peer.start(), timeout)

    async def end(self, how: str, timeout: float) -> PeerTotals:
        return await self.peer.end(how, timeout)

    def view(self) -> PeerView:
        return self.peer.view()

    def totals(self) -> PeerTotals:
        return self.peer.totals()

    def request_self_update(self) -> None:
        self.peer.request_self_update()

    def crash_after_next_commit(self) -> None:
        self.peer.crash_after_next_commit()

    async def traffic(self) -> PeerTraffic:
        return await self.peer.traffic()


class WorkerProcess:
    """``python -m media.stress.worker`` as a child process, and its peers' views."""

    def __init__(self, index: int, setup: WorkerSetup, ledger: Ledger) -> None:
        self.index = index
        self.setup = setup
        self.ledger = ledger
        #: identity -> the worker's latest view of that peer
        self.views: dict[str, PeerView] = {}
        #: identities of the peers it hosts (started or starting, not ended)
        self.hosted: set[str] = set()
        self._process: asyncio.subprocess.Process | None = None
        self._answers: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._traffic_requests = 0

    def __repr__(self) -> str:
        pid = None if self._process is None else self._process.pid
        return f"WorkerProcess({self.index}, pid={pid}, peers={len(self.hosted)})"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def traffic(self, timeout: float) -> list[PeerTraffic]:
        """A :class:`PeerTraffic` of each peer it hosts."""
        self._traffic_requests += 1  # names the request: two may be under way
        answer = await self.request("traffic", "traffic", f"traffic-{self._traffic_requests}", timeout)
        traffic: list[PeerTraffic] = answer["traffic"]
        return traffic

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.stress.worker", cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self._send(self.setup)
        self._reader = asyncio.ensure_future(self._read())

    def _send(self, message: Any) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise WorkerError(f"worker {self.index} is not running")
        write_message(process.stdin, message)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while (message := await read_message(stdout)) is not None:
            op = message["op"]
            if op == "state":
                self.views.update(message["views"])
                self.ledger.merge(message["ledger"])
            else:
                if op == "ended":
                    self.views.pop(message["identity"], None)
                answer = self._answers.pop((op, message["identity"]), None)
                if answer is not None and not answer.done():
                    answer.set_result(message)
        if not self._stopping:
            logger.warning("worker %d exited", self.index)
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(WorkerError(f"worker {self.index} exited"))
        self._answers.clear()

    async def request(self, op: str, answer: str, identity: str, timeout: float,
                      **fields: Any) -> dict[str, Any]:
        """Send a command and wait (bounded) for its answer."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[(answer, identity)] = future
        self._send({"op": op, "identity": identity, "timeout": timeout, **fields})
        try:
            return await asyncio.wait_for(future, timeout + MARGIN)
        except TimeoutError:
            raise WorkerError(f"worker {self.index}: no answer to {op} {identity}") from None
        finally:
            self._answers.pop((answer, identity), None)

    def command(self, op: str, identity: str) -> None:
        """Send a command that has no answer."""
        self._send({"op": op, "identity": identity})

    async def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to end its peers and exit; SIGKILL (its PID) after ``timeout``."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        if process.returncode is None:
            with contextlib.suppress(WorkerError, ConnectionError):
                self._send({"op": "quit"})
                assert process.stdin is not None
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                logger.warning("worker %d did not exit within %g s: killed", self.index, timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5.0)


class RemotePeer:
    """A peer hosted by a :class:`WorkerProcess`."""

    def __init__(self, identity: str, worker: WorkerProcess, token: str, options: CallOptions) -> None:
        self.identity = identity
        self.worker = worker
        self._token = token
        self._options = options
        worker.hosted.add(identity)

    async def start(self, timeout: float) -> None:
        answer = await self.worker.request("join", "joined", self.identity, timeout,
                                           token=self._token, options=self._options)
        if answer["error"] is not None:
            raise WorkerError(f"{self.identity} did not start: {answer['error']}")

    async def end(self, how: str, timeout: float) -> PeerTotals:
        try:
            answer = await self.worker.request("end", "ended", self.identity, timeout, how=how)
        finally:
            self.worker.hosted.discard(self.identity)
        totals: PeerTotals | None = answer["totals"]
        return totals if totals is not None else self.totals()

    def view(self) -> PeerView:
        view = self.worker.views.get(self.identity)
        return view if view is not None else PeerView(self.identity, None, {}, None, 0, False, None)

    def totals(self) -> PeerTotals:
        view = self.view()
        return PeerTotals(0, view.frames_decrypted, view.frames_decrypted, None, 0, view.epoch)

    def request_self_update(self) -> None:
        with contextlib.suppress(WorkerError):
            self.worker.command("update", self.identity)

    def crash_after_next_commit(self) -> None:
        with contextlib.suppress(WorkerError):
            self.worker.command("crash_after_commit", self.identity)
