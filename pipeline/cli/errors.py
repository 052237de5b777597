"""How errors reach the user: an EdgepipeError is a red message and its exit code, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from core.console import console
from core.errors import EdgepipeError


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
