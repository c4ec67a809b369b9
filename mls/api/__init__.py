"""The public API: a synchronous Python mirror of the MLS Web API (``MLS``, ``MLSGroupView``).

Shape and names follow the Firefox prototype's WebIDL
(specs/mls-web-api-explainer-2025-02-webidl.md) in snake_case; the JS API
(web/mls) has the same methods, results and error codes in camelCase
(docs/mls.md has the table; tests/contracts/ holds both to it). Values in
are RFC 9420 wire encodings (``MLSMessage`` for KeyPackages, Welcomes,
GroupInfos, proposals, commits and application messages; ``Credential`` for
credentials; ``optional<Node> ratchet_tree<V>`` for trees) as bytes or
``MLSBytes``; results are the Web API's dictionaries (``mls.api.results``).

Modules, one job each: ``client`` (``MLS``), ``group_view`` (``GroupView``),
``results`` (what they return), ``arguments`` (what they accept),
``records`` (storage record formats), ``unit_of_work`` (load, change and
store a member's state atomically), ``reinit`` (the successor group of a
ReInit, §11.2).
"""

from __future__ import annotations

from mls.api.client import MLS
from mls.api.group_view import GroupView
from mls.api.results import (
    CommitOutput,
    ExporterOutput,
    ExtensionValue,
    GroupDetails,
    GroupMember,
    MLSBytes,
    ReInitDetails,
    Received,
)

__all__ = [
    "MLS",
    "CommitOutput",
    "ExporterOutput",
    "ExtensionValue",
    "GroupDetails",
    "GroupMember",
    "GroupView",
    "MLSBytes",
    "ReInitDetails",
    "Received",
]
