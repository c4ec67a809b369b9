"""Shared fixtures: the official vectors live in ../shared relative to the repo root."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

#: the stores the signaling tests run against (--store) and the session's redis-server
pytest_plugins = ("store_fixtures",)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: seconds before a wait gives up (a bound, not a measurement)
BOUND = 30.0
#: the connection address of each ``a=candidate`` line of an SDP
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", re.MULTILINE)
SHARED = REPO_ROOT.parent / "shared"
#: the fixtures shared with the JS tests (tests/contracts/README.md)
CONTRACTS = REPO_ROOT / "tests" / "contracts"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """``../shared/vectors`` (never copied into the repo)."""
    path = SHARED / "vectors"
    if not path.is_dir():
        pytest.fail(f"official vectors not found at {path}")
    return path


MakeServer = Callable[..., Awaitable[Any]]


@pytest.fixture
async def make_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeServer]:
    """Start signaling servers on 127.0.0.1 (port 0, a database under
    ``tmp_path``, the test module's ``SECRET``); ``ServerConfig`` fields and
    ``store=`` override. All are closed after the test.

    In a test that takes ``store_kind`` (a signaling module's
    ``pytestmark = pytest.mark.usefixtures("store_kind")``), ``"redis"`` puts
    every server started without ``store=`` on the session's redis-server,
    its keys named after its database path: servers started on one path
    share their rooms (a restart finds them again), others do not."""
    from signaling.config import ServerConfig
    from signaling.server import RunningServer, start_server

    kind = request.getfixturevalue("store_kind") if "store_kind" in request.fixturenames else "sqlite"
    redis_url: str | None = request.getfixturevalue("redis_url") if kind == "redis" else None
    running: list[RunningServer] = []

    async def factory(**overrides: Any) -> RunningServer:
        store = overrides.pop("store", None)
        options: dict[str, Any] = {"port": 0, "db_path": tmp_path / f"server{len(running)}.db",
                                   "secret": request.module.SECRET, "static_dir": None}
        options.update(overrides)
        config = ServerConfig(**options)
        if store is None and redis_url is not None:
            from signaling.redis_store import RedisStore

            prefix = "t-" + hashlib.sha256(str(config.db_path).encode()).hexdigest()[:12]
            store = RedisStore.from_url(redis_url, policy=config.log_policy(), clock=config.clock,
                                        prefix=prefix)
        server = await start_server(config, store=store)
        running.append(server)
        return server

    yield factory
    for server in running:
        await server.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[Any]]:
    """Signaling clients a test opens, closed after it."""
    opened: list[Any] = []
    yield opened
    for client in opened:
        await client.close()


async def until(predicate: Callable[[], bool], what: str = "condition", bound: float = BOUND) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``bound`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not predicate():
        assert loop.time() < deadline, f"not reached within {bound} s: {what}"
        await asyncio.sleep(0.05)


def assert_loopback_only(sdp: str) -> None:
    """Every ICE candidate in ``sdp`` is 127.0.0.1 (and there is one)."""
    hosts = CANDIDATE.findall(sdp)
    assert hosts, "no ICE candidate in SDP"
    assert set(hosts) == {"127.0.0.1"}, hosts


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc gathers ICE candidates on 127.0.0.1 only, for this one test."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class SeededExporter:
    """Stand-in MLS exporter (``export_secret``): a deterministic secret per seed."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(self.seed + b"|" + label + b"|" + context).digest(length)


async def negotiate(a: Any, b: Any, before_answer: Callable[[], object] | None = None) -> None:
    """Offer from RTCPeerConnection ``a``, answer from ``b``, every SDP checked to be
    loopback-only; ``before_answer`` runs once ``b`` has the offer's transceivers
    (where SFrame is attached to them)."""
    from aiortc import RTCSessionDescription

    await a.setLocalDescription(await a.createOffer())
    assert_loopback_only(a.localDescription.sdp)
    await b.setRemoteDescription(RTCSessionDescription(a.localDescription.sdp, "offer"))
    if before_answer is not None:
        before_answer()
    await b.setLocalDescription(await b.createAnswer())
    assert_loopback_only(b.localDescription.sdp)
    await a.setRemoteDescription(RTCSessionDescription(b.localDescription.sdp, "answer"))


async def expect_error(awaitable: Awaitable[Any], code: Any) -> Any:
    """Await ``awaitable``, which must raise ``SignalingError`` with ``code``; the error."""
    from signaling.errors import SignalingError

    with pytest.raises(SignalingError) as info:
        await awaitable
    assert info.value.code == code, info.value
    return info.value


def deliver(message: bytes, views: Iterable[Any]) -> None:
    """Hand one MLSMessage to every ``mls.GroupView`` in ``views``."""
    for view in views:
        view.receive(message)


def agree(views: Sequence[Any], exports: Iterable[tuple[str, bytes, int]]) -> int:
    """Every ``GroupView`` is at one epoch with the same exporter outputs (of the
    asked lengths), epoch authenticator and roster; returns that epoch."""
    assert len({v.epoch for v in views}) == 1
    for label, context, length in exports:
        secrets = {v.export_secret(label, context, length).secret for v in views}
        assert len(secrets) == 1 and len(secrets.pop()) == length
    assert len({v.epoch_authenticator() for v in views}) == 1
    assert len({v.details().members for v in views}) == 1
    epoch: int = views[0].epoch
    return epoch
