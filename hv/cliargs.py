"""What hv's self-parsing subcommands (``hv disk``, ``image``, ``container``, ``registry``)
share: an argparse parser whose usage errors become one line and exit status 2, never
argparse's own usage dump and ``SystemExit`` from deep inside a command."""
from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """Bad command-line input: one line for the user, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, prefix: str):
    """``(args, None)``, or ``(None, status)`` after a one-line error (``prefix`` + message,
    status 2) or ``--help`` (status 0)."""
    try:
        return parser.parse_args(argv), None
    except UsageError as e:
        print(f"{prefix}{e}", file=sys.stderr)
        return None, 2
    except SystemExit as e:                      # --help
        return None, e.code if isinstance(e.code, int) else 0
