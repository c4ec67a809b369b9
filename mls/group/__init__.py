"""The MLS group engine (RFC 9420 §8-§14), sans-I/O.

* ``state``: ``GroupState`` (one member, one epoch), past epochs, pending Commit.
* ``proposals``: proposal validation (§12.1, §12.2) and application (§12.3).
* ``commit``: create, stage (validate) and merge Commits (§12.4).
* ``welcome``: Welcome creation and joining (§12.4.3.1).
* ``group_info`` / ``external``: GroupInfo, external Commit joins (§12.4.3.2).
* ``framing``: signing and (un)protecting group messages (§6).
* ``engine``: create a group, propose, send, receive.
* ``psk``, ``key_package``, ``config``, ``serialize`` (versioned state format).

The public, Web-API-shaped entry point is ``mls.api`` (``MLS``, ``GroupView``).
"""

from __future__ import annotations

from mls.group.config import GroupConfig
from mls.group.engine import ReceiveKind, ReceiveResult, create_group, receive, send_application
from mls.group.state import GroupState

__all__ = ["GroupConfig", "GroupState", "ReceiveKind", "ReceiveResult", "create_group", "receive", "send_application"]
