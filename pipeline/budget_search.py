"""`edgepipe search` end to end: the search's cached stages, then the winner written as an ordinary
pipeline config (search.yaml, whose release gate is the budget in budget.yaml) and, to verify it, that
config run in winner/ so that the winner is built, benchmarked again and gated on this device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from benchmarks.results import load_results
from core.artifacts import Artifact, write_atomic
from core.errors import EXIT_OK, InputError
from pipeline.plan import search_plans
from pipeline.run import run_pipeline, source_model_artifact
from pipeline.search.grid import model_tags
from pipeline.search.recheck import recheck
from pipeline.stage_runner import StageRunner, WorkDir
from pipeline.stages.base import RunSettings
from pipeline.stages.search import SearchConfig, candidate_table, model_input

WINNER_CONFIG = "search.yaml"
BUDGET_FILE = "budget.yaml"
SEARCH_FILE = "search.json"
WINNER_DIR = "winner"


def search_and_verify(
    config: SearchConfig,
    *,
    models: list[Path],
    data: Path,
    val: Path | None,
    device: str,
    workdir: Path,
    verify: bool,
    console: Console,
) -> int:
    """Search, write the winner's config into `workdir` and (with `verify`) run it; returns the exit code
    of that run (0 when not verified). `val` defaults to `data`; `console` is the command's."""
    for path in (*models, data, val):
        if path is not None and not path.exists():
            raise InputError("file not found", path=path)
    val = val or data
    chosen = run_search(
        config, models=models, data=data, val=val, device=device, workdir=workdir, console=console
    )
    search = json.loads(chosen.path.read_text())
    console.print(candidate_table(search))
    winner = dict(zip(model_tags(models), models, strict=True))[search["chosen"].get("model", "")]
    config_path = write_winner(
        chosen,
        config,
        workdir,
        winner_config(search, model=winner, data=data, val=val, device=device, config=config),
    )
    console.print(f"winner written to {config_path}: edgepipe run {config_path} -w {workdir / WINNER_DIR}")
    if not verify:
        return EXIT_OK
    code = run_pipeline(config_path, workdir / WINNER_DIR, console=console)
    recheck_partial_map(search, workdir, config, console)
    if code == EXIT_OK:
        limit = config.parsed_budget().describe()
        console.print(f"[bold green]budget met[/bold green] when benchmarked again ({limit})")
    return code


def run_search(
    config: SearchConfig,
    *,
    models: list[Path],
    data: Path,
    val: Path,
    device: str,
    workdir: Path,
    console: Console,
) -> Artifact:
    """The search's cached stages in `workdir`; returns the search.json artifact of the winner (a search
    that finds none raises CheckFailed, exit 1, naming the nearest candidate)."""
    work = WorkDir(workdir)
    tags = model_tags(models)
    name = "+".join(tags) if len(models) > 1 else models[0].stem
    settings = RunSettings(imgsz=max(config.sizes()), device=device, data=data, val=val, model_name=name)
    with work.lock():
        work.clean_stale()
        runner = StageRunner(work, settings)
        for tag, model in zip(tags, models, strict=True):
            runner.seed(model_input(tag), source_model_artifact(model))
        shown = " ".join(map(str, models))
        console.print(f"[bold]edgepipe search[/bold] {shown}  [dim]work dir {work.root}[/dim]")
        runner.execute(search_plans(config, data_reads=(data, val), models=tuple(tags)))
    return runner.available["search"]


def write_winner(chosen: Artifact, config: SearchConfig, workdir: Path, run: dict[str, Any]) -> Path:
    """search.json, budget.yaml and the winner's config `run` in `workdir`, each written atomically;
    returns the config's path."""
    write_atomic(workdir / SEARCH_FILE, chosen.path.read_bytes())
    write_atomic(workdir / BUDGET_FILE, yaml.safe_dump(budget_file(config, chosen.metadata["precision"])))
    return write_atomic(workdir / WINNER_CONFIG, yaml.safe_dump(run, sort_keys=False))


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


def recheck_partial_map(
    search: dict[str, Any], workdir: Path, config: SearchConfig, console: Console
) -> None:
    """With a partial mAP (map_images), print the winner's full one beside it, flag a feasible candidate
    that scored above it, and keep both in search.json."""
    full = winner_map(workdir / WINNER_DIR, config, search["chosen"]["precision"])
    checked = recheck(search, full) if full is not None else None
    if checked is None:
        return
    console.print(checked.line())
    if (warning := checked.warning()) is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    write_atomic(workdir / SEARCH_FILE, json.dumps({**search, "recheck": checked.as_dict()}, indent=2))
