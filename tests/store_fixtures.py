"""A pytest plugin (tests/conftest.py loads it): the stores the signaling tests run against,
and the redis-server they share. (A conftest.py in tests/signaling would take the module
name ``conftest`` from the top one, which the test modules import from.)

A test (or fixture) that takes ``store_kind`` runs once per selected store:
``sqlite`` and ``redis`` by default, one of them with ``--store sqlite`` or
``--store redis`` (or ``MLSCALL_TEST_STORE=sqlite|redis|both`` in the
environment). ``redis_url`` is a Redis database emptied before
the test, on one private redis-server (tests/redis_server.py) started for
the whole session on a loopback port and stopped at its end.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from redis_server import RedisServer

STORES = ("sqlite", "redis")
#: the environment variable selecting the stores, as ``--store`` does
STORE_ENV = "MLSCALL_TEST_STORE"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=(*STORES, "both"), default=None,
                     help=f"run the signaling tests against this store only (default: both; also ${STORE_ENV})")


def selected_stores(config: pytest.Config) -> tuple[str, ...]:
    """The stores chosen by ``--store`` or ``$MLSCALL_TEST_STORE``: both unless one is named."""
    chosen = config.getoption("--store") or os.environ.get(STORE_ENV, "both")
    if chosen == "both":
        return STORES
    if chosen not in STORES:
        raise pytest.UsageError(f"{STORE_ENV} must be sqlite, redis or both, not {chosen!r}")
    return (chosen,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", selected_stores(metafunc.config), indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"redis"``: one run of the test per selected store."""
    return request.param


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (AOF, ``appendfsync always``), on 127.0.0.1 only."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis database 0, emptied for this test."""
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=10.0) as conn:
        conn.sendall(b"FLUSHALL SYNC\r\n")
        assert conn.recv(64).startswith(b"+OK"), "redis-server did not flush"
    return redis_server.url
