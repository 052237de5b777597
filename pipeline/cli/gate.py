"""`edgepipe gate`: results against budgets, exit 0 or 1, with JUnit XML and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.results import load_results
from pipeline.cli.console import console
from pipeline.report.markdown import gate_verdict_line
from pipeline.stages.gate import (
    broken_checks,
    broken_table,
    check_budgets,
    gate_failure,
    noise_warnings,
    verdict_table,
)


def command(
    results: Annotated[list[Path], typer.Argument(help="results JSON files written by `edgepipe bench`")],
    budgets: Annotated[
        Path, typer.Option("--budgets", "-b", help="budgets YAML (see examples/budgets.yaml)")
    ],
    junit: Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML file for CI")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="write a Markdown summary (for a pull-request comment)")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail (exit 1) when a checked result is flagged as noisy")
    ] = False,
) -> None:
    """Check results against budgets: exit 0 when all hold, 1 when one breaks, 2 on unusable input."""
    verdicts = check_budgets(load_results(*results), budgets, junit, markdown)
    console.print(verdict_table(verdicts))
    for path in (junit, markdown):
        if path is not None:
            console.print(f"wrote {path}")
    for warning in noise_warnings(verdicts):
        console.print(f"[yellow]warning[/]: noisy result, {warning}")
    if broken := broken_checks(verdicts):
        console.print(broken_table(broken))
    if (failure := gate_failure(verdicts, strict)) is not None:
        raise failure
    console.print(f"[bold green]{gate_verdict_line(verdicts).replace('**', '')}[/bold green]")
