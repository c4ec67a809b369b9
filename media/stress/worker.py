"""A worker process of a stress run: it hosts some of the run's call peers.

One Python process cannot carry many aiortc peers: at 8 peers (56
RTCPeerConnections) its event loop is saturated and frames wait in queues
for seconds.  ``mlscall stress --processes K`` therefore spreads the peers
over K workers (``python -m media.stress.worker``), each with its own event
loop, while the run's process only drives and records
(:mod:`media.stress.hosts`).

Protocol, over the worker's stdin and stdout (length-prefixed pickles of
plain dicts; both ends are this program, the pipe never leaves the
machine): the run sends a :class:`WorkerSetup` first, then commands
``join``, ``end``, ``update``, ``crash_after_commit``, ``traffic`` and
``quit``; the worker answers ``joined``, ``ended`` and ``traffic`` (a
:class:`PeerTraffic` of each of its peers) and, every :data:`STATE_INTERVAL`
seconds and before each answer, sends ``state``: a :class:`PeerView` of
each of its peers and its ledger's records since the last ``state``
(:meth:`Ledger.drain`).  Times are on the run's clock: the ledger's
``origin`` is the run's, and ``time.monotonic`` is one clock for every
process of the machine.  At end of input the worker ends its peers and
exits.  Its log goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

import aiohttp
from signaling import eventloop
from signaling.errors import SignalingError

from ..call_peer import CallOptions
from ..sinks import VerifyingSink
from .channel import WorkerSetup, read_message, write_message
from .peer import Ledger, ObservedPeer, PeerTraffic, counting_sources

logger = logging.getLogger(__name__)

#: seconds between two ``state`` messages
STATE_INTERVAL = 0.1


class Worker:
    """The peers of one worker process and their reports."""

    def __init__(self, setup: WorkerSetup, writer: asyncio.StreamWriter) -> None:
        self.setup = setup
        self.ledger = Ledger(origin=setup.origin, forwarding=True)
        self.peers: dict[str, ObservedPeer] = {}
        self._writer = writer
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, message: dict[str, Any]) -> None:
        op, identity = message["op"], message.get("identity", "")
        if op == "join":
            self._spawn(self._join(identity, message["token"], message["options"],
                                   message["timeout"]))
        elif op == "end":
            self._spawn(self._end(identity, message["how"], message["timeout"]))
        elif op == "traffic":
            self._spawn(self._traffic(identity))
        elif (peer := self.peers.get(identity)) is not None:
            if op == "update":
                peer.request_self_update()
            elif op == "crash_after_commit":
                peer.crash_after_next_commit()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _join(self, identity: str, token: str, options: CallOptions, timeout: float) -> None:
        peer = ObservedPeer(self.ledger, self.setup.ws_url, self.setup.room, token, name=identity,
                            sources=counting_sources(), sinks=[VerifyingSink()], options=options,
                            hold=self.setup.hold)
        self.peers[identity] = peer
        error = None
        try:
            await asyncio.wait_for(peer.start(), timeout)
        except (SignalingError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = type(exc).__name__
        self.flush()
        write_message(self._writer, {"op": "joined", "identity": identity, "error": error})

    async def _traffic(self, request: str) -> None:
        """Answer the traffic request named ``request``."""
        peers = list(self.peers.values())
        traffic: list[PeerTraffic] = [await peer.traffic() for peer in peers if not peer.crashed]
        write_message(self._writer, {"op": "traffic", "identity": request, "traffic": traffic})

    async def _end(self, identity: str, how: str, timeout: float) -> None:
        peer = self.peers.get(identity)
        totals = None if peer is None else await peer.end(how, timeout)
        self.flush()
        self.peers.pop(identity, None)
        write_message(self._writer, {"op": "ended", "identity": identity, "totals": totals})

    def flush(self) -> None:
        """Send every peer's view and the ledger's new records."""
        write_message(self._writer, {
            "op": "state",
            "views": {identity: peer.view() for identity, peer in self.peers.items()},
            "ledger": self.ledger.drain()})

    async def report(self) -> None:
        while True:
            await asyncio.sleep(STATE_INTERVAL)
            self.flush()

    async def close(self, timeout: float) -> None:
        """End every remaining peer (end of input)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        await asyncio.gather(*(self._end(identity, "end", timeout) for identity in list(self.peers)),
                             return_exceptions=True)


async def serve(timeout: float = 20.0) -> None:
    """Run one worker on this process's stdin and stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print must not corrupt the channel
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), channel)  # type: ignore[attr-defined]
    writer = asyncio.StreamWriter(transport, protocol, None, loop)  # type: ignore[arg-type]
    # a media.stress.worker.WorkerSetup (this file also runs as __main__: no isinstance)
    setup: WorkerSetup | None = await read_message(reader)
    if setup is None:
        return
    logging.basicConfig(level=setup.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    worker = Worker(setup, writer)
    reporter = asyncio.ensure_future(worker.report())
    try:
        while (message := await read_message(reader)) is not None and message["op"] != "quit":
            worker.handle(message)
        await worker.close(timeout)
    finally:
        reporter.cancel()
        worker.flush()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


if __name__ == "__main__":
    eventloop.run(serve())
