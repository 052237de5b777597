"""The one rich Console every command prints through, and how errors reach the user."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer
from rich.console import Console

from core.errors import EdgepipeError


def make_console() -> Console:
    # A terminal reports its own width; a pipe or CI log would fall back to 80 columns and fold tables.
    return Console() if sys.stdout.isatty() else Console(width=160)


console = make_console()


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """EdgepipeErrors become a red message and their exit code (1 check failed, 2 bad input), no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgepipeError as exc:
            console.print(f"[bold red]error:[/bold red] {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: completed stages are kept; run again to resume")
            raise typer.Exit(130) from None

    return wrapper
