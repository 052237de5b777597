"""The budget search: the most accurate model that meets a latency budget on this device, across input
size × MACs ratio × precision, and across models (families) when it is given several.

Cached stages (`pipeline.plan.search_plans`):
- `search:prune:R@S`, one per pruned MACs ratio R and input size S (`search:prune:M:R@S` per model M of
  several), prunes at the size the candidate runs at (prune defaults, data-aware repair, no fine-tuning),
  so each is cached on its own;
- `search:measure` builds every candidate on the target, times them in interleaved rounds and measures
  each one's mAP50-95 on the val split. Neither stage's key holds the budget, so a new budget reuses them;
- `search:select` scores every candidate on both axes and picks the highest mAP whose latency bound meets
  the budget (pipeline/search/select.py); it writes search.json, the Pareto plot and the winner;
- `search:finetune` (with `finetune_epochs`) fine-tunes the pruned candidates that need training to reach
  the front, fastest first at each input size, within a time budget (`finetune_order`), measures them again
  and chooses again over all.

`edgepipe search` then writes the winner as an ordinary pipeline config (search.yaml) and runs it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator
from rich.table import Table

from benchmarks.accuracy import evaluate
from benchmarks.device import device_name, fingerprint
from core.artifacts import Artifact, write_atomic, write_json_atomic
from core.checkpoints import load_detection_model
from core.errors import InputError
from core.families import family_of
from core.validation import reported_by_pydantic
from pipeline.pruning.config import AutoConfig
from pipeline.report.markdown import table as markdown_table
from pipeline.report.plots import search_front
from pipeline.report.search import candidate_rows, summary_line
from pipeline.search.budget_expr import parse_budget
from pipeline.search.grid import DEFAULT_SIZES, Candidate, check_ratios, check_sizes, grid
from pipeline.search.select import (
    Measurement,
    Selection,
    finetune_order,
    predicted_seconds,
    require_choice,
    select,
)
from pipeline.stages.base import Section, StageContext
from pipeline.stages.finetune import FinetuneConfig, finetune
from pipeline.stages.search_candidates import (
    MeasureSettings,
    PrunedCandidate,
    build_candidate,
    measure_candidates,
    prune_candidate,
)
from targets.base import RunOptions, check_precision, get_target

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.search.budget_expr import LatencyBudget

log = logging.getLogger(__name__)
CANDIDATES_FILE = "candidates.json"
MEASUREMENTS_FILE = "measurements.json"
SEARCH_FILE = "search.json"
PLOT_FILE = "search.png"


class SearchConfig(Section):
    budget: str = Field(description='latency budget: "p90<=12ms", "p50<8ms", "mean<=20ms" or "fps>=30"')
    target: str = Field("openvino", description="backend the candidates are built and timed on")
    precisions: list[str] = Field(["int8"], description="precisions the candidates are built in")
    imgsz: list[int] | None = Field(
        None,
        description="input sizes tried, multiples of 32 (default: the ladder "
        f"{','.join(map(str, DEFAULT_SIZES))})",
    )
    macs: list[float] = Field([1.0, 0.9, 0.8, 0.7], description="MACs ratios tried (1.0: the model as given)")
    batch: int = Field(1, ge=1, description="batch size the budget applies to")
    round_to: int | None = Field(8, ge=1, description="keep channel counts multiples of this")
    calib_images: int = Field(
        64,
        ge=8,
        description="INT8 calibration images per candidate (fewer than a build's 300: each calibrates)",
    )
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
    finetune_epochs: int = Field(
        0, ge=0, description="fine-tune the pruned candidates that need training to reach the front (0: skip)"
    )
    finetune_minutes: float = Field(
        30.0,
        gt=0,
        description="time budget of the fine-tuning; a fine-tune predicted to overrun it is skipped",
    )
    finetune_top: int | None = Field(None, ge=1, description="at most this many checkpoints are fine-tuned")
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

    def sizes(self) -> list[int]:
        return self.imgsz or list(DEFAULT_SIZES)

    def prune_config(self, imgsz: int) -> AutoConfig:
        """The prune stage's defaults at this search's channel rounding and pruning input size."""
        return AutoConfig(round_to=self.round_to, imgsz=imgsz)

    def parsed_budget(self) -> LatencyBudget:
        return parse_budget(self.budget, self.batch)

    def select(self, measurements: list[Measurement]) -> Selection:
        """The candidates scored against this search's budget, confidence and margin."""
        return select(measurements, self.parsed_budget(), confidence=self.confidence, margin=self.margin)


