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


async def test_cancel_and_wait_absorbs_the_tasks_cancellation_not_the_callers() -> None:
    ended: list[str] = []

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # (cleanup that takes a while)
            ended.append("child")

    child = asyncio.ensure_future(slow_to_end())
    await asyncio.sleep(0)
    await eventloop.cancel_and_wait(child)  # its own cancellation: absorbed
    assert child.cancelled() and ended == ["child"]

    other = asyncio.ensure_future(slow_to_end())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(eventloop.cancel_and_wait(other))
    await asyncio.sleep(0.01)  # closing now waits for other's cleanup
    closing.cancel()  # the owner of closing gives up: that must reach it
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closing.cancelled()
    await asyncio.sleep(0.1)
    assert other.cancelled()  # (asyncio passes the waiter's cancellation on to it)


async def test_cancel_and_wait_raises_a_tasks_failure() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise LookupError("cleanup failed") from None

    task = asyncio.ensure_future(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match="cleanup failed"):
        await eventloop.cancel_and_wait(task)
