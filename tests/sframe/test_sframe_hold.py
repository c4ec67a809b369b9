"""Frames held until their MLS epoch is installed (RFC 9605 §4.4.4, §5.2).

The cases of tests/contracts/sframe_hold.json (shared with
web/test/sframe-hold.test.js) run case by case against
``sframe.MLSKeyManager`` (which tells a KID whose epoch is not installed
yet, :class:`KeyPending`, from a hopeless one) and ``sframe.HoldBuffer``;
then the buffer's own argument checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from sframe import (
    AuthenticationFailure,
    HoldBuffer,
    InvalidArgumentType,
    InvalidParameter,
    KeyPending,
    MLSKeyManager,
    SFrameContext,
    UnknownKID,
    mls_kid,
    suite_params,
)
from sframe.mls_keys import index_bits_for

from conftest import CONTRACTS

FIXTURE = json.loads((CONTRACTS / "sframe_hold.json").read_text())
DEFAULTS: dict[str, Any] = FIXTURE["defaults"]


def base_key(epoch: int, nk: int) -> bytes:
    """The fixture's stand-in for MLS-Exporter: bytes (epoch + i) mod 256."""
    return bytes((epoch + i) & 0xFF for i in range(nk))


def plaintext(name: str, size: int) -> bytes:
    seed = sum(name.encode())
    return bytes((seed + 31 * i) & 0xFF for i in range(size))


class Exporter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return base_key(self.epoch, length)


@dataclass
class Receiver:
    """One receiver as the media layers drive it: open, or hold on
    KeyPending; retry the held frames after each install."""

    case: dict[str, Any]
    now: float = 0.0
    outcomes: dict[str, list[str]] = field(default_factory=lambda: {
        k: [] for k in ("opened", "expired", "evicted", "dropped", "authentication")})

    def __post_init__(self) -> None:
        c = self.case
        self.km = MLSKeyManager(c["cipher_suite"], epoch_bits=c["epoch_bits"],
                                retain_epochs=c["retain_epochs"], retain_seconds=c["retain_seconds"],
                                clock=lambda: self.now)
        self.hold: HoldBuffer[tuple[str, bytes]] = HoldBuffer(**c["hold"])
        self.expected_plaintext: dict[str, bytes] = {}

    def step(self, step: dict[str, Any], sealed: bytes | None) -> None:
        self.now = step["at"]
        self._note("expired", self.hold.expire(self.now))
        if "install" in step:
            self.km.install_epoch(Exporter(step["install"]), step["install"], self.case["own_index"],
                                  self.case["group_size"])
            for held in self.hold.take():
                self._receive(held.item, held.arrived)
        elif "frame" in step:
            assert sealed is not None
            self._receive((step["frame"], sealed), self.now)

    def _receive(self, item: tuple[str, bytes], arrived: float) -> None:
        name, ciphertext = item
        try:
            result = self.km.unprotect(ciphertext)
        except KeyPending:
            self._note("evicted", self.hold.hold(item, len(ciphertext), arrived))
            return
        except UnknownKID:
            self.outcomes["dropped"].append(name)
            return
        except AuthenticationFailure:
            self.outcomes["authentication"].append(name)
            return
        assert result.plaintext == self.expected_plaintext[name]
        self.outcomes["opened"].append(name)

    def _note(self, outcome: str, held: list[Any]) -> None:
        self.outcomes[outcome].extend(h.item[0] for h in held)


