"""What `edgepipe run` prints at the end: the stages, the results table, the gate's verdict, the report."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from benchmarks.results import load_results
from benchmarks.table import results_table
from pipeline.stage_runner import StageOutcome


def stages_table(outcomes: list[StageOutcome]) -> Table:
    table = Table(title="stages", title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for outcome in outcomes:
        status = "[dim]cached[/dim]" if outcome.status == "cached" else "[green]ran[/green]"
        table.add_row(outcome.label, status, f"{outcome.seconds:.1f}" if outcome.status == "ran" else "")
    return table


def print_summary(outcomes: list[StageOutcome], console: Console, seconds: float) -> None:
    console.print(stages_table(outcomes))
    ran = sum(o.status == "ran" for o in outcomes)
    if ran == 0:
        console.print("[bold]every stage is cached[/bold]: nothing to re-run")
    result_files = [a.path for o in outcomes for n, a in o.artifacts.items() if a.kind == "results"]
    if result_files:
        console.print(results_table(load_results(*result_files)))
    for outcome in outcomes:
        for artifact in outcome.artifacts.values():
            if artifact.kind == "gate":
                passed = artifact.metadata.get("passed")
                verdict = "[bold green]PASS[/bold green]" if passed else "[bold red]FAIL[/bold red]"
                console.print(f"gate: {verdict}  {artifact.path}")
            elif artifact.kind == "report":
                console.print(f"report: {artifact.path}")
    console.print(f"[dim]finished in {seconds:.1f} s[/dim]")
