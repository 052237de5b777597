"""`edgepipe compare`: two results files side by side, with a regression threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.compare import (
    ALPHA,
    MAX_MAP_REGRESSION,
    MIN_EFFECT,
    Comparison,
    compare_results,
    comparison_table,
    failed_check,
    refuse_unjudgeable,
)
from benchmarks.results import load_results
from pipeline.cli.console import console
from pipeline.cli.options import renamed

MinEffect = Annotated[
    float, typer.Option("--min-effect", min=0, help="smallest relative change of the median that counts")
]
MaxMapRegression = Annotated[
    float, typer.Option(min=0, help="largest absolute mAP50-95 drop that is no regression")
]
OldMaxMapDrop = Annotated[float | None, typer.Option(hidden=True, help="deprecated: --max-map-regression")]
Strict = Annotated[bool, typer.Option("--strict", help="fail (exit 1) when a result is flagged as noisy")]


def compare_command(
    base: Annotated[Path, typer.Argument(help="results JSON of the baseline (from `edgepipe bench`)")],
    new: Annotated[Path, typer.Argument(help="results JSON to check against the baseline")],
    alpha: Annotated[float, typer.Option(min=0, max=1, help="significance level of the U test")] = ALPHA,
    min_effect: MinEffect = MIN_EFFECT,
    max_map_regression: MaxMapRegression = MAX_MAP_REGRESSION,
    max_map_drop: OldMaxMapDrop = None,
    strict: Strict = False,
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
    print_comparison(comparisons, unpaired, f"{base} -> {new}")
    if (failure := failed_check(comparisons, strict)) is not None:
        raise failure
    console.print("[green]No regression beyond noise.[/]")


def print_comparison(comparisons: list[Comparison], unpaired: list[str], title: str) -> None:
    """The table, then a note per unpaired result or remark, a warning per noise flag."""
    console.print(comparison_table(comparisons, title))
    for note in unpaired + [f"{c.label}: {n}" for c in comparisons for n in c.notes]:
        console.print(f"[yellow]note[/]: {note}")
    for line in (f"{c.label}: {n}" for c in comparisons for n in c.noise):
        console.print(f"[yellow]warning[/]: noisy result, {line}")
