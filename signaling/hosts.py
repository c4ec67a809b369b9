"""Which ``Host`` and ``Origin`` header values the server answers (RFC 9110 §7.2, RFC 6454 §7).

A browser page on another site can reach a development server on loopback
through DNS rebinding: its own name, re-pointed at 127.0.0.1, arrives as the
``Host`` header. The server therefore answers only the ``Host`` values it
knows: the loopback names with its own port, and those configured
(``ServerConfig.allowed_hosts``). A browser also names the page behind a
WebSocket upgrade or a ``fetch`` in ``Origin``; on /ws, /token and the
KeyPackage routes a foreign ``Origin`` is refused, while requests without one
(non-browser clients) pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The names a loopback server answers by default (with its own port).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,252})|\[[0-9a-f:.]{2,45}\]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_authority(value: str) -> tuple[str, int | None]:
    """``name[:port]`` as (lowercase name, port or None); ``ValueError`` when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]") + 1
        name, rest = value[:end], value[end:]
    else:
        name, colon, port_text = value.partition(":")
        rest = colon + port_text
    if not is_host_name(name):
        raise ValueError("not a host name")
    if not rest:
        return name, None
    port_text = rest[1:]
    if rest[0] != ":" or not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError("not a port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError("not a port")
    return name, port


def is_host_name(name: str) -> bool:
    """Whether ``name`` is a DNS name, an IPv4 literal or a bracketed IPv6 literal."""
    return bool(_NAME.fullmatch(name))


def normalize_host(value: str) -> str:
    """A configured ``Host`` value, lowercase: ``name`` or ``name:port``."""
    name, port = split_authority(value)
    return name if port is None else f"{name}:{port}"


def split_origin(value: str) -> tuple[str, str, int | None]:
    """``scheme://name[:port]`` as (scheme, name, port or None); ``ValueError`` otherwise."""
    scheme, sep, authority = value.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not authority or "/" in authority:
        raise ValueError("an origin is http(s)://host[:port]")
    name, port = split_authority(authority)
    return scheme, name, port


def normalize_origin(value: str) -> str:
    """A configured ``Origin`` value, lowercase, without a default port."""
    scheme, name, port = split_origin(value)
    return f"{scheme}://{name}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{name}:{port}"


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The ``Host`` and ``Origin`` allowlists of one server (already normalized)."""

    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def host_allowed(self, header: str | None, local_port: int, *, default_port: int = 80) -> bool:
        """Whether a request carrying ``Host: header`` on ``local_port`` is for this server."""
        if header is None:
            return False
        try:
            name, port = split_authority(header)
        except ValueError:
            return False
        effective = default_port if port is None else port
        if name in LOOPBACK_NAMES and effective == local_port:
            return True
        return name in self.allowed_hosts or f"{name}:{effective}" in self.allowed_hosts

    def origin_allowed(self, header: str, local_port: int) -> bool:
        """Whether a browser page of origin ``header`` may use the server's API."""
        try:
            scheme, name, port = split_origin(header)
        except ValueError:
            return False  # "null" (sandboxed frames, file: pages) included
        if normalize_origin(header) in self.allowed_origins:
            return True
        authority = name if port is None else f"{name}:{port}"
        return self.host_allowed(authority, local_port, default_port=_DEFAULT_PORTS[scheme])
