"""`edgepipe prune`: prune a checkpoint to a fraction of its MACs or parameters."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from typer.main import get_current_context  # of the click Typer vendors, which runs the commands

from core.artifacts import Artifact
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, config_from_options, default, device_option, option
from pipeline.pruning.config import METHODS, MagnitudeConfig
from pipeline.pruning.config import AutoConfig as Config  # the default method: its keys and defaults
from pipeline.stages.base import RunSettings
from pipeline.stages.checkpoint_accuracy import checkpoint_map, map_metadata
from pipeline.stages.prune import PRUNED_FILE, prune_checkpoint
from pipeline.summary import model_stage_lines

if TYPE_CHECKING:
    from pipeline.pruning.pruner import PruneReport


def _round_to(value: str | int) -> int | str:
    """--round-to's value: a channel count, or the text itself ('auto', or a mistake the config names)."""
    return int(value) if str(value).isdigit() else value


def command(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="Ultralytics YOLOv8, YOLO11 or YOLO26 detection .pt checkpoint to prune"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="pruned checkpoint to write")] = Path(
        PRUNED_FILE
    ),
    macs: Annotated[float | None, option(Config, "macs")] = default(Config, "macs"),
    params: Annotated[float | None, option(Config, "params")] = default(Config, "params"),
    latency: Annotated[float | None, option(Config, "latency")] = default(Config, "latency"),
    latency_engine: Annotated[str, option(Config, "latency_engine")] = default(Config, "latency_engine"),
    latency_threads: Annotated[int | None, option(Config, "latency_threads")] = default(
        Config, "latency_threads"
    ),
    latency_variants: Annotated[int, option(Config, "latency_variants")] = default(
        Config, "latency_variants"
    ),
    importance: Annotated[str, option(MagnitudeConfig, "importance")] = default(
        MagnitudeConfig, "importance"
    ),
    global_pruning: Annotated[bool, option(MagnitudeConfig, "global_pruning", "--global/--local")] = default(
        MagnitudeConfig, "global_pruning"
    ),
    round_to: Annotated[str, option(Config, "round_to", parser=_round_to)] = default(Config, "round_to"),
    remove_blocks: Annotated[
        bool, option(Config, "remove_blocks", "--remove-blocks/--keep-blocks")
    ] = default(Config, "remove_blocks"),
    max_layer_ratio: Annotated[float, option(Config, "max_layer_ratio")] = default(Config, "max_layer_ratio"),
    min_channels: Annotated[int, option(Config, "min_channels")] = default(Config, "min_channels"),
    protect_head: Annotated[
        bool | None,
        option(Config, "protect_head", "--protect-head/--prune-head"),
    ] = default(Config, "protect_head"),
    steps: Annotated[int | None, option(Config, "steps")] = default(Config, "steps"),
    data: Annotated[
        Path | None,
        typer.Option(
            help="data.yaml (its train split) or a folder of images for the data-aware steps; labels are "
            "used only by Taylor importance"
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(help="data.yaml whose val split measures mAP50-95 before and after pruning (PyTorch)"),
    ] = None,
    method: Annotated[str, option(Config, "method")] = default(Config, "method"),
    calib_images: Annotated[int, option(Config, "calib_images")] = default(Config, "calib_images"),
    sensitivity_images: Annotated[int, option(Config, "sensitivity_images")] = default(
        Config, "sensitivity_images"
    ),
    bn_batches: Annotated[int, option(MagnitudeConfig, "bn_batches")] = default(
        MagnitudeConfig, "bn_batches"
    ),
    imgsz: Annotated[int, typer.Option(help="input size for GFLOPs and data batches")] = DEFAULT_IMGSZ,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Prune a YOLOv8, YOLO11 or YOLO26 checkpoint to a fraction of its MACs (or of its latency):
    data-aware with --data, by magnitude without; --val measures the mAP50-95 it cost. --importance,
    --global/--local and --bn-batches are --method magnitude's; --latency*, --remove-blocks, --calib-images
    and --sensitivity-images are auto's and reconstruct's: another method's option exits 2."""
    device = device_option(device, "prune")
    if method not in METHODS:
        raise InputError(f"--method is one of {', '.join(METHODS)}, got {method!r}")
    config = config_from_options(
        METHODS[method],
        "prune",
        **given_options(
            macs=macs,
            params=params,
            latency=latency,
            latency_engine=latency_engine,
            latency_threads=latency_threads,
            latency_variants=latency_variants,
            importance=importance,
            global_pruning=global_pruning,
            round_to=round_to,
            remove_blocks=remove_blocks,
            max_layer_ratio=max_layer_ratio,
            min_channels=min_channels,
            protect_head=protect_head,
            steps=steps,
            bn_batches=bn_batches,
            method=method,
            calib_images=calib_images,
            sensitivity_images=sensitivity_images,
        ),
    )
    report = prune_checkpoint(model, output, config, imgsz=imgsz, device=device, data=data)
    table = Table(title=f"pruned {model.name} -> {output}")
    for column in ("", "before", "after", "after / before"):
        table.add_column(column, justify="right")
    table.add_row(
        "params", f"{report.params_before:,}", f"{report.params_after:,}", f"{report.params_ratio:.3f}"
    )
    table.add_row(
        f"GFLOPs @{imgsz}",
        f"{report.gflops_before:.2f}",
        f"{report.gflops_after:.2f}",
        f"{report.gflops_ratio:.3f}",
    )
    console.print(table)
    if report.extra.get("removed_blocks"):
        console.print(f"blocks removed whole: {', '.join(report.extra['removed_blocks'])}")
    if "latency" in report.extra:
        console.print(latency_table(report.extra["latency"]))
    if val is not None:
        print_map_change(model, output, report, val, imgsz, device)


def given_options(**values: Any) -> dict[str, Any]:
    """The options set on the command line (called as a function: those not at their default), so that a
    key the chosen method does not use is an error only when it was asked for."""
    context = get_current_context(silent=True)
    if context is not None and context.command.name == "prune":
        sources = {k: getattr(context.get_parameter_source(k), "name", "DEFAULT") for k in values}
        return {k: v for k, v in values.items() if sources[k] != "DEFAULT"}
    defaults = inspect.signature(command).parameters
    return {k: v for k, v in values.items() if v != defaults[k].default}


def latency_table(latency: dict):
    """The pruned model's time against the unpruned model's, per stage of the network."""
    threads = latency["threads"] or "default"
    goal = f"goal {latency['goal']:.2f}, " if latency.get("goal") else ""
    table = Table(
        title=f"latency on {latency['engine']} @{latency['imgsz']}, {threads} thread(s): {goal}"
        f"predicted {latency['predicted']:.2f}, measured {latency['measured']:.2f} "
        f"(p50 {latency['p50_before_ms']:.2f} -> {latency['p50_after_ms']:.2f} ms)",
        caption=f"the latency model predicted held-apart variants within "
        f"{latency['model']['held_apart_error']:.1%} (mean); channel block {latency['model']['block']}",
    )
    for column in ("stage (part/stride)", "conv ms before", "after", "after / before"):
        table.add_column(column, justify="right")
    for stage, (before, after) in latency["stages"].items():
        table.add_row(stage, f"{before:.2f}", f"{after:.2f}", f"{after / before:.2f}" if before else "-")
    return table


def print_map_change(
    model: Path, output: Path, report: PruneReport, val: Path, imgsz: int, device: str
) -> None:
    """mAP50-95 before and after, as `edgepipe run` prints it, with its warning past one point lost."""
    settings = RunSettings(imgsz=imgsz, device=device, data=None, val=val)
    before, after = checkpoint_map(model, settings), checkpoint_map(output, settings)
    measured = {
        "params_before": report.params_before,
        "params_after": report.params_after,
        "gflops_before": report.gflops_before,
        "gflops_after": report.gflops_after,
        **map_metadata(before, after),
    }
    for line in model_stage_lines("prune", Artifact.from_path("checkpoint", output, **measured)):
        console.print(line)
