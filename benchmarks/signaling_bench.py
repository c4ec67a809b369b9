"""Signaling server benchmark: application throughput and fan-out latency through mlscall.

Measured on loopback against a baseline from the same run: a bare aiohttp
WebSocket fan-out server with no storage, no auth and no sequencing, which
forwards each frame verbatim to the other clients and acknowledges it. Both
servers run in this process and are driven by the same raw WebSocket clients.

Phases (bounded in count and by --time-limit):
  throughput  every client sends its share of --messages at once; messages/s
              until every member has every message and every ack came back
  app latency --rounds messages one at a time: time until all other members have it
  commits     --rounds commits one at a time (epoch n, n+1, ...): same measure

Run: .venv/bin/python benchmarks/signaling_bench.py [--clients 10] [--messages 1000] [--json PATH]
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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baseline_ds import running_fanout_server  # noqa: E402
from bench_json import figure, write_figures  # noqa: E402
from signaling.config import ServerConfig  # noqa: E402
from signaling.server import start_server  # noqa: E402

ROOM = "bench"
PAYLOAD_BYTES = 120  # a short chat message as an MLS PrivateMessage
_STAMP = struct.Struct("!Id")  # message index, send time


class Tally:
    """Deliveries per message index, acks, and when each message reached everyone."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.count: dict[int, int] = defaultdict(int)
        self.done_at: dict[int, float] = {}
        self.sent_at: dict[int, float] = {}
        self.acks = 0
        self.changed = asyncio.Event()

    def deliver(self, body: bytes) -> None:
        index, sent = _STAMP.unpack_from(body)
        self.count[index] += 1
        if self.count[index] == self.receivers:
            self.done_at[index] = time.perf_counter()
            self.sent_at[index] = sent
            self.changed.set()

    def ack(self) -> None:
        self.acks += 1
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


def payload(index: int) -> bytes:
    return _STAMP.pack(index, time.perf_counter()).ljust(PAYLOAD_BYTES, b"\xa5")


async def reader(ws: aiohttp.ClientWebSocketResponse, tally: Tally, me: int,
                 senders: dict[int, int]) -> None:
    async for msg in ws:
        frame = json.loads(msg.data)
        kind = frame.get("type")
        if kind == "ack":
            tally.ack()
        elif kind in ("application", "commit"):
            body = base64.b64decode(frame.get("ciphertext") or frame["commit"])
            if senders.get(_STAMP.unpack_from(body)[0]) != me:  # count other members only
                tally.deliver(body)


@asynccontextmanager
async def mlscall_server(db: Path, sync: str) -> AsyncIterator[tuple[str, Callable[[str], str]]]:
    config = ServerConfig(port=0, db_path=db, db_synchronous=sync, secret=b"b" * 32, static_dir=None,
                          rate_per_second=1e9, rate_burst=10**9, max_queued_frames=10**7,
                          max_queued_bytes=2**40)
    running = await start_server(config)

    def join(identity: str) -> str:
        return json.dumps({"type": "join", "id": 0, "room": ROOM,
                           "token": running.server.tokens.mint(ROOM, identity, 3600)})
    try:
        yield running.ws_url, join
    finally:
        await running.close()


@asynccontextmanager
async def baseline_server() -> AsyncIterator[tuple[str, Callable[[str], str]]]:
    async with running_fanout_server() as port:
        yield f"ws://127.0.0.1:{port}/ws", lambda identity: json.dumps({"type": "join", "id": 0})


