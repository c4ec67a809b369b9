"""What an acknowledged append survives on the Redis store: a SIGKILL of redis-server with the
append-only file fsynced on every write (``appendfsync always``), then a restart on the same
directory. Every entry the store acknowledged is in the log afterwards, none twice, and the
group's epoch is the one its acknowledged commits left (RFC 9420 §14: the delivery service's
order is what members rely on to agree on the epoch)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis_server import RedisServer
from signaling.redis_store import RedisStore, RedisUnavailableError
from signaling.store import ApplicationRequest, CommitRequest, GroupCreateRequest, Outcome

GROUP = b"group-1"
#: acknowledged appends before the kill, and the writers sending them concurrently
ACKED_BEFORE_KILL = 400
WRITERS = 8


async def test_every_acknowledged_entry_survives_a_redis_sigkill(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    try:
        store = RedisStore.from_url(server.url)
        await store.open()
        (created,) = await store.append("r", [GroupCreateRequest("alice", GROUP, 0, b"view")])
        assert created.outcome is Outcome.ACCEPTED
        acked: dict[int, bytes] = {}  # seq -> MLS message of every acknowledged entry
        commits: list[int] = []  # the epochs whose commit was acknowledged
        enough = asyncio.Event()

        async def write(writer: int) -> None:
            n = 0
            while True:
                try:
                    (result,) = await store.append("r", [ApplicationRequest(f"w{writer}", 0,
                                                                            b"w%d-%d" % (writer, n))])
                except RedisUnavailableError:
                    return  # killed: this append's outcome is unknown
                acked[result.entries[0].seq] = result.entries[0].body
                n += 1
                if len(acked) >= ACKED_BEFORE_KILL:
                    enough.set()

        async def commit() -> None:
            epoch = 0
            while True:
                try:
                    (result,) = await store.append("r", [CommitRequest("alice", GROUP, epoch, b"c%d" % epoch)])
                except RedisUnavailableError:
                    return
                assert result.outcome is Outcome.ACCEPTED
                acked[result.entries[0].seq] = result.entries[0].body
                commits.append(epoch)
                epoch += 1

        tasks = [asyncio.create_task(write(w)) for w in range(WRITERS)]
        tasks.append(asyncio.create_task(commit()))
        await enough.wait()
        server.kill()  # appends in flight: their answers are lost with the process
        await asyncio.gather(*tasks)
        await store.close()

        server.start()  # the same directory and port: Redis replays its append-only file
        store = RedisStore.from_url(server.url)
        await store.open()
        try:
            logged = await store.read_entries("r", after_seq=0)
            state = await store.group_state("r")
        finally:
            await store.close()
    finally:
        server.stop()

    by_seq = {entry.seq: entry.body for entry in logged}
    assert len(acked) >= ACKED_BEFORE_KILL and commits
    assert {seq: by_seq.get(seq) for seq in acked} == acked  # nothing acknowledged is lost
    assert [entry.seq for entry in logged] == list(range(1, len(logged) + 1))  # no gap, no seq twice
    assert len({entry.body for entry in logged}) == len(logged)  # no message twice
    assert state.last_seq == len(logged)
    logged_commits = [entry.epoch for entry in logged if entry.body.startswith(b"c")]
    assert logged_commits == list(range(len(logged_commits))) and len(logged_commits) >= len(commits)
    assert state.epoch == len(logged_commits)
