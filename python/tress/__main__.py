"""``python -m tress COMMAND``: tress's command line.

Commands are registered in :data:`COMMANDS` (modules with an
``add_parser(subparsers)`` function that sets ``func`` on its parser to a
``main(args) -> int``).  Nothing here imports tress's extension module;
commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: modules providing subcommands, in the order ``--help`` lists them
COMMANDS: tuple[str, ...] = ("tress.bench.cli",)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m tress",
        description="tress: Python's concurrency modules rebuilt in Rust.",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
