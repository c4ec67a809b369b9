"""Scenario files of ``mlscall stress``: scripted membership and failure events.

A scenario is a list of timed events (seconds after the call is up), in a
line format or in JSON; docs/stress.md describes both.  Line format::

    # comment
    0     join count=10 within=1       # ten joins spread over one second
    5     update count=3               # three members race for one epoch
    8     crash who=committer when=commit
    12    restart-server down=1
    15    leave who=random count=2

JSON: ``{"events": [{"at": 12, "action": "restart-server", "down": 1}, ...]}``
(or the list alone).  Anything else is refused with a :class:`ScenarioError`
naming the line or the event.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MediaError

#: bounds that keep a scripted run finite
MAX_EVENTS = 1000
MAX_COUNT = 100
MAX_TIME = 3600.0
MAX_DOWN = 60.0


class ScenarioError(MediaError):
    """A scenario file that cannot be run: unreadable, unknown action or
    parameter, a value of the wrong type or out of range."""


class Action(enum.Enum):
    """What a scenario event does."""

    #: ``count`` new participants join, spread evenly over ``within`` seconds
    JOIN = "join"
    #: ``count`` members chosen by ``who`` leave the room (gracefully)
    LEAVE = "leave"
    #: ``count`` members (or ``who=all``) commit a self-update at once: the
    #: commits race for one epoch and the delivery service takes one
    UPDATE = "update"
    #: a member chosen by ``who`` is killed without leaving; ``when=commit``:
    #: right after it submitted its next commit (a self-update is asked of it)
    CRASH = "crash"
    #: the server is killed (SIGKILL), stays down ``down`` seconds and is
    #: restarted on the same database and port
    RESTART_SERVER = "restart-server"


WHEN = ("now", "commit")

#: parameters each action accepts, with their defaults
_PARAMETERS: dict[Action, dict[str, Any]] = {
    Action.JOIN: {"count": 1, "within": 0.0},
    Action.LEAVE: {"count": 1, "who": "random"},
    Action.UPDATE: {"count": 2, "who": "random"},
    Action.CRASH: {"who": "committer", "when": "now"},
    Action.RESTART_SERVER: {"down": 0.5},
}
_WHO_ALLOWED: dict[Action, tuple[str, ...]] = {
    Action.LEAVE: ("random", "committer", "newest", "oldest"),
    Action.UPDATE: ("random", "committer", "all"),
    Action.CRASH: ("random", "committer", "newest", "oldest"),
}


@dataclass(frozen=True)
class ScenarioEvent:
    """One timed event."""

    at: float
    action: Action
    count: int = 1
    within: float = 0.0
    who: str = "random"
    when: str = "now"
    down: float = 0.5
    #: where it was written (line number, or event index in JSON), for messages
    origin: str = ""

    def describe(self) -> str:
        """A short human form, e.g. ``join count=10 within=1``."""
        defaults = _PARAMETERS[self.action]
        shown = [f"{name}={_format(getattr(self, name))}" for name in defaults]
        return " ".join([self.action.value, *shown])


@dataclass(frozen=True)
class Scenario:
    """The events of a scripted run, in time order."""

    events: tuple[ScenarioEvent, ...]

    @property
    def last_time(self) -> float:
        """When the last event starts (joins spread over ``within`` included)."""
        return max((e.at + (e.within if e.action is Action.JOIN else 0.0) for e in self.events),
                   default=0.0)

    @property
    def restarts_server(self) -> bool:
        return any(e.action is Action.RESTART_SERVER for e in self.events)

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        """Read a scenario file (JSON when it starts with ``{`` or ``[``)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot read scenario {str(path)!r}: {type(exc).__name__}") from exc
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """A scenario from its text, line format or JSON."""
        stripped = text.lstrip()
        raw = _from_json(stripped) if stripped[:1] in ("{", "[") else _from_lines(text)
        if len(raw) > MAX_EVENTS:
            raise ScenarioError(f"at most {MAX_EVENTS} events, got {len(raw)}")
        events = [_event(origin, fields) for origin, fields in raw]
        return cls(tuple(sorted(events, key=lambda e: e.at)))


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _from_lines(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``<seconds> <action> [name=value ...]`` per line; ``#`` starts a comment."""
    raw = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        origin = f"line {number}"
        if len(words) < 2:
            raise ScenarioError(f"{origin}: expected '<seconds> <action> [name=value ...]'")
        fields: dict[str, Any] = {"at": words[0].removesuffix("s"), "action": words[1]}
        for word in words[2:]:
            name, sep, value = word.partition("=")
            if not sep or not name or not value:
                raise ScenarioError(f"{origin}: expected name=value, got {word!r}")
            if name in fields:
                raise ScenarioError(f"{origin}: {name!r} given twice")
            fields[name] = value
        raw.append((origin, fields))
    return raw


def _from_json(text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ScenarioError(f"scenario is not valid JSON: {exc}") from exc
    if isinstance(document, Mapping):
        unknown = set(document) - {"events"}
        if unknown:
            raise ScenarioError(f"unknown top-level field(s): {', '.join(sorted(unknown))}")
        document = document.get("events")
    if not isinstance(document, list):
        raise ScenarioError("a JSON scenario is a list of events or {\"events\": [...]}")
    raw = []
    for index, item in enumerate(document):
        if not isinstance(item, Mapping):
            raise ScenarioError(f"event {index}: expected an object")
        raw.append((f"event {index}", dict(item)))
    return raw


def _number(origin: str, name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ScenarioError(f"{origin}: {name} must be a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ScenarioError(f"{origin}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ScenarioError(f"{origin}: {name} must be within {low:g}..{high:g}, got {value!r}")
    return number


def _integer(origin: str, name: str, value: object, low: int, high: int) -> int:
    number = _number(origin, name, value, low, high)
    if number != int(number):
        raise ScenarioError(f"{origin}: {name} must be a whole number, got {value!r}")
    return int(number)


def _choice(origin: str, name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ScenarioError(f"{origin}: {name} must be one of {', '.join(allowed)}, got {value!r}")
    assert isinstance(value, str)
    return value


def _event(origin: str, fields: dict[str, Any]) -> ScenarioEvent:
    if "at" not in fields or "action" not in fields:
        raise ScenarioError(f"{origin}: 'at' and 'action' are required")
    names = [a.value for a in Action]
    try:
        action = Action(fields["action"])
    except ValueError:
        raise ScenarioError(f"{origin}: unknown action {fields['action']!r} "
                            f"(one of {', '.join(names)})") from None
    allowed = _PARAMETERS[action]
    unknown = set(fields) - {"at", "action", *allowed}
    if unknown:
        raise ScenarioError(f"{origin}: {action.value} takes no {', '.join(sorted(unknown))} "
                            f"(it takes {', '.join(allowed) or 'nothing'})")
    values: dict[str, Any] = {**allowed, **{k: v for k, v in fields.items() if k in allowed}}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name == "count":
            checked[name] = _integer(origin, name, value, 1, MAX_COUNT)
        elif name == "within":
            checked[name] = _number(origin, name, value, 0.0, MAX_TIME)
        elif name == "down":
            checked[name] = _number(origin, name, value, 0.0, MAX_DOWN)
        elif name == "who":
            checked[name] = _choice(origin, name, value, _WHO_ALLOWED[action])
        elif name == "when":
            checked[name] = _choice(origin, name, value, WHEN)
    at = _number(origin, "at", fields["at"], 0.0, MAX_TIME)
    return ScenarioEvent(at=at, action=action, origin=origin, **checked)
