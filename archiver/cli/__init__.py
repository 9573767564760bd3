"""The `archiver` command: a thin layer that parses arguments, calls the library and sets exit codes.

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from archiver import __version__
from archiver.errors import ArchiverError, UsageError

# subcommand -> module under archiver.cli
COMMANDS = {
    "grab": "grab",
    "run": "run",
    "status": "run",
    "manifest": "manifest",
    "pack": "pack",
    "check": "check",
    "index": "check",
    "tracker": "tracker",
    "upload": "upload",
    "worker": "worker",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archiver",
        description="Grab at-risk research pages into sound WARC files, check them, and upload them.",
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen = set()
    for module in COMMANDS.values():
        if module in seen:
            continue
        seen.add(module)
        importlib.import_module(f"archiver.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as e:
        print(f"archiver {args.command}: {e}", file=sys.stderr)
        return 2
    except ArchiverError as e:
        print(f"archiver {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"archiver {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1
