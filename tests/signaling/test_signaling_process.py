"""`mlscall serve` as a real process: durability across SIGKILL (the log, the sequencer's epoch and
the room's PublicGroup, against which the restarted server validates the next commit), and no
plaintext at rest or in logs; on each store (``--store redis://...`` for Redis)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ds_participant import Participant
from signaling.client import SignalingClient, fetch_token
from signaling.errors import ErrorCode, SignalingError

from conftest import REPO_ROOT

ROOM = "call"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


async def spawn(db: Path, log: Path, store_url: str | None) -> ServerProcess:
    """``python -m media.cli serve`` on a free loopback port (the SQLite file ``db``, or the store
    ``store_url``; the token secret beside ``db``), stderr appended to ``log``."""
    store = () if store_url is None else ("--store", store_url)
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--db", str(db), *store, "--log-level", "debug", "--static", str(db.parent / "no-static"),
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return ServerProcess(process, line.split()[-1])


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    """The Redis store of this run (None: SQLite in the test's directory)."""
    return request.getfixturevalue("redis_url") if store_kind == "redis" else None


@pytest.fixture
def at_rest(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], bytes]:
    """What the store keeps on disk: the SQLite files, or redis-server's directory (its AOF)."""
    root = request.getfixturevalue("redis_server").directory if store_kind == "redis" else tmp_path

    def read() -> bytes:
        return b"".join(path.read_bytes() for path in sorted(root.rglob("*"))
                        if path.is_file() and (store_kind == "redis" or path.name.startswith("calls.db")))

    return read


@pytest.fixture
async def processes() -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def joined(server: ServerProcess, identity: str, **join: object) -> Participant:
    client = SignalingClient(server.ws_url, ROOM, await fetch_token(server.url, ROOM, identity))
    await client.connect(**join)  # type: ignore[arg-type]
    return Participant(client, identity)


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path, processes: list[ServerProcess],
                                                     store_url: str | None) -> None:
    db, log = tmp_path / "calls.db", tmp_path / "server.log"
    server = await spawn(db, log, store_url)
    processes.append(server)
    alice, bob, carol = await joined(server, "alice"), await joined(server, "bob"), await joined(server, "carol")
    carol_token = carol.client._token
    await alice.create()
    await bob.publish()
    await carol.publish()
    await carol.client.close()  # carol's Welcome will wait for her
    acked: dict[int, bytes] = {}
    packages = [await alice.client.claim_key_package(who) for who in ("bob", "carol")]
    adds = alice.view.add_many(packages)
    reply = await alice.submit(adds, {"bob": adds.welcome, "carol": adds.welcome})
    bob.group = bob.mls.group_join(bob.client_id, adds.welcome)
    acked[reply["seq"]] = adds.commit
    for batch in range(4):
        bodies = [alice.send(f"alice-{batch}-{i}".encode()) for i in range(10)] + [
            bob.send(f"bob-{batch}-{i}".encode()) for i in range(5)]
        senders = [alice] * 10 + [bob] * 5
        seqs = await asyncio.gather(*(s.client.send_application(1, b) for s, b in zip(senders, bodies)))
        acked.update(zip(seqs, bodies))
    update = bob.view.update()
    reply = await bob.submit(update)
    acked[reply["seq"]] = update.commit
    alice.view.receive(update.commit)
    kept = [bob.key_package(), bob.key_package()]
    await bob.client.publish_key_packages(kept)
    server.process.send_signal(signal.SIGKILL)  # right after the last acknowledgement
    assert await server.process.wait() == -signal.SIGKILL
    await alice.client.close()
    await bob.client.close()

    server = await spawn(db, log, store_url)
    processes.append(server)
    dave = await joined(server, "dave", since=0)
    assert dave.client.join_reply["epoch"] == 2 and dave.client.join_reply["backlog"] == len(acked)
    replayed = {}
    for _ in range(len(acked)):
        event = await dave.client.next_event("commit", "application")
        replayed[event["seq"]] = event.get("commit", event.get("ciphertext"))
    assert replayed == acked
    # The secret file persisted too: a token minted before the crash still works.
    carol.client = SignalingClient(server.ws_url, ROOM, carol_token)
    await carol.client.connect()
    welcome = await carol.client.next_event("welcome")
    assert (welcome["welcome"], welcome["epoch"]) == (adds.welcome, 1)
    carol.group = carol.mls.group_join(carol.client_id, welcome["welcome"])
    carol.view.receive((await carol.client.next_event("commit"))["commit"])  # bob's update
    assert carol.view.epoch_authenticator() == alice.view.epoch_authenticator()
    # The sequencer state persisted: epoch 1 is taken, the group is at epoch 2.
    with pytest.raises(SignalingError) as info:
        await carol.client.commit(carol.view.group_id, 1, update.commit)
    assert info.value.code == ErrorCode.CONFLICT and info.value.details["epoch"] == 2
    # ... and so did the group's public state: the next commit is validated against epoch 2's tree
    # (alice's leaf's commit sent on carol's connection is refused, carol's own passes)
    forged = alice.view.update()
    with pytest.raises(SignalingError) as info:
        await carol.client.commit(carol.view.group_id, 2, forged.commit)
    assert info.value.code == ErrorCode.IDENTITY_MISMATCH
    assert (await carol.update())["epoch"] == 3
    assert {await carol.client.claim_key_package("bob"), await carol.client.claim_key_package("bob")} == set(kept)
    await dave.client.close()
    await carol.client.close()


async def test_server_stores_and_logs_no_plaintext(tmp_path: Path, processes: list[ServerProcess],
                                                   store_url: str | None, at_rest: Callable[[], bytes]) -> None:
    db, log = tmp_path / "calls.db", tmp_path / "server.log"
    server = await spawn(db, log, store_url)
    processes.append(server)
    marker = b"PLAINTEXT-MARKER-" + os.urandom(8).hex().encode()
    alice, bob = await joined(server, "alice"), await joined(server, "bob")
    await alice.create()
    await bob.publish()
    await alice.add(bob)
    sent = []
    for i in range(20):
        ciphertext = alice.send(marker + b" #%d" % i)
        await alice.client.send_application(1, ciphertext)
        sent.append(ciphertext)
    for i in range(20):
        event = await bob.client.next_event("application")
        assert bob.view.receive(event["ciphertext"]).content == marker + b" #%d" % i
    tokens = [alice.client._token, bob.client._token]
    await alice.client.close()
    await bob.client.close()
    server.process.send_signal(signal.SIGTERM)
    assert await server.process.wait() == 0

    stored = at_rest()
    logged = log.read_bytes()
    assert marker not in stored and marker not in logged
    assert all(c in stored for c in sent)  # the server did keep the ciphertext ...
    assert b"application" in logged  # ... and did log (types, ids and sizes only)
    for ciphertext in sent:
        assert ciphertext not in logged and base64.b64encode(ciphertext) not in logged
    for token in tokens:
        assert token.encode() not in logged
    secret = (tmp_path / "calls.db.secret").read_bytes()
    assert secret not in logged and secret.hex().encode() not in logged
