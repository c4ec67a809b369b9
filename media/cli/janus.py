"""A private Janus for the demo and the tests: its own config folder, loopback ports.

Janus (Debian's ``/usr/bin/janus``, VideoRoom plugin) is the SFU of issue 16:
it forwards SFrame ciphertext (RFC 9605 §4.1 puts the SFU outside the trust
boundary) without ever holding a key.  ``mlscall serve`` starts nothing it does
not own, so this launcher is a tool, not part of the server: it writes a
private configuration folder that loads only the VideoRoom plugin and the HTTP
transport (private plugin and transport folders holding symlinks to exactly
those two modules), binds the HTTP API to 127.0.0.1 on a free port, gives Janus
an RTP port range of its own, starts ``janus -F DIR`` as a child process and
waits until ``GET /janus/info`` answers.

Janus never gathers ICE candidates on an interface flagged ``IFF_LOOPBACK``
(DESIGN.md, "Scale"), so on 127.0.0.1 alone it cannot set up ICE.  The
launcher compiles (with gcc, once, into a cache folder) a tiny ``LD_PRELOAD``
library that wraps ``getifaddrs()`` to clear that flag, and restricts
gathering to ``lo`` with ``ice_enforce_list``.  In production Janus runs on a
real interface and needs neither (docs/deployment.md).

:class:`JanusProcess` stops Janus by its PID, can SIGKILL it (to test loss
recovery) and restart it on the same ports.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from ..errors import NotInstalled

JANUS_BINARY = Path("/usr/bin/janus")
#: where Debian's janus package installs its plugins and transports
JANUS_MODULES = Path("/usr/lib/x86_64-linux-gnu/janus")
#: the only modules a private Janus loads: (folder under JANUS_MODULES, file name)
MODULES = (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so"))
LOOPBACK = "127.0.0.1"
#: Janus's media threads: by default one per peer connection (2n threads for n
#: participants, each woken per packet); one static loop serves them all with
#: half the CPU (an SFU call of 10 on 2 cores: 0.27 -> 0.14 cores, docs/stress.md)
EVENT_LOOPS = 1
#: RTP/RTCP ports per private Janus (two per media stream and peer connection)
RTP_PORTS = 200
#: RTP port ranges are picked below the kernel's ephemeral range
RTP_PORT_FLOOR = 20000
RTP_PORT_CEILING = 32000
#: seconds to wait for ``GET /janus/info`` after a start
START_BOUND = 15.0
#: seconds to wait for a SIGTERMed Janus before SIGKILLing it
STOP_BOUND = 5.0

#: ``getifaddrs()`` with IFF_LOOPBACK cleared, so Janus gathers on ``lo``
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>

int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **);
    if (!real)
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *it = *ifap; it; it = it->ifa_next)
            it->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


class JanusError(RuntimeError):
    """The private Janus did not start, or stopped answering its info request."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mlscall`` (``~/.cache/mlscall`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlscall"


