"""The ``mlscall`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns it and is imported only when
used, so ``mlscall serve`` never loads aiortc. A module named in
``SUBCOMMANDS`` exposes ``configure(parser)`` and ``run(args) -> int``. A
command missing something this installation lacks (:class:`media.errors.NotInstalled`:
the benchmarks outside a checkout, matplotlib for ``--plot``) ends with exit
status 2, the reason and a one-line hint instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import NotInstalled

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bot": ("media.cli.bot", "join a call as an encrypted bot peer"),
    "demo": ("media.cli.demo", "run the end-to-end demo"),
    "serve": ("signaling.cli", "run the signaling server and MLS delivery service"),
    "stress": ("media.stress", "epoch-rekey stress run: churn, racing commits, restarts; JSON and plot"),
    "bench": ("media.cli.bench", "run every benchmark under benchmarks/ (in a checkout); one JSON file and a Markdown table"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="mlscall",
        description="End-to-end encrypted group calls: MLS (RFC 9420) keys SFrame (RFC 9605).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subs[name] = subparsers.add_parser(name, help=help_text, description=help_text)
        subs[name].set_defaults(_module=module_name)
    return parser, subs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, subs = build_parser()
    # Find the command name first, then let only its module add its options.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in subs:
        importlib.import_module(SUBCOMMANDS[command][0]).configure(subs[command])
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except NotInstalled as exc:  # e.g. bench outside a checkout, --plot without matplotlib
        print(f"mlscall {args.command}: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2

