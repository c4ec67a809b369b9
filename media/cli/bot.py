"""``mlscall bot``: join a call as an encrypted bot peer.

::

    mlscall bot --server http://127.0.0.1:8080 [--server http://127.0.0.1:8081 ...] \\
        --room standup --name bot [--video FILE] [--record PATH] [--duration S]

The bot joins the room as a :class:`media.call_peer.CallPeer`, streams the
test pattern and a tone (or ``--video FILE`` through aiortc's
``MediaPlayer``), verifies what it receives (or records it with
``--record``), shows a live status line on stderr and prints a summary on
stdout when it ends (after ``--duration`` seconds, on SIGINT/SIGTERM, or
when the server closes the connection).  Without ``--token`` it asks the
development server's loopback-only ``POST /token`` for one.  ICE uses
127.0.0.1 only when the server is on a loopback address (``--loopback`` /
``--no-loopback`` override).  Several ``--server`` addresses are instances of
one deployment sharing a store (docs/deployment.md): the bot joins the
first that answers and, when its instance goes away, rejoins the next one
and catches up there (within ``--reconnect-timeout``, 30 s by default with
several servers; with one, the bot ends when the server closes unless it
is given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from signaling import eventloop
from signaling.client import fetch_token
from signaling.config import is_loopback_host
from signaling.errors import SignalingError

from ..call_peer import CallOptions, CallPeer, CallStatus
from ..mesh import MediaSources
from ..sinks import RecordingSink, Sink, VerifyingSink

#: seconds a bot given several servers keeps trying to rejoin one (``--reconnect-timeout``)
DEFAULT_FAILOVER_TIMEOUT = 30.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mlscall bot`` to ``parser``."""
    parser.add_argument("--server", required=True, action="append",
                        help="signaling server base URL, e.g. http://127.0.0.1:8080; repeat it for "
                             "several instances of one deployment (tried in turn)")
    parser.add_argument("--room", required=True, help="room to join")
    parser.add_argument("--name", required=True, help="identity in the room")
    parser.add_argument("--token", default=None,
                        help="room token (default: minted by the server's loopback POST /token)")
    parser.add_argument("--video", type=Path, default=None,
                        help="media file to stream (default: a test pattern with a frame counter and a tone)")
    parser.add_argument("--record", type=Path, default=None,
                        help="record each participant to PATH with its name appended (e.g. call-bob.mp4)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds before leaving (default: until interrupted)")
    parser.add_argument("--self-update", type=float, default=None, metavar="S",
                        help="commit an MLS self-update every S seconds (post-compromise security)")
    parser.add_argument("--reconnect-timeout", type=float, default=None, metavar="S",
                        help="after losing the server, keep trying to rejoin (the next --server) for S "
                             "seconds (default: 30 with several servers, else end the call)")
    parser.add_argument("--loopback", action=argparse.BooleanOptionalAction, default=None,
                        help="use 127.0.0.1 ICE candidates only (default: when every server is loopback)")
    parser.add_argument("--log-level", default="warning",
                        choices=("debug", "info", "warning", "error"))


def ws_url_for(server: str) -> str:
    """``http(s)://host:port[/base]`` -> ``ws(s)://host:port[/base]/ws``."""
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"not an http(s) or ws(s) URL: {server!r}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def summary(status: CallStatus) -> str:
    """The final report, one fact per line."""
    failures = ", ".join(f"{kind.value} {count}" for kind, count in status.failures.items())
    epochs = ", ".join(f"{e.epoch} ({e.cause}, {e.members} members)" for e in status.epochs) or "none"
    lines = [
        f"summary for {status.identity}:",
        f"  frames sent:      {status.frames_sent}",
        f"  frames received:  {status.frames_received}",
        f"  frames decrypted: {status.frames_decrypted}",
    ]
    if status.frames_decoded is not None:
        lines.append(f"  frames decoded:   {status.frames_decoded}")
    lines += [
        f"  failures:         {status.failures_total} ({failures})",
        f"  epochs seen:      {epochs}",
        f"  commit conflicts: {status.conflicts}",
        f"  trust warnings:   {', '.join(f'{w.kind} {w.identity}' for w in status.warnings) or 'none'}",
        f"  verification:     {status.verification or '-'}",
        f"  final epoch:      {'-' if status.epoch is None else status.epoch}"
        f"{' (removed from the group)' if status.removed else ''}",
    ]
    return "\n".join(lines)


class StatusLine:
    """A status line on a terminal, rewritten in place (a plain line per
    update when the stream is not a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()

    def show(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def end(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def watch(peers: Sequence[CallPeer], duration: float | None) -> None:
    """Show the peers' status on stderr until ``duration`` seconds pass, a
    SIGINT/SIGTERM arrives or a peer's signaling connection ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    line = StatusLine(sys.stderr)
    interval = 0.5 if sys.stderr.isatty() else 1.0
    # one deadline, checked here: an asyncio.timeout around wait_for can lose its
    # cancellation when both expire together (Python 3.11), and never end the watch
    deadline = None if duration is None else loop.time() + duration
    try:
        while not stop.is_set() and not any(peer.ended.is_set() for peer in peers):
            left = interval if deadline is None else min(interval, deadline - loop.time())
            if left <= 0:
                break  # the duration elapsed
            line.show(" || ".join(peer.status().line() for peer in peers))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), left)
    finally:
        line.end()


async def first_token(servers: Sequence[str], room: str, identity: str) -> str:
    """A token minted by the first of ``servers`` that answers (the instances share its secret)."""
    for server in servers[:-1]:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            return await fetch_token(server, room, identity)
    return await fetch_token(servers[-1], room, identity)


async def _call(args: argparse.Namespace) -> int:
    servers = [server.rstrip("/") for server in args.server]
    ws_urls = [ws_url_for(server) for server in servers]
    token = args.token or await first_token(servers, args.room, args.name)
    loopback = (args.loopback if args.loopback is not None
                else all(is_loopback_host(urlsplit(server).hostname) for server in servers))
    reconnect_timeout = args.reconnect_timeout
    if reconnect_timeout is None and len(servers) > 1:
        reconnect_timeout = DEFAULT_FAILOVER_TIMEOUT
    sources = MediaSources.from_file(args.video) if args.video else MediaSources.synthetic()
    sinks: list[Sink] = [VerifyingSink()]
    if args.record:
        sinks.append(RecordingSink(args.record))
    options = CallOptions(loopback=loopback, self_update_interval=args.self_update,
                          reconnect_timeout=reconnect_timeout)
    peer = CallPeer(ws_urls, args.room, token, sources=sources, sinks=sinks, options=options)

    await peer.start()
    try:
        await watch([peer], args.duration)
    finally:
        status = peer.status()
        await peer.stop()
    print(summary(status), flush=True)
    if isinstance(sinks[-1], RecordingSink):
        for path in sinks[-1].files:
            print(f"  recorded:         {path}", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return eventloop.run(_call(args))
    except (ValueError, SignalingError, OSError) as exc:
        print(f"mlscall bot: {exc}", file=sys.stderr)
        return 1
