"""What `edgepipe run` prints: after each model stage what it changed, after each build what its INT8
check found, and at the end the stages, the results table, the gate's verdict, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.results import load_results
from benchmarks.table import results_table
from core.artifacts import Artifact
from pipeline.stage_runner import StageOutcome
from pipeline.stages.benchmark import build_notes
from pipeline.stages.gate import broken_table

MODEL_STAGES = ("prune", "finetune")  # the stages that change the model, whose effect `run` prints
MAP_LOSS_WARNING = 0.01  # a stage losing more mAP50-95 than this (1 point) is warned about


def _change(what: str, before: Any, after: Any, scale: float = 1.0, unit: str = "") -> str | None:
    """ "GFLOPs 8.19 -> 4.10 (50.0% kept)", or None when either figure is missing."""
    if before is None or after is None:
        return None
    kept = f" ({100 * after / before:.1f}% kept)" if before else ""
    return f"{what} {before / scale:.2f}{unit} -> {after / scale:.2f}{unit}{kept}"


def model_stage_lines(stage: str, model: Artifact) -> list[str]:
    """What a prune or finetune stage did, from its checkpoint's metadata: GFLOPs and params kept of its
    input, the mAP50-95 before and after (with a val set), and a warning when it lost over 1 point."""
    meta = model.metadata
    parts = [
        _change("GFLOPs", meta.get("gflops_before"), meta.get("gflops_after", meta.get("gflops"))),
        _change("params", meta.get("params_before"), meta.get("params_after", meta.get("params")), 1e6, " M"),
    ]
    before, after = meta.get("map50_95_before"), meta.get("map50_95")
    if before is not None and after is not None:
        parts.append(f"mAP50-95 {before:.4f} -> {after:.4f} ({100 * (after - before):+.2f} points)")
    lines = [f"[bold]{stage}[/bold]: " + "; ".join(p for p in parts if p)] if any(parts) else []
    if before is not None and after is not None and before - after > MAP_LOSS_WARNING:
        lines.append(
            f"[yellow]warning[/]: {stage} lost {100 * (before - after):.2f} mAP50-95 points "
            f"({before:.4f} -> {after:.4f}); no budget asked, but check that this model is still useful"
        )
    return lines


def engine_stage_lines(stage: str, engine: Artifact) -> list[str]:
    """What a build checked or chose, as `edgepipe build` prints it: the INT8 self-check's outcome (the
    drop against fp32, what fell back to float) and the precision `auto` chose."""
    return [f"[bold]{stage}[/bold]: {note}" for note in build_notes(engine.metadata)]


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
    results = load_results(*result_files) if result_files else []
    own, sources = [r for r in results if not r.is_source], [r for r in results if r.is_source]
    if own:
        console.print(results_table(own))
    if sources:
        console.print(results_table(sources, title="the unpruned model, for reference"))
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
    for kind, label in (("junit", "JUnit"), ("results", "results")):
        if kind in (latest or {}):
            console.print(f"{label}: {(latest or {})[kind]}")
    console.print(f"[dim]finished in {seconds:.1f} s[/dim]")
