"""`edgepipe prune`: prune a checkpoint to a fraction of its MACs or parameters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, KeyOptions, Spelling, config_options, device_option
from pipeline.pruning.config import METHODS, AutoConfig, MagnitudeConfig
from pipeline.run import source_model_artifact
from pipeline.stages.base import RunSettings
from pipeline.stages.prune import PRUNED_FILE, prune_measured
from pipeline.summary import model_stage_lines

if TYPE_CHECKING:
    from pipeline.pruning.pruner import PruneReport


def _round_to(value: str | int) -> int | str:
    """--round-to's value: a channel count, or the text itself ('auto', or a mistake the config names)."""
    return int(value) if str(value).isdigit() else value


SPELLINGS = {
    "round_to": Spelling(annotation=str, settings={"parser": _round_to}),
    "global_pruning": Spelling(("--global/--local",)),
    "remove_blocks": Spelling(("--remove-blocks/--keep-blocks",)),
    "protect_head": Spelling(("--protect-head/--prune-head",)),
}
# The run's input size and data, which the command passes to the pruner beside the config
OWN = {"imgsz": "imgsz", "data": "data"}
FILE_ONLY = {"protected_layers": "a list of layer indices, written in a config file"}
Model = Annotated[
    Path, typer.Option(help="Ultralytics YOLOv8, YOLO11 or YOLO26 detection .pt checkpoint to prune")
]
Data = Annotated[
    Path | None,
    typer.Option(
        help="data.yaml (its train split) or a folder of images for the data-aware steps; labels are "
        "used only by Taylor importance"
    ),
]
Val = Annotated[
    Path | None,
    typer.Option(help="data.yaml whose val split measures mAP50-95 before and after pruning (PyTorch)"),
]


@config_options(
    AutoConfig, MagnitudeConfig, command="prune", own=OWN, file_only=FILE_ONLY, spellings=SPELLINGS
)
def command(
    *,
    model: Annotated[
        Path, typer.Option(help="Ultralytics YOLOv8, YOLO11 or YOLO26 detection .pt checkpoint to prune")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="pruned checkpoint to write")] = Path(
        PRUNED_FILE
    ),
    options: KeyOptions[AutoConfig],
    data: Data = None,
    val: Val = None,
    imgsz: Annotated[int, typer.Option(help="input size for GFLOPs and data batches")] = DEFAULT_IMGSZ,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Prune a YOLOv8, YOLO11 or YOLO26 checkpoint to a fraction of its MACs (or of its latency):
    data-aware with --data, by magnitude without; --val measures the mAP50-95 it cost. --importance,
    --global/--local and --bn-batches are --method magnitude's; --latency*, --remove-blocks, --calib-images
    and --sensitivity-images are auto's and reconstruct's: another method's option exits 2."""
    device = device_option(device, "prune")
    method = options.values["method"]
    if method not in METHODS:
        raise InputError(f"--method is one of {', '.join(METHODS)}, got {method!r}")
    config = options.build_as(METHODS[method], given_only=True, method=method)
    settings = RunSettings(imgsz=imgsz, device=device, data=data, val=val)
    pruned, report = prune_measured(source_model_artifact(model), output, config, settings)
    print_report(report, f"pruned {model.name} -> {output}", imgsz)
    if val is not None:  # mAP50-95 before and after, as `edgepipe run` prints it
        for line in model_stage_lines("prune", pruned):
            console.print(line)


def print_report(report: PruneReport, title: str, imgsz: int) -> None:
    """Params and GFLOPs before and after, the blocks removed whole, the latency the pruning aimed at."""
    table = Table(title=title)
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
