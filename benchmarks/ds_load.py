"""Delivery-service load: N WebSocket clients in rooms of M, each sending at a fixed rate.

Every client joins its room and, for ``--duration`` seconds, sends one MLS
application message every ``1 / --rate`` seconds (an open-loop schedule with a
random phase per client, so the offered load is steady): a real RFC 9420 §6.3
PrivateMessage of about ``--payload`` bytes of the room's ``mls.MLS`` group,
whose last ciphertext bytes are overwritten with the sender, a counter and the
send time (the server holds no key, so it cannot tell). The server therefore
parses each one for its header cross-check and checks that its sender is a
member, exactly as it would a client's. Before the window the room's first
client registers the group (``group.create``) and commits the Adds of the
others (the server accepts application data from members only). Each delivery to
another member of the room is timed from send to receipt (loopback, one clock).

Two servers are measured in the same run, each in its own process while the
load comes from ``--load-procs`` other processes (so the cores are split the
same way for both):

  mlscall   ``python -m media.cli serve`` (auth tokens, the room sequencer,
            SQLite WAL group commit before every ack, header check, fan-out)
  baseline  a minimal aiohttp fan-out server: the first frame names the room,
            every later frame goes verbatim to the room's other members and
            a constant ack to the sender; no parsing, storage or sequencing.

Figures: delivered messages/s (receipts at the other members counted during
the sending window, divided by its length), and the p50/p99 send-to-delivery
latency of every delivery. Messages still undelivered ``--drain`` seconds
after the window count as lost. The CPU share each process used during the
window is printed, to show which side is the bottleneck.

The default rate, 1 message/s per client, offers 1,000 messages/s and 9,000
deliveries/s: nearly twice the 5,000 deliveries/s target, while leaving the
load process (one core at most) enough headroom to time every delivery.
``--only mlscall`` runs one server alone (for profiling, no JSON).

``--attack`` measures the mlscall server twice instead, under the same load:
alone, and with one more participant (a process of its own) that created the
group of a room of its own and floods it for the window with 190 KiB
application messages at 190/s, within its connection's rate limit, until the
per-epoch quota refuses them (``quota_exceeded``). It prints the other rooms'
ack (send to ack) and delivery p50/p99 of both runs and their ratio. Then, on
a fresh server without quotas, a member fills a room's log with 50 MB of
application messages; a fresh join and a catch-up from seq 0 are timed (to
the ack, to the first entry, to the last) and the server's peak RSS during
the catch-up is read from ``/proc/PID/status`` (``VmHWM``, reset through
``clear_refs`` before it) against its RSS before.

``--store redis`` measures several instances over one Redis instead
(docs/deployment.md, "Several instances"), all in the same run under the
same load: the mlscall server on SQLite (one instance), then ``mlscall serve
--store redis://...`` processes, 1, 2, ... ``--instances`` of them, over one
private redis-server on a loopback port (``--redis-fsync``: its
``appendfsync``, ``everysec`` by default, the durability class of SQLite's
``--db-sync normal``). Member *i* of each room connects to instance
*i* mod N, so nearly every delivery crosses instances through the store's
feed. It prints the core count, delivered messages/s and p99 delivery
latency of each setup, and the ratios against the issue's targets: Redis on
one instance against SQLite (>= 0.7), the most instances against one
(>= 1.0), every p99 under 100 ms; ``--plot PATH`` also draws them (PNG,
when matplotlib is installed).

Run: .venv/bin/python benchmarks/ds_load.py [--clients 1000] [--room-size 10] [--rate 1]
     [--duration 10] [--load-procs 1] [--quick] [--attack] [--json PATH]
     [--store redis [--instances 3] [--redis-fsync everysec] [--plot PATH]]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from baseline_ds import running_fanout_server  # noqa: E402
from bench_json import figure, write_figures  # noqa: E402
from mls import MLS  # noqa: E402
from mls.inspection import ContentType, inspect_message  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from redis_server import RedisServer  # noqa: E402  (the tests' private redis-server launcher)

#: the issue 17 targets --store redis prints its figures against
TARGET_REDIS_VS_SQLITE = 0.7
TARGET_SCALING = 1.0
TARGET_P99_MS = 100.0

#: sender index, message counter, send time (monotonic ns; one clock for every process on Linux).
_STAMP = struct.Struct("!IIq")
_SETUP_TIMEOUT = 120.0


def _group_id(room: int) -> bytes:
    return b"ds-load-group-%05d" % room


class Payload:
    """One room's group: the set-up frames of its first client (the group's GroupInfo, then a
    commit adding the others), and a PrivateMessage template with the stamp's place in it and
    the epoch it is of."""

    def __init__(self, room: int, size: int, room_size: int) -> None:
        mls = MLS()
        first = room * room_size
        client = mls.generate_identity()
        group = mls.group_create(client, mls.generate_credential(f"client-{first}"), _group_id(room))
        self.setup = [{"type": "group.create", "id": "create", "group_id": base64.b64encode(group.group_id).decode(),
                       "epoch": 0, "group_info": base64.b64encode(group.group_info()).decode()}]
        if room_size > 1:
            joiners = MLS()
            packages = [joiners.generate_key_package(joiners.generate_identity(),
                                                     joiners.generate_credential(f"client-{first + i}"))
                        for i in range(1, room_size)]
            adds = group.add_many(packages)
            self.setup.append({"type": "commit", "id": "adds", "group_id": self.setup[0]["group_id"],
                               "epoch": 0, "commit": base64.b64encode(adds.commit).decode()})
            group.apply_pending_commit()
        probe = group.send(b"").content
        self.template = bytearray(group.send(secrets.token_bytes(max(0, size - len(probe)))).content)
        header = inspect_message(self.template)
        assert header.content_type is ContentType.APPLICATION and header.epoch is not None
        self.epoch = header.epoch
        self.offset = len(self.template) - _STAMP.size  # the ciphertext is the last field (§6.3)

    def stamped(self, sender: int, counter: int) -> bytes:
        _STAMP.pack_into(self.template, self.offset, sender, counter, time.monotonic_ns())
        return bytes(self.template)


# -- load worker (a process of its own) -------------------------------------------------------

@dataclass
class Tally:
    """What one load process saw."""

    window_start: int
    window_end: int
    sent: int = 0
    acks: int = 0
    errors: int = 0
    delivered: int = 0
    in_window: int = 0
    latencies_us: list[int] = field(default_factory=list)
    ack_latencies_us: list[int] = field(default_factory=list)


async def _reader(ws: aiohttp.ClientWebSocketResponse, tally: Tally, offset: int,
                  unacked: dict[int, int]) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            break
        frame = json.loads(msg.data)
        kind = frame.get("type")
        if kind == "application":
            now = time.monotonic_ns()
            _, _, sent = _STAMP.unpack_from(base64.b64decode(frame["ciphertext"]), offset)
            tally.delivered += 1
            tally.latencies_us.append((now - sent) // 1000)
            if now <= tally.window_end:
                tally.in_window += 1
        elif kind == "ack":
            tally.acks += 1
            sent_at = unacked.pop(frame.get("re"), None)
            if sent_at is not None:
                tally.ack_latencies_us.append((time.monotonic_ns() - sent_at) // 1000)
        elif kind == "error":
            tally.errors += 1


async def _sender(ws: aiohttp.ClientWebSocketResponse, index: int, payload: Payload, tally: Tally,
                  period_ns: int, phase_ns: int, unacked: dict[int, int]) -> None:
    counter = 0
    due = tally.window_start + phase_ns
    while due < tally.window_end:
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        body = base64.b64encode(payload.stamped(index, counter)).decode("ascii")
        unacked[counter] = time.monotonic_ns()
        await ws.send_str(json.dumps({"type": "application", "id": counter, "epoch": payload.epoch,
                                      "ciphertext": body}, separators=(",", ":")))
        tally.sent += 1
        counter += 1
        due += period_ns


async def _set_up(ws: aiohttp.ClientWebSocketResponse, frames: list[dict[str, Any]]) -> None:
    """The room's first client registers the group and adds the others (each frame acknowledged)."""
    for frame in frames:
        await ws.send_str(json.dumps(frame))
        async with asyncio.timeout(30):
            while True:
                reply = json.loads((await ws.receive()).data)
                if reply.get("type") == "error":
                    raise RuntimeError(f"{frame['type']} refused: {reply.get('code')}")
                if reply.get("type") == "ack" and reply.get("re", frame["id"]) == frame["id"]:
                    break


