"""``mlscall serve``: run the signaling server and MLS delivery service.

On start it prints one line ``listening on http://HOST:PORT`` to stdout
(``--port 0`` picks a free port). The call page takes a room token in its URL
fragment (``/?room=R#token=T``), never in the query string; the access log
records paths without query strings. The token secret lives in ``--secret-file``
(default: the database path plus ``.secret``), created on first run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from . import eventloop
from .config import DEFAULT_STATIC_DIR, ServerConfig, is_loopback_host
from .server import start_server
from .turn import TurnCredentials, load_turn_secret

_DEFAULTS = ServerConfig()


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mlscall serve`` to ``parser``."""
    parser.add_argument("--host", default=_DEFAULTS.host,
                        help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port,
                        help="TCP port, 0 for any free one (default %(default)s)")
    parser.add_argument("--db", type=Path, default=Path(str(_DEFAULTS.db_path)),
                        help="SQLite database file (default %(default)s)")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="the store: redis://HOST:PORT/DB (several instances share it), "
                             "sqlite:///PATH or a plain path (one instance); default: SQLite at --db")
    parser.add_argument("--instance-id", default=None, metavar="ID",
                        help="this instance's id among those sharing the store, in its logs "
                             "(default: random)")
    parser.add_argument("--db-sync", choices=("normal", "full"), default="normal",
                        help="SQLite synchronous mode under WAL: normal survives a process kill, "
                             "full also power loss (default %(default)s)")
    parser.add_argument("--secret-file", type=Path, default=None,
                        help="token secret file, created on first run (default: DB path + .secret)")
    parser.add_argument("--static", type=Path, default=DEFAULT_STATIC_DIR,
                        help="directory served as the static root (default: the installed call page, or "
                             "the checkout's web/public with its bundle built by npm --prefix web run build)")
    parser.add_argument("--no-token-endpoint", action="store_true",
                        help="disable POST /token (otherwise on when --host is loopback, "
                             "and answered for loopback peers only)")
    parser.add_argument("--max-message-bytes", type=int, default=_DEFAULTS.max_message_bytes)
    parser.add_argument("--rate", type=float, default=_DEFAULTS.rate_per_second,
                        help="frames per second per connection (default %(default)s)")
    parser.add_argument("--burst", type=int, default=_DEFAULTS.rate_burst,
                        help="frames a connection may send at once (default %(default)s)")
    parser.add_argument("--max-rooms", type=int, default=_DEFAULTS.max_rooms)
    parser.add_argument("--max-participants", type=int, default=_DEFAULTS.max_participants)
    parser.add_argument("--max-key-packages", type=int, default=_DEFAULTS.max_key_packages)
    parser.add_argument("--max-queued-frames", type=int, default=_DEFAULTS.max_queued_frames,
                        help="frames waiting for a slow reader before it is disconnected "
                             "(default %(default)s)")
    parser.add_argument("--max-queued-bytes", type=int, default=_DEFAULTS.max_queued_bytes,
                        help="bytes of frames waiting for a slow reader before it is disconnected, "
                             "at least twice --max-message-bytes (default %(default)s)")
    parser.add_argument("--max-connections", type=int, default=_DEFAULTS.max_connections,
                        help="WebSocket connections open at once, joined or not; beyond it "
                             "upgrades get HTTP 503 (default %(default)s)")
    parser.add_argument("--max-connections-per-address", type=int,
                        default=_DEFAULTS.max_connections_per_address, metavar="N",
                        help="WebSocket connections one remote address may hold open; beyond it "
                             "upgrades get HTTP 429 (default %(default)s; behind a reverse proxy every "
                             "client shares its address: raise it and limit per client there)")
    parser.add_argument("--max-unjoined-per-address", type=int,
                        default=_DEFAULTS.max_unjoined_per_address, metavar="N",
                        help="of those, connections that have not joined a room yet "
                             "(default %(default)s)")
    parser.add_argument("--join-timeout", type=float, default=_DEFAULTS.join_timeout,
                        help="seconds a WebSocket gets to join a room before it is closed "
                             "(default %(default)s)")
    parser.add_argument("--header-timeout", type=float, default=_DEFAULTS.header_timeout,
                        help="seconds a TCP connection gets to send a complete request head, and an "
                             "idle keep-alive connection its next one (default %(default)s)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]",
                        help="a Host header value to answer besides localhost, 127.0.0.1 and [::1] "
                             "with the server's port (repeatable; the public name behind a proxy)")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="SCHEME://HOST[:PORT]",
                        help="a browser Origin allowed on /ws, /token and the KeyPackage routes besides "
                             "http(s) origins of allowed hosts (repeatable)")
    parser.add_argument("--abandon-after", type=float, default=_DEFAULTS.abandon_after,
                        help="seconds after which a room with no member of its group connected "
                             "is started afresh for its newcomers: its group, log and KeyPackages "
                             "are dropped (default %(default)s)")
    parser.add_argument("--log-epochs", type=int, default=_DEFAULTS.log_epochs, metavar="N",
                        help="past epochs of each room's log kept besides the current one; older "
                             "entries are pruned, and a member catching up from before them is "
                             "refused; 0 keeps everything (default %(default)s)")
    parser.add_argument("--log-max-bytes", type=int, default=_DEFAULTS.log_max_bytes, metavar="BYTES",
                        help="bytes of MLS messages each room's log keeps; the oldest go first, never "
                             "the current epoch's commit, Welcomes and proposals; 0: no limit "
                             "(default %(default)s)")
    parser.add_argument("--log-max-age", type=float, default=_DEFAULTS.log_max_age, metavar="SECONDS",
                        help="seconds a log entry is kept, with the same exception; 0: no limit "
                             "(default %(default)s)")
    parser.add_argument("--quota-sender-bytes", type=int, default=_DEFAULTS.quota_sender_bytes,
                        metavar="BYTES", help="bytes of application messages and proposals one sender "
                        "may add to a room's log per epoch; 0: no limit (default %(default)s)")
    parser.add_argument("--quota-sender-entries", type=int, default=_DEFAULTS.quota_sender_entries,
                        metavar="N", help="application messages and proposals one sender may add per "
                        "epoch; 0: no limit (default %(default)s)")
    parser.add_argument("--quota-room-bytes", type=int, default=_DEFAULTS.quota_room_bytes,
                        metavar="BYTES", help="bytes of application messages and proposals a room's "
                        "members together may add per epoch; 0: no limit (default %(default)s)")
    parser.add_argument("--quota-room-entries", type=int, default=_DEFAULTS.quota_room_entries,
                        metavar="N", help="application messages and proposals a room's members together "
                        "may add per epoch; 0: no limit (default %(default)s)")
    parser.add_argument("--turn-uri", action="append", default=[], metavar="URI",
                        help="a TURN server handed to every admitted participant, e.g. "
                             "turn:turn.example.org:3478?transport=udp (repeatable; needs --turn-secret-file)")
    parser.add_argument("--turn-secret-file", type=Path, default=None, metavar="PATH",
                        help="file holding the secret shared with the TURN server (coturn's "
                             "static-auth-secret); participants get credentials derived from it")
    parser.add_argument("--turn-ttl", type=int, default=3600, metavar="SECONDS",
                        help="seconds each TURN credential stays valid (default %(default)s)")
    parser.add_argument("--sfu", default=None, metavar="URL",
                        help="the Janus HTTP API (VideoRoom plugin) rooms go through above --sfu-above, e.g. "
                             "http://127.0.0.1:8088/janus; kept private: clients negotiate through the server")
    parser.add_argument("--sfu-above", type=int, default=0, metavar="N",
                        help="a room goes through the SFU once more than N participants are connected "
                             "(default %(default)s: always; needs --sfu)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))


def turn_from_args(args: argparse.Namespace) -> TurnCredentials | None:
    """The TURN credentials the options ask for (``ValueError`` when incomplete)."""
    if not args.turn_uri and args.turn_secret_file is None:
        return None
    if not args.turn_uri or args.turn_secret_file is None:
        raise ValueError("--turn-uri and --turn-secret-file go together")
    return TurnCredentials(tuple(args.turn_uri), load_turn_secret(args.turn_secret_file), args.turn_ttl)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        turn=turn_from_args(args), sfu_url=args.sfu, sfu_above=args.sfu_above,
        host=args.host, port=args.port, db_path=args.db, db_synchronous=args.db_sync,
        store_url=args.store, **({} if args.instance_id is None else {"instance_id": args.instance_id}),
        secret_file=args.secret_file or Path(f"{args.db}.secret"),
        token_endpoint=is_loopback_host(args.host) and not args.no_token_endpoint,
        static_dir=args.static, max_message_bytes=args.max_message_bytes,
        rate_per_second=args.rate, rate_burst=args.burst, max_rooms=args.max_rooms,
        max_participants=args.max_participants, max_key_packages=args.max_key_packages,
        max_queued_frames=args.max_queued_frames, max_queued_bytes=args.max_queued_bytes,
        max_connections=args.max_connections, abandon_after=args.abandon_after,
        max_connections_per_address=args.max_connections_per_address,
        max_unjoined_per_address=args.max_unjoined_per_address, join_timeout=args.join_timeout,
        header_timeout=args.header_timeout, allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        log_epochs=args.log_epochs or None, log_max_bytes=args.log_max_bytes or None,
        log_max_age=args.log_max_age or None, quota_sender_bytes=args.quota_sender_bytes or None,
        quota_sender_entries=args.quota_sender_entries or None,
        quota_room_bytes=args.quota_room_bytes or None, quota_room_entries=args.quota_room_entries or None)


async def _serve(config: ServerConfig) -> None:
    running = await start_server(config)
    print(f"listening on {running.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await running.close()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"mlscall serve: {err}", file=sys.stderr)
        return 2
    try:
        eventloop.run(_serve(config))
    except ConnectionError as err:  # the store did not answer at start (e.g. Redis down)
        print(f"mlscall serve: the store is unreachable: {err}", file=sys.stderr)
        return 1
    return 0
