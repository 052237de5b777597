"""`edgepipe history`: past results from the local history."""

from __future__ import annotations

from typing import Annotated

import typer

from benchmarks.history import history_path, query_results
from benchmarks.table import results_table
from core.console import console


def history_command(
    device: Annotated[str, typer.Option("--device", help="glob on the device name, e.g. 'Jetson*'")] = "*",
    target: Annotated[
        str, typer.Option("--target", help="glob on 'target' or 'target/precision', e.g. 'openvino/*'")
    ] = "*",
    last: Annotated[int, typer.Option("--last", min=1, help="at most this many results, newest first")] = 20,
) -> None:
    """Show past benchmark results from the local history (EDGEPIPE_HISTORY overrides its location)."""
    results = query_results(device, target, last)
    if not results:
        console.print(f"No results in {history_path()} match device={device!r} target={target!r}.")
        return
    console.print(results_table(results, f"edgepipe history ({history_path()})", context=True))
