"""`edgepipe bench`: latency, throughput and mAP of an engine, written as results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.history import append_results, global_history_path
from benchmarks.profile import profile_table
from benchmarks.results import save_results
from benchmarks.table import flag_lines, results_table
from core.artifacts import refuse_overwrite
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import config_from_options, default, option, renamed
from pipeline.stages.benchmark import BenchConfig, bench_artifact, check_artifact_exists


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--batch takes comma-separated integers like 1,8; got {text!r}") from exc
    if not batches or min(batches) < 1:
        raise InputError(f"--batch needs positive batch sizes; got {text!r}")
    return batches


def command(
    artifact: Annotated[
        Path, typer.Option("--artifact", "-a", help="build directory, or a plain .pt (torch) or .onnx")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="results JSON to write")] = Path(
        "results.json"
    ),
    val: Annotated[Path | None, typer.Option("--val", help="data.yaml whose split measures mAP")] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="measure speed only, no mAP")] = False,
    batch: Annotated[str, typer.Option("--batch", help="batch sizes, comma-separated, e.g. 1,8")] = "1",
    warmup: Annotated[int, option(BenchConfig, "warmup", "--warmup", min=0)] = default(BenchConfig, "warmup"),
    iters: Annotated[int, option(BenchConfig, "iters", "--iters", min=1)] = default(BenchConfig, "iters"),
    min_seconds: Annotated[float, option(BenchConfig, "min_seconds", "--min-seconds", min=0)] = default(
        BenchConfig, "min_seconds"
    ),
    streams: Annotated[int, option(BenchConfig, "streams", "--streams", min=1)] = default(
        BenchConfig, "streams"
    ),
    throughput_seconds: Annotated[
        float, option(BenchConfig, "throughput_seconds", "--throughput-seconds", min=0.1)
    ] = default(BenchConfig, "throughput_seconds"),
    threads: Annotated[int | None, option(BenchConfig, "threads", "--threads", min=1)] = default(
        BenchConfig, "threads"
    ),
    split: Annotated[str, option(BenchConfig, "split", "--split")] = default(BenchConfig, "split"),
    device: Annotated[str, option(BenchConfig, "device", "--device")] = default(BenchConfig, "device"),
    data: Annotated[Path | None, typer.Option("--data", hidden=True, help="deprecated: --val")] = None,
    imgsz: Annotated[
        int, typer.Option("--imgsz", min=32, help="input size when --artifact is a plain .pt")
    ] = DEFAULT_IMGSZ,
    max_images: Annotated[int | None, option(BenchConfig, "max_images", "--max-images", min=1)] = default(
        BenchConfig, "max_images"
    ),
    fraction: Annotated[float | None, option(BenchConfig, "fraction", "--fraction")] = default(
        BenchConfig, "fraction"
    ),
    memory: Annotated[bool, option(BenchConfig, "memory", "--memory/--no-memory")] = default(
        BenchConfig, "memory"
    ),
    profile: Annotated[bool, option(BenchConfig, "profile", "--profile")] = default(BenchConfig, "profile"),
    performance_hint: Annotated[
        str | None, option(BenchConfig, "performance_hint", "--performance-hint")
    ] = default(BenchConfig, "performance_hint"),
    infer_requests: Annotated[
        int | None, option(BenchConfig, "infer_requests", "--infer-requests", min=1)
    ] = default(BenchConfig, "infer_requests"),
    cuda_graphs: Annotated[bool, option(BenchConfig, "cuda_graphs", "--cuda-graphs")] = default(
        BenchConfig, "cuda_graphs"
    ),
    wait_idle: Annotated[float, option(BenchConfig, "wait_idle", "--wait-idle", min=0)] = default(
        BenchConfig, "wait_idle"
    ),
    e2e_conf: Annotated[float, option(BenchConfig, "e2e_conf", "--e2e-conf", min=0, max=1)] = default(
        BenchConfig, "e2e_conf"
    ),
    e2e_iou: Annotated[float, option(BenchConfig, "e2e_iou", "--e2e-iou", max=1)] = default(
        BenchConfig, "e2e_iou"
    ),
    e2e_max_det: Annotated[int, option(BenchConfig, "e2e_max_det", "--e2e-max-det", min=1)] = default(
        BenchConfig, "e2e_max_det"
    ),
    e2e_multi_label: Annotated[bool, option(BenchConfig, "e2e_multi_label", "--e2e-multi-label")] = default(
        BenchConfig, "e2e_multi_label"
    ),
    e2e_agnostic: Annotated[bool, option(BenchConfig, "e2e_agnostic", "--e2e-agnostic")] = default(
        BenchConfig, "e2e_agnostic"
    ),
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
    config = config_from_options(
        BenchConfig,
        "bench",
        batch=parse_batches(batch),
        warmup=warmup,
        iters=iters,
        min_seconds=min_seconds,
        streams=streams,
        throughput_seconds=throughput_seconds,
        threads=threads,
        accuracy=not no_accuracy,
        split=split,
        device=device,
        max_images=max_images,
        fraction=fraction,
        memory=memory,
        profile=profile,
        performance_hint=performance_hint,
        infer_requests=infer_requests,
        cuda_graphs=cuda_graphs,
        wait_idle=wait_idle,
        e2e_conf=e2e_conf,
        e2e_iou=e2e_iou,
        e2e_max_det=e2e_max_det,
        e2e_multi_label=e2e_multi_label,
        e2e_agnostic=e2e_agnostic,
    )
    results = bench_artifact(artifact, None if no_accuracy else data, config, imgsz=imgsz)
    save_results(output, results)
    history = append_results(results)
    if global_history:
        append_results(results, global_history_path())
    console.print(results_table(results, f"edgepipe bench {artifact}"))
    for result in results:
        label = f"{result.key} batch {result.batch}"
        if result.profile:
            console.print(profile_table(result.profile, result.latency_ms.p50, f"per-layer times, {label}"))
        elif profile:
            console.print(f"[yellow]note[/]: {result.target} has no per-layer profiler; {label} has none")
    for line in flag_lines(results):
        console.print(f"[yellow]flag[/] {line}")
    console.print(f"wrote {output} (history: {history})")
