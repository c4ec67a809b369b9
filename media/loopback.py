"""Loopback-only ICE for local calls (DESIGN.md, "Networking in tests").

aioice 0.13 leaves 127.0.0.1 out of its host candidates and has no option
to add it; aiortc 1.16 offers none either.  :func:`loopback_ice` makes
127.0.0.1 the *only* host address for the ICE gathering done inside its
``with`` block (``RTCPeerConnection.setLocalDescription``), and nothing
else: the replacement of ``aioice.ice.get_host_addresses`` is installed
once, but it answers differently only where a context variable is set, so
other peer connections of the process (and other tasks running meanwhile)
gather as usual.  Gathering runs in tasks created inside the block, which
inherit the variable (PEP 567).

A loopback peer also drops every non-loopback candidate it is given or
sends: SDP ``a=candidate`` lines (:func:`filter_sdp`) and trickled
candidates (:func:`is_loopback_candidate`), since a browser offers all its
interfaces (and mDNS names) even with loopback enabled.  Use it with
``RTCConfiguration(iceServers=[])`` so no STUN server is asked.

A browser still runs connectivity checks from every socket it has, towards
our 127.0.0.1 candidate: answering one from another address would learn a
peer-reflexive candidate there (RFC 8445 §7.3.1.3) and send replies and media
off loopback.  So an ICE connection whose local candidates are all loopback
ignores checks from any other source address (other connections are left
alone).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Callable, Iterator

import aioice.ice

LOOPBACK_ADDRESS = "127.0.0.1"

_LOOPBACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("loopback_ice", default=False)
_installed: Callable[[bool, bool], list[str]] | None = None


def _install() -> None:
    """Wrap aioice's host address lookup and check handling once (idempotent)."""
    global _installed
    if _installed is not None and aioice.ice.get_host_addresses is _installed:
        return
    original = aioice.ice.get_host_addresses
    answer = aioice.ice.Connection.request_received

    def request_received(self: aioice.ice.Connection, message: object, addr: tuple[str, int],
                         protocol: object) -> None:
        local = self.local_candidates
        if local and all(_is_loopback_address(c.host) for c in local) and not _is_loopback_address(addr[0]):
            return  # a loopback-only connection answers loopback sources only
        answer(self, message, addr, protocol)

    aioice.ice.Connection.request_received = request_received  # type: ignore[method-assign]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if _LOOPBACK_ONLY.get():
            return [LOOPBACK_ADDRESS] if use_ipv4 else []
        return original(use_ipv4, use_ipv6)

    aioice.ice.get_host_addresses = get_host_addresses
    _installed = get_host_addresses


@contextlib.contextmanager
def loopback_ice() -> Iterator[None]:
    """ICE gathering started inside the block offers 127.0.0.1 only."""
    _install()
    token = _LOOPBACK_ONLY.set(True)
    try:
        yield
    finally:
        _LOOPBACK_ONLY.reset(token)


def _is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name, e.g. an mDNS ".local" name
        return False


def is_loopback_candidate(candidate: str) -> bool:
    """True for an ICE candidate (``candidate:...`` or its SDP attribute
    value, RFC 8839 §5.1) whose connection address is a loopback address."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:"):]
    fields = text.split()
    return len(fields) >= 8 and _is_loopback_address(fields[4])


def filter_sdp(sdp: str) -> str:
    """``sdp`` without its non-loopback ``a=candidate`` lines."""
    lines = sdp.splitlines(keepends=True)
    kept = [
        line for line in lines
        if not line.startswith("a=candidate:") or is_loopback_candidate(line)
    ]
    return "".join(kept)
