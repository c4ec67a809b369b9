"""Messaging Layer Security (RFC 9420), sans-I/O.

The public API mirrors the MLS Web API (``MLS`` / ``GroupView``); the
protocol core lives in ``mls.wire`` (wire format), ``mls.crypto`` (cipher
suites) and the key schedule, secret tree and framing modules.
"""

from __future__ import annotations

from mls.api import (
    MLS,
    CommitOutput,
    ExporterOutput,
    ExtensionValue,
    GroupDetails,
    GroupMember,
    GroupView,
    MLSBytes,
    ReInitDetails,
    Received,
)
from mls.group.config import GroupConfig
from mls.group.public import CommitProcessed, ProposalProcessed, PublicGroup, PublicMember
from mls.storage import MemoryStorage, SQLiteStorage, Storage

__all__ = [
    "MLS",
    "CommitOutput",
    "CommitProcessed",
    "ExporterOutput",
    "ExtensionValue",
    "GroupConfig",
    "GroupDetails",
    "GroupMember",
    "GroupView",
    "MLSBytes",
    "MemoryStorage",
    "ProposalProcessed",
    "PublicGroup",
    "PublicMember",
    "ReInitDetails",
    "Received",
    "SQLiteStorage",
    "Storage",
]
