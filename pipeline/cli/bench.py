"""`edgepipe bench`: latency, throughput and mAP of an engine, written as results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.history import append_results, global_history_path
from benchmarks.profile import profile_table
from benchmarks.results import Result, save_results
from benchmarks.table import flag_lines, results_table
from core.artifacts import refuse_overwrite
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import KeyOptions, config_options, default, renamed
from pipeline.stages.benchmark import BenchConfig, bench_artifact, check_artifact_exists


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--batch takes comma-separated integers like 1,8; got {text!r}") from exc
    if not batches or min(batches) < 1:
        raise InputError(f"--batch needs positive batch sizes; got {text!r}")
    return batches


# A list in the config, comma-separated here; the accuracy a flag that also waives --val
OWN = {"batch": "batch", "accuracy": "no_accuracy"}
Batches = Annotated[str, typer.Option("--batch", help="batch sizes, comma-separated, e.g. 1,8")]


@config_options(BenchConfig, command="bench", own=OWN)
def command(
    *,
    artifact: Annotated[
        Path, typer.Option("--artifact", "-a", help="build directory, or a plain .pt (torch) or .onnx")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="results JSON to write")] = Path(
        "results.json"
    ),
    val: Annotated[Path | None, typer.Option("--val", help="data.yaml whose split measures mAP")] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="measure speed only, no mAP")] = False,
    batch: Batches = ",".join(map(str, default(BenchConfig, "batch"))),
    options: KeyOptions[BenchConfig],
    data: Annotated[Path | None, typer.Option("--data", hidden=True, help="deprecated: --val")] = None,
    imgsz: Annotated[
        int, typer.Option("--imgsz", min=32, help="input size when --artifact is a plain .pt")
    ] = DEFAULT_IMGSZ,
    force: Annotated[bool, typer.Option("--force", help="replace an existing results file")] = False,
    global_history: Annotated[
        bool, typer.Option("--global-history", help="also record in the global history (~/.cache/edgepipe)")
    ] = False,
) -> None:
    """Measure latency (model only and end to end), throughput and mAP of an engine; write results JSON."""
    check_artifact_exists(artifact)  # before any complaint about the other options
    refuse_overwrite(output, force)
    data = renamed(val, data, command="bench", old_name="--data", new_name="--val")
    if not no_accuracy and data is None:
        raise InputError("mAP needs a dataset", hint="pass --val data.yaml, or --no-accuracy")
    config = options.build(batch=parse_batches(batch), accuracy=not no_accuracy)
    results = bench_artifact(artifact, None if no_accuracy else data, config, imgsz=imgsz)
    save_results(output, results)
    history = append_results(results)
    if global_history:
        append_results(results, global_history_path())
    print_results(results, config, f"edgepipe bench {artifact}")
    console.print(f"wrote {output} (history: {history})")


def print_results(results: list[Result], config: BenchConfig, title: str) -> None:
    """The results table, each result's per-layer profile (or why it has none) and the noise flags."""
    console.print(results_table(results, title))
    for result in results:
        label = f"{result.key} batch {result.batch}"
        if result.profile:
            console.print(profile_table(result.profile, result.latency_ms.p50, f"per-layer times, {label}"))
        elif config.profile:
            console.print(f"[yellow]note[/]: {result.target} has no per-layer profiler; {label} has none")
    for line in flag_lines(results):
        console.print(f"[yellow]flag[/] {line}")
