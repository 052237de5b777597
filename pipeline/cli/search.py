"""`edgepipe search`: the budget search as a command; it writes the equivalent pipeline config and runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from core.artifacts import MANIFEST_FILE, write_atomic
from core.console import console
from core.errors import InputError
from pipeline.cli.options import DEVICE_HELP, config_from_options, default, option, renamed, torch_device
from pipeline.run import run_pipeline
from pipeline.stages.search import SearchConfig, candidate_table


def search_config_yaml(
    *,
    model: Path,
    data: Path,
    val: Path | None,
    imgsz: int,
    device: str,
    search: SearchConfig,
    finetune_epochs: int,
    teacher: bool,
) -> dict[str, Any]:
    """The `edgepipe run` config equivalent to an `edgepipe search` command."""
    config: dict[str, Any] = {
        "name": model.stem,
        "model": str(model.resolve()),
        "data": str(data.resolve()),
        "imgsz": imgsz,
        "device": device,
        "search": search.model_dump(exclude_none=True),
        "export": {"dynamic_batch": search.batch > 1},
        "build": [{"target": search.target, "precision": search.precision}],
        "bench": {"batch": [search.batch]},
        "report": {"title": f"edgepipe search: {model.name}, {search.budget} on {search.label}"},
    }
    if val is not None:
        config["val"] = str(val.resolve())
    if finetune_epochs:
        config["finetune"] = {"epochs": finetune_epochs, "teacher": teacher}
    return config


def command(
    model: Annotated[Path, typer.Option("--model", help="Ultralytics YOLOv8 .pt checkpoint to compress")],
    data: Annotated[
        Path, typer.Option("--data", help="data.yaml: INT8 calibration and fine-tuning (train split)")
    ],
    budget: Annotated[str, option(SearchConfig, "budget", "--budget")],
    workdir: Annotated[
        Path | None,
        typer.Option(
            "-w", "--workdir", help="work dir: cached stages, report.html, search.yaml [default: search]"
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", hidden=True, help="deprecated: -w")] = None,
    target: Annotated[str, option(SearchConfig, "target")] = default(SearchConfig, "target"),
    precision: Annotated[str, option(SearchConfig, "precision")] = default(SearchConfig, "precision"),
    batch: Annotated[int, option(SearchConfig, "batch", min=1)] = default(SearchConfig, "batch"),
    candidates: Annotated[int, option(SearchConfig, "candidates", min=2)] = default(
        SearchConfig, "candidates"
    ),
    min_ratio: Annotated[float, option(SearchConfig, "min_ratio")] = default(SearchConfig, "min_ratio"),
    round_to: Annotated[int, option(SearchConfig, "round_to", min=1)] = default(SearchConfig, "round_to"),
    imgsz: Annotated[int, typer.Option(help="input size in pixels (multiple of 32)")] = 640,
    finetune_epochs: Annotated[
        int, typer.Option(min=0, help="fine-tune the chosen model this many epochs (0: skip)")
    ] = 10,
    teacher: Annotated[
        bool, typer.Option("--teacher", help="distill the fine-tuning from the unpruned model")
    ] = False,
    val: Annotated[
        Path | None, typer.Option(help="data.yaml whose val split measures mAP (default: --data)")
    ] = None,
    margin: Annotated[float, option(SearchConfig, "margin")] = default(SearchConfig, "margin"),
    rounds: Annotated[int, option(SearchConfig, "rounds", min=1)] = default(SearchConfig, "rounds"),
    iters: Annotated[int, option(SearchConfig, "iters", min=1)] = default(SearchConfig, "iters"),
    min_seconds: Annotated[float, option(SearchConfig, "min_seconds")] = default(SearchConfig, "min_seconds"),
    device: Annotated[str, typer.Option(help=f"pruning and fine-tuning: {DEVICE_HELP}")] = "cpu",
) -> None:
    """Find the least pruned model meeting a latency budget on the target; fine-tune, build and gate it."""
    import yaml

    output = renamed(workdir, output, command="search", old_name="-o/--output", new_name="-w/--workdir")
    output = output or Path("search")
    device = torch_device(device, "search")
    search = config_from_options(
        SearchConfig,
        "search",
        budget=budget,
        target=target,
        precision=precision,
        batch=batch,
        candidates=candidates,
        min_ratio=min_ratio,
        round_to=round_to,
        margin=margin,
        rounds=rounds,
        iters=iters,
        min_seconds=min_seconds,
    )
    for path in (model, data, val):
        if path is not None and not path.exists():
            raise InputError("file not found", path=path)
    output.mkdir(parents=True, exist_ok=True)
    config = search_config_yaml(
        model=model,
        data=data,
        val=val,
        imgsz=imgsz,
        device=device,
        search=search,
        finetune_epochs=finetune_epochs,
        teacher=teacher,
    )
    config_path = output / "search.yaml"
    write_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
    code = run_pipeline(config_path, output, console=console)
    print_outcome(output, console)
    console.print(f"the same as a pipeline: edgepipe run {config_path} -w {output}")
    raise typer.Exit(code)


def print_outcome(workdir: Path, console) -> None:
    """The candidate table (when selection came from the cache, the stage printed it otherwise) and the
    final verdict of the re-benchmarked choice."""
    stages = {s["label"]: s for s in json.loads((workdir / MANIFEST_FILE).read_text())["stages"]}
    select, verify = stages.get("search:select"), stages.get("search:verify")
    if select and select["status"] == "cached":
        console.print(candidate_table(json.loads(Path(select["artifacts"]["search"]["path"]).read_text())))
    if verify:
        verdict = json.loads(Path(verify["artifacts"]["verdict"]["path"]).read_text())
        for check in verdict["checks"]:
            console.print(
                f"[bold green]budget met[/bold green] when re-benchmarked: {check['criterion']} "
                f"{check['measured']:.2f} ms <= {check['limit']:.2f} ms ({verdict['budget']})"
            )
