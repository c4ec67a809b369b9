"""Signaling server benchmark: application throughput, fan-out latency and the cost of validating
handshakes (RFC 9420 §12.4.2 in the delivery service) through mlscall.

Every message is real MLS: the room's group is created by member-0 (group.create with its
GroupInfo), the other members are added by commits, application data are PrivateMessages
(§6.3; a stamp, the message index and send time, is written over the last bytes of one
ciphertext template: the server reads only the header) and commits are PublicMessage
UpdatePath commits of member-0, prepared before the clock starts.

Phases (bounded in count and by --time-limit):
  throughput  every client sends its share of --messages at once; messages/s
              until every member has every message and every ack came back
  app latency --rounds messages one at a time: time until all other members have it
  commits     --rounds commits one at a time (epoch n, n+1, ...): same measure
  acceptance  --rounds commits one at a time into groups of 10, 100 and 1000 members:
              time from sending a commit to its ack

Baselines from the same run: for the first three phases, a bare aiohttp WebSocket fan-out
server (no storage, no auth, no sequencing, no validation; benchmarks/baseline_ds.py) driven
by the same clients; for acceptance, the same mlscall server with ``validate_handshakes``
off (the epoch compare-and-set only), which exists for this comparison alone.

Run: .venv/bin/python benchmarks/signaling_bench.py [--clients 10] [--messages 1000]
     [--sizes 10,100,1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baseline_ds import running_fanout_server  # noqa: E402
from bench_json import figure, write_figures  # noqa: E402
from mls import MLS  # noqa: E402
from signaling.config import ServerConfig  # noqa: E402
from signaling.server import start_server  # noqa: E402

ROOM = "bench"
PAYLOAD_BYTES = 120  # a short chat message as an MLS PrivateMessage
_STAMP = struct.Struct("!Id")  # message index, send time
#: Members added per commit while a room is set up (keeps each commit frame small).
_ADDS_PER_COMMIT = 100

Join = Callable[[str], str]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RoomTraffic:
    """The MLS messages of one room, made before any clock runs.

    member-0 creates the group (``group_info``), adds member-1 .. member-(N-1)
    (``adds``, one commit per batch, for the epochs 0, 1, ...) and then commits
    ``updates`` UpdatePaths in a row; ``template`` is a PrivateMessage of the
    epoch after the adds.
    """

    def __init__(self, members: int, updates: int) -> None:
        mls = MLS()
        creator = mls.generate_identity().content
        group = mls.group_create(creator, mls.generate_credential("member-0").content)
        self.members = members
        self.group_id = group.group_id
        self.group_info = group.group_info()
        joiners = MLS()
        packages = []
        for i in range(1, members):
            client = joiners.generate_identity().content
            packages.append(joiners.generate_key_package(client, joiners.generate_credential(f"member-{i}").content)
                            .content)
        self.adds: list[tuple[int, bytes]] = []
        for start in range(0, len(packages), _ADDS_PER_COMMIT):
            epoch = group.epoch
            self.adds.append((epoch, group.add_many(packages[start:start + _ADDS_PER_COMMIT]).commit))
            group.apply_pending_commit()
        self.app_epoch = group.epoch
        probe = group.send(b"").content
        self.template = bytearray(group.send(b"\xa5" * max(0, PAYLOAD_BYTES - len(probe))).content)
        self.updates: list[tuple[int, bytes]] = []
        for _ in range(updates):
            epoch = group.epoch
            self.updates.append((epoch, group.update().commit))
            group.apply_pending_commit()

    def stamped(self, index: int) -> bytes:
        _STAMP.pack_into(self.template, len(self.template) - _STAMP.size, index, time.perf_counter())
        return bytes(self.template)

    def commit_frame(self, rid: int, epoch: int, commit: bytes) -> str:
        return json.dumps({"type": "commit", "id": rid, "group_id": b64(self.group_id), "epoch": epoch,
                           "commit": b64(commit)})


class Tally:
    """Deliveries per message key, acks, and when each message reached everyone."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.count: dict[Hashable, int] = defaultdict(int)
        self.done_at: dict[Hashable, float] = {}
        self.sent_at: dict[Hashable, float] = {}
        self.acks = 0
        self.changed = asyncio.Event()

    def deliver(self, key: Hashable, sent: float | None = None) -> None:
        self.count[key] += 1
        if self.count[key] == self.receivers:
            self.done_at[key] = time.perf_counter()
            if sent is not None:
                self.sent_at[key] = sent
            self.changed.set()

    def ack(self) -> None:
        self.acks += 1
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


