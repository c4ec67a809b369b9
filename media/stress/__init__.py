"""``mlscall stress``: epoch-rekey stress run of an encrypted call (mesh, or through an SFU).

::

    mlscall stress --peers 8 --duration 60 --churn 0.5 --update-interval 5 \\
        [--scenario FILE] [--server URL] [--json out.json] [--plot out.png]
        [--sfu [--sfu-above N]]

Starts a signaling server (a child process on 127.0.0.1 with a temporary
database, so it can be killed and restarted) unless ``--server`` is given,
runs the call peers on loopback (spread over ``--processes`` worker
processes, :mod:`media.stress.worker`, or in this process with
``--processes 1``), drives churn, racing
self-updates and the scenario's events (docs/stress.md), shows a status
line on stderr while it runs and prints a summary table on stdout at the
end, with each participant's CPU, upstream bytes and delivered frames.
``--sfu`` starts a private Janus too (:mod:`media.cli.janus`) and the server
with ``--sfu``, so the call's media goes through it (issue 16).  Exit status 0 when the run completed (whatever its figures), 1 when
it could not run, 2 for bad options or scenario.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from signaling import eventloop
from signaling.errors import SignalingError

from ..cli.bot import StatusLine
from ..cli.janus import JanusError
from ..errors import MediaError, NotInstalled
from .report import analyze, plot, summary_table, write_json
from .run import StressConfig, StressError, StressRun
from .scenario import Scenario, ScenarioError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mlscall stress`` to ``parser``."""
    defaults = StressConfig()
    parser.add_argument("--peers", type=int, default=defaults.peers,
                        help="participants in the call (default %(default)s)")
    parser.add_argument("--duration", type=float, default=defaults.duration,
                        help="seconds of the measured phase (default %(default)s)")
    parser.add_argument("--churn", type=float, default=defaults.churn, metavar="RATE",
                        help="membership changes per second, 0 for none (default %(default)s)")
    parser.add_argument("--update-interval", type=float, default=defaults.update_interval,
                        metavar="T", help="seconds between racing self-updates, 0 for none "
                                          "(default %(default)s)")
    parser.add_argument("--racers", type=int, default=defaults.racers,
                        help="members committing each self-update at once (default %(default)s)")
    parser.add_argument("--scenario", type=Path, default=None,
                        help="scripted events (docs/stress.md)")
    parser.add_argument("--server", default=None,
                        help="use this signaling server (http://127.0.0.1:PORT) instead of starting one")
    parser.add_argument("--room", default=defaults.room)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the random choices (default %(default)s)")
    parser.add_argument("--processes", type=int, default=defaults.processes,
                        help="processes hosting the peers; 1 runs them in this process "
                             "(default: the CPU count, %(default)s)")
    parser.add_argument("--switch-delay", type=float, default=defaults.switch_delay,
                        help="sender transition after another's commit, s (default %(default)s)")
    parser.add_argument("--confirm-delay", type=float, default=defaults.confirm_delay,
                        help="sender transition after our confirmed commit, s (default %(default)s)")
    parser.add_argument("--hold", type=float, default=defaults.hold, metavar="SECONDS",
                        help="how long receivers hold frames of an epoch not installed yet "
                             "(RFC 9605 §4.4.4); 0: not at all (default %(default)s)")
    parser.add_argument("--sfu", action="store_true",
                        help="send the media through a private Janus (needs /usr/bin/janus)")
    parser.add_argument("--sfu-above", type=int, default=defaults.sfu_above, metavar="N",
                        help="with --sfu: through Janus once more than N participants are "
                             "connected (default %(default)s: always)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot")
    parser.add_argument("--log-level", default="error",
                        choices=("debug", "info", "warning", "error"))


def config_from_args(args: argparse.Namespace) -> StressConfig:
    scenario = Scenario.load(args.scenario) if args.scenario else None
    return StressConfig(
        peers=args.peers, duration=args.duration, churn=args.churn,
        update_interval=args.update_interval or None, racers=args.racers, scenario=scenario,
        server=args.server, room=args.room, seed=args.seed, processes=args.processes,
        switch_delay=args.switch_delay,
        confirm_delay=args.confirm_delay, hold=args.hold, sfu=args.sfu, sfu_above=args.sfu_above)


async def _run(config: StressConfig) -> dict[str, object]:
    line = StatusLine(sys.stderr)
    try:
        data = await StressRun(config, progress=line.show).run()
    finally:
        line.end()
    return analyze(data)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        config.validate()
    except (ScenarioError, StressError) as exc:
        print(f"mlscall stress: {exc}", file=sys.stderr)
        return 2
    try:
        document = eventloop.run(_run(config))
    except NotInstalled:
        raise  # exit status 2 and a hint (media.cli.main)
    except (MediaError, SignalingError, OSError, JanusError) as exc:
        print(f"mlscall stress: {exc}", file=sys.stderr)
        return 1
    print(summary_table(document), flush=True)
    if args.json:
        write_json(document, args.json)
        print(f"results: {args.json}")
    if args.plot:
        plot(document, args.plot)
        print(f"plot: {args.plot}")
    return 0
