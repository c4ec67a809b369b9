"""The event loop every ``mlscall`` process runs on, and ending tasks on it.

:func:`run`: uvloop's (libuv, in C)
where it is installed, which it is on Linux and macOS (a dependency), and
asyncio's own elsewhere.

A call peer handles every RTP and RTCP datagram of its connections on its
event loop, one loop iteration per datagram; asyncio's pure-Python loop
cost a receiving peer more than its codecs.  Measured on 2 cores
(``benchmarks/sfu_vs_mesh.py`` points, docs/stress.md): an SFU call of 12
aiortc participants went from 0.63 of every pair's frames delivered (51,539
UDP datagrams dropped by full sockets) to 0.95 and 0.96 (980 and 0 drops),
and a mesh of 8 from 0.43 to 0.99.  aiohttp, redis-py, aioice and aiortc
run on it unchanged; the test suite runs both loops (pytest's in-process
calls on asyncio's, the commands it starts on this one).

:func:`cancel_and_wait` ends tasks a component owns (its close): their own
cancellation is expected and absorbed, but a cancellation of the caller
while it waits goes on to the caller, as on any ``await`` (a bare
``suppress(CancelledError)`` around the wait would swallow it too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # (not on Windows)
    uvloop = None

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, as ``asyncio.run``."""
    if uvloop is None:
        return asyncio.run(main)
    return uvloop.run(main)


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended; a task's own
    cancellation is absorbed, the caller's is not (module docstring), and
    another exception of a task is raised here."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