class Sender:
    """Seals the fixture's frames: KID of (epoch, sender, context) per §5.2."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.case = case
        self.ctx = SFrameContext(case["cipher_suite"])
        self.nk = suite_params(case["cipher_suite"]).nk

    def seal(self, step: dict[str, Any]) -> tuple[bytes, bytes]:
        c = self.case
        kid = mls_kid(step["epoch"], step["sender"], step.get("context", 0), c["epoch_bits"],
                      index_bits_for(c["group_size"]))
        if kid not in self.ctx.send_kids:
            self.ctx.add_send_key(kid, base_key(step["epoch"], self.nk))
        pt = plaintext(step["frame"], step.get("size", c["size"]))
        sealed = self.ctx.protect(kid, pt)
        if step.get("forge"):
            sealed = sealed[:-1] + bytes((sealed[-1] ^ 1,))
        return pt, sealed


def run_case(case: dict[str, Any]) -> Receiver:
    receiver = Receiver(case)
    sender = Sender(case)
    for step in case["steps"]:
        sealed = None
        if "frame" in step:
            pt, sealed = sender.seal(step)
            receiver.expected_plaintext[step["frame"]] = pt
        receiver.step(step, sealed)
        if "held_after" in step:
            assert len(receiver.hold) == step["held_after"], step
    return receiver


CASES = [{**DEFAULTS, **case} for case in FIXTURE["cases"]]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_case(case: dict[str, Any]) -> None:
    receiver = run_case(case)
    outcomes = dict(receiver.outcomes)
    outcomes["held"] = [h.item[0] for h in receiver.hold]
    assert outcomes == case["expect"]


def test_fixture_covers_every_outcome() -> None:
    seen = {outcome for case in CASES for outcome, names in case["expect"].items() if names}
    assert seen == {"opened", "held", "expired", "evicted", "dropped", "authentication"}


def test_epoch_ahead_before_and_after_the_first_epoch() -> None:
    km = MLSKeyManager(epoch_bits=4)
    assert km.epoch_ahead(mls_kid(9, 1, 0, 4, 2))  # a joiner: every KID may still get its key
    km.install_epoch(Exporter(9), 9, 0, 4)
    assert not km.epoch_ahead(mls_kid(9, 1, 0, 4, 2))  # installed
    assert [km.epoch_ahead(mls_kid(e, 1, 0, 4, 2)) for e in range(10, 18)] == [True] * 7 + [False]
    assert not km.epoch_ahead(mls_kid(8, 1, 0, 4, 2))
    with pytest.raises(InvalidParameter):
        km.epoch_ahead(-1)


def test_key_pending_is_an_unknown_kid_and_changes_no_state() -> None:
    km = MLSKeyManager()
    sender = MLSKeyManager()
    sender.install_epoch(Exporter(1), 1, 1, 2)
    frame = sender.protect(b"frame")
    with pytest.raises(KeyPending) as caught:
        km.unprotect(frame)
    assert isinstance(caught.value, UnknownKID)
    assert km.epochs == ()
    km.install_epoch(Exporter(1), 1, 0, 2)
    assert km.unprotect(frame).plaintext == b"frame"


@pytest.mark.parametrize("kwargs, error", [
    ({"max_age": "1"}, InvalidArgumentType),
    ({"max_frames": 1.5}, InvalidArgumentType),
    ({"max_bytes": None}, InvalidArgumentType),
    ({"max_age": -0.5}, InvalidParameter),
    ({"max_age": float("nan")}, InvalidParameter),
    ({"max_frames": -1}, InvalidParameter),
    ({"max_bytes": -1}, InvalidParameter),
])
def test_hold_buffer_rejects_bad_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        HoldBuffer(**kwargs)


def test_hold_buffer_rejects_bad_items_without_changing_state() -> None:
    buffer: HoldBuffer[str] = HoldBuffer()
    buffer.hold("a", 10, 0.0)
    with pytest.raises(InvalidParameter):
        buffer.hold("b", -1, 0.0)
    with pytest.raises(InvalidArgumentType):
        buffer.hold("b", 1, "now")  # type: ignore[arg-type]
    assert [h.item for h in buffer] == ["a"] and buffer.size == 10
    assert buffer.deadline == 1.0
    assert [h.item for h in buffer.take()] == ["a"]
    assert len(buffer) == 0 and buffer.size == 0 and buffer.deadline is None
