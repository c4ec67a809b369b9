"""A network namespace of the test's own, holding only ``lo`` (the project's loopback rule).

Tests may send network traffic to loopback only, or to addresses inside a
network namespace the test creates itself.  Some peers do not confine
themselves to loopback: Chromium sends ICE connectivity checks (RFC 8445
§7.2.5) from every interface of the host, and Janus (libnice) answers checks
from any address (a peer-reflexive candidate, RFC 8445 §7.2.5.3.1), so a
call between them may select a pair on the host's own network.  Inside the
namespace of :func:`loopback_namespace` only ``lo`` exists, so no process
started there can use anything but 127.0.0.1.

Linux namespaces belong to threads: ``unshare(CLONE_NEWNET)`` moves the
calling thread (the test's, which runs the event loop) into a new namespace,
and every process it starts afterwards (Janus, the Playwright driver and the
Chromium it launches) inherits it; sockets keep the namespace they were
created in.  On leaving, the thread returns to the namespace it came from
(``setns``).  Needs CAP_SYS_ADMIN (CI runs the tests as root).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

#: <sched.h>: a new network namespace
CLONE_NEWNET = 0x40000000


def _libc_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}(CLONE_NEWNET): {os.strerror(errno)} (a network namespace needs root)")


def interfaces() -> list[str]:
    """The network interfaces the calling thread sees."""
    with open("/proc/thread-self/net/dev", encoding="ascii") as dev:
        return [line.split(":", 1)[0].strip() for line in dev.readlines()[2:]]


@contextmanager
def loopback_namespace() -> Iterator[None]:
    """Run the body (and every process it starts) in a new network namespace whose only interface is ``lo``, up."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _libc_call("unshare", CLONE_NEWNET)
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
            yield
        finally:
            _libc_call("setns", home, CLONE_NEWNET)
    finally:
        os.close(home)