def model_input(model: str) -> str:
    """The name under which the search's stages read a searched model (its tag; "" for the only one)."""
    return f"model:{model}" if model else "model"


def checkpoint_input(ratio: float, imgsz: int, model: str = "") -> str:
    """The name under which the search's later stages read the checkpoint of (model, ratio, imgsz)."""
    return f"checkpoint:{model}:{ratio:g}@{imgsz}" if model else f"checkpoint:{ratio:g}@{imgsz}"


def run_prune(
    config: SearchConfig, model: str, ratio: float, imgsz: int, ctx: StageContext
) -> dict[str, Artifact]:
    """Prune to `ratio` of the MACs at `imgsz`; write the checkpoint (or why it cannot) and its record."""
    folder = ctx.out_dir / "candidate"
    folder.mkdir()
    pruned = prune_candidate(
        ctx.input(model_input(model)).path,
        ratio,
        imgsz,
        folder,
        config.prune_config(imgsz),
        device=ctx.settings.device,
        data=ctx.settings.data,
    )
    record = {"ratio": ratio, "imgsz": imgsz, "file": pruned.path.name if pruned.path else None}
    write_json_atomic(folder / CANDIDATES_FILE, {**record, "error": pruned.error})
    return {"checkpoint": Artifact.from_path("search-checkpoint", folder, ratio=ratio, imgsz=imgsz)}


def pruned_candidates(
    config: SearchConfig, models: tuple[str, ...], ctx: StageContext
) -> dict[tuple[str, float, int], PrunedCandidate]:
    """Every (model, ratio, input size)'s checkpoint: the model at 1.0, else what its search:prune stage
    wrote."""
    found = {}
    for model in models:
        source = ctx.input(model_input(model)).path
        for imgsz in config.sizes():
            for ratio in config.macs:
                if ratio >= 1.0:
                    found[model, ratio, imgsz] = PrunedCandidate(ratio, imgsz, source)
                    continue
                folder = ctx.input(checkpoint_input(ratio, imgsz, model)).path
                record = json.loads((folder / CANDIDATES_FILE).read_text())
                path = folder / record["file"] if record["file"] else None
                found[model, ratio, imgsz] = PrunedCandidate(ratio, imgsz, path, record["error"])
    return found


def model_families(models: tuple[str, ...], ctx: StageContext) -> dict[str, str]:
    """Each searched model's family (yolov8, yolo11, yolo26), shown beside its candidates."""
    return {m: family_of(load_detection_model(ctx.input(model_input(m)).path)) for m in models}


def run_measure(config: SearchConfig, models: tuple[str, ...], ctx: StageContext) -> dict[str, Artifact]:
    """Build, time and score every candidate; write measurements.json."""
    if "int8" in config.precisions and ctx.settings.data is None:
        raise InputError("an int8 search calibrates on the train split: set `data`")
    val = require_val(ctx)
    settings = MeasureSettings(
        **{k: getattr(config, k) for k in MeasureSettings.__dataclass_fields__}  # same names as the config
    )
    pruned = pruned_candidates(config, models, ctx)
    candidates = grid(config.sizes(), config.macs, config.precisions, models)
    measurements, flags = measure_candidates(pruned, candidates, settings, data=ctx.settings.data, val=val)
    families = model_families(models, ctx)
    measurements = [replace(m, family=families[m.model]) for m in measurements]
    record = {
        "schema": 2,
        "target": config.target,
        "batch": config.batch,
        "prune_imgsz": None,  # each candidate pruned at its own input size (files before: the one size)
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
    config: SearchConfig,
    ctx: StageContext,
    measured: dict[str, Any],
    selection: Selection,
    extra: dict[str, Any] | None = None,
) -> dict[str, Artifact]:
    search = {key: measured[key] for key in ("target", "batch", "prune_imgsz", "device", "flags", "val")}
    search |= {"model": ctx.settings.model_name, "precisions": config.precisions, **selection.as_dict()}
    search |= extra or {}
    log.info(summary_line(search))
    if selection.chosen is None:  # the command prints the table of a search that chose; this one stops here
        log.info("the candidates:\n%s", markdown_table(*candidate_rows(search)))
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


