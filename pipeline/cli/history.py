"""`edgepipe history`: past results from a work dir's, the project's or the global history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.history import global_history_path, history_path, parse_since, query_results
from benchmarks.table import results_table
from core.errors import InputError
from pipeline.cli.console import console


def history_command(
    device: Annotated[str, typer.Option("--device", help="glob on the device name, e.g. 'Jetson*'")] = "*",
    target: Annotated[
        str,
        typer.Option("--target", help="glob on 'target', 'target/precision' or the precision it ran as"),
    ] = "*",
    model: Annotated[str, typer.Option("--model", help="glob on the model name")] = "*",
    dataset: Annotated[str, typer.Option("--dataset", help="glob on the dataset that measured mAP")] = "*",
    since: Annotated[
        str | None, typer.Option("--since", help="only results from this date on, e.g. 2026-12-01")
    ] = None,
    last: Annotated[int, typer.Option("--last", min=1, help="at most this many results, newest first")] = 20,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", "-w", help="the history of this `edgepipe run` work dir")
    ] = None,
    global_history: Annotated[
        bool, typer.Option("--global-history", help="the global history (~/.cache/edgepipe)")
    ] = False,
) -> None:
    """Show past benchmark results: the project's history (./.edgepipe, or EDGEPIPE_HISTORY) by default."""
    if workdir is not None and global_history:
        raise InputError("give --workdir or --global-history, not both")
    path = global_history_path() if global_history else history_path(workdir)
    results = query_results(
        device, target, last, path, model=model, dataset=dataset, since=parse_since(since) if since else None
    )
    if not results:
        filters = f"device={device!r} target={target!r} model={model!r} dataset={dataset!r}"
        console.print(f"No results in {path} match {filters}" + (f" since {since}" if since else "") + ".")
        return
    console.print(results_table(results, f"edgepipe history ({path})", context=True))
