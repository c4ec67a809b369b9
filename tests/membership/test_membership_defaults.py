"""The membership machine's defaults (docs/membership.md) against tests/contracts/membership_defaults.json.

The same file pins DEFAULT_CONFIG of the JS port (web/test/membership-defaults.test.js),
so the two machines start from the same timing and policy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from media.call_peer import CallOptions
from media.membership import MembershipConfig

from conftest import CONTRACTS

DEFAULTS: dict[str, Any] = json.loads(
    (CONTRACTS / "membership_defaults.json").read_text())["defaults"]


def test_the_fixture_names_every_field_of_the_config() -> None:
    assert sorted(DEFAULTS) == sorted(f.name for f in fields(MembershipConfig))


def test_membership_config_defaults_are_the_fixture() -> None:
    assert asdict(MembershipConfig()) == DEFAULTS


def test_call_options_defaults_map_onto_the_machine_defaults() -> None:
    assert CallOptions().membership() == MembershipConfig()