async def reader(ws: aiohttp.ClientWebSocketResponse, tally: Tally, me: int, senders: dict[int, int]) -> None:
    async for msg in ws:
        frame = json.loads(msg.data)
        kind = frame.get("type")
        if kind == "ack":
            tally.ack()
        elif kind == "error":
            raise RuntimeError(f"the server refused a request: {frame}")
        elif kind == "application":
            index, sent = _STAMP.unpack_from(base64.b64decode(frame["ciphertext"])[-_STAMP.size:])
            if senders.get(index) != me:  # count other members only
                tally.deliver(index, sent)
        elif kind == "commit":
            tally.deliver(("commit", frame["epoch"]))


async def request(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` and wait for its answer (the baseline's acks carry no ``re``)."""
    await ws.send_str(json.dumps(frame))
    while True:
        reply = json.loads((await ws.receive()).data)
        if reply.get("type") == "error":
            raise RuntimeError(f"the server refused a {frame['type']}: {reply}")
        if reply.get("type") == "ack" and reply.get("re", frame.get("id")) == frame.get("id"):
            return reply


async def set_up(sockets: list[aiohttp.ClientWebSocketResponse], traffic: RoomTraffic) -> None:
    """member-0 registers the group and adds everyone (all have joined, so all are admitted)."""
    await request(sockets[0], {"type": "group.create", "id": "create", "group_id": b64(traffic.group_id),
                               "epoch": 0, "group_info": b64(traffic.group_info)})
    for epoch, commit in traffic.adds:
        await request(sockets[0], json.loads(traffic.commit_frame(-1 - epoch, epoch, commit)))


@asynccontextmanager
async def mlscall_server(db: Path, sync: str, *, validate: bool = True,
                         participants: int = 100) -> AsyncIterator[tuple[str, Join]]:
    config = ServerConfig(port=0, db_path=db, db_synchronous=sync, secret=b"b" * 32, static_dir=None,
                          rate_per_second=1e9, rate_burst=10**9, max_queued_frames=10**7,
                          max_queued_bytes=2**40, max_participants=participants, max_connections=10**5,
                          max_connections_per_address=10**5, max_unjoined_per_address=10**5,
                          max_message_bytes=4 * 1024 * 1024, validate_handshakes=validate)
    running = await start_server(config)

    def join(identity: str) -> str:
        return json.dumps({"type": "join", "id": 0, "room": ROOM,
                           "token": running.server.tokens.mint(ROOM, identity, 3600)})
    try:
        yield running.ws_url, join
    finally:
        await running.close()


@asynccontextmanager
async def baseline_server() -> AsyncIterator[tuple[str, Join]]:
    async with running_fanout_server() as port:
        yield f"ws://127.0.0.1:{port}/ws", lambda identity: json.dumps({"type": "join", "id": 0})


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] * 1000


async def run_phases(ws_url: str, join: Join, traffic: RoomTraffic, messages: int) -> dict[str, float]:
    clients, rounds = traffic.members, len(traffic.updates)
    senders: dict[int, int] = {}
    tally = Tally(clients - 1)
    async with aiohttp.ClientSession() as session:
        sockets = []
        for i in range(clients):
            ws = await session.ws_connect(ws_url, max_msg_size=0)
            await ws.send_str(join(f"member-{i}"))
            await ws.receive()  # join ack (or the baseline's ack)
            sockets.append(ws)
        await set_up(sockets, traffic)
        tasks = [asyncio.create_task(reader(ws, tally, i, senders)) for i, ws in enumerate(sockets)]
        await asyncio.sleep(0.2)  # let presence frames and the set-up commits settle
        tally.acks = 0

        def app_frame(index: int) -> str:
            return json.dumps({"type": "application", "id": index, "epoch": traffic.app_epoch,
                               "ciphertext": b64(traffic.stamped(index))})

        # throughput: everyone floods its share
        start = time.perf_counter()
        for index in range(messages):
            senders[index] = index % clients
        await asyncio.gather(*(
            asyncio.gather(*(sockets[s].send_str(app_frame(index))
                             for index in range(messages) if senders[index] == s))
            for s in range(clients)))
        await tally.wait(lambda: all(i in tally.done_at for i in range(messages)) and tally.acks >= messages)
        elapsed = time.perf_counter() - start

        # application latency: one message at a time
        app_latency = []
        for r in range(rounds):
            index = messages + r
            senders[index] = r % clients
            await sockets[senders[index]].send_str(app_frame(index))
            await tally.wait(lambda: index in tally.done_at)
            app_latency.append(tally.done_at[index] - tally.sent_at[index])

        # commit latency: member-0's UpdatePath commits, epoch after epoch
        commit_latency = []
        for epoch, commit in traffic.updates:
            key = ("commit", epoch)
            frame = traffic.commit_frame(messages + rounds + epoch, epoch, commit)
            sent = time.perf_counter()
            await sockets[0].send_str(frame)
            await tally.wait(lambda: key in tally.done_at)
            commit_latency.append(tally.done_at[key] - sent)

        for ws in sockets:
            await ws.close()
        for task in tasks:
            await task
    return {
        "application throughput (msg/s)": messages / elapsed,
        "application deliveries (/s)": messages * (clients - 1) / elapsed,
        "application fan-out p50 (ms)": pct(app_latency, 50),
        "application fan-out p95 (ms)": pct(app_latency, 95),
        "commit fan-out p50 (ms)": pct(commit_latency, 50),
        "commit fan-out p95 (ms)": pct(commit_latency, 95),
    }


async def commit_acceptance(ws_url: str, join: Join, traffic: RoomTraffic) -> list[float]:
    """Seconds from sending each of ``traffic.updates`` to its ack, in a group of ``traffic.members``.

    member-0 stays connected; the others join (so they are admitted), then leave before the
    commits are timed: the measure is the server's acceptance, not its fan-out.
    """
    async with aiohttp.ClientSession() as session:
        committer = await session.ws_connect(ws_url, max_msg_size=0)
        await committer.send_str(join("member-0"))
        await committer.receive()

        async def admit(identity: str) -> None:
            async with session.ws_connect(ws_url) as ws:
                await ws.send_str(join(identity))
                await ws.receive()

        for start in range(1, traffic.members, 50):
            await asyncio.gather(*(admit(f"member-{i}") for i in range(start, min(start + 50, traffic.members))))
        await set_up([committer], traffic)
        latencies = []
        for epoch, commit in traffic.updates:
            frame = json.loads(traffic.commit_frame(epoch + 10**6, epoch, commit))
            sent = time.perf_counter()
            await request(committer, frame)
            latencies.append(time.perf_counter() - sent)
        await committer.close()
    return latencies


async def main(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",") if size]
    async with asyncio.timeout(args.time_limit):
        traffic = RoomTraffic(args.clients, args.rounds)
        with tempfile.TemporaryDirectory() as tmp:
            async with mlscall_server(Path(tmp) / "bench.db", args.sync) as (url, join):
                ours = await run_phases(url, join, traffic, args.messages)
        async with baseline_server() as (url, join):
            base = await run_phases(url, join, traffic, args.messages)
        acceptance: dict[int, dict[bool, list[float]]] = {}
        for size in sizes:
            sized = RoomTraffic(size, args.rounds)
            acceptance[size] = {}
            for validate in (True, False):
                with tempfile.TemporaryDirectory() as tmp:
                    async with mlscall_server(Path(tmp) / "accept.db", args.sync, validate=validate,
                                              participants=size + 1) as (url, join):
                        acceptance[size][validate] = await commit_acceptance(url, join, sized)
    print(f"signaling bench: {args.clients} clients, {args.messages} messages, "
          f"{args.rounds} latency rounds, {PAYLOAD_BYTES}-byte payloads, loopback, "
          f"SQLite WAL synchronous={args.sync.upper()}")
    print("baseline: bare aiohttp WebSocket fan-out (no storage, no auth, no sequencing)")
    print(f"{'metric':34} {'mlscall':>10} {'baseline':>10} {'ratio':>8}")
    for metric, value in ours.items():
        print(f"{metric:34} {value:10.2f} {base[metric]:10.2f} {value / base[metric]:8.2f}")
    figures = [figure(metric.rsplit(" (", 1)[0], metric.rsplit(" (", 1)[1].rstrip(")"), value, base[metric],
                      "bare aiohttp WebSocket fan-out") for metric, value in ours.items()]
    print("commit acceptance (send to ack, member-0's UpdatePath commits): PublicGroup validation on,")
    print("baseline: the same server with validate_handshakes off (epoch compare-and-set only)")
    print(f"{'members':>8} {'p50 on (ms)':>12} {'p50 off (ms)':>13} {'ratio':>7} {'p95 on':>8} {'p95 off':>8}")
    for size, runs in acceptance.items():
        on, off = (pct(runs[v], 50) for v in (True, False))
        on95, off95 = (pct(runs[v], 95) for v in (True, False))
        print(f"{size:8d} {on:12.2f} {off:13.2f} {on / off:7.2f} {on95:8.2f} {off95:8.2f}")
        for q, value, baseline in ((50, on, off), (95, on95, off95)):
            figures.append(figure(f"commit acceptance p{q}, {size} members", "ms", value, baseline,
                                  "same server, validation off"))
    write_figures(args.json, "signaling_bench", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sizes", default="10,100,1000", help="group sizes of the acceptance phase")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--sync", choices=("normal", "full"), default="normal",
                        help="SQLite synchronous mode of the mlscall server")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    asyncio.run(main(parser.parse_args()))
