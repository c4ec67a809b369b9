"""signaling.eventloop: the loop every mlscall process runs on."""

from __future__ import annotations

import asyncio

import pytest

from signaling import eventloop


async def _loop_type() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


async def _fail() -> None:
    raise LookupError("from the coroutine")


def test_commands_run_on_uvloop() -> None:  # (a dependency on Linux and macOS, where CI runs)
    assert eventloop.uvloop is not None  # installed with the project
    assert eventloop.run(_loop_type()).startswith("uvloop")


def test_run_returns_and_raises_as_asyncio_run() -> None:
    async def answer() -> int:
        return 42

    assert eventloop.run(answer()) == 42
    with pytest.raises(LookupError, match="from the coroutine"):
        eventloop.run(_fail())