async def run_phases(ws_url: str, join: Callable[[str], str], clients: int, messages: int,
                     rounds: int) -> dict[str, float]:
    senders: dict[int, int] = {}
    tally = Tally(clients - 1)
    async with aiohttp.ClientSession() as session:
        sockets = []
        for i in range(clients):
            ws = await session.ws_connect(ws_url, max_msg_size=0)
            await ws.send_str(join(f"member-{i}"))
            await ws.receive()  # join ack (or the baseline's ack)
            sockets.append(ws)
        tasks = [asyncio.create_task(reader(ws, tally, i, senders)) for i, ws in enumerate(sockets)]
        await asyncio.sleep(0.2)  # let presence frames settle
        tally.acks = 0

        def app_frame(index: int) -> str:
            return json.dumps({"type": "application", "id": index, "epoch": 0,
                               "ciphertext": base64.b64encode(payload(index)).decode()})

        # throughput: everyone floods its share
        start = time.perf_counter()
        for index in range(messages):
            senders[index] = index % clients
        await asyncio.gather(*(
            asyncio.gather(*(sockets[s].send_str(app_frame(index))
                             for index in range(messages) if senders[index] == s))
            for s in range(clients)))
        await tally.wait(lambda: len(tally.done_at) >= messages and tally.acks >= messages)
        elapsed = time.perf_counter() - start

        # application latency: one message at a time
        app_latency = []
        for r in range(rounds):
            index = messages + r
            senders[index] = r % clients
            await sockets[senders[index]].send_str(app_frame(index))
            await tally.wait(lambda: index in tally.done_at)
            app_latency.append(tally.done_at[index] - tally.sent_at[index])

        # commit latency: epoch after epoch
        commit_latency = []
        for epoch in range(rounds):
            index = messages + rounds + epoch
            senders[index] = epoch % clients
            frame = json.dumps({"type": "commit", "id": index, "epoch": epoch, "group_id": "Z3JvdXA=",
                                "commit": base64.b64encode(payload(index)).decode()})
            await sockets[senders[index]].send_str(frame)
            await tally.wait(lambda: index in tally.done_at)
            commit_latency.append(tally.done_at[index] - tally.sent_at[index])

        for ws in sockets:
            await ws.close()
        for task in tasks:
            await task

    def pct(samples: list[float], q: int) -> float:
        return statistics.quantiles(samples, n=100)[q - 1] * 1000
    return {
        "application throughput (msg/s)": messages / elapsed,
        "application deliveries (/s)": messages * (clients - 1) / elapsed,
        "application fan-out p50 (ms)": pct(app_latency, 50),
        "application fan-out p95 (ms)": pct(app_latency, 95),
        "commit fan-out p50 (ms)": pct(commit_latency, 50),
        "commit fan-out p95 (ms)": pct(commit_latency, 95),
    }


async def main(args: argparse.Namespace) -> None:
    async with asyncio.timeout(args.time_limit):
        with tempfile.TemporaryDirectory() as tmp:
            async with mlscall_server(Path(tmp) / "bench.db", args.sync) as (url, join):
                ours = await run_phases(url, join, args.clients, args.messages, args.rounds)
        async with baseline_server() as (url, join):
            base = await run_phases(url, join, args.clients, args.messages, args.rounds)
    print(f"signaling bench: {args.clients} clients, {args.messages} messages, "
          f"{args.rounds} latency rounds, {PAYLOAD_BYTES}-byte payloads, loopback, "
          f"SQLite WAL synchronous={args.sync.upper()}")
    print("baseline: bare aiohttp WebSocket fan-out (no storage, no auth, no sequencing)")
    print(f"{'metric':34} {'mlscall':>10} {'baseline':>10} {'ratio':>8}")
    for metric, value in ours.items():
        print(f"{metric:34} {value:10.2f} {base[metric]:10.2f} {value / base[metric]:8.2f}")
    write_figures(args.json, "signaling_bench", [
        figure(metric.rsplit(" (", 1)[0], metric.rsplit(" (", 1)[1].rstrip(")"), value, base[metric],
               "bare aiohttp WebSocket fan-out") for metric, value in ours.items()])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--sync", choices=("normal", "full"), default="normal",
                        help="SQLite synchronous mode of the mlscall server")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    asyncio.run(main(parser.parse_args()))
