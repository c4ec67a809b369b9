"""`mlscall serve` as a real process: durability across SIGKILL, and no plaintext at rest or in logs."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signaling.client import SignalingClient, fetch_token
from signaling.errors import ErrorCode, SignalingError

REPO_ROOT = Path(__file__).resolve().parent.parent
ROOM = "call"
GROUP = b"group-durable"


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


async def spawn(db: Path, log: Path) -> ServerProcess:
    """``python -m media.cli serve`` on a free loopback port, stderr appended to ``log``."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--db", str(db), "--log-level", "debug", "--static", str(db.parent / "no-static"),
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return ServerProcess(process, line.split()[-1])


@pytest.fixture
async def processes() -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def joined(server: ServerProcess, identity: str, **join: object) -> SignalingClient:
    client = SignalingClient(server.ws_url, ROOM, await fetch_token(server.url, ROOM, identity))
    await client.connect(**join)  # type: ignore[arg-type]
    return client


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path,
                                                     processes: list[ServerProcess]) -> None:
    db, log = tmp_path / "calls.db", tmp_path / "server.log"
    server = await spawn(db, log)
    processes.append(server)
    alice, bob = await joined(server, "alice"), await joined(server, "bob")
    carol_token = await fetch_token(server.url, ROOM, "carol")
    acked: dict[int, bytes] = {}
    reply = await alice.commit(GROUP, 0, b"commit-0", welcomes={"carol": b"welcome-carol"})
    acked[reply["seq"]] = b"commit-0"
    for batch in range(4):
        bodies = [f"alice-{batch}-{i}".encode() for i in range(10)] + [f"bob-{batch}-{i}".encode()
                                                                      for i in range(5)]
        senders = [alice] * 10 + [bob] * 5
        seqs = await asyncio.gather(*(s.send_application(1, b) for s, b in zip(senders, bodies)))
        acked.update(zip(seqs, bodies))
    reply = await bob.commit(GROUP, 1, b"commit-1")
    acked[reply["seq"]] = b"commit-1"
    await bob.publish_key_packages([b"kp-a", b"kp-b"])
    server.process.send_signal(signal.SIGKILL)  # right after the last acknowledgement
    assert await server.process.wait() == -signal.SIGKILL
    await alice.close()
    await bob.close()

    server = await spawn(db, log)
    processes.append(server)
    dave = await joined(server, "dave", since=0)
    assert dave.join_reply["epoch"] == 2 and dave.join_reply["backlog"] == len(acked)
    replayed = {}
    for _ in range(len(acked)):
        event = await dave.next_event("commit", "application")
        replayed[event["seq"]] = event.get("commit", event.get("ciphertext"))
    assert replayed == acked
    # The secret file persisted too: a token minted before the crash still works.
    carol = SignalingClient(server.ws_url, ROOM, carol_token)
    await carol.connect()
    welcome = await carol.next_event("welcome")
    assert (welcome["welcome"], welcome["epoch"]) == (b"welcome-carol", 1)
    # The sequencer state persisted: epoch 1 is taken, the group is at epoch 2.
    with pytest.raises(SignalingError) as info:
        await carol.commit(GROUP, 1, b"late")
    assert info.value.code == ErrorCode.CONFLICT and info.value.details["epoch"] == 2
    assert {await carol.claim_key_package("bob"), await carol.claim_key_package("bob")} == {b"kp-a", b"kp-b"}
    await dave.close()
    await carol.close()


async def test_server_stores_and_logs_no_plaintext(tmp_path: Path, processes: list[ServerProcess]) -> None:
    db, log = tmp_path / "calls.db", tmp_path / "server.log"
    server = await spawn(db, log)
    processes.append(server)
    marker = b"PLAINTEXT-MARKER-" + os.urandom(8).hex().encode()
    aead = AESGCM(AESGCM.generate_key(bit_length=128))  # shared by the members, never by the server
    alice, bob = await joined(server, "alice"), await joined(server, "bob")
    await alice.commit(GROUP, 0, b"commit-0")
    sent = []
    for i in range(20):
        nonce = os.urandom(12)
        ciphertext = nonce + aead.encrypt(nonce, marker + b" #%d" % i, b"")
        await alice.send_application(1, ciphertext)
        sent.append(ciphertext)
    for i in range(20):
        event = await bob.next_event("application")
        assert aead.decrypt(event["ciphertext"][:12], event["ciphertext"][12:], b"") == marker + b" #%d" % i
    tokens = [alice._token, bob._token]
    await alice.close()
    await bob.close()
    server.process.send_signal(signal.SIGTERM)
    assert await server.process.wait() == 0

    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("calls.db"))
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
