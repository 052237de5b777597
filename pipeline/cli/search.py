"""`edgepipe search`: the budget search as a command. It runs the search's cached stages, writes the winner
as an ordinary pipeline config (search.yaml, with the budget as its release gate) and runs that config, so
that the winner is built, benchmarked again and gated on this device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from benchmarks.results import load_results
from core.artifacts import write_atomic
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, config_from_options, default, device_option, option, renamed
from pipeline.run import run_pipeline, run_search
from pipeline.search.budget_expr import parse_budget
from pipeline.search.grid import DEFAULT_SIZES, model_tags
from pipeline.search.recheck import recheck
from pipeline.stages.search import SearchConfig, candidate_table

WINNER_CONFIG = "search.yaml"
BUDGET_FILE = "budget.yaml"
SEARCH_FILE = "search.json"
WINNER_DIR = "winner"
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


def winner_config(
    search: dict[str, Any], *, model: Path, data: Path, val: Path, device: str, config: SearchConfig
) -> dict[str, Any]:
    """The `edgepipe run` config that reproduces the winner: its input size, pruning (as searched: at its
    own input size, or at the one pruning size of a search.json from before), fine-tuning, build,
    benchmark, report and the budget as the gate."""
    chosen = search["chosen"]
    run: dict[str, Any] = {
        "name": f"{model.stem}-{chosen['imgsz']}px-{chosen['ratio']:g}macs",
        "model": str(model.resolve()),
        "data": str(data.resolve()),
        "val": str(val.resolve()),
        "imgsz": chosen["imgsz"],
        "device": device,
    }
    if chosen["ratio"] < 1.0:
        size = search.get("prune_imgsz") or chosen["imgsz"]
        prune = config.prune_config(size).model_dump(include={"round_to", "imgsz"})
        run["prune"] = {"macs": chosen["ratio"], **prune}
    if chosen.get("finetuned_map50_95") is not None:
        run["finetune"] = {"epochs": config.finetune_epochs, "teacher": config.teacher}
    run |= {
        "export": {"dynamic_batch": config.batch > 1},
        "build": [{"target": config.target, "precision": chosen["precision"]}],
        "bench": {"batch": [config.batch]},
        "report": {"title": f"edgepipe search: {model.name}, {config.budget}", "search": SEARCH_FILE},
        "gate": {"budgets": BUDGET_FILE},
    }
    return run


def budget_file(config: SearchConfig, precision: str) -> dict[str, Any]:
    """The search's budget as a budgets YAML for the release gate."""
    budget = config.parsed_budget()
    return {
        "budgets": [
            {
                "name": f"search budget {config.budget}",
                "device": "*",
                "target": f"{config.target}/{precision}",
                "batch": config.batch,
                "max_latency_ms": {budget.statistic: round(budget.limit_ms, 4)},
            }
        ]
    }


def winner_map(winner_dir: Path, config: SearchConfig, precision: str) -> float | None:
    """The mAP50-95 the winner's own run measured (on the whole val split), from its bench stage."""
    stages = json.loads((winner_dir / "manifest.json").read_text())["stages"]
    label = f"bench:{config.target}/{precision}"
    paths = [Path(s["artifacts"]["results"]["path"]) for s in stages if s["label"] == label]
    found = [r.map50_95 for r in load_results(*paths) if r.batch == config.batch] if paths else []
    return found[0] if found else None


def recheck_partial_map(search: dict[str, Any], output: Path, config: SearchConfig) -> None:
    """With a partial mAP (--map-images), print the winner's full one beside it, flag a feasible candidate
    that scored above it, and keep both in search.json."""
    full = winner_map(output / WINNER_DIR, config, search["chosen"]["precision"])
    checked = recheck(search, full) if full is not None else None
    if checked is None:
        return
    console.print(checked.line())
    if (warning := checked.warning()) is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    write_atomic(output / SEARCH_FILE, json.dumps({**search, "recheck": checked.as_dict()}, indent=2))


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
    models = model_paths(model)
    for path in (*models, data, val):
        if path is not None and not path.exists():
            raise InputError("file not found", path=path)
    val = val or data
    chosen = run_search(
        config, models=models, data=data, val=val, device=device, workdir=output, console=console
    )
    search = json.loads(chosen.path.read_text())
    console.print(candidate_table(search))
    by_tag = dict(zip(model_tags(models), models, strict=True))
    write_atomic(output / SEARCH_FILE, chosen.path.read_bytes())
    write_atomic(output / BUDGET_FILE, yaml.safe_dump(budget_file(config, chosen.metadata["precision"])))
    winner = by_tag[search["chosen"].get("model", "")]
    run = winner_config(search, model=winner, data=data, val=val, device=device, config=config)
    config_path = write_atomic(output / WINNER_CONFIG, yaml.safe_dump(run, sort_keys=False))
    console.print(f"winner written to {config_path}: edgepipe run {config_path} -w {output / WINNER_DIR}")
    if not verify:
        return
    code = run_pipeline(config_path, output / WINNER_DIR, console=console)
    recheck_partial_map(search, output, config)
    if code == 0:
        limit = parse_budget(config.budget, config.batch)
        console.print(f"[bold green]budget met[/bold green] when benchmarked again ({limit.describe()})")
    raise typer.Exit(code)
