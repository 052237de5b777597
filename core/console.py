"""The one rich Console every command prints through."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    # A terminal reports its own width; a pipe or CI log would fall back to 80 columns and fold tables.
    return Console() if sys.stdout.isatty() else Console(width=160)


console = make_console()


def log_console() -> Console:
    """A stderr Console for timestamped progress lines (`.log`), without the caller's file:line, which
    wraps and means nothing to a user."""
    return Console(stderr=True, log_path=False)
