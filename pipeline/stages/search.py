"""The budget search: the most accurate model that meets a latency budget on this device, across input
size × MACs ratio × precision.

Four cached stages (`pipeline.plan.search_plans`):
- `search:prune` prunes each MACs ratio once (prune defaults, data-aware repair, no fine-tuning);
- `search:measure` builds every candidate on the target, times them in interleaved rounds and measures
  each one's mAP50-95 on the val split. Neither stage's key holds the budget, so a new budget reuses them;
- `search:select` scores every candidate on both axes and picks the highest mAP whose latency bound meets
  the budget (pipeline/search/select.py); it writes search.json, the Pareto plot and the winner;
- `search:finetune` (with `finetune_epochs`) fine-tunes the best few feasible candidates, measures them
  again and picks among them by the new mAP.

`edgepipe search` then writes the winner as an ordinary pipeline config (search.yaml) and runs it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from benchmarks.accuracy import evaluate
from benchmarks.device import device_name, fingerprint
from core.artifacts import Artifact, write_atomic, write_json_atomic
from core.console import console
from core.errors import InputError
from core.validation import reported_by_pydantic
from pipeline.report.plots import search_front
from pipeline.report.search import candidate_rows, summary_line
from pipeline.search.budget_expr import parse_budget
from pipeline.search.grid import Candidate, check_ratios, check_sizes, grid
from pipeline.search.select import CandidateRow, Measurement, Selection, best_meeting, require_choice, select
from pipeline.stages.base import Section, StageContext
from pipeline.stages.benchmark import bench_progress
from pipeline.stages.finetune import FinetuneConfig, finetune
from pipeline.stages.prune import PruneConfig
from pipeline.stages.search_candidates import (
    MeasureSettings,
    PrunedCandidate,
    build_candidate,
    measure_candidates,
    prune_candidates,
)
from targets.base import RunOptions, check_precision, get_target

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.search.budget_expr import LatencyBudget

CANDIDATES_FILE = "candidates.json"
MEASUREMENTS_FILE = "measurements.json"
SEARCH_FILE = "search.json"
PLOT_FILE = "search.png"


class SearchConfig(Section):
    budget: str = Field(description='latency budget: "p90<=12ms", "p50<8ms", "mean<=20ms" or "fps>=30"')
    target: str = Field("openvino", description="backend the candidates are built and timed on")
    precisions: list[str] = Field(["int8"], description="precisions the candidates are built in")
    imgsz: list[int] | None = Field(
        None, description="input sizes tried, multiples of 32 (default: the run's imgsz only)"
    )
    macs: list[float] = Field([1.0, 0.9, 0.8, 0.7], description="MACs ratios tried (1.0: the model as given)")
    batch: int = Field(1, ge=1, description="batch size the budget applies to")
    round_to: int | None = Field(8, ge=1, description="keep channel counts multiples of this")
    calib_images: int = Field(64, ge=8, description="INT8 calibration images per candidate")
    map_images: int | None = Field(None, ge=1, description="val images each candidate's mAP is measured on")
    warmup: int = Field(5, ge=0, description="untimed runs before each timed round")
    iters: int = Field(40, ge=1, description="at least this many timed runs per candidate and round")
    min_seconds: float = Field(1.0, ge=0, description="and at least this long per candidate and round")
    rounds: int = Field(3, ge=1, description="timing rounds, interleaved across the candidates")
    threads: int | None = Field(None, ge=1, description="inference threads; default: the backend's choice")
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="confidence of the upper bound of the budget's statistic"
    )
    margin: float = Field(
        0.05, ge=0, lt=1, description="relative headroom for drift between the search and later runs"
    )
    finetune_epochs: int = Field(0, ge=0, description="fine-tune the best feasible candidates (0: skip)")
    finetune_top: int = Field(2, ge=1, description="how many feasible candidates are fine-tuned")
    teacher: bool = Field(False, description="distill the fine-tuning from the unpruned model")

    @field_validator("budget")
    @classmethod
    def _readable_budget(cls, value: str) -> str:
        with reported_by_pydantic():
            parse_budget(value)
        return value

    @field_validator("imgsz")
    @classmethod
    def _sizes(cls, value: list[int] | None) -> list[int] | None:
        with reported_by_pydantic():
            return None if value is None else check_sizes(value)

    @field_validator("macs")
    @classmethod
    def _ratios(cls, value: list[float]) -> list[float]:
        with reported_by_pydantic():
            return check_ratios(value)

    @model_validator(mode="after")
    def _known_target(self) -> SearchConfig:
        with reported_by_pydantic():
            for precision in self.precisions:
                check_precision(get_target(self.target), precision)
        return self

    def sizes(self, run_imgsz: int) -> list[int]:
        return self.imgsz or [run_imgsz]

    def prune_config(self, imgsz: int) -> PruneConfig:
        """The prune stage's defaults at this search's channel rounding and pruning input size."""
        return PruneConfig(round_to=self.round_to, imgsz=imgsz)

    def parsed_budget(self) -> LatencyBudget:
        return parse_budget(self.budget, self.batch)

    def select(self, measurements: list[Measurement]) -> Selection:
        """The candidates scored against this search's budget, confidence and margin."""
        return select(measurements, self.parsed_budget(), confidence=self.confidence, margin=self.margin)