def build_shim(cache_dir: Path) -> Path:
    """The getifaddrs shim compiled into ``cache_dir`` (built once per source text)."""
    digest = hashlib.sha256(SHIM_SOURCE.encode()).hexdigest()[:16]
    library = cache_dir / f"janus-loopback-{digest}.so"
    if library.exists():
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NotInstalled("gcc is needed to build the Janus loopback shim", hint="apt-get install gcc")
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = cache_dir / f"janus-loopback-{digest}.c"
    source.write_text(SHIM_SOURCE)
    partial = library.with_name(f"{library.name}.{os.getpid()}.tmp")
    done = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise JanusError(f"gcc failed to build the Janus loopback shim: {done.stderr.strip()[:500]}")
    os.replace(partial, library)  # atomic: a concurrent builder sees a whole library or none
    return library


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def free_udp_range(count: int = RTP_PORTS) -> tuple[int, int]:
    """``count`` consecutive UDP ports free on 127.0.0.1 right now: (first, last)."""
    for _ in range(50):
        first = random.randrange(RTP_PORT_FLOOR, RTP_PORT_CEILING - count)
        if all(_udp_free(port) for port in range(first, first + count)):
            return first, first + count - 1
    raise JanusError(f"no {count} consecutive free UDP ports in {RTP_PORT_FLOOR}-{RTP_PORT_CEILING}")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def write_config(folder: Path, http_port: int, rtp_ports: tuple[int, int]) -> None:
    """A configuration folder for a loopback Janus with VideoRoom and HTTP only."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub, name in MODULES:
        private = folder / sub
        private.mkdir(exist_ok=True)
        link = private / name
        if not link.is_symlink():
            link.symlink_to(JANUS_MODULES / sub / name)
    for empty in ("events", "loggers"):
        (folder / empty).mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        "general: {\n"
        f"  configs_folder = {json.dumps(str(folder))}\n"
        f"  plugins_folder = {json.dumps(str(folder / 'plugins'))}\n"
        f"  transports_folder = {json.dumps(str(folder / 'transports'))}\n"
        f"  events_folder = {json.dumps(str(folder / 'events'))}\n"
        f"  loggers_folder = {json.dumps(str(folder / 'loggers'))}\n"
        f'  interface = "{LOOPBACK}"\n'
        '  server_name = "mlscall-private"\n'
        "  debug_level = 4\n"
        "  session_timeout = 60\n"
        f"  event_loops = {EVENT_LOOPS}\n"
        "}\n"
        "media: {\n"
        f'  rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"\n'
        "}\n"
        "nat: {\n"
        '  ice_enforce_list = "lo"\n'
        "  ignore_mdns = true\n"
        "}\n"
        "events: {\n"
        "  broadcast = false\n"
        "}\n")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '  base_path = "/janus"\n'
        "  http = true\n"
        f"  port = {http_port}\n"
        f'  ip = "{LOOPBACK}"\n'
        "  https = false\n"
        "}\n"
        "admin: {\n"
        "  admin_http = false\n"
        "  admin_https = false\n"
        "}\n")


class JanusProcess:
    """A private Janus on loopback: ``start()``, ``stop()``, ``kill()``, ``start()`` again.

    ``folder`` holds the configuration and ``janus.log``; ``cache_dir`` the
    compiled shim (default :func:`default_cache_dir`).  Ports are picked once,
    so a restart after :meth:`kill` listens where clients already point.
    Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(self, folder: Path, cache_dir: Path | None = None) -> None:
        if not JANUS_BINARY.exists():
            raise NotInstalled(f"{JANUS_BINARY} is missing", hint="apt-get install janus")
        self.folder = folder
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.http_port = free_tcp_port()
        self.rtp_ports = free_udp_range()
        self.log_path = folder / "janus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base of Janus's HTTP API, e.g. ``http://127.0.0.1:8088/janus``."""
        return f"http://{LOOPBACK}:{self.http_port}/janus"

    @property
    def pid(self) -> int | None:
        """The running Janus's process id, or None when it is not running."""
        return self._process.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start Janus and wait until its info request answers (raises :class:`JanusError`)."""
        if self.running:
            return
        shim = build_shim(self.cache_dir)
        write_config(self.folder, self.http_port, self.rtp_ports)
        env = dict(os.environ, LD_PRELOAD=str(shim))
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(JANUS_BINARY), "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"),
                 "--interface", LOOPBACK, "--ice-enforce-list", "lo", "--disable-colors",
                 "--rtp-port-range", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.folder, start_new_session=True)
        deadline = time.monotonic() + START_BOUND
        while self.info() is None:
            if not self.running:
                raise JanusError(f"janus exited with status {self._process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise JanusError(f"janus did not answer /info within {START_BOUND} s; see {self.log_path}")
            time.sleep(0.05)

    def info(self) -> dict[str, object] | None:
        """Janus's ``GET /janus/info`` answer, or None if nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/info", timeout=1.0) as reply:
                answer = json.loads(reply.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return answer if isinstance(answer, dict) and answer.get("janus") == "server_info" else None

    def stop(self) -> None:
        """SIGTERM Janus by its PID and wait; SIGKILL it if it lingers."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None

    def kill(self) -> None:
        """SIGKILL Janus by its PID (a crash, for loss-recovery tests) and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def __enter__(self) -> JanusProcess:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