async def _join(session: aiohttp.ClientSession, url: str, frame: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, max_msg_size=0, autoping=True)
    await ws.send_str(frame)
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT:
                raise RuntimeError(f"join failed: {msg.type.name}")
            reply = json.loads(msg.data)
            if reply.get("type") == "ack":
                return ws
            if reply.get("type") == "error":
                raise RuntimeError(f"join refused: {reply.get('code')}")


def _join_frame(secret: bytes | None, room: int, identity: str) -> str:
    name = f"room-{room:05d}"
    token = ""
    if secret is not None:
        from signaling.tokens import TokenAuthority
        token = TokenAuthority(secret).mint(name, identity, 3600)
    return json.dumps({"type": "join", "id": 0, "room": name, "token": token})


async def worker(args: argparse.Namespace) -> None:
    """Join this process's rooms, wait for ``go T0``, send for the window, report one JSON line."""
    secret = Path(args.secret_file).read_bytes() if args.secret_file else None
    rooms = range(args.first_room, args.first_room + args.rooms)
    payloads = {room: Payload(room, args.payload, args.room_size) for room in rooms}
    members = [(room, room * args.room_size + i) for room in rooms for i in range(args.room_size)]
    limit = asyncio.Semaphore(64)

    urls = args.url.split(",")  # member i of a room goes to instance i mod N

    async def join(room: int, index: int) -> aiohttp.ClientWebSocketResponse:
        async with limit:
            url = urls[(index - room * args.room_size) % len(urls)]
            return await _join(session, url, _join_frame(secret, room, f"client-{index}"))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = await asyncio.gather(*(join(room, index) for room, index in members))
        await asyncio.gather(*(_set_up(ws, payloads[room].setup) for ws, (room, index) in zip(sockets, members)
                               if index == room * args.room_size))
        offset = payloads[rooms[0]].offset
        tally = Tally(0, 0)  # nothing is sent before the window: readers see presence events only
        unacked: list[dict[int, int]] = [{} for _ in sockets]  # per socket: send time by request id
        readers = [asyncio.create_task(_reader(ws, tally, offset, pending))
                   for ws, pending in zip(sockets, unacked)]
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        tally.window_start = int(line.split()[1])
        tally.window_end = tally.window_start + int(args.duration * 1e9)
        period = int(1e9 / args.rate)
        cpu0 = time.process_time()
        await asyncio.gather(*(_sender(ws, index, payloads[room], tally, period, random.randrange(period),
                                       pending) for ws, (room, index), pending in zip(sockets, members, unacked)))
        cpu = time.process_time() - cpu0
        expected = tally.sent * (args.room_size - 1)
        drain_until = time.monotonic() + args.drain
        while (tally.delivered < expected or tally.acks < tally.sent) and time.monotonic() < drain_until:
            await asyncio.sleep(0.05)
        print(json.dumps({"sent": tally.sent, "expected": expected, "delivered": tally.delivered,
                          "in_window": tally.in_window, "acks": tally.acks, "errors": tally.errors,
                          "cpu": cpu, "latencies_us": tally.latencies_us,
                          "ack_latencies_us": tally.ack_latencies_us}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "close"
        await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in sockets], timeout=5)
        for task in readers:
            task.cancel()


