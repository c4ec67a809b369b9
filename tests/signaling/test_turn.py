"""TURN credentials (signaling.turn, draft-uberti-behave-turn-rest-00 §2.2): their
derivation, the join reply's ``ice_servers``, and relay-only calls (two CallPeers;
the call page in Debian's Chromium with a CallPeer bot) through a real coturn
``turnserver`` this test starts on 127.0.0.1 (no other STUN/TURN server is ever
contacted: every ICE server here is that loopback one)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aioice.stun
import aioice.turn
import pytest
from aiortc import RTCIceServer

from conftest import CANDIDATE, REPO_ROOT, until
from media.call_peer import CallOptions, CallPeer, ice_servers_from_reply
from media.mesh import ice_server_host, usable_ice_servers
from media.sinks import VerifyingSink
from signaling import cli
from signaling.client import SignalingClient
from signaling.config import ServerConfig
from signaling.server import RunningServer, start_server
from signaling.turn import TurnCredentials, load_turn_secret, turn_credential

pytestmark = pytest.mark.e2e

ROOM = "turn"
SECRET = b"correct horse battery staple"


def expected_credential(secret: bytes, username: str) -> str:
    """The scheme's credential, computed here apart from signaling.turn."""
    return base64.b64encode(hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()).decode()


# -- derivation ------------------------------------------------------------------------------


def test_credential_is_base64_hmac_sha1_of_the_username() -> None:
    username = "1700003600:alice"
    assert turn_credential(SECRET, username) == expected_credential(SECRET, username)
    assert len(base64.b64decode(turn_credential(SECRET, username))) == 20  # SHA-1
    assert turn_credential(SECRET, username) != turn_credential(SECRET + b"!", username)
    assert turn_credential(SECRET, username) != turn_credential(SECRET, "1700003601:alice")


def test_username_is_expiry_then_identity_from_the_injected_clock() -> None:
    now = [1_700_000_000.75]
    turn = TurnCredentials(("turn:127.0.0.1:3478?transport=udp",), SECRET, ttl=600, clock=lambda: now[0])
    server = turn.issue("alice")
    assert server == {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "1700000600:alice",
                      "credential": expected_credential(SECRET, "1700000600:alice")}
    now[0] += 30
    assert turn.issue("bob")["username"] == "1700000630:bob"


def test_secret_stays_out_of_reprs_and_errors(tmp_path: Path) -> None:
    turn = TurnCredentials(("turn:127.0.0.1:3478",), SECRET)
    assert SECRET.decode() not in repr(turn)
    assert SECRET.decode() not in repr(ServerConfig(turn=turn, static_dir=None))
    with pytest.raises(ValueError, match="not a TURN URI") as bad_uri:
        TurnCredentials(("stun:127.0.0.1:3478",), SECRET)
    assert SECRET.decode() not in str(bad_uri.value)
    with pytest.raises(ValueError, match="at least one"):
        TurnCredentials((), SECRET)
    with pytest.raises(ValueError, match="at least 1 second"):
        TurnCredentials(("turn:127.0.0.1",), SECRET, ttl=0)


def test_secret_file_is_required_and_not_empty(tmp_path: Path) -> None:
    secret_file = tmp_path / "turn.secret"
    with pytest.raises(ValueError, match="cannot read the TURN secret file"):
        load_turn_secret(secret_file)
    secret_file.write_bytes(b" \n")
    with pytest.raises(ValueError, match="is empty"):
        load_turn_secret(secret_file)
    secret_file.write_bytes(SECRET + b"\n")
    assert load_turn_secret(secret_file) == SECRET


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(list(argv))


def test_serve_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "turn.secret"
    secret_file.write_bytes(SECRET)
    assert cli.config_from_args(serve_args()).turn is None
    config = cli.config_from_args(serve_args("--turn-uri", "turn:127.0.0.1:3478", "--turn-uri",
                                             "turn:127.0.0.1:3478?transport=tcp", "--turn-secret-file",
                                             str(secret_file), "--turn-ttl", "120"))
    assert config.turn is not None
    assert config.turn.uris == ("turn:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=tcp")
    assert config.turn.secret == SECRET and config.turn.ttl == 120
    with pytest.raises(ValueError, match="go together"):
        cli.config_from_args(serve_args("--turn-uri", "turn:127.0.0.1:3478"))
    # a missing secret file stops the server at start with a clear message
    args = serve_args("--turn-uri", "turn:127.0.0.1:3478", "--turn-secret-file", str(tmp_path / "none"),
                      "--db", str(tmp_path / "x.db"))
    assert cli.run(args) == 2
    assert "cannot read the TURN secret file" in capsys.readouterr().err


