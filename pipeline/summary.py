"""What `edgepipe run` prints at the end: the stages, the results table, the gate's verdict, the report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.results import load_results
from benchmarks.table import results_table
from pipeline.stage_runner import StageOutcome
from pipeline.stages.gate import broken_table


def stages_table(outcomes: list[StageOutcome]) -> Table:
    table = Table(title="stages", title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for outcome in outcomes:
        status = "[dim]cached[/dim]" if outcome.status == "cached" else "[green]ran[/green]"
        table.add_row(outcome.label, status, f"{outcome.seconds:.1f}" if outcome.status == "ran" else "")
    return table


def print_summary(
    outcomes: list[StageOutcome], console: Console, seconds: float, latest: dict[str, Path] | None = None
) -> None:
    """`latest`: the stable copies of the report and gate in the work dir, printed instead of the
    hashed stage folders."""
    console.print(stages_table(outcomes))
    ran = sum(o.status == "ran" for o in outcomes)
    if ran == 0:
        console.print("[bold]every stage is cached[/bold]: nothing to re-run")
    result_files = [a.path for o in outcomes for n, a in o.artifacts.items() if a.kind == "results"]
    if result_files:
        console.print(results_table(load_results(*result_files)))
    for outcome in outcomes:
        for artifact in outcome.artifacts.values():
            path = (latest or {}).get(artifact.kind, artifact.path)
            if artifact.kind == "gate":
                meta = artifact.metadata
                for warning in meta.get("noise", []):
                    console.print(f"[yellow]warning[/]: noisy result, {warning}")
                if meta.get("broken"):
                    console.print(broken_table(meta["broken"]))
                verdict = (
                    "[bold green]PASS[/bold green]" if meta.get("passed") else "[bold red]FAIL[/bold red]"
                )
                if not meta.get("broken") and not meta.get("passed") and meta.get("strict"):
                    verdict += " (noisy results, strict)"
                console.print(f"gate: {verdict}  {path}")
            elif artifact.kind == "report":
                console.print(f"report: {path}")
    console.print(f"[dim]finished in {seconds:.1f} s[/dim]")