# -- the flooding participant (--attack; a process of its own) --------------------------------

#: Bytes of each flooding application message: its frame (base64, JSON) stays under the
#: server's 256 KiB frame limit.
FLOOD_BYTES = 190 * 1024
#: Flooding messages per second: within the server's per-connection rate (200/s here).
FLOOD_RATE = 190.0


async def _group_member(session: aiohttp.ClientSession, url: str, secret: bytes, room: str,
                        identity: str) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    """A connection to ``room`` whose identity created the room's group (so a member of it)."""
    from signaling.tokens import TokenAuthority
    token = TokenAuthority(secret).mint(room, identity, 3600)
    ws = await _join(session, url, json.dumps({"type": "join", "id": 0, "room": room, "token": token}))
    mls = MLS()
    group = mls.group_create(mls.generate_identity(), mls.generate_credential(identity))
    await _set_up(ws, [{"type": "group.create", "id": "create", "epoch": 0,
                        "group_id": base64.b64encode(group.group_id).decode(),
                        "group_info": base64.b64encode(group.group_info()).decode()}])
    return ws, group


async def _flood(ws: aiohttp.ClientWebSocketResponse, group: Any, until_ns: int | None,
                 count: int | None) -> dict[str, Any]:
    """Send FLOOD_BYTES application messages at FLOOD_RATE until ``until_ns`` (or ``count`` are
    accepted); what the server answered."""
    frame = json.dumps({"type": "application", "epoch": group.epoch,
                        "ciphertext": base64.b64encode(group.send(secrets.token_bytes(FLOOD_BYTES)).content)
                        .decode()})
    answers: dict[str, int] = {}
    sent = 0

    async def read() -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            reply = json.loads(msg.data)
            if "re" in reply:
                key = reply["type"] if reply["type"] == "ack" else reply.get("code", "error")
                answers[key] = answers.get(key, 0) + 1
                if count is not None and answers.get("ack", 0) >= count:
                    return

    reader = asyncio.create_task(read())
    due = time.monotonic_ns()
    while not reader.done() and (until_ns is None or due < until_ns):
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send_str(frame.replace('"type"', f'"id":{sent},"type"', 1))
        sent += 1
        due += int(1e9 / FLOOD_RATE)
    if count is not None:
        await reader
    else:
        await asyncio.sleep(2.0)  # the last answers
        reader.cancel()
    return {"sent": sent, "answers": answers}


