"""The command line: ``python -m gatekeep demo | doctor | inspect``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args, out) -> exit status``; this module only wires them to argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from . import demo, doctor, inspect_cmd

    parser = argparse.ArgumentParser(
        prog="python -m gatekeep",
        description="gatekeep: rate limiting and server-side sessions on Redis.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, text in (
        ("demo", demo, "drive a burst of requests through the limiter and show the decisions"),
        ("doctor", doctor, "check that a Redis is fit to hold limits and sessions"),
        ("inspect", inspect_cmd, "show a limiter key's state without changing it"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, out or sys.stdout))
    except KeyboardInterrupt:
        return 130