def run_prune(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Prune every MACs ratio once, at the largest input size; write candidates.json beside them."""
    size = max(config.sizes(ctx.settings.imgsz))
    folder = ctx.out_dir / "candidates"
    folder.mkdir()
    with bench_progress() as progress:
        pruned = prune_candidates(
            ctx.input("model").path,
            config.macs,
            folder,
            config.prune_config(size),
            imgsz=size,
            device=ctx.settings.device,
            data=ctx.settings.data,
            progress=progress,
        )
    record = [
        {"ratio": p.ratio, "file": p.path.name if p.path and p.ratio < 1 else None, "error": p.error}
        for p in pruned
    ]
    write_json_atomic(folder / CANDIDATES_FILE, {"imgsz": size, "candidates": record})
    return {"checkpoints": Artifact.from_path("search-checkpoints", folder, imgsz=size)}


def pruned_candidates(checkpoints: Path, source: Path) -> list[PrunedCandidate]:
    record = json.loads((checkpoints / CANDIDATES_FILE).read_text())["candidates"]
    return [
        PrunedCandidate(
            c["ratio"],
            (checkpoints / c["file"]) if c["file"] else (None if c["error"] else source),
            c["error"],
        )
        for c in record
    ]


def run_measure(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Build, time and score every candidate; write measurements.json."""
    if "int8" in config.precisions and ctx.settings.data is None:
        raise InputError("an int8 search calibrates on the train split: set `data`")
    val = require_val(ctx)
    settings = MeasureSettings(
        **{k: getattr(config, k) for k in MeasureSettings.__dataclass_fields__}  # same names as the config
    )
    pruned = pruned_candidates(ctx.input("checkpoints").path, ctx.input("model").path)
    candidates = grid(config.sizes(ctx.settings.imgsz), config.macs, config.precisions)
    with bench_progress() as progress:
        measurements, flags = measure_candidates(
            pruned, candidates, settings, data=ctx.settings.data, val=val, progress=progress
        )
    record = {
        "schema": 2,
        "target": config.target,
        "batch": config.batch,
        "prune_imgsz": ctx.input("checkpoints").metadata["imgsz"],
        "device": device_name(fingerprint(threads=config.threads)),
        "val": str(val),
        "flags": flags,
        "candidates": [asdict(m) for m in measurements],
    }
    path = write_json_atomic(ctx.out_dir / MEASUREMENTS_FILE, record)
    return {"measurements": Artifact.from_path("search-measurements", path, candidates=len(measurements))}


def require_val(ctx: StageContext) -> Path:
    if ctx.settings.val is None:
        raise InputError("the search ranks candidates by mAP: give a val set (--val data.yaml)")
    return ctx.settings.val


def run_select(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Choose from the measurements; write search.json and its plot, or exit 1 naming the nearest."""
    measured, measurements = read_measurements(ctx)
    return write_search(config, ctx, measured, config.select(measurements))


def read_measurements(ctx: StageContext) -> tuple[dict[str, Any], list[Measurement]]:
    """measurements.json, and its candidates with their raw samples (search.json keeps none)."""
    measured = json.loads(ctx.input("measurements").path.read_text())
    return measured, [Measurement.from_dict(m) for m in measured["candidates"]]


def write_search(
    config: SearchConfig, ctx: StageContext, measured: dict[str, Any], selection: Selection
) -> dict[str, Artifact]:
    search = {key: measured[key] for key in ("target", "batch", "prune_imgsz", "device", "flags", "val")}
    search |= {"model": ctx.settings.model_name, "precisions": config.precisions, **selection.as_dict()}
    console.print(candidate_table(search))
    chosen = require_choice(selection)  # exit 1 with the nearest candidate named when none meets it
    path = write_json_atomic(ctx.out_dir / SEARCH_FILE, search)
    write_atomic(ctx.out_dir / PLOT_FILE, search_front(search))
    meta = {
        "imgsz": chosen.imgsz,
        "ratio": chosen.ratio,
        "precision": chosen.precision,
        "budget": config.budget,
    }
    return {"search": Artifact.from_path("search", path, **meta)}


def run_finetune(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Fine-tune the best few feasible candidates, measure their mAP again and choose among all."""
    measured, measurements = read_measurements(ctx)
    selection = config.select(measurements)
    pruned = {
        p.ratio: p.path for p in pruned_candidates(ctx.input("checkpoints").path, ctx.input("model").path)
    }
    best = top_feasible(selection, config.finetune_top)
    scores = {}
    for row in best:
        console.print(f"fine-tuning {row.candidate.label} for {config.finetune_epochs} epochs")
        checkpoint = pruned[row.ratio]
        assert checkpoint is not None  # a feasible candidate was built
        scores[row.candidate] = finetuned_map(config, ctx, checkpoint, row.candidate)
    updated = [
        replace(m, finetuned_map50_95=scores.get(m.candidate, m.finetuned_map50_95)) for m in measurements
    ]
    return write_search(config, ctx, measured, config.select(updated))


def top_feasible(selection: Selection, count: int) -> list[CandidateRow]:
    """The `count` highest-mAP candidates that meet the budget."""
    chosen: list[CandidateRow] = []
    for _ in range(count):
        row = best_meeting(selection.rows, lambda r: r not in chosen)
        if row is None:
            break
        chosen.append(row)
    return chosen


def finetuned_map(config: SearchConfig, ctx: StageContext, checkpoint: Path, candidate: Candidate) -> float:
    """Fine-tune one candidate at its input size, build it as searched and measure its mAP50-95."""
    data, val = ctx.settings.data, require_val(ctx)
    if data is None:
        raise InputError("fine-tuning needs a training set: set `data`")
    work = Path(tempfile.mkdtemp(prefix="finetune-", dir=ctx.out_dir))
    out = finetune(
        checkpoint,
        data,
        work / "finetuned.pt",
        FinetuneConfig(epochs=config.finetune_epochs),
        imgsz=candidate.imgsz,
        device=ctx.settings.device,
        run_dir=work / "train",
        teacher=ctx.input("model").path if config.teacher else None,
    )
    settings = MeasureSettings(config.target, config.batch, config.calib_images, map_images=config.map_images)
    engine = build_candidate(out, candidate, work / "build", settings, data)
    options = RunOptions(threads=config.threads, batch=config.batch)
    with get_target(config.target).load(engine, options) as runner:
        score = evaluate(runner, val, candidate.imgsz, batch=config.batch, max_images=config.map_images)
    return round(score.map50_95, 5)


def candidate_table(search: dict[str, Any]) -> Table:
    from rich.table import Table

    header, rows = candidate_rows(search)
    table = Table(title=f"budget search: {search['budget']['text']}", caption=summary_line(search))
    for column in header:
        table.add_column(column, justify="left" if column in ("meets?", "precision") else "right")
    for row in rows:
        style = "bold green" if row[0].endswith("★") else ("dim" if row[-1] != "yes" else None)
        table.add_row(*row, style=style)
    return table
