"""Scenario files of ``mlscall stress`` (media.stress.scenario): both formats, and
every kind of bad input refused with a ScenarioError naming the place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from media.errors import MediaError
from media.stress.scenario import Action, Scenario, ScenarioError
from media.stress.run import StressConfig

from conftest import REPO_ROOT


LINES = """
# ten joins within one second, then trouble
0     join count=10 within=1
5s    update count=3            # three commits race for one epoch
8     crash who=committer when=commit
12.5  restart-server down=1
15    leave who=oldest count=2
16    update who=all
"""

JSON = """{"events": [
  {"at": 16, "action": "update", "who": "all"},
  {"at": 0, "action": "join", "count": 10, "within": 1},
  {"at": 5, "action": "update", "count": 3},
  {"at": 8, "action": "crash", "who": "committer", "when": "commit"},
  {"at": 12.5, "action": "restart-server", "down": 1},
  {"at": 15, "action": "leave", "who": "oldest", "count": 2}
]}"""


def test_line_format_parses_every_action_with_defaults() -> None:
    scenario = Scenario.parse(LINES)
    assert [(e.at, e.action) for e in scenario.events] == [
        (0.0, Action.JOIN), (5.0, Action.UPDATE), (8.0, Action.CRASH),
        (12.5, Action.RESTART_SERVER), (15.0, Action.LEAVE), (16.0, Action.UPDATE)]
    join, update, crash, restart, leave, everyone = scenario.events
    assert (join.count, join.within) == (10, 1.0)
    assert (update.count, update.who) == (3, "random")
    assert (crash.who, crash.when) == ("committer", "commit")
    assert restart.down == 1.0
    assert (leave.who, leave.count) == ("oldest", 2)
    assert everyone.who == "all"
    assert join.origin == "line 3" and join.describe() == "join count=10 within=1"
    assert scenario.restarts_server
    assert scenario.last_time == 16.0


def test_json_format_gives_the_same_events_in_time_order() -> None:
    from_json = Scenario.parse(JSON)
    from_lines = Scenario.parse(LINES)
    strip = [(e.at, e.action, e.count, e.within, e.who, e.when, e.down) for e in from_json.events]
    assert strip == [(e.at, e.action, e.count, e.within, e.who, e.when, e.down)
                     for e in from_lines.events]
    assert Scenario.parse('[{"at": 1, "action": "join"}]').events[0].count == 1


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 join\n2 leave\n")
    assert [e.action for e in Scenario.load(path).events] == [Action.JOIN, Action.LEAVE]


@pytest.mark.parametrize(("text", "message"), [
    ("1", "line 1: expected '<seconds> <action>"),
    ("1 dance", "line 1: unknown action 'dance'"),
    ("x join", "line 1: at must be a number"),
    ("-1 join", "line 1: at must be within 0..3600"),
    ("nan join", "line 1: at must be within"),
    ("1 join count=0", "line 1: count must be within 1..100"),
    ("1 join count=2.5", "line 1: count must be a whole number"),
    ("1 join count", "line 1: expected name=value"),
    ("1 join count=2 count=3", "line 1: 'count' given twice"),
    ("\n\n1 join who=committer", "line 3: join takes no who"),
    ("1 crash when=later", "line 1: when must be one of now, commit"),
    ("1 leave who=all", "line 1: who must be one of random, committer, newest, oldest"),
    ("1 restart-server down=100", "line 1: down must be within 0..60"),
    ("1 restart-server count=2", "line 1: restart-server takes no count"),
    ("{", "scenario is not valid JSON"),
    ('{"events": [], "extra": 1}', "unknown top-level field(s): extra"),
    ('{"events": 3}', "a JSON scenario is a list of events"),
    ("[1]", "event 0: expected an object"),
    ('[{"action": "join"}]', "event 0: 'at' and 'action' are required"),
    ('[{"at": true, "action": "join"}]', "event 0: at must be a number"),
    ('[{"at": 1, "action": "join", "count": "many"}]', "event 0: count must be a number"),
])
def test_bad_scenarios_are_refused_with_the_place(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        Scenario.parse(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, MediaError)


def test_too_many_events_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="at most 1000 events"):
        Scenario.parse("\n".join("1 update" for _ in range(1001)))
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        Scenario.load(tmp_path / "missing.txt")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        Scenario.load(binary)


def test_a_run_refuses_scenarios_it_cannot_play() -> None:
    late = Scenario.parse("30 join count=2 within=5")
    with pytest.raises(ScenarioError, match=r"until t=35 s, after the end of the run \(20 s\)"):
        StressConfig(duration=20, scenario=late).validate()
    restart = Scenario.parse("5 restart-server")
    with pytest.raises(ScenarioError, match="restart-server needs the server started by the run"):
        StressConfig(scenario=restart, server="http://127.0.0.1:9").validate()
    StressConfig(duration=20, scenario=restart).validate()  # fine with its own server


def test_the_command_reports_a_bad_scenario_without_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("# fine\n3 join count=-2\n")
    done = subprocess.run([sys.executable, "-m", "media.cli", "stress", "--scenario", str(bad)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "line 2: count must be within 1..100" in done.stderr
    assert done.stdout == ""