async def attacker(args: argparse.Namespace) -> None:
    """One member of a room of its own flooding it with application messages during the window."""
    secret = Path(args.secret_file).read_bytes()
    async with aiohttp.ClientSession() as session:
        ws, group = await _group_member(session, args.url, secret, "attack", "mallory")
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = int(line.split()[1])
        await asyncio.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        report = await _flood(ws, group, start + int(args.duration * 1e9), None)
        print(json.dumps(report), flush=True)
        await ws.close()


# -- baseline server (a process of its own) ---------------------------------------------------

async def baseline(args: argparse.Namespace) -> None:
    """The baseline fan-out server (``baseline_ds``) until stdin closes."""
    async with running_fanout_server() as port:
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# -- the coordinator --------------------------------------------------------------------------

def _cpu_seconds(*pids: int) -> float:
    """User and system CPU seconds the processes ``pids`` used so far, together."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _line(stream: asyncio.StreamReader, what: str, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        line = await stream.readline()
    if not line:
        raise RuntimeError(f"{what} ended before reporting")
    return line.decode().strip()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _start_server(kind: str, args: argparse.Namespace, tmp: Path, extra: tuple[str, ...] = (),
                        secret_file: Path | None = None) -> tuple[Any, str]:
    """A server process (its files under ``tmp``; the token secret ``secret_file``, by default
    ``tmp/secret``) and its WebSocket address."""
    tmp.mkdir(exist_ok=True)
    if kind == "mlscall":
        static = tmp / "static"
        static.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "media.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--db", str(tmp / "ds.db"), "--secret-file", str(secret_file or tmp / "secret"),
                   "--static", str(static), "--log-level", "warning",
                   "--max-rooms", str(args.clients // args.room_size + 10),
                   "--max-connections", str(args.clients + 100),
                   # every client dials from 127.0.0.1: the per-address limits must fit them all
                   "--max-connections-per-address", str(args.clients + 100),
                   "--max-unjoined-per-address", str(args.clients + 100),
                   "--rate", str(max(200.0, 20 * args.rate)), "--burst", str(max(400, int(40 * args.rate))),
                   *extra]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--role", "baseline"]
    with (tmp / f"{kind}.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    line = await _line(proc.stdout, f"the {kind} server", 30)
    return proc, line.rsplit(" ", 1)[1].replace("http://", "ws://", 1) + "/ws"


def _percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else float("nan")


async def measure(kind: str, args: argparse.Namespace, tmp: Path, *, attack: bool = False,
                  store: str | None = None, instances: int = 1) -> dict[str, float]:
    """One server (``instances`` of them over ``store`` when given) under the full load (and, with
    ``attack``, a flooding participant); its figures."""
    secret_file = tmp / "secret"
    secret_file.write_bytes(secrets.token_bytes(32))
    servers: list[asyncio.subprocess.Process] = []
    workers: list[asyncio.subprocess.Process] = []
    flood: dict[str, Any] = {}
    try:
        urls = []
        for number in range(instances):
            extra = () if store is None else ("--store", store)
            server, url = await _start_server(kind, args, tmp / f"instance-{number}", extra, secret_file)
            servers.append(server)
            urls.append(url)
        url = ",".join(urls)
        if attack:
            workers.append(await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--role", "attacker", "--url", url,
                "--duration", str(args.duration), "--secret-file", str(secret_file), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        rooms = args.clients // args.room_size
        share = [rooms // args.load_procs + (i < rooms % args.load_procs) for i in range(args.load_procs)]
        first = 0
        for count in share:
            command = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--url", url,
                       "--first-room", str(first), "--rooms", str(count), "--room-size", str(args.room_size),
                       "--rate", str(args.rate), "--duration", str(args.duration),
                       "--drain", str(args.drain), "--payload", str(args.payload)]
            if kind == "mlscall":
                command += ["--secret-file", str(secret_file)]
            workers.append(await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=2**28))
            first += count
        for proc in workers:
            assert proc.stdout is not None
            if await _line(proc.stdout, "a load worker", _SETUP_TIMEOUT) != "ready":
                raise RuntimeError("a load worker did not get ready")
        start = time.monotonic_ns() + 300_000_000
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(f"go {start}\n".encode())
            await proc.stdin.drain()
        await asyncio.sleep((start - time.monotonic_ns()) / 1e9)
        cpu0 = _cpu_seconds(*(server.pid for server in servers))
        await asyncio.sleep(args.duration)
        server_cpu = _cpu_seconds(*(server.pid for server in servers)) - cpu0
        reports = []
        for proc in workers:
            assert proc.stdout is not None
            reports.append(json.loads(await _line(proc.stdout, "a load worker", args.drain + 60)))
        if attack:
            flood = reports.pop(0)
            workers[0].stdin.write(b"close\n")  # type: ignore[union-attr]
            await _stop(workers.pop(0))
        # the window and the drain: every message's work
        server_work = _cpu_seconds(*(server.pid for server in servers)) - cpu0
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(b"close\n")
            await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        for proc in workers + servers:
            await _stop(proc)
    latencies = sorted(x for r in reports for x in r["latencies_us"])
    ack_latencies = sorted(x for r in reports for x in r["ack_latencies_us"])
    total = {key: sum(r[key] for r in reports) for key in ("sent", "expected", "delivered", "in_window",
                                                            "acks", "errors")}
    return {
        "delivered messages/s": total["in_window"] / args.duration,
        "latency p50 (ms)": _percentile(latencies, 0.50),
        "latency p99 (ms)": _percentile(latencies, 0.99),
        "ack p50 (ms)": _percentile(ack_latencies, 0.50),
        "ack p99 (ms)": _percentile(ack_latencies, 0.99),
        "flood sent": flood.get("sent", 0),
        "flood accepted": flood.get("answers", {}).get("ack", 0),
        "flood refused (quota)": flood.get("answers", {}).get("quota_exceeded", 0),
        "sent": total["sent"], "expected": total["expected"], "delivered": total["delivered"],
        "lost": total["expected"] - total["delivered"], "acks": total["acks"], "errors": total["errors"],
        "server cpu": server_cpu / args.duration,
        "server cpu/msg": 1e6 * server_work / max(1, total["sent"]),
        "load cpu": sum(r["cpu"] for r in reports) / args.duration,
    }


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/{pid}/status")


async def _joined_at(session: aiohttp.ClientSession, url: str, frame: str
                     ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any], float]:
    """Join with ``frame``; the socket, the join reply and the seconds it took."""
    start = time.monotonic()
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_str(frame)
    reply = json.loads((await ws.receive(timeout=60)).data)
    if reply.get("type") != "ack":
        raise RuntimeError(f"join refused: {reply}")
    return ws, reply, time.monotonic() - start


async def catch_up(args: argparse.Namespace, tmp: Path, log_bytes: int) -> dict[str, float]:
    """A room's log of ``log_bytes`` (a member's application messages), then a fresh join and a
    catch-up from seq 0 of it: times to the ack and first entry, the server's peak RSS."""
    secret_file = tmp / "secret"
    secret = secrets.token_bytes(32)
    secret_file.write_bytes(secret)
    unlimited = ("--quota-sender-bytes", "0", "--quota-room-bytes", "0", "--log-max-bytes", "0")
    server, url = await _start_server("mlscall", args, tmp, unlimited)
    from signaling.tokens import TokenAuthority
    tokens = TokenAuthority(secret)
    try:
        async with aiohttp.ClientSession() as session:
            ws, group = await _group_member(session, url, secret, "catchup", "filler")
            flood = await _flood(ws, group, None, -(-log_bytes // FLOOD_BYTES))
            if flood["answers"].get("ack", 0) * FLOOD_BYTES < log_bytes:
                raise RuntimeError(f"the log was not filled: {flood}")
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM restarts from the current RSS
            rss_before = _status_kib(server.pid, "VmRSS")
            for name in ("first", "fresh"):  # the second is timed (the first meets the fill's checkpoint)
                fresh, _, fresh_s = await _joined_at(session, url, json.dumps(
                    {"type": "join", "id": 0, "room": "catchup", "token": tokens.mint("catchup", name, 600)}))
            start = time.monotonic()
            reader, reply, ack_s = await _joined_at(session, url, json.dumps(
                {"type": "join", "id": 0, "room": "catchup", "since": 0,
                 "token": tokens.mint("catchup", "reader", 600)}))
            received = first_s = 0.0
            entries = 0
            while entries < reply["backlog"]:
                msg = await reader.receive(timeout=60)
                frame = json.loads(msg.data)
                if "seq" in frame:
                    entries += 1
                    received += len(msg.data)
                    first_s = first_s or time.monotonic() - start
            done_s = time.monotonic() - start
            peak = _status_kib(server.pid, "VmHWM")
            for socket in (ws, fresh, reader):
                await socket.close()
    finally:
        await _stop(server)
    return {"log (MiB)": flood["answers"]["ack"] * FLOOD_BYTES / 2**20, "entries": entries,
            "fresh join ack (ms)": 1000 * fresh_s, "catch-up ack (ms)": 1000 * ack_s,
            "catch-up first entry (ms)": 1000 * first_s, "catch-up complete (s)": done_s,
            "server RSS before (MiB)": rss_before / 1024, "server peak RSS (MiB)": peak / 1024}


async def attack_main(args: argparse.Namespace) -> None:
    """--attack: the load alone, then with a flooding participant; then a 50 MB catch-up."""
    async with asyncio.timeout(args.time_limit):
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            calm = await measure("mlscall", args, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            attacked = await measure("mlscall", args, Path(tmp), attack=True)
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            caught = await catch_up(args, Path(tmp), 50 * 2**20)
    print(f"ds_load --attack: {args.clients} clients in rooms of {args.room_size}, {args.rate:g} messages/s "
          f"each for {args.duration:g} s; the attacker, alone in a room of its own, sends "
          f"{FLOOD_RATE:g} application messages/s of {FLOOD_BYTES // 1024} KiB (within its rate limit)")
    print(f"{'metric (other rooms)':24} {'attacked':>12} {'calm':>12} {'ratio':>8}")
    headline = ("ack p50 (ms)", "ack p99 (ms)", "latency p50 (ms)", "latency p99 (ms)", "delivered messages/s")
    for metric in headline:
        print(f"{metric:24} {attacked[metric]:12.2f} {calm[metric]:12.2f} {attacked[metric] / calm[metric]:8.2f}")
    for metric in ("lost", "errors", "flood sent", "flood accepted", "flood refused (quota)"):
        print(f"{metric:24} {attacked[metric]:12,.0f} {calm[metric]:12,.0f}")
    print(f"catch-up from seq 0 of a {caught['log (MiB)']:.0f} MiB log ({caught['entries']:.0f} entries) "
          "against a fresh join, same server:")
    for metric, value in caught.items():
        print(f"  {metric:28} {value:10.1f}")
    write_figures(args.json, "ds_load_attack", [
        figure(metric.rsplit(" (", 1)[0], "ms", attacked[metric], calm[metric],
               "the same load without the attacker")
        for metric in headline[:4]] + [
        figure("catch-up first entry", "ms", caught["catch-up first entry (ms)"], caught["fresh join ack (ms)"],
               "a fresh join's ack"),
        figure("catch-up server peak RSS", "MiB", caught["server peak RSS (MiB)"],
               caught["server RSS before (MiB)"], "the server's RSS before the catch-up")])


async def redis_main(args: argparse.Namespace) -> None:
    """--store redis: SQLite on one instance, then 1..--instances instances over one Redis."""
    runs: list[tuple[str, int, dict[str, float]]] = []
    load_before = os.getloadavg()[0]
    async with asyncio.timeout(args.time_limit):
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            runs.append(("sqlite", 1, await measure("mlscall", args, Path(tmp))))
        for instances in range(1, args.instances + 1):
            with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
                redis = RedisServer(Path(tmp) / "redis", appendfsync=args.redis_fsync)
                redis.start()
                try:
                    assert redis.pid is not None
                    cpu0 = _cpu_seconds(redis.pid)
                    figures = await measure("mlscall", args, Path(tmp), store=redis.url, instances=instances)
                    # its CPU over the whole run (set-up, window, drain), per second of window
                    figures["redis cpu"] = (_cpu_seconds(redis.pid) - cpu0) / args.duration
                finally:
                    redis.stop()
                runs.append(("redis", instances, figures))
    sqlite = runs[0][2]
    one, most = runs[1][2], runs[-1][2]
    offered = args.clients * args.rate * (args.room_size - 1)
    print(f"ds_load --store redis: {args.clients} clients in {args.clients // args.room_size} rooms of "
          f"{args.room_size}, {args.rate:g} messages/s each for {args.duration:g} s (offered {offered:,.0f} "
          f"deliveries/s); {os.cpu_count()} cores; Redis appendfsync {args.redis_fsync}, SQLite --db-sync "
          f"normal; member i of a room on instance i mod N; {args.load_procs} load process(es), loopback")
    print(f"1-minute load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after it "
          "(other work on the machine skews every figure)")
    print(f"{'setup':22} {'delivered/s':>12} {'p50 (ms)':>9} {'p99 (ms)':>9} {'lost':>6} {'errors':>6} "
          f"{'server cpu':>10} {'redis cpu':>9}")
    for store, instances, figures in runs:
        label = f"{store}, {instances} instance{'s' if instances > 1 else ''}"
        print(f"{label:22} {figures['delivered messages/s']:12,.0f} {figures['latency p50 (ms)']:9.2f} "
              f"{figures['latency p99 (ms)']:9.2f} {figures['lost']:6,.0f} {figures['errors']:6,.0f} "
              f"{figures['server cpu']:10.2f} {figures.get('redis cpu', 0.0):9.2f}")
    vs_sqlite = one["delivered messages/s"] / sqlite["delivered messages/s"]
    scaling = most["delivered messages/s"] / one["delivered messages/s"]
    worst_p99 = max(figures["latency p99 (ms)"] for _, _, figures in runs)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"redis 1 instance / sqlite:       {vs_sqlite:5.2f}  (target >= {TARGET_REDIS_VS_SQLITE}: "
          f"{verdict(vs_sqlite >= TARGET_REDIS_VS_SQLITE)})")
    print(f"{args.instances} instances / 1 instance:      {scaling:5.2f}  (target >= {TARGET_SCALING}: "
          f"{verdict(scaling >= TARGET_SCALING)})")
    print(f"worst p99 delivery latency: {worst_p99:8.1f} ms (target < {TARGET_P99_MS:g} ms: "
          f"{verdict(worst_p99 < TARGET_P99_MS)})")
    write_figures(args.json, "ds_load_redis", [
        figure("redis 1 instance delivered", "msg/s", one["delivered messages/s"],
               sqlite["delivered messages/s"], "sqlite, 1 instance"),
        figure(f"redis {args.instances} instances delivered", "msg/s", most["delivered messages/s"],
               one["delivered messages/s"], "redis, 1 instance"),
        *(figure(f"{store} {instances} instance(s) latency p99", "ms", figures["latency p99 (ms)"],
                 TARGET_P99_MS, "the 100 ms target") for store, instances, figures in runs)])
    if args.plot is not None:
        _plot(args.plot, runs)


def _plot(path: str, runs: list[tuple[str, int, dict[str, float]]]) -> None:
    """Delivered messages/s and p99 latency per setup, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed; no plot written")
        return
    labels = [f"{store}\n{instances} inst." for store, instances, _ in runs]
    fig, (rate, p99) = plt.subplots(1, 2, figsize=(9, 3.5))
    rate.bar(labels, [figures["delivered messages/s"] for _, _, figures in runs])
    rate.set_ylabel("delivered messages/s")
    p99.bar(labels, [figures["latency p99 (ms)"] for _, _, figures in runs])
    p99.axhline(TARGET_P99_MS, linestyle="--", color="red")
    p99.set_ylabel("p99 delivery latency (ms)")
    fig.suptitle(f"ds_load: SQLite vs instances over one Redis ({os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


async def main(args: argparse.Namespace) -> None:
    if args.clients % args.room_size or args.clients < args.room_size:
        raise SystemExit("--clients must be a multiple of --room-size")
    if args.attack:
        await attack_main(args)
        return
    if args.store == "redis":
        await redis_main(args)
        return
    async with asyncio.timeout(args.time_limit):
        if args.only is not None:  # one server alone, for profiling: no figures written
            with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
                alone = await measure(args.only, args, Path(tmp))
            for metric, value in alone.items():
                print(f"{args.only} {metric:24} {value:12.2f}")
            return
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            ours = await measure("mlscall", args, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="ds-load-") as tmp:
            base = await measure("baseline", args, Path(tmp))
    offered = args.clients * args.rate * (args.room_size - 1)
    size = len(Payload(0, args.payload, args.room_size).template)
    print(f"ds_load: {args.clients} clients in rooms of {args.room_size}, {args.rate:g} messages/s each "
          f"for {args.duration:g} s (offered {offered:,.0f} deliveries/s), {size}-byte MLS PrivateMessages, "
          f"{args.load_procs} load process(es), loopback")
    print("baseline: minimal aiohttp fan-out server (verbatim forwarding, constant ack; no parsing, "
          "auth, storage or sequencing)")
    print(f"{'metric':24} {'mlscall':>12} {'baseline':>12} {'ratio':>8}")
    headline = ("delivered messages/s", "latency p50 (ms)", "latency p99 (ms)")
    for metric in headline:
        print(f"{metric:24} {ours[metric]:12.2f} {base[metric]:12.2f} {ours[metric] / base[metric]:8.2f}")
    for metric in ("sent", "expected", "delivered", "lost", "acks", "errors"):
        print(f"{metric:24} {ours[metric]:12,.0f} {base[metric]:12,.0f}")
    for metric in ("server cpu", "load cpu"):
        print(f"{metric + ' (cores)':24} {ours[metric]:12.2f} {base[metric]:12.2f}")
    print(f"{'server cpu/msg (us)':24} {ours['server cpu/msg']:12.0f} {base['server cpu/msg']:12.0f}  "
          "(CPU time per message sent, its fan-out included)")
    write_figures(args.json, "ds_load", [
        figure(metric.rsplit(" (", 1)[0] if "(" in metric else metric,
               metric.rsplit(" (", 1)[1].rstrip(")") if "(" in metric else "msg/s",
               ours[metric], base[metric], "minimal aiohttp fan-out server") for metric in headline])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per client")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds to wait for deliveries after the window")
    parser.add_argument("--payload", type=int, default=160, help="bytes per MLS message")
    parser.add_argument("--load-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--quick", action="store_true", help="100 clients for 3 s (a smoke run)")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--only", choices=("mlscall", "baseline"), default=None,
                        help="measure one server alone (for profiling; no JSON)")
    parser.add_argument("--attack", action="store_true",
                        help="measure other rooms' ack and delivery latency with one participant flooding "
                             "its room against the same load without it, then a 50 MB catch-up")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="redis: SQLite on one instance against 1..--instances instances over one Redis "
                             "(instead of the mlscall-vs-baseline comparison)")
    parser.add_argument("--instances", type=int, default=3,
                        help="with --store redis: the most instances measured (from 1 up)")
    parser.add_argument("--redis-fsync", choices=("always", "everysec"), default="everysec",
                        help="with --store redis: the private redis-server's appendfsync")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="with --store redis: also draw the figures to a PNG (needs matplotlib)")
    parser.add_argument("--role", choices=("main", "worker", "baseline", "attacker"), default="main",
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first-room", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rooms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--secret-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.quick:
        args.clients, args.duration, args.drain = 100, 3.0, 3.0
    return args


def run(args: argparse.Namespace) -> Awaitable[None]:
    return {"main": main, "worker": worker, "baseline": baseline, "attacker": attacker}[args.role](args)


if __name__ == "__main__":
    asyncio.run(run(parse_args()))
