"""`edgepipe search`: the budget search as a command (`pipeline.budget_search` does the work: the search's
stages, the winner's config and its verification)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from core.errors import InputError
from pipeline.budget_search import search_and_verify
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, KeyOptions, config_options, default, device_option, renamed
from pipeline.search.grid import DEFAULT_SIZES
from pipeline.stages.search import SearchConfig


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


Models = Annotated[
    list[str],
    typer.Option(
        "--model",
        help="Ultralytics YOLOv8, YOLO11 or YOLO26 detection checkpoint; repeat it or give a comma list "
        "to search several models (families) on one front",
    ),
]
Data = Annotated[
    Path, typer.Option("--data", help="data.yaml: INT8 calibration, pruning and fine-tuning (train split)")
]
Workdir = Annotated[
    Path | None,
    typer.Option("-w", "--workdir", help="work dir: cached stages, search.yaml, winner/ [default: search]"),
]
Precisions = Annotated[str, typer.Option(help="precisions tried, comma-separated, e.g. int8,bf16")]
Sizes = Annotated[
    str | None,
    typer.Option(
        help="input sizes tried, comma-separated multiples of 32 "
        f"[default: {','.join(map(str, DEFAULT_SIZES))}]"
    ),
]
Ratios = Annotated[str, typer.Option(help="MACs ratios tried, comma-separated (1.0: the model as given)")]
Val = Annotated[Path | None, typer.Option(help="data.yaml whose val split measures mAP (default: --data)")]
Verify = Annotated[
    bool, typer.Option("--verify/--no-verify", help="build, benchmark and gate the winner (search.yaml)")
]
# Lists in the search's config, comma-separated on the command line
OWN = {"precisions": "precision", "imgsz": "imgsz", "macs": "macs"}


@config_options(SearchConfig, command="search", own=OWN)
def command(
    *,
    model: Models,
    data: Data,
    workdir: Workdir = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", hidden=True, help="deprecated: -w")] = None,
    precision: Precisions = ",".join(default(SearchConfig, "precisions")),
    imgsz: Sizes = None,
    macs: Ratios = ",".join(f"{ratio:g}" for ratio in default(SearchConfig, "macs")),
    options: KeyOptions[SearchConfig],
    val: Val = None,
    verify: Verify = True,
    device: Annotated[str, typer.Option(help=f"pruning and fine-tuning: {DEVICE_HELP}")] = "cpu",
) -> None:
    """The most accurate model meeting a latency budget on this device, across input size × MACs ratio ×
    precision (and models, on one front, when --model is given several); then build, benchmark and gate
    it."""
    output = renamed(workdir, output, command="search", old_name="-o/--output", new_name="-w/--workdir")
    device = device_option(device, "search")
    config = options.build(
        precisions=comma_list(precision, str, "--precision"),
        imgsz=comma_list(imgsz, int, "--imgsz"),
        macs=comma_list(macs, float, "--macs"),
    )
    code = search_and_verify(
        config, models=model_paths(model), data=data, val=val, device=device,
        workdir=output or Path("search"), verify=verify, console=console,
    )  # fmt: skip
    raise typer.Exit(code)
