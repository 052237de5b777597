"""`edgepipe prune`: prune a checkpoint to a fraction of its MACs or parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.options import DEVICE_HELP, config_from_options, default, option, torch_device
from pipeline.stages.prune import PRUNED_FILE, PruneConfig, prune_checkpoint


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
    macs: Annotated[float | None, option(PruneConfig, "macs")] = default(PruneConfig, "macs"),
    params: Annotated[float | None, option(PruneConfig, "params")] = default(PruneConfig, "params"),
    importance: Annotated[str, option(PruneConfig, "importance")] = default(PruneConfig, "importance"),
    global_pruning: Annotated[bool, option(PruneConfig, "global_pruning", "--global/--local")] = default(
        PruneConfig, "global_pruning"
    ),
    round_to: Annotated[int, option(PruneConfig, "round_to")] = default(PruneConfig, "round_to"),
    max_layer_ratio: Annotated[float, option(PruneConfig, "max_layer_ratio")] = default(
        PruneConfig, "max_layer_ratio"
    ),
    min_channels: Annotated[int, option(PruneConfig, "min_channels")] = default(PruneConfig, "min_channels"),
    protect_head: Annotated[
        bool | None,
        option(PruneConfig, "protect_head", "--protect-head/--prune-head"),
    ] = default(PruneConfig, "protect_head"),
    steps: Annotated[int | None, option(PruneConfig, "steps")] = default(PruneConfig, "steps"),
    data: Annotated[Path | None, option(PruneConfig, "data")] = None,
    method: Annotated[str, option(PruneConfig, "method")] = default(PruneConfig, "method"),
    calib_images: Annotated[int, option(PruneConfig, "calib_images")] = default(PruneConfig, "calib_images"),
    sensitivity_images: Annotated[int, option(PruneConfig, "sensitivity_images")] = default(
        PruneConfig, "sensitivity_images"
    ),
    bn_batches: Annotated[int, option(PruneConfig, "bn_batches")] = default(PruneConfig, "bn_batches"),
    imgsz: Annotated[int, typer.Option(help="input size for GFLOPs and data batches")] = 640,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Prune a YOLOv8, YOLO11 or YOLO26 checkpoint to a fraction of its MACs: data-aware with --data,
    by magnitude without."""
    from rich.console import Console
    from rich.table import Table

    device = torch_device(device, "prune")
    config = config_from_options(
        PruneConfig,
        "prune",
        macs=macs,
        params=params,
        importance=importance,
        global_pruning=global_pruning,
        round_to=round_to,
        max_layer_ratio=max_layer_ratio,
        min_channels=min_channels,
        protect_head=protect_head,
        steps=steps,
        bn_batches=bn_batches,
        method=method,
        calib_images=calib_images,
        sensitivity_images=sensitivity_images,
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
    Console().print(table)