def run_finetune(config: SearchConfig, models: tuple[str, ...], ctx: StageContext) -> dict[str, Artifact]:
    """Fine-tune the pruned candidates that need training to reach the front (`finetune_order`) within
    `finetune_minutes`, measure their mAP again and choose again over all."""
    measured, measurements = read_measurements(ctx)
    selection = config.select(measurements)
    pruned = pruned_candidates(config, models, ctx)
    budget_s = config.finetune_minutes * 60
    done: list[tuple[float, float]] = []  # (GFLOPs, seconds) of each fine-tune so far
    record: list[dict[str, Any]] = []
    scores: dict[Candidate, float] = {}
    for row in finetune_order(selection):
        what = f"{row.model} {row.imgsz}px × {row.ratio:g} MACs".lstrip()
        where = {"imgsz": row.imgsz, "ratio": row.ratio} | ({"model": row.model} if row.model else {})
        guess, spent = predicted_seconds(done, row.gflops), sum(seconds for _, seconds in done)
        if config.finetune_top is not None and len(done) >= config.finetune_top:
            record.append({**where, "skipped": "finetune_top reached"})
            continue
        if guess is not None and spent + guess > budget_s:
            why = f"predicted {guess:.0f} s, {budget_s - spent:.0f} s of the time budget left"
            log.info(f"not fine-tuning {what}: {why}")
            record.append({**where, "skipped": why})
            continue
        log.info(f"fine-tuning {what} for {config.finetune_epochs} epochs")
        started = time.perf_counter()
        checkpoint = pruned[row.model, row.ratio, row.imgsz].path
        assert checkpoint is not None  # a candidate that meets the budget was built
        same = (row.model, row.imgsz, row.ratio)
        feasible = [r.candidate for r in selection.rows if (r.model, r.imgsz, r.ratio) == same and r.meets]
        teacher = ctx.input(model_input(row.model)).path if config.teacher else None
        scores |= finetuned_maps(config, ctx, checkpoint, feasible, teacher)
        seconds = time.perf_counter() - started
        done.append((row.gflops or 0.0, seconds))
        record.append({**where, "seconds": round(seconds, 1)})
    updated = [
        replace(m, finetuned_map50_95=scores.get(m.candidate, m.finetuned_map50_95)) for m in measurements
    ]
    extra = {
        "finetune": {"epochs": config.finetune_epochs, "minutes": config.finetune_minutes, "order": record}
    }
    return write_search(config, ctx, measured, config.select(updated), extra)


def finetuned_maps(
    config: SearchConfig,
    ctx: StageContext,
    checkpoint: Path,
    candidates: list[Candidate],
    teacher: Path | None,
) -> dict[Candidate, float]:
    """Fine-tune one checkpoint at its candidates' input size (distilled from `teacher`, its unpruned
    model, when given), build it in each of their precisions as searched and measure each one's mAP50-95."""
    data, val = ctx.settings.data, require_val(ctx)
    if data is None:
        raise InputError("fine-tuning needs a training set: set `data`")
    work = Path(tempfile.mkdtemp(prefix="finetune-", dir=ctx.out_dir))
    out = finetune(
        checkpoint,
        data,
        work / "finetuned.pt",
        FinetuneConfig(epochs=config.finetune_epochs),
        imgsz=candidates[0].imgsz,
        device=ctx.settings.device,
        run_dir=work / "train",
        teacher=teacher,
    )
    settings = MeasureSettings(config.target, config.batch, config.calib_images, map_images=config.map_images)
    options = RunOptions(threads=config.threads, batch=config.batch)
    scores = {}
    for index, candidate in enumerate(candidates):
        engine = build_candidate(out, candidate, work / f"build-{index}", settings, data)
        with get_target(config.target).load(engine, options) as runner:
            score = evaluate(runner, val, candidate.imgsz, batch=config.batch, max_images=config.map_images)
        scores[candidate] = round(score.map50_95, 5)
    return scores


def candidate_table(search: dict[str, Any]) -> Table:
    header, rows = candidate_rows(search)
    table = Table(title=f"budget search: {search['budget']['text']}", caption=summary_line(search))
    for column in header:
        table.add_column(column, justify="left" if column in ("model", "meets?", "precision") else "right")
    for row in rows:
        style = "bold green" if row[0].endswith("★") else ("dim" if row[-1] != "yes" else None)
        table.add_row(*row, style=style)
    return table
