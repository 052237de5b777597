"""Budget-driven compression: find the least pruned model that meets a latency budget on the target.

Latency depends on the architecture, not on the weights, so the search prunes the model to a ladder of
MACs ratios without training, builds and times every candidate on the target, and picks the least pruned
one whose latency meets the budget with a margin for noise (pipeline/search/select.py). Only that one is
then fine-tuned, built properly (full INT8 calibration), benchmarked with mAP and gated against the budget.

In `edgepipe run` the search is four cached stages: `search:time` (keyed without the budget, so changing
the budget reuses the timed candidates), `search:select` (cheap, keyed with the budget), `search:prune`
(keyed by the chosen ratio only) and, after the benchmark, `search:verify`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from benchmarks.budgets import Budget, evaluate
from benchmarks.device import device_name, fingerprint
from benchmarks.results import load_results
from core.artifacts import Artifact, write_atomic, write_json_atomic
from core.console import console
from core.errors import CheckFailed, InputError
from core.validation import reported_by_pydantic
from pipeline.report.plots import search_ladder
from pipeline.report.search import candidate_rows, summary_line
from pipeline.search.budget_expr import parse_budget
from pipeline.search.ladder import check_ladder, ladder
from pipeline.search.select import CandidateTiming, require_choice, select
from pipeline.search.timing import TimingSettings, time_ladder
from pipeline.stages.base import Section, StageContext
from pipeline.stages.benchmark import bench_progress
from pipeline.stages.prune import PruneConfig, prune_checkpoint
from targets.base import check_precision, get_target

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.search.budget_expr import LatencyBudget

TIMINGS_FILE = "timings.json"
SEARCH_FILE = "search.json"
PLOT_FILE = "search.png"
CHOICE_FILE = "choice.json"
VERDICT_FILE = "verdict.json"
PRUNED_FILE = "pruned.pt"


class SearchConfig(Section):
    budget: str = Field(description='latency budget: "p90<=12ms", "p50<8ms", "mean<=20ms" or "fps>=30"')
    target: str = Field("openvino", description="backend the candidates are built and timed on")
    precision: str = Field("int8", description="precision the candidates are built in")
    batch: int = Field(1, ge=1, description="batch size the budget applies to")
    candidates: int = Field(8, ge=2, description="ladder length: ratios evenly spaced from 1.0 to min_ratio")
    min_ratio: float = Field(0.3, gt=0, lt=1, description="the most pruned candidate's fraction of MACs")
    ratios: list[float] | None = Field(
        None, description="explicit MACs ratios instead of candidates/min_ratio (1.0 is always added)"
    )
    round_to: int | None = Field(8, ge=1, description="keep channel counts multiples of this")
    calib_images: int = Field(8, ge=8, description="INT8 calibration images per timed candidate")
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

    @field_validator("budget")
    @classmethod
    def _readable_budget(cls, value: str) -> str:
        with reported_by_pydantic():
            parse_budget(value)
        return value

    @model_validator(mode="after")
    def _known_target_and_ladder(self) -> SearchConfig:
        with reported_by_pydantic():
            check_precision(get_target(self.target), self.precision)
            if self.ratios is not None:
                check_ladder(self.ratios)
        return self

    def ladder(self) -> list[float]:
        return (
            check_ladder(self.ratios) if self.ratios is not None else ladder(self.candidates, self.min_ratio)
        )

    def parsed_budget(self) -> LatencyBudget:
        return parse_budget(self.budget, self.batch)

    @property
    def label(self) -> str:
        return f"{self.target}/{self.precision}"


def run_timing(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Build and time every candidate of the ladder; write timings.json."""
    if config.precision == "int8" and ctx.settings.data is None:
        raise InputError("an int8 search calibrates on the train split: set `data` in the config")
    settings = TimingSettings(
        **{k: getattr(config, k) for k in TimingSettings.__dataclass_fields__}  # same names as the config
    )
    with bench_progress() as progress:
        timings, flags = time_ladder(
            ctx.input("model").path,
            config.ladder(),
            settings,
            imgsz=ctx.settings.imgsz,
            data=ctx.settings.data,
            progress=progress,
        )
    info = fingerprint(threads=config.threads)
    record = {
        "schema": 1,
        "target": config.target,
        "precision": config.precision,
        "batch": config.batch,
        "imgsz": ctx.settings.imgsz,
        "device": device_name(info),
        "flags": flags,
        "candidates": [asdict(t) for t in timings],
    }
    path = write_json_atomic(ctx.out_dir / TIMINGS_FILE, record)
    return {"timings": Artifact.from_path("search-timings", path, candidates=len(timings))}


