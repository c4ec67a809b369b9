"""A flooding member against the delivery service's log and catch-up (real server, 127.0.0.1).

Each test plays the attacker (a member of the room's group, within its rate limit) and then checks
that the room and another room still work for a legitimate member: quotas per epoch stop a flood of
application messages with ``quota_exceeded`` and bound what reaches the database file; a catch-up of
a ~50 MB log is paged, so the server's memory stays far below the log's size; a catch-up whose
socket closes stops reading; pruning by size and by age (a clock the test controls) ends in
``log_truncated`` for a catch-up from before it, never for a newcomer's Welcome.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import MakeServer, expect_error
from ds_participant import Participant, group_of
from signaling.client import SignalingClient
from signaling.delivery import CATCHUP_PAGE_BYTES
from signaling.errors import ErrorCode, SignalingError
from signaling.server import RunningServer
from signaling.sqlite_store import SQLiteStore
from signaling.store import ApplicationRequest, LogEntry, LogPolicy, Outcome

SECRET = b"Q-flood-secret-0123456789abcdef!"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

ROOM = "flooded"
KIB, MIB = 1024, 1024 * 1024


def database_bytes(path: Path) -> int:
    """The size of the database file once its WAL is checkpointed into it (what it holds)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def event_at(client: SignalingClient, kind: str, seq: int) -> dict[str, Any]:
    """The pushed ``kind`` event of ``seq`` (earlier ones are dropped)."""
    while True:
        event = await client.next_event(kind)
        if event["seq"] >= seq:
            assert event["seq"] == seq, (event["seq"], seq)
            return event


async def still_serves(server: RunningServer, clients: list[SignalingClient], members: list[Participant],
                       room: str = "bystanders") -> int:
    """The flooded room's legitimate members still commit and exchange application messages,
    and a group in another room forms and talks; the seq of the commit."""
    alice, bob = members[0], members[1]
    ack = await alice.update()
    for member in (alice, bob):
        event = await event_at(member.client, "commit", ack["seq"])
        assert event["from"] == alice.identity
    bob.view.receive(event["commit"])
    seq = await alice.client.send_application(alice.view.epoch, alice.send(b"still here"))
    event = await event_at(bob.client, "application", seq)
    assert bob.view.receive(event["ciphertext"]).content == b"still here"
    dora, erin = await group_of(server, clients, (f"{room}-dora", f"{room}-erin"), room)
    seq = await dora.client.send_application(dora.view.epoch, dora.send(b"hello"))
    event = await erin.client.next_event("application")
    assert event["seq"] == seq and erin.view.receive(event["ciphertext"]).content == b"hello"
    return ack["seq"]


async def fill(server: RunningServer, sender: str, epoch: int, total: int, size: int) -> list[LogEntry]:
    """Append ``total`` bytes of application messages of ``size`` bytes straight to the store
    (the bodies are random: the catch-up only reads them); the entries, in order."""
    entries: list[LogEntry] = []
    while len(entries) * size < total:
        requests = [ApplicationRequest(sender, epoch, os.urandom(size)) for _ in range(16)]
        for result in await server.server.store.append(ROOM, requests):
            assert result.outcome is Outcome.ACCEPTED, result
            entries.extend(result.entries)
    return entries


class CountingStore(SQLiteStore):
    """The SQLite store, counting the catch-up pages it serves."""

    pages = 0

    async def read_log(self, room: str, reader: str, **kwargs: Any) -> list[LogEntry]:
        page = await super().read_log(room, reader, **kwargs)
        self.pages += 1
        return page


# -- quotas -----------------------------------------------------------------------------------