# -- the join reply --------------------------------------------------------------------------


async def join_reply(running: RunningServer, identity: str) -> dict[str, object]:
    client = SignalingClient(running.ws_url, ROOM, running.server.tokens.mint(ROOM, identity, 600))
    try:
        return await client.connect()
    finally:
        await client.close()


async def test_join_reply_carries_ice_servers_only_when_configured(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    plain = await start_server(ServerConfig(port=0, db_path=tmp_path / "plain.db", secret=b"k" * 32,
                                            static_dir=None))
    try:
        assert "ice_servers" not in await join_reply(plain, "alice")
    finally:
        await plain.close()
    turn = TurnCredentials(("turn:127.0.0.1:3478?transport=udp",), SECRET, ttl=300)
    served = await start_server(ServerConfig(port=0, db_path=tmp_path / "turn.db", secret=b"k" * 32,
                                             static_dir=None, turn=turn))
    try:
        before = int(time.time())
        reply = await join_reply(served, "alice")
        after = int(time.time())
    finally:
        await served.close()
    [server] = reply["ice_servers"]  # type: ignore[misc]
    expiry, identity = server["username"].split(":")
    assert identity == "alice" and before + 300 <= int(expiry) <= after + 300
    assert server["credential"] == expected_credential(SECRET, server["username"])
    assert server["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    [parsed] = ice_servers_from_reply(reply)
    assert (parsed.urls, parsed.username, parsed.credential) == (
        server["urls"], server["username"], server["credential"])
    assert "join room=turn identity=alice" in caplog.text  # the server did log the join
    assert SECRET.decode() not in caplog.text
    assert server["credential"] not in caplog.text


def test_malformed_ice_servers_are_left_out() -> None:
    reply = {"ice_servers": [{"urls": 3}, "turn:x", {"urls": ["turn:127.0.0.1"], "username": 1},
                             {"urls": "turn:127.0.0.1", "username": "u", "credential": "c"}]}
    [server] = ice_servers_from_reply(reply)
    assert server.urls == ["turn:127.0.0.1"] and server.username == "u"
    assert ice_servers_from_reply({}) == []


def test_loopback_mode_keeps_loopback_servers_only() -> None:
    assert ice_server_host("turn:127.0.0.1:3478?transport=udp") == "127.0.0.1"
    assert ice_server_host("turn:[::1]:3478") == "::1"
    assert ice_server_host("turns:turn.example.org?transport=tcp") == "turn.example.org"
    local = RTCIceServer(urls="turn:127.0.0.1:3478", username="u", credential="c")
    remote = RTCIceServer(urls=["turn:127.0.0.1:3478", "turn:turn.example.org:3478"])
    assert usable_ice_servers([local, remote], loopback=True) == [local]
    assert usable_ice_servers([local, remote], loopback=False) == [local, remote]


# -- a real TURN server ------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Coturn:
    port: int
    secret: bytes
    log: Path

    @property
    def uri(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def credentials(self, ttl: int = 600) -> TurnCredentials:
        return TurnCredentials((self.uri,), self.secret, ttl=ttl)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A private ``turnserver`` on 127.0.0.1 (use-auth-secret), stopped by its PID."""
    secret = secrets.token_hex(16).encode()
    port = free_udp_port()
    low = 50_000 + 200 * (os.getpid() % 40)
    log = tmp_path / "turnserver.log"
    conf = tmp_path / "turnserver.conf"
    conf.write_text("\n".join([
        f"listening-port={port}", "listening-ip=127.0.0.1", "relay-ip=127.0.0.1",
        "use-auth-secret", f"static-auth-secret={secret.decode()}", "realm=mlscall.test",
        "no-tls", "no-dtls", "no-tcp-relay", "allow-loopback-peers", "no-cli", "no-multicast-peers",
        f"min-port={low}", f"max-port={low + 199}", f"pidfile={tmp_path / 'turnserver.pid'}",
        f"log-file={log}", "simple-log", "verbose", f"userdb={tmp_path / 'turndb'}", "",
    ]))
    process = subprocess.Popen(["turnserver", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and "Total General servers" in log.read_text(errors="replace")):
            assert process.poll() is None, "turnserver exited at start"
            assert time.monotonic() < deadline, "turnserver did not start"
            time.sleep(0.05)
        yield Coturn(port, secret, log)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


async def allocate(coturn: Coturn, username: str, password: str) -> tuple[str, int]:
    """A TURN Allocate (aioice's TURN client); the relayed address."""
    transport, _ = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", coturn.port), username, password)
    try:
        return transport.get_extra_info("sockname")  # type: ignore[no-any-return]
    finally:
        transport.close()


async def test_coturn_accepts_issued_credentials_and_refuses_expired_ones(coturn: Coturn) -> None:
    fresh = coturn.credentials().issue("alice")
    host, port = await allocate(coturn, fresh["username"], fresh["credential"])
    assert host == "127.0.0.1" and port > 0
    # the same derivation, with an expiry already past: coturn refuses it
    expired = TurnCredentials((coturn.uri,), coturn.secret, ttl=1,
                              clock=lambda: time.time() - 60).issue("alice")
    with pytest.raises(aioice.stun.TransactionFailed) as refused:
        await allocate(coturn, expired["username"], expired["credential"])
    assert refused.value.response.attributes["ERROR-CODE"][0] in (401, 438)
    # and a credential made with another secret
    forged = TurnCredentials((coturn.uri,), b"not the secret").issue("alice")
    with pytest.raises(aioice.stun.TransactionFailed):
        await allocate(coturn, forged["username"], forged["credential"])


@pytest.fixture
async def turn_server(tmp_path: Path, coturn: Coturn) -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(port=0, db_path=tmp_path / "calls.db", secret=b"k" * 32,
                                              static_dir=None, turn=coturn.credentials()))
    yield running
    await running.close()


def selected_pair_types(peer: CallPeer, remote: str) -> set[tuple[str, str]]:
    """(local, remote) candidate types of the nominated ICE pairs of ``peer``'s link."""
    types = set()
    for transceiver in peer.links[remote].pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        for pair in connection._nominated.values():
            types.add((pair.local_candidate.type, pair.remote_candidate.type))
    return types


async def test_relay_only_call_through_coturn(turn_server: RunningServer, coturn: Coturn) -> None:
    peers: list[CallPeer] = []
    try:
        for identity in ("alice", "bob"):
            token = turn_server.server.tokens.mint(ROOM, identity, 600)
            peer = CallPeer(turn_server.ws_url, ROOM, token, sinks=[VerifyingSink()],
                            options=CallOptions(relay_only=True))
            peers.append(peer)
            await peer.start()
        alice, bob = peers

        def decoded(peer: CallPeer, remote: str) -> int:
            verifying = peer.sinks[0]
            assert isinstance(verifying, VerifyingSink)
            return min(verifying.frames(remote, kind) for kind in ("audio", "video"))

        await until(lambda: decoded(alice, "bob") >= 20 and decoded(bob, "alice") >= 20,
                    "20 decoded frames of each kind both ways, through the relay")
        for peer, remote in ((alice, "bob"), (bob, "alice")):
            link = peer.links[remote]
            assert selected_pair_types(peer, remote) == {("relay", "relay")}
            for description in (link.pc.localDescription, link.pc.remoteDescription):
                assert "typ relay" in description.sdp and "typ host" not in description.sdp
                assert set(CANDIDATE.findall(description.sdp)) == {"127.0.0.1"}
            stats = link.stats()
            assert stats.frames_decrypted >= 40 and sum(stats.failures.values()) == 0
        log = coturn.log.read_text(errors="replace")
        assert "ALLOCATE processed, success" in log
        assert coturn.secret.decode() not in log
    finally:
        for peer in peers:
            await peer.stop()


async def test_expired_credentials_connect_no_media(tmp_path: Path, coturn: Coturn) -> None:
    expired = TurnCredentials((coturn.uri,), coturn.secret, ttl=1, clock=lambda: time.time() - 60)
    running = await start_server(ServerConfig(port=0, db_path=tmp_path / "calls.db", secret=b"k" * 32,
                                              static_dir=None, turn=expired))
    peers: list[CallPeer] = []
    try:
        for identity in ("alice", "bob"):
            token = running.server.tokens.mint(ROOM, identity, 600)
            peer = CallPeer(running.ws_url, ROOM, token, sinks=[VerifyingSink()],
                            options=CallOptions(relay_only=True))
            peers.append(peer)
            await peer.start()
        alice, bob = peers
        await until(lambda: all(p.status().members == ("alice", "bob") for p in peers), "one group of two")
        await until(lambda: "bob" in alice.links and alice.links["bob"].negotiated
                    and "alice" in bob.links and bob.links["alice"].negotiated, "both links negotiated")
        for peer, remote in ((alice, "bob"), (bob, "alice")):
            pc = peer.links[remote].pc
            assert CANDIDATE.findall(pc.localDescription.sdp) == []  # no relay candidate was granted
            assert peer.links[remote].stats().frames_decrypted == 0
        assert "ALLOCATE processed, success" not in coturn.log.read_text(errors="replace")
    finally:
        for peer in peers:
            await peer.stop()
        await running.close()


# -- the page through the relay ----------------------------------------------------------------

#: Forces the page's peer connections to relay-only ICE (the Call option
#: ``iceTransportPolicy: 'relay'``, which the page's main.js does not expose)
#: and records the configuration each one got, to show its ICE servers came
#: from the join reply.
RELAY_ONLY_PAGE = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcConfigs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config) {
      window.__pcConfigs.push(JSON.parse(JSON.stringify(config)));
      super({ ...config, iceTransportPolicy: 'relay' });
    }
  };
})();
"""

#: Local and remote candidate types of the page's succeeded ICE pairs.
PAGE_PAIR_TYPES = """
async () => {
  const pairs = [];
  for (const [remote, link] of window.mlscall.call.links) {
    const stats = await link.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) {
        pairs.push([remote, stats.get(s.localCandidateId).candidateType,
                    stats.get(s.remoteCandidateId).candidateType]);
      }
    });
  }
  return pairs;
}
"""


@pytest.mark.browser
@pytest.mark.slow
async def test_page_and_bot_call_through_coturn(tmp_path: Path, coturn: Coturn) -> None:
    from playwright.async_api import async_playwright

    from signaling.config import DEFAULT_STATIC_DIR
    from web_page import CHROMIUM, CHROMIUM_FLAGS, browser_decrypted, page_status

    build = subprocess.run(["npm", "--prefix", str(REPO_ROOT / "web"), "run",
                            "--silent", "build"], capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    running = await start_server(ServerConfig(port=0, db_path=tmp_path / "calls.db", secret=b"k" * 32,
                                              static_dir=DEFAULT_STATIC_DIR, turn=coturn.credentials()))
    bot = CallPeer(running.ws_url, "webturn", running.server.tokens.mint("webturn", "alice-bot", 600),
                   sinks=[VerifyingSink()], options=CallOptions(relay_only=True))
    try:
        await bot.start()
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                permissions=["camera", "microphone"])
            try:
                await context.add_init_script(RELAY_ONLY_PAGE)
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{running.url}/?room=webturn&video=320x240")
                await page.fill("input[name=name]", "carla")
                await page.click("button[name=join]")
                verifying = bot.sinks[0]
                assert isinstance(verifying, VerifyingSink)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not (min(verifying.frames("carla", kind) for kind in ("audio", "video")) >= 30
                           and browser_decrypted(await page_status(page), "alice-bot") >= 30):
                    assert not errors, errors
                    assert loop.time() < deadline, "no media both ways through the relay within 30 s"
                    await asyncio.sleep(0.1)
                configs = await page.evaluate("window.__pcConfigs")
                assert configs and all(
                    [server["urls"] for server in config["iceServers"]] == [[coturn.uri]]
                    and config["iceServers"][0]["username"].endswith(":carla") for config in configs)
                pairs = await page.evaluate(PAGE_PAIR_TYPES)
                assert pairs and {tuple(pair) for pair in pairs} == {("alice-bot", "relay", "relay")}
                assert selected_pair_types(bot, "carla") == {("relay", "relay")}
                stats = bot.links["carla"].stats()
                assert stats.frames_decrypted >= 60 and sum(stats.failures.values()) == 0
            finally:
                await context.close()
    finally:
        await bot.stop()
        await running.close()
