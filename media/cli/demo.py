"""``mlscall demo``: the end-to-end encrypted group call, in one command.

Starts the signaling server and MLS delivery service on 127.0.0.1 (with a
database in a temporary directory unless ``--db`` is given), then two bot
peers (``--bots``) that form an MLS group through it and stream a test
pattern and a tone to each other, every frame SFrame-encrypted under the
current epoch's key. It prints the address of the call page: open it in a
browser to join the bots as a third member. A status line shows each bot's
view; on ``--duration`` expiry or Ctrl-C it prints each bot's summary.

Everything stays on loopback: the server binds 127.0.0.1 and the bots use
127.0.0.1 ICE candidates only.

With ``--server URL`` (repeatable; loopback addresses of running
``mlscall serve`` instances sharing one store, docs/deployment.md) the demo
starts no server: the bots spread over the given instances (bot *i* starts
at the *i*-th) and, when one goes away, rejoin through the next.

With ``--sfu`` the call goes through an SFU (issue 16): the demo starts a
private Janus on loopback (:class:`media.cli.janus.JanusProcess`; Debian's
``/usr/bin/janus``) and the server with it (``ServerConfig.sfu_url``, every
room through Janus), so each bot publishes once and receives the others'
streams on one connection, Janus forwarding SFrame ciphertext it cannot
read.  The end says how many frames each bot decrypted through the SFU.
Without Janus installed it stops with exit status 2 and a hint.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from signaling import eventloop
from signaling.config import ServerConfig, is_loopback_host
from signaling.errors import SignalingError
from signaling.server import start_server

from ..call_peer import CallOptions, CallPeer, CallStatus
from ..mesh import MediaSources
from ..sinks import VerifyingSink
from .bot import DEFAULT_FAILOVER_TIMEOUT, first_token, summary, watch, ws_url_for
from .janus import JanusError, JanusProcess

BOT_NAMES = ("alice-bot", "bob-bot", "carol-bot", "dave-bot")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mlscall demo`` to ``parser``."""
    parser.add_argument("--port", type=int, default=8080,
                        help="port of the server on 127.0.0.1, 0 for any free one (default %(default)s)")
    parser.add_argument("--room", default="demo", help="room the bots join (default %(default)s)")
    parser.add_argument("--bots", type=int, default=2, choices=range(1, len(BOT_NAMES) + 1),
                        help="how many bot peers to start (default %(default)s)")
    parser.add_argument("--db", type=Path, default=None,
                        help="SQLite database (default: a fresh one in a temporary directory)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--self-update", type=float, default=15.0, metavar="S",
                        help="each bot commits an MLS self-update every S seconds (default %(default)s)")
    parser.add_argument("--server", action="append", default=None, metavar="URL",
                        help="a running instance on loopback to use instead of starting a server "
                             "(e.g. http://127.0.0.1:8080); repeat it for several instances")
    parser.add_argument("--sfu", action="store_true",
                        help="send the media through a private Janus SFU on loopback "
                             "(needs /usr/bin/janus: apt-get install janus)")
    parser.add_argument("--log-level", default="warning",
                        choices=("debug", "info", "warning", "error"))


async def _bots(args: argparse.Namespace, servers: list[str]) -> list[CallPeer]:
    """Start the bots, bot *i* at the *i*-th of ``servers`` (base URLs) and then the next ones."""
    peers: list[CallPeer] = []
    reconnect_timeout = DEFAULT_FAILOVER_TIMEOUT if len(servers) > 1 else None
    try:
        for i, name in enumerate(BOT_NAMES[:args.bots]):
            print(f"starting bot {name} ...", file=sys.stderr, flush=True)
            mine = servers[i % len(servers):] + servers[:i % len(servers)]
            token = await first_token(mine, args.room, name)
            peer = CallPeer([ws_url_for(server) for server in mine], args.room, token,
                            sources=MediaSources.synthetic(), sinks=[VerifyingSink()],
                            options=CallOptions(loopback=True, self_update_interval=args.self_update,
                                                reconnect_timeout=reconnect_timeout))
            await peer.start()
            peers.append(peer)
    except BaseException:
        for peer in peers:
            await peer.stop()
        raise
    return peers


def sfu_frames(peer: CallPeer) -> int:
    """Frames ``peer`` decrypted from its SFU subscriber connection (0 in a mesh room)."""
    return 0 if peer.sfu is None else sum(stats.frames_decrypted for stats in peer.sfu.stats())


def sfu_summary(janus_url: str, results: list[tuple[CallStatus, int]]) -> str:
    """What went through the SFU, one line per bot."""
    lines = [f"through the SFU (a private Janus at {janus_url}; it forwarded SFrame ciphertext only):"]
    for status, frames in results:
        lines.append(f"  {status.identity}: topology {status.topology}, "
                     f"{frames} frames decrypted through the SFU")
    return "\n".join(lines)


async def _demo(args: argparse.Namespace, db: Path, janus: JanusProcess | None) -> int:
    servers = [server.rstrip("/") for server in args.server or ()]
    for server in servers:
        ws_url_for(server)  # a ValueError for anything but an http(s)/ws(s) URL
        if not is_loopback_host(urlsplit(server).hostname):
            raise ValueError(f"the demo stays on loopback: {server!r}")
    running = None
    if not servers:
        print("starting the signaling server on 127.0.0.1 ...", file=sys.stderr, flush=True)
        if janus is not None:
            print("starting a private Janus (SFU) on 127.0.0.1 ...", file=sys.stderr, flush=True)
            await asyncio.to_thread(janus.start)
        running = await start_server(ServerConfig(host="127.0.0.1", port=args.port, db_path=db,
                                                  secret_file=Path(f"{db}.secret"),
                                                  sfu_url=None if janus is None else janus.url))
        servers = [running.url]
    peers: list[CallPeer] = []
    try:
        peers = await _bots(args, servers)
        print(f"\nThe call is running. Open {servers[0]}/?room={args.room} in a browser to join it.\n"
              "Press Ctrl-C to end.\n", flush=True)
        await watch(peers, args.duration)
    finally:
        results = [(peer.status(), sfu_frames(peer)) for peer in peers]
        for peer in peers:
            await peer.stop()
        if running is not None:
            await running.close()
    for status, _ in results:
        print(summary(status), flush=True)
    if janus is not None:
        print(sfu_summary(janus.url, results), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="mlscall-demo-") as tmp:
        db = args.db or Path(tmp) / "demo.db"
        if args.sfu and args.server:
            print("mlscall demo: --sfu starts its own server and Janus: it cannot use --server",
                  file=sys.stderr)
            return 2
        # without /usr/bin/janus: media.errors.NotInstalled, exit status 2 and a hint (media.cli.main)
        janus = JanusProcess(Path(tmp) / "janus") if args.sfu else None
        try:
            return eventloop.run(_demo(args, db, janus))
        except (ValueError, SignalingError, OSError, JanusError) as exc:
            print(f"mlscall demo: {exc}", file=sys.stderr)
            return 1
        finally:
            if janus is not None:
                janus.stop()  # after the server let go of its rooms