async def test_a_flood_stops_at_the_sender_quota_and_the_file_grows_by_no_more(
        make_server: MakeServer, clients: list[SignalingClient], tmp_path: Path) -> None:
    quota = 2 * MIB
    db = tmp_path / "quota.db"
    server = await make_server(db_path=db, quota_sender_bytes=quota, quota_sender_entries=None)
    alice, bob, mallory = await group_of(server, clients, ("alice", "bob", "mallory"), ROOM)
    on_sqlite = isinstance(server.server.store, SQLiteStore)
    before = database_bytes(db) if on_sqlite else 0
    last_seq = (await server.server.store.group_state(ROOM)).last_seq
    payload = os.urandom(60 * KIB)
    sizes: list[int] = []  # of the accepted ciphertexts
    while True:  # as fast as an attacker's rate limit lets it
        ciphertext = mallory.send(payload)
        try:
            await mallory.client.send_application(mallory.view.epoch, ciphertext)
        except SignalingError as err:
            refusal = err
            break
        sizes.append(len(ciphertext))
        assert sum(sizes) <= quota
    assert refusal.code == ErrorCode.QUOTA_EXCEEDED
    assert refusal.details == {"scope": "sender", "unit": "bytes", "limit": quota, "epoch": 1}
    assert sum(sizes) <= quota < sum(sizes) + len(ciphertext)  # it stopped at the quota, not before
    accepted = len(sizes)
    state = await server.server.store.group_state(ROOM)
    assert state.last_seq == last_seq + accepted
    for _ in range(20):  # every further attempt is refused and writes nothing
        await expect_error(mallory.client.send_application(mallory.view.epoch, mallory.send(payload)),
                           ErrorCode.QUOTA_EXCEEDED)
    assert (await server.server.store.group_state(ROOM)).last_seq == state.last_seq
    small = mallory.send(b"fits")  # what is left of the quota still takes a small message
    assert sum(sizes) + len(small) <= quota
    assert await mallory.client.send_application(mallory.view.epoch, small) == state.last_seq + 1
    state = await server.server.store.group_state(ROOM)
    logged = [e for e in await server.server.store.read_entries(ROOM, after_seq=last_seq) if e.sender == "mallory"]
    assert sum(len(e.body) for e in logged) == sum(sizes) + len(small) <= quota
    if on_sqlite:
        # The file: the accepted ciphertexts plus at most 64 KiB (B-tree pages, row headers,
        # the quota counters; 15 KiB measured for these 35 entries).
        grown = database_bytes(db) - before
        assert sum(sizes) <= grown <= quota + 64 * KIB, (grown, quota)
    # Another member's messages and a commit are not starved; a commit starts fresh quotas.
    commit = await still_serves(server, clients, [alice, bob])
    mallory.view.receive((await event_at(mallory.client, "commit", commit))["commit"])
    assert await mallory.client.send_application(mallory.view.epoch, mallory.send(payload)) > state.last_seq