def run_select(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Choose from the recorded timings; write search.json, its plot and choice.json (the ratio alone)."""
    timings = json.loads(ctx.input("timings").path.read_text())
    selection = select(
        [CandidateTiming.from_dict(c) for c in timings["candidates"]],
        config.parsed_budget(),
        confidence=config.confidence,
        margin=config.margin,
    )
    search = {key: timings[key] for key in ("target", "precision", "batch", "imgsz", "device", "flags")}
    search |= {"model": ctx.settings.model_name, **selection.as_dict()}
    console.print(candidate_table(search))
    chosen = require_choice(selection)  # exit 1 with the fastest candidate named when none meets it
    search_path = write_json_atomic(ctx.out_dir / SEARCH_FILE, search)
    write_atomic(ctx.out_dir / PLOT_FILE, search_ladder(search))
    choice = write_json_atomic(
        ctx.out_dir / CHOICE_FILE, {"ratio": chosen.ratio, "gflops": chosen.gflops, "params": chosen.params}
    )
    return {
        "search": Artifact.from_path("search", search_path, ratio=chosen.ratio, budget=config.budget),
        "choice": Artifact.from_path("search-choice", choice, ratio=chosen.ratio),
    }


def run_prune(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Prune the chosen ratio properly (the prune stage's defaults, BatchNorm re-estimated on the data)."""
    from rich.console import Console

    choice = json.loads(ctx.input("choice").path.read_text())
    source, out = ctx.input("model").path, ctx.out_dir / PRUNED_FILE
    if choice["ratio"] >= 1.0:  # the model as given already meets the budget
        shutil.copyfile(source, out)
        return {"model": Artifact.from_path("checkpoint", out, search_ratio=1.0, gflops=choice["gflops"])}
    report = prune_checkpoint(
        source,
        out,
        PruneConfig(macs=choice["ratio"], round_to=config.round_to),
        imgsz=ctx.settings.imgsz,
        device=ctx.settings.device,
        data=ctx.settings.data,
    )
    if choice["params"] is not None and report.params_after != choice["params"]:
        Console(stderr=True).print(
            f"[yellow]note[/]: the pruned model has {report.params_after:,} parameters, the timed candidate "
            f"had {choice['params']:,} (a data-dependent importance ranks channels differently); "
            "search:verify measures the model actually built"
        )
    meta = report.as_metadata()
    return {"model": Artifact.from_path("checkpoint", out, search_ratio=choice["ratio"], **meta)}


def run_verify(config: SearchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Gate the benchmarked choice against the budget (plain statistic of the final benchmark)."""
    budget = config.parsed_budget()
    results = [r for r in load_results(ctx.input("results").path) if r.batch == config.batch]
    gate = Budget(
        name=f"search budget {config.budget}",
        target=config.label,
        batch=config.batch,
        max_latency_ms={budget.statistic: budget.limit_ms},
    )
    verdicts = evaluate([gate], results, ctx.input("results").path)
    checks = [check for verdict in verdicts for check in verdict.checks]
    record = {"budget": config.budget, "passed": all(c.passed for c in checks)}
    record["checks"] = [{"criterion": c.criterion, "measured": c.measured, "limit": c.limit} for c in checks]
    path = write_json_atomic(ctx.out_dir / VERDICT_FILE, record)
    if not record["passed"]:
        raise CheckFailed(
            "the chosen model breaks the budget when re-benchmarked: "
            + "; ".join(c.describe() for c in checks if not c.passed),
            path=ctx.input("results").path,
            hint="raise `search.margin` (more headroom for noise) or time on a quieter machine",
        )
    return {"verdict": Artifact.from_path("search-verdict", path, passed=True)}


def candidate_table(search: dict[str, Any]) -> Table:
    from rich.table import Table

    header, rows = candidate_rows(search)
    table = Table(title=f"budget search: {search['budget']['text']}", caption=summary_line(search))
    for column in header:
        table.add_column(column, justify="left" if column == "meets?" else "right")
    for row in rows:
        style = "bold green" if row[0].endswith("★") else ("dim" if row[-1] != "yes" else None)
        table.add_row(*row, style=style)
    return table
