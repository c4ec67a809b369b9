"""Server configuration: every limit the signaling server enforces, in one place."""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .hosts import normalize_host, normalize_origin
from .page import call_page_dir
from .store import LogPolicy
from .turn import TurnCredentials

#: The call page (the installed package's copy, else the checkout's web/public:
#: signaling.page), served as the static root when it has files.
DEFAULT_STATIC_DIR = call_page_dir()


#: Store URL schemes of a Redis server (signaling.redis_store).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:  # a zone id ("::1%lo") is not part of the address
        return host is not None and ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class ServerConfig:
    """Settings of one signaling server (CLI flags map one to one onto these fields).

    ``secret`` signs room tokens. When it is ``None`` the server loads it from
    ``secret_file`` or, when that file does not exist yet, generates 32 random
    bytes and persists them there (mode 0600). With neither, a fresh secret
    lives only as long as the process.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    db_path: Path | str = "mlscall.db"
    #: The store, as a URL: ``redis://...`` (several instances share it), ``sqlite:///path`` or
    #: a plain path (one instance); None: SQLite at ``db_path``.
    store_url: str | None = None
    #: This instance's id among those sharing a store: in its logs and the origin of what it
    #: publishes on the rooms' feeds (default: 8 random bytes, hex).
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: SQLite ``synchronous`` mode with WAL: "NORMAL" survives a process kill
    #: (SIGKILL), "FULL" also survives power loss at the cost of an fsync per commit.
    db_synchronous: str = "NORMAL"
    #: Past epochs of each room's log kept: once a commit starts epoch E, what came before
    #: the commit that started epoch E - log_epochs is pruned (None: never).  A member
    #: catching up from before that is refused (``log_truncated``).
    log_epochs: int | None = 1000
    #: Bytes of MLS messages each room's log keeps, and seconds an entry is kept (None: no
    #: limit); the oldest entries go first, never what a newcomer needs to join (the commit
    #: that started the current epoch, its Welcomes, the epoch's proposals). A member catching
    #: up from before what went is refused (``log_truncated``).
    log_max_bytes: int | None = 64 * 1024 * 1024
    log_max_age: float | None = 3600.0
    #: Per-epoch quotas on application messages and proposals (commits and Welcomes are not
    #: counted): entries and bytes one sender, and the whole room, may add to the log within
    #: one epoch of the room's group (None: no limit). Beyond them: ``quota_exceeded``.
    quota_sender_bytes: int | None = 8 * 1024 * 1024
    quota_sender_entries: int | None = 2000
    quota_room_bytes: int | None = 64 * 1024 * 1024
    quota_room_entries: int | None = 20_000
    #: Seconds since the epoch: when log entries were appended (``log_max_age``); tests set it.
    clock: Callable[[], float] = field(default=time.time, repr=False)
    secret: bytes | None = field(default=None, repr=False)
    secret_file: Path | str | None = None
    #: POST /token mints tokens for anyone who can reach it: a development
    #: convenience, only ever answered for loopback peers.
    token_endpoint: bool = True
    static_dir: Path | str | None = DEFAULT_STATIC_DIR
    #: TURN servers and their shared secret: each admitted participant gets short-lived
    #: credentials in its join reply (``ice_servers``, signaling.turn); None: no TURN.
    turn: TurnCredentials | None = None
    #: The base of a Janus HTTP API (e.g. ``http://127.0.0.1:8088/janus``) the server keeps
    #: private and relays ``sfu.*`` requests to (signaling.sfu); None: every room is a mesh.
    sfu_url: str | None = None
    #: A room goes through the SFU once more than this many participants are connected
    #: (0: always), and stays there while live.
    sfu_above: int = 0

    # Limits (each violation gets a typed error reply, see docs/protocol.md).
    max_message_bytes: int = 256 * 1024
    rate_per_second: float = 200.0
    rate_burst: int = 400
    max_rooms: int = 1000
    max_participants: int = 100
    max_key_packages: int = 64
    #: KeyPackage claims per second, and in a burst, of one claimer in one room (token bucket).
    claim_rate: float = 10.0
    claim_burst: int = 100
    #: Validate every handshake against the room's keyless PublicGroup (docs/protocol.md,
    #: "What the server checks"). Only benchmarks/signaling_bench.py switches it off, to
    #: measure what validation costs; a server without it trusts anyone with a token.
    validate_handshakes: bool = True
    join_timeout: float = 10.0
    #: Frames, and bytes of frames, waiting for a slow reader before its connection is closed.
    max_queued_frames: int = 10_000
    max_queued_bytes: int = 8 * 1024 * 1024
    #: WebSocket connections open at once, joined to a room or not; beyond it upgrades are refused.
    max_connections: int = 10_000
    #: Requests waiting for a room's sequencer before new ones are refused.
    max_pending_per_room: int = 4096
    #: WebSocket connections one remote address may hold open, joined or not, and how many of
    #: them may be waiting to join (``join_timeout`` closes those); beyond either, upgrades from
    #: that address get HTTP 429 (docs/deployment.md, "Limits per address").
    max_connections_per_address: int = 64
    max_unjoined_per_address: int = 16
    #: Seconds a TCP connection gets to send a complete request head (and an idle keep-alive
    #: connection to send its next one) before it is closed: aiohttp's ``keepalive_timeout``,
    #: which also runs from the connection's start and is not reset by a trickle of bytes.
    header_timeout: float = 10.0
    #: ``Host`` header values accepted besides the loopback names (``localhost``,
    #: ``127.0.0.1``, ``[::1]``) with the server's own port: ``name`` (any port) or
    #: ``name:port``. Anything else gets HTTP 421 (DNS rebinding, docs/deployment.md).
    allowed_hosts: tuple[str, ...] = ()
    #: ``Origin`` values (``scheme://host[:port]``) accepted on /ws, /token and the KeyPackage
    #: routes besides ``http``/``https`` origins whose host is an allowed ``Host``.
    allowed_origins: tuple[str, ...] = ()
    heartbeat: float | None = 30.0
    #: A room whose group has had none of its members connected for this long is
    #: started afresh for its newcomers (those joining, and those waiting, told by
    #: a ``group_reset`` event): the group, its log and KeyPackages are dropped
    #: (keep it above the clients' reconnection window: the page never
    #: reconnects, a CallPeer only with ``reconnect_timeout``, 10 s in
    #: ``mlscall stress``).
    abandon_after: float = 15.0
    default_token_ttl: int = 3600
    max_token_ttl: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if self.db_synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("db_synchronous must be NORMAL or FULL")
        self.db_synchronous = self.db_synchronous.upper()
        for name in ("max_message_bytes", "rate_burst", "max_rooms", "max_participants",
                     "max_key_packages", "max_queued_frames", "max_pending_per_room", "max_connections",
                     "max_connections_per_address", "max_unjoined_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_queued_bytes < 2 * self.max_message_bytes:
            # an event frame is a request of up to max_message_bytes plus a small envelope
            raise ValueError("max_queued_bytes must be at least twice max_message_bytes")
        if self.rate_per_second <= 0 or self.join_timeout <= 0 or self.header_timeout <= 0:
            raise ValueError("rate_per_second, join_timeout and header_timeout must be positive")
        try:
            self.allowed_hosts = tuple(normalize_host(host) for host in self.allowed_hosts)
            self.allowed_origins = tuple(normalize_origin(origin) for origin in self.allowed_origins)
        except ValueError as err:
            raise ValueError(f"allowed hosts are name[:port], origins scheme://name[:port]: {err}") from None
        if self.sfu_above < 0:
            raise ValueError("sfu_above must not be negative")
        self.sqlite_path()  # the store URL names a store
        if not self.instance_id:
            raise ValueError("instance_id must not be empty")
        if self.abandon_after < 0:
            raise ValueError("abandon_after must not be negative")
        if self.log_epochs is not None and self.log_epochs < 1:
            raise ValueError("log_epochs must be at least 1 (None keeps every epoch)")
        self.log_policy()  # the log's limits are valid

    def sqlite_path(self) -> Path | str | None:
        """The SQLite file ``store_url`` names (``db_path`` without one), or None for Redis
        (``redis://``, ``rediss://``, ``unix://``); ``ValueError`` for anything else."""
        url = self.store_url
        if url is None:
            return self.db_path
        if url.startswith(REDIS_SCHEMES):
            return None
        path = url.removeprefix("sqlite://")
        if "://" in path or not path:
            raise ValueError("the store is redis://HOST:PORT/DB, sqlite:///PATH or a file path")
        return path

    def log_policy(self) -> LogPolicy:
        """What each room's log takes and keeps (quotas and pruning), for the store."""
        return LogPolicy(epochs=self.log_epochs, max_bytes=self.log_max_bytes, max_age=self.log_max_age,
                         sender_bytes=self.quota_sender_bytes, sender_entries=self.quota_sender_entries,
                         room_bytes=self.quota_room_bytes, room_entries=self.quota_room_entries)
