"""How errors reach the user: an EdgepipeError is a red message and its exit code, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from core.errors import EdgepipeError
from pipeline.cli.console import console, user_output


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """EdgepipeErrors become a red message and their exit code (1 check failed, 2 bad input), no traceback;
    library logs and progress reach the user while the command runs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with user_output():
                return fn(*args, **kwargs)
        except EdgepipeError as exc:
            console.print(f"[bold red]error:[/bold red] {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: completed stages are kept; run again to resume")
            raise typer.Exit(130) from None

    return wrapper
