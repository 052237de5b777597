"""`edgepipe search`: the budget search as a command (`pipeline.budget_search` does the work: the search's
stages, the winner's config and its verification)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from core.errors import InputError
from pipeline.budget_search import search_and_verify
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, config_from_options, default, device_option, option, renamed
from pipeline.search.grid import DEFAULT_SIZES
from pipeline.stages.search import SearchConfig

DEFAULT_MACS = ",".join(f"{ratio:g}" for ratio in default(SearchConfig, "macs"))


def comma_list(text: str | None, cast: type, option_name: str) -> list[Any] | None:
    """ "640,512, 448" as [640, 512, 448]; a value that is not a `cast` is an error naming it."""
    if text is None:
        return None
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            values.append(cast(item))
        except ValueError:
            raise InputError(f"{option_name} {text!r}: {item!r} is not a {cast.__name__}") from None
    return values


def model_paths(options: list[str]) -> list[Path]:
    """The --model options as paths, comma lists split, each file once."""
    paths = [Path(part.strip()) for text in options for part in text.split(",") if part.strip()]
    if not paths:
        raise InputError("--model names no checkpoint")
    return list({path.resolve(): path for path in paths}.values())


def command(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="Ultralytics YOLOv8, YOLO11 or YOLO26 detection checkpoint; repeat it or give a comma list "
            "to search several models (families) on one front",
        ),
    ],
    data: Annotated[
        Path,
        typer.Option("--data", help="data.yaml: INT8 calibration, pruning and fine-tuning (train split)"),
    ],
    budget: Annotated[str, option(SearchConfig, "budget", "--budget")],
    workdir: Annotated[
        Path | None,
        typer.Option(
            "-w", "--workdir", help="work dir: cached stages, search.yaml, winner/ [default: search]"
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", hidden=True, help="deprecated: -w")] = None,
    target: Annotated[str, option(SearchConfig, "target")] = default(SearchConfig, "target"),
    precision: Annotated[
        str, typer.Option(help="precisions tried, comma-separated, e.g. int8,bf16")
    ] = ",".join(default(SearchConfig, "precisions")),
    imgsz: Annotated[
        str | None,
        typer.Option(
            help="input sizes tried, comma-separated multiples of 32 "
            f"[default: {','.join(map(str, DEFAULT_SIZES))}]"
        ),
    ] = None,
    macs: Annotated[
        str, typer.Option(help="MACs ratios tried, comma-separated (1.0: the model as given)")
    ] = DEFAULT_MACS,
    batch: Annotated[int, option(SearchConfig, "batch", min=1)] = default(SearchConfig, "batch"),
    round_to: Annotated[int, option(SearchConfig, "round_to", min=1)] = default(SearchConfig, "round_to"),
    finetune_epochs: Annotated[int, option(SearchConfig, "finetune_epochs", min=0)] = default(
        SearchConfig, "finetune_epochs"
    ),
    finetune_minutes: Annotated[float, option(SearchConfig, "finetune_minutes")] = default(
        SearchConfig, "finetune_minutes"
    ),
    finetune_top: Annotated[int | None, option(SearchConfig, "finetune_top", min=1)] = None,
    teacher: Annotated[
        bool, typer.Option("--teacher", help="distill the fine-tuning from the unpruned model")
    ] = False,
    val: Annotated[
        Path | None, typer.Option(help="data.yaml whose val split measures mAP (default: --data)")
    ] = None,
    calib_images: Annotated[int, option(SearchConfig, "calib_images", min=8)] = default(
        SearchConfig, "calib_images"
    ),
    map_images: Annotated[int | None, option(SearchConfig, "map_images", min=1)] = None,
    margin: Annotated[float, option(SearchConfig, "margin")] = default(SearchConfig, "margin"),
    rounds: Annotated[int, option(SearchConfig, "rounds", min=1)] = default(SearchConfig, "rounds"),
    iters: Annotated[int, option(SearchConfig, "iters", min=1)] = default(SearchConfig, "iters"),
    min_seconds: Annotated[float, option(SearchConfig, "min_seconds")] = default(SearchConfig, "min_seconds"),
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="build, benchmark and gate the winner (search.yaml)")
    ] = True,
    device: Annotated[str, typer.Option(help=f"pruning and fine-tuning: {DEVICE_HELP}")] = "cpu",
) -> None:
    """The most accurate model meeting a latency budget on this device, across input size × MACs ratio ×
    precision (and models, on one front, when --model is given several); then build, benchmark and gate
    it."""
    output = renamed(workdir, output, command="search", old_name="-o/--output", new_name="-w/--workdir")
    output = output or Path("search")
    device = device_option(device, "search")
    config = config_from_options(
        SearchConfig,
        "search",
        budget=budget,
        target=target,
        precisions=comma_list(precision, str, "--precision"),
        imgsz=comma_list(imgsz, int, "--imgsz"),
        macs=comma_list(macs, float, "--macs"),
        batch=batch,
        round_to=round_to,
        finetune_epochs=finetune_epochs,
        finetune_minutes=finetune_minutes,
        finetune_top=finetune_top,
        teacher=teacher,
        calib_images=calib_images,
        map_images=map_images,
        margin=margin,
        rounds=rounds,
        iters=iters,
        min_seconds=min_seconds,
    )
    code = search_and_verify(
        config,
        models=model_paths(model),
        data=data,
        val=val,
        device=device,
        workdir=output,
        verify=verify,
        console=console,
    )
    raise typer.Exit(code)
