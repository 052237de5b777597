"""`edgepipe run`: every stage of one config, cached; and `edgepipe device`: what this machine can run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.console import console
from pipeline.run import run_pipeline


def run_command(
    config: Annotated[Path, typer.Argument(help="pipeline YAML (see examples/quickstart.yaml)")],
    workdir: Annotated[
        Path | None, typer.Option("--workdir", "-w", help="work dir; default .edgepipe/<config name>")
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="re-run this stage and every stage after it")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="run only this stage (earlier ones cached)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="re-run every stage, ignoring the cache")] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="seconds to wait for another run holding the work dir")
    ] = 0,
    global_history: Annotated[
        bool, typer.Option("--global-history", help="also record in the global history (~/.cache/edgepipe)")
    ] = False,
) -> None:
    """Run the stages of CONFIG in order; stages whose inputs are unchanged are taken from the cache.

    The latest report and gate are copied to WORKDIR/report.html and WORKDIR/gate.md; results are
    recorded in WORKDIR/history.sqlite (`edgepipe history -w WORKDIR`).
    """
    code = run_pipeline(
        config,
        workdir,
        from_stage=from_stage,
        only=only,
        force=force,
        wait=wait,
        console=console,
        global_history=global_history,
    )
    raise typer.Exit(code)