async def test_the_room_quota_counts_every_sender_and_spares_commits(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server(quota_room_entries=5, quota_sender_entries=3)
    alice, bob, carol = await group_of(server, clients, ("alice", "bob", "carol"), ROOM)
    for _ in range(3):
        await carol.client.send_application(carol.view.epoch, carol.send(b"c"))
    err = await expect_error(carol.client.send_application(carol.view.epoch, carol.send(b"c")),
                             ErrorCode.QUOTA_EXCEEDED)
    assert (err.details["scope"], err.details["unit"], err.details["limit"]) == ("sender", "entries", 3)
    for _ in range(2):
        await bob.client.send_application(bob.view.epoch, bob.send(b"b"))
    err = await expect_error(alice.client.send_application(alice.view.epoch, alice.send(b"a")),
                             ErrorCode.QUOTA_EXCEEDED)
    assert (err.details["scope"], err.details["unit"], err.details["limit"]) == ("room", "entries", 5)
    await still_serves(server, clients, [alice, bob])


# -- paged catch-up ---------------------------------------------------------------------------


async def read_catch_up(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """The join ack and then (seq, digest) of every event until the backlog is in."""
    reply = json.loads((await ws.receive(timeout=30)).data)
    assert reply["type"] == "ack", reply
    seen: list[tuple[int, str]] = []
    while len(seen) < reply["backlog"]:
        frame = json.loads((await ws.receive(timeout=30)).data)
        body = frame.get("ciphertext") or frame.get("commit") or frame.get("welcome") or ""
        seen.append((frame["seq"], hashlib.sha256(base64.b64decode(body)).hexdigest()))
    return reply, seen


async def test_a_catch_up_of_a_50_mb_log_is_paged_in_bounded_memory(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server(log_max_bytes=None, quota_sender_bytes=None, quota_room_bytes=None)
    alice, bob = await group_of(server, clients, ("alice", "bob"), ROOM)
    flood = await fill(server, "alice", alice.view.epoch, 50 * MIB, 250 * KIB)
    expected = [(entry.seq, hashlib.sha256(entry.body).hexdigest()) for entry in flood]
    token = server.server.tokens.mint(ROOM, "carol", 600)
    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url, max_msg_size=0) as ws:
            await ws.send_json({"type": "join", "id": 1, "room": ROOM, "token": token,
                                "since": flood[0].seq - 1})
            reply, seen = await read_catch_up(ws)
            # live entries meanwhile come after the last page, none lost, none twice
            live = await alice.client.send_application(alice.view.epoch, alice.send(b"live"))
            frame = json.loads((await ws.receive(timeout=30)).data)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply["backlog"] == len(flood) and seen == expected
    assert (frame["type"], frame["seq"]) == ("application", live) and live == flood[-1].seq + 1
    # The log is 50 MiB; the server holds a page or two of it (1 MiB each, as raw bytes, entries
    # and base64 frames) and the client what its socket reader took ahead: a bound well under
    # the log's size that a loaded machine (a slower reader here) still meets.
    assert peak < 20 * MIB, peak
    await still_serves(server, clients, [alice, bob])


async def test_a_catch_up_stops_reading_when_its_socket_closes(
        make_server: MakeServer, clients: list[SignalingClient], tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "counting.db",
                          policy=LogPolicy(max_bytes=None, sender_bytes=None, room_bytes=None))
    server = await make_server(store=store)
    alice, bob = await group_of(server, clients, ("alice", "bob"), ROOM)
    flood = await fill(server, "alice", alice.view.epoch, 64 * MIB, 250 * KIB)
    pages_in_log = len(flood) * 250 * KIB // CATCHUP_PAGE_BYTES
    token = server.server.tokens.mint(ROOM, "carol", 600)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url, max_msg_size=0)
        store.pages = 0
        await ws.send_json({"type": "join", "id": 1, "room": ROOM, "token": token, "since": 0})
        assert json.loads((await ws.receive(timeout=30)).data)["type"] == "ack"
        assert json.loads((await ws.receive(timeout=30)).data)["seq"] == 1  # the first page is coming
        # the room's sequencer is not held up by the catch-up: members' messages are acknowledged
        seq = await alice.client.send_application(alice.view.epoch, alice.send(b"meanwhile"))
        assert seq == flood[-1].seq + 1
        await ws.close()
    while (await alice.client.next_event("presence")) != {"type": "presence", "event": "leave",
                                                           "identity": "carol", "dropped": True}:
        pass  # the server has seen carol's connection close
    served = store.pages
    await alice.client.send_application(alice.view.epoch, alice.send(b"later"))  # a turn of the loop
    assert store.pages == served
    # what the socket's buffers took before the close, never the whole log
    assert served <= pages_in_log // 3, (served, pages_in_log)
    await still_serves(server, clients, [alice, bob])


# -- pruning by size and by age ---------------------------------------------------------------


async def test_pruning_by_size_spares_the_current_epochs_welcome(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server(log_max_bytes=1 * MIB)
    alice, bob = await group_of(server, clients, ("alice", "bob"), ROOM)
    carol = await Participant.joined(server, clients, "carol", ROOM)
    await carol.publish()
    await carol.client.close()  # her Welcome waits for her
    carol.group = None
    packages = [await alice.client.claim_key_package("carol")]
    output = alice.view.add_many(packages)
    added = await alice.submit(output, {"carol": output.welcome})
    for _ in range(14):  # 2 MiB of application messages in the new epoch
        await alice.client.send_application(alice.view.epoch, alice.send(os.urandom(150 * KIB)))
    state = await server.server.store.group_state(ROOM)
    assert state.pruned_seq > added["seq"]  # application messages after the Welcome went too
    kept = await server.server.store.read_log(ROOM, "bob")
    assert sum(len(entry.body) for entry in kept) <= 1 * MIB + 16 * KIB
    assert kept[0].seq == added["seq"]  # the commit that started the epoch is spared
    away = SignalingClient(server.ws_url, ROOM, server.server.tokens.mint(ROOM, "bob", 600))
    clients.append(away)  # bob, back from before the pruning
    await expect_error(away.connect(since=added["seq"]), ErrorCode.LOG_TRUNCATED)
    assert (await away.connect(since=state.pruned_seq))["epoch"] == 2
    # carol, a newcomer, still gets her Welcome and joins the group
    late = await Participant.joined(server, clients, "carol", ROOM)
    welcome = await late.client.next_event("welcome")
    assert welcome["seq"] == added["seq"] + 1
    group = carol.mls.group_join(carol.client_id, welcome["welcome"])
    assert group.epoch_authenticator() == alice.view.epoch_authenticator()
    carol.group, carol.client = group, late.client
    await still_serves(server, clients, [alice, carol])


async def test_pruning_by_age_with_the_servers_clock_then_log_truncated(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    now = [1_000_000.0]
    server = await make_server(log_max_age=60.0, clock=lambda: now[0])
    alice, bob = await group_of(server, clients, ("alice", "bob"), ROOM)
    old = await alice.client.send_application(alice.view.epoch, alice.send(b"old"))
    now[0] += 30
    middle = await alice.client.send_application(alice.view.epoch, alice.send(b"middle"))
    assert (await server.server.store.group_state(ROOM)).pruned_seq == 0
    now[0] += 45  # "old" is 75 s old, "middle" 45 s
    young = await alice.client.send_application(alice.view.epoch, alice.send(b"young"))
    state = await server.server.store.group_state(ROOM)
    assert state.pruned_seq == old
    assert [e.seq for e in await server.server.store.read_log(ROOM, "bob") if e.kind.value == "application"] \
        == [middle, young]
    watcher = SignalingClient(server.ws_url, ROOM, server.server.tokens.mint(ROOM, "watcher", 600))
    clients.append(watcher)
    await expect_error(watcher.connect(since=old - 1), ErrorCode.LOG_TRUNCATED)
    reply = await watcher.connect(since=old)
    assert reply["backlog"] == 2
    await still_serves(server, clients, [alice, bob])


async def test_a_catch_up_overtaken_by_pruning_ends_with_log_truncated(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    # (the fills reach the members live through the room's feed: their queues take them whole,
    # so that only the pruning ends carol's catch-up)
    server = await make_server(log_max_bytes=32 * MIB, quota_sender_bytes=None, quota_room_bytes=None,
                               max_queued_bytes=128 * MIB)
    alice, bob = await group_of(server, clients, ("alice", "bob"), ROOM)
    first = await fill(server, "alice", alice.view.epoch, 30 * MIB, 250 * KIB)
    token = server.server.tokens.mint(ROOM, "carol", 600)
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url, max_msg_size=0) as ws:
        await ws.send_json({"type": "join", "id": 1, "room": ROOM, "token": token, "since": first[0].seq - 1})
        reply = json.loads((await ws.receive(timeout=30)).data)
        assert reply["backlog"] == len(first)
        seqs = [json.loads((await ws.receive(timeout=30)).data)["seq"]]  # her first page is under way
        # carol reads nothing more for now: her replay waits for her socket while the log moves on
        await fill(server, "alice", alice.view.epoch, 24 * MIB, 250 * KIB)
        pruned = (await server.server.store.group_state(ROOM)).pruned_seq
        assert pruned > first[len(first) // 2].seq
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                closed = msg
                break
            frame = json.loads(msg.data)
            if frame["type"] == "error":
                error = frame
                continue
            seqs.append(frame["seq"])
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4008)
    assert seqs == [entry.seq for entry in first[:len(seqs)]]  # in order, without a gap
    assert (error["code"], error["re"]) == ("log_truncated", None)
    assert seqs[-1] < error["pruned_seq"] <= pruned  # it stopped where the log no longer had its entries
    await still_serves(server, clients, [alice, bob])
