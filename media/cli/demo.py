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
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from signaling.client import fetch_token
from signaling.config import ServerConfig
from signaling.server import start_server

from ..call_peer import CallOptions, CallPeer
from ..mesh import MediaSources
from ..sinks import VerifyingSink
from .bot import summary, watch

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
    parser.add_argument("--log-level", default="warning",
                        choices=("debug", "info", "warning", "error"))


async def _demo(args: argparse.Namespace, db: Path) -> int:
    print("starting the signaling server on 127.0.0.1 ...", file=sys.stderr, flush=True)
    server = await start_server(ServerConfig(host="127.0.0.1", port=args.port, db_path=db,
                                             secret_file=Path(f"{db}.secret")))
    peers: list[CallPeer] = []
    try:
        for name in BOT_NAMES[:args.bots]:
            print(f"starting bot {name} ...", file=sys.stderr, flush=True)
            token = await fetch_token(server.url, args.room, name)
            peer = CallPeer(server.ws_url, args.room, token, sources=MediaSources.synthetic(),
                            sinks=[VerifyingSink()],
                            options=CallOptions(loopback=True, self_update_interval=args.self_update))
            await peer.start()
            peers.append(peer)
        print(f"\nThe call is running. Open {server.url}/?room={args.room} in a browser to join it.\n"
              "Press Ctrl-C to end.\n", flush=True)
        await watch(peers, args.duration)
    finally:
        statuses = [peer.status() for peer in peers]
        for peer in peers:
            await peer.stop()
        await server.close()
    for status in statuses:
        print(summary(status), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="mlscall-demo-") as tmp:
        db = args.db or Path(tmp) / "demo.db"
        try:
            return asyncio.run(_demo(args, db))
        except OSError as exc:
            print(f"mlscall demo: {exc}", file=sys.stderr)
            return 1
