"""`edgepipe run`: load the config, lock the work dir, execute the stages, print what came out."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from benchmarks.history import global_history_path, history_path
from benchmarks.results import load_results, save_results
from core.artifacts import Artifact, write_atomic
from core.checkpoints import check_sha256, load_detection_model
from core.errors import EXIT_CHECK_FAILED, EXIT_OK
from core.safe_load import trust_checkpoints
from pipeline.config import PipelineConfig, SynthSource, load_config
from pipeline.plan import make_plans
from pipeline.stage_runner import StageOutcome, StagePlan, StageRunner, WorkDir
from pipeline.stages.base import RunSettings
from pipeline.summary import MODEL_STAGES, engine_stage_lines, model_stage_lines, print_summary


def default_workdir(config_path: Path) -> Path:
    return Path.cwd() / ".edgepipe" / config_path.stem


def source_model_artifact(model: Path, sha256: str | None = None) -> Artifact:
    """The user's checkpoint, checked against its pin (`model_sha256`) and to be a YOLOv8 detector before
    any stage runs.

    Its params and GFLOPs are left to the report stage, which counts them only when it runs.
    """
    if sha256 is not None:
        check_sha256(model, sha256)
    load_detection_model(model)
    return Artifact.from_path("checkpoint", model)


def settings_for(config: PipelineConfig, data_yaml: Path | None) -> RunSettings:
    return RunSettings(
        imgsz=config.imgsz,
        device=config.device,
        data=data_yaml,
        val=config.val or data_yaml,
        model_name=config.name,
    )


# The latest report, gate (Markdown and JUnit) and results, at stable names at the top of the work dir
# after every run, so that CI finds them without the hashed stage folders.
LATEST = {"report": "report.html", "gate": "gate.md"}
LATEST_JUNIT = "gate.xml"
LATEST_RESULTS = "results.json"


def publish_latest(root: Path, available: dict[str, Artifact]) -> dict[str, Path]:
    """Copy this run's report and gate to WORKDIR/report.html, gate.md and gate.xml, and every results
    file of the run (its model's and the unpruned source's) into one WORKDIR/results.json."""
    published = {}
    for kind, name in LATEST.items():
        artifact = available.get(kind)
        if artifact is not None and artifact.path.is_file():
            published[kind] = write_atomic(root / name, artifact.path.read_bytes())
    gate = available.get("gate")
    junit = gate.path.parent / gate.metadata.get("junit", LATEST_JUNIT) if gate is not None else None
    if junit is not None and junit.is_file():
        published["junit"] = write_atomic(root / LATEST_JUNIT, junit.read_bytes())
    files = dict.fromkeys(a.path for a in available.values() if a.kind == "results" and a.path.is_file())
    if files:
        published["results"] = save_results(root / LATEST_RESULTS, load_results(*files))
    return published


def run_pipeline(
    config_path: Path,
    workdir: Path | None = None,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    force: bool = False,
    wait: float = 0,
    console: Console,
    global_history: bool = False,
) -> int:
    """Returns the exit code: 0 all good, 1 the gate failed (errors raise EdgepipeError).

    Results are recorded in the work dir's history, and in the global one too with `global_history`.
    `console` (the command's) shows what each stage changed and the summary tables.
    """
    config = load_config(config_path)
    plans = make_plans(config)
    work = WorkDir(workdir or default_workdir(Path(config_path)))
    started = time.perf_counter()
    with work.lock(wait_seconds=wait):
        work.clean_stale()
        data_yaml = None if isinstance(config.data, SynthSource) else config.data
        histories = (history_path(work.root),) + ((global_history_path(),) if global_history else ())
        runner = StageRunner(work, replace(settings_for(config, data_yaml), histories=histories))

        def follow(plan: StagePlan, outcome: StageOutcome) -> None:
            """The synthetic data becomes the run's data; a stage that changed the model says how, and a
            build what its INT8 check found."""
            if plan.stage == "data":
                dataset = outcome.artifacts["data"]
                data = dataset.path / dataset.metadata["data_yaml"]
                runner.settings = replace(settings_for(config, data), histories=histories)
            if plan.stage in MODEL_STAGES and "model" in outcome.artifacts:
                for line in model_stage_lines(plan.label, outcome.artifacts["model"]):
                    console.print(line)
            if plan.stage == "build" and "engine" in outcome.artifacts:
                for line in engine_stage_lines(plan.label, outcome.artifacts["engine"]):
                    console.print(line)

        runner.on_outcome = follow
        if config.trust_checkpoint:
            trust_checkpoints()
        source = source_model_artifact(config.model, config.model_sha256)
        runner.seed("model", source)
        runner.seed("model:source", source)
        console.print(f"[bold]edgepipe run[/bold] {config_path}  [dim]work dir {work.root}[/dim]")
        outcomes = runner.execute(plans, force_from=from_stage, only=only, force=force)
        latest = publish_latest(work.root, runner.available)
    print_summary(outcomes, console, seconds=time.perf_counter() - started, latest=latest)
    gate = runner.available.get("gate")
    if gate is not None and not gate.metadata.get("passed", False):
        return EXIT_CHECK_FAILED
    return EXIT_OK
