"""`edgepipe compare`: two results files side by side, with a regression threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.compare import (
    ALPHA,
    MAX_MAP_REGRESSION,
    MIN_EFFECT,
    compare_results,
    comparison_table,
    refuse_unjudgeable,
)
from benchmarks.results import load_results
from core.errors import CheckFailed
from pipeline.cli.console import console
from pipeline.cli.options import renamed


def compare_command(
    base: Annotated[Path, typer.Argument(help="results JSON of the baseline (from `edgepipe bench`)")],
    new: Annotated[Path, typer.Argument(help="results JSON to check against the baseline")],
    alpha: Annotated[
        float, typer.Option("--alpha", min=0, max=1, help="significance level of the U test")
    ] = ALPHA,
    min_effect: Annotated[
        float, typer.Option("--min-effect", min=0, help="smallest relative change of the median that counts")
    ] = MIN_EFFECT,
    max_map_regression: Annotated[
        float,
        typer.Option(
            "--max-map-regression", min=0, help="largest absolute mAP50-95 drop that is no regression"
        ),
    ] = MAX_MAP_REGRESSION,
    max_map_drop: Annotated[
        float | None, typer.Option("--max-map-drop", hidden=True, help="deprecated: --max-map-regression")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail (exit 1) when a result is flagged as noisy")
    ] = False,
) -> None:
    """Per target: did latency change beyond noise, did mAP or size change.

    Exit 1 on a regression (or, with --strict, a noise-flagged result); exit 2 when no pair appears in
    both files or a pair is not comparable (other dataset, input images or size, threads, streams,
    hint, accuracy in one file only).
    """
    if max_map_drop is not None:
        max_map_regression = renamed(
            None, max_map_drop, command="compare", old_name="--max-map-drop", new_name="--max-map-regression"
        )
    comparisons, unpaired = compare_results(
        load_results(base), load_results(new), alpha, min_effect, max_map_regression
    )
    refuse_unjudgeable(comparisons, unpaired)
    console.print(comparison_table(comparisons, base, new))
    for note in unpaired + [f"{c.label}: {n}" for c in comparisons for n in c.notes]:
        console.print(f"[yellow]note[/]: {note}")
    noisy = [f"{c.label}: {n}" for c in comparisons for n in c.noise]
    for line in noisy:
        console.print(f"[yellow]warning[/]: noisy result, {line}")
    regressions = [f"{c.label}: {r}" for c in comparisons for r in c.regressions]
    if regressions:
        raise CheckFailed("regression beyond noise:\n  " + "\n  ".join(regressions))
    if strict and noisy:
        raise CheckFailed("noise-flagged results (--strict):\n  " + "\n  ".join(noisy))
    console.print("[green]No regression beyond noise.[/]")
