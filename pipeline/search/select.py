"""Choose the most accurate candidate that meets a latency budget: pure functions on recorded measurements.

Each candidate's latency samples give an upper confidence bound of the budget's statistic (distribution-
free for a percentile: an order statistic chosen with the binomial distribution; Student's t for the mean).
For one model at one input size and precision, latency cannot fall as the kept MACs grow, so the bounds
are fitted with isotonic regression against the ratio, which pools a candidate that timed slower than a
bigger one because of noise. A candidate meets the budget when its fitted bound, raised by a relative
`margin` for drift between runs, is within the limit. Among those, the highest measured mAP50-95 wins
(after fine-tuning where a candidate was fine-tuned); mAP is measured, never assumed to grow with the MACs
or the input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from core.errors import CheckFailed
from core.pareto import pareto_front
from pipeline.search.budget_expr import LatencyBudget
from pipeline.search.grid import Candidate


@dataclass(frozen=True)
class Measurement:
    """What one candidate measured; `error` says why it could not be built (no samples, no mAP then)."""

    imgsz: int
    ratio: float
    precision: str
    gflops: float | None = None
    params: int | None = None
    samples_ms: tuple[float, ...] = ()
    map50_95: float | None = None  # right after pruning and its data-aware repair (no fine-tuning)
    finetuned_map50_95: float | None = None
    ran_precision: str | None = None  # what the backend actually ran, e.g. bf16 for an OpenVINO fp32 IR
    error: str | None = None
    flags: tuple[str, ...] = ()
    map_images: int | None = None  # val images the mAP was measured on (None in files before it was kept)
    map_total_images: int | None = None  # of the split: more than map_images for a partial mAP
    model: str = ""  # its model's tag in a search of several models (grid.model_tags)
    family: str | None = None  # yolov8, yolo11, yolo26 (core.families)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.imgsz, self.ratio, self.precision, self.model)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["samples_ms"] = tuple(fields.get("samples_ms") or ())
        fields["flags"] = tuple(fields.get("flags") or ())
        return cls(**fields)


@dataclass(frozen=True)
class CandidateRow:
    imgsz: int
    ratio: float
    precision: str
    gflops: float | None
    params: int | None
    p50_ms: float | None
    p90_ms: float | None
    statistic_ms: float | None  # the budget's statistic as measured
    bound_ms: float | None  # its upper confidence bound
    fitted_ms: float | None  # the bound after the monotone fit
    map50_95: float | None
    finetuned_map50_95: float | None
    meets: bool
    front: bool = False  # on the (fitted latency, mAP) Pareto front
    ran_precision: str | None = None
    error: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    map_images: int | None = None
    map_total_images: int | None = None
    model: str = ""
    family: str | None = None

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.imgsz, self.ratio, self.precision, self.model)

    @property
    def score(self) -> float | None:
        """The mAP50-95 the choice is made on: fine-tuned when it was fine-tuned."""
        return self.finetuned_map50_95 if self.finetuned_map50_95 is not None else self.map50_95


@dataclass(frozen=True)
class Selection:
    budget: LatencyBudget
    confidence: float
    margin: float
    rows: tuple[CandidateRow, ...]  # largest input, least pruned first
    chosen: CandidateRow | None

    @property
    def fastest(self) -> CandidateRow | None:
        timed = [row for row in self.rows if row.fitted_ms is not None]
        return min(timed, key=lambda row: (row.fitted_ms, -row.ratio), default=None)

    def single_knob(self) -> dict[str, CandidateRow | None]:
        """The best candidates meeting the budget with one knob turned: pruning only (the largest input
        size) or input size only (the unpruned model), per precision searched."""
        largest = max(row.imgsz for row in self.rows)
        return {
            "pruning only": best_meeting(self.rows, lambda row: row.imgsz == largest),
            "input size only": best_meeting(self.rows, lambda row: row.ratio == 1.0),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": asdict(self.budget),
            "confidence": self.confidence,
            "margin": self.margin,
            "candidates": [asdict(row) for row in self.rows],
            "chosen": asdict(self.chosen) if self.chosen else None,
            "single_knob": {k: asdict(v) if v else None for k, v in self.single_knob().items()},
        }


def upper_bound(samples_ms: tuple[float, ...], budget: LatencyBudget, confidence: float) -> float:
    """One-sided upper confidence bound of the budget's statistic from the samples."""
    from scipy import stats

    values = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = values.size
    if n == 0:
        raise ValueError("no latency samples")
    if budget.quantile is None:
        if n == 1:
            return float(values[0])
        t = stats.t.ppf(confidence, n - 1)
        return float(values.mean() + t * values.std(ddof=1) / np.sqrt(n))
    # The k-th smallest sample exceeds the q-quantile with probability P(Binomial(n, q) < k).
    k = int(stats.binom.ppf(confidence, n, budget.quantile))
    return float(values[min(k, n - 1)])


def point_statistic(samples_ms: tuple[float, ...], budget: LatencyBudget) -> float:
    values = np.asarray(samples_ms, dtype=np.float64)
    if budget.quantile is None:
        return float(values.mean())
    return float(np.percentile(values, 100 * budget.quantile))


def monotone_fit(ratios: list[float], values: list[float]) -> list[float]:
    """Values fitted non-decreasing in the ratio (isotonic regression), in the order given."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(ratios, kind="stable")
    fitted = np.empty(len(values))
    fitted[order] = isotonic_regression(np.asarray(values, dtype=np.float64)[order], increasing=True).x
    return [float(v) for v in fitted]


def fitted_bounds(bounds: dict[Candidate, float]) -> dict[Candidate, float]:
    """The bounds fitted monotone in the ratio within each (model, input size, precision)."""
    fitted: dict[Candidate, float] = {}
    for group in {(c.model, c.imgsz, c.precision) for c in bounds}:
        members = [c for c in bounds if (c.model, c.imgsz, c.precision) == group]
        values = monotone_fit([c.ratio for c in members], [bounds[c] for c in members])
        fitted |= dict(zip(members, values, strict=True))
    return fitted


def best_meeting(
    rows: tuple[CandidateRow, ...] | list[CandidateRow],
    where: Callable[[CandidateRow], bool] = lambda _: True,
) -> CandidateRow | None:
    """The highest-mAP row that meets the budget (the faster of equals), among those `where` admits."""
    feasible = [row for row in rows if row.meets and row.score is not None and where(row)]
    return max(feasible, key=lambda row: (row.score, -(row.fitted_ms or 0.0)), default=None)


def finetune_order(selection: Selection) -> list[CandidateRow]:
    """The pruned candidates worth fine-tuning, in the order to fine-tune them; one row per checkpoint
    (model, input size, ratio), which its precisions share.

    Fine-tuning is what a pruned candidate needs to reach the front, so its mAP before training plays no
    part. A pruned candidate is worth it when it meets the budget and full recovery would put it on the
    front: the mAP of its unpruned model at its input size and precision (what distillation from that model
    aims at; unbounded when that was not measured) is above every faster candidate's measured mAP. The
    order is the fastest such candidate at each input size (largest size first), then the second fastest
    at each, and so on, so that a time budget spends itself across the sizes.
    """
    rows = [row for row in selection.rows if row.fitted_ms is not None and row.score is not None]
    unpruned = {(row.model, row.imgsz, row.precision): row.score or 0.0 for row in rows if row.ratio >= 1.0}

    def worth_it(row: CandidateRow) -> bool:
        ceiling = unpruned.get((row.model, row.imgsz, row.precision), float("inf"))
        faster = [other.score or 0.0 for other in rows if (other.fitted_ms or 0.0) < (row.fitted_ms or 0.0)]
        return row.ratio < 1.0 and row.meets and ceiling > max(faster, default=float("-inf"))

    per_size: dict[int, list[CandidateRow]] = {}
    seen: set[tuple[str, int, float]] = set()
    for row in sorted(filter(worth_it, rows), key=lambda r: (-r.imgsz, r.fitted_ms or 0.0, -r.ratio)):
        if (row.model, row.imgsz, row.ratio) not in seen:  # the checkpoint's fastest precision stands for it
            seen.add((row.model, row.imgsz, row.ratio))
            per_size.setdefault(row.imgsz, []).append(row)
    queues = list(per_size.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def predicted_seconds(done: list[tuple[float, float]], gflops: float | None) -> float | None:
    """Seconds the next fine-tune will take, from the (GFLOPs, seconds) of those done so far: training time
    grows with the model's arithmetic at its input size. None before the first, or without GFLOPs."""
    if not done or gflops is None:
        return None
    return gflops * sum(seconds for _, seconds in done) / sum(g for g, _ in done)


def select(
    measurements: list[Measurement], budget: LatencyBudget, *, confidence: float = 0.95, margin: float = 0.05
) -> Selection:
    """Rows for every candidate and the most accurate one that meets the budget."""
    timed = {m.candidate: m for m in measurements if m.samples_ms}
    bounds = {c: upper_bound(m.samples_ms, budget, confidence) for c, m in timed.items()}
    fitted = fitted_bounds(bounds)
    rows = [_row(m, budget, bounds, fitted, margin) for m in sorted(measurements, key=_order)]
    scored = [i for i, row in enumerate(rows) if row.fitted_ms is not None and row.score is not None]
    front = pareto_front([(rows[i].fitted_ms or 0.0, rows[i].score or 0.0) for i in scored])
    for index in (scored[i] for i in front):
        rows[index] = replace(rows[index], front=True)
    return Selection(budget, confidence, margin, tuple(rows), best_meeting(rows))


def _order(m: Measurement) -> tuple[str, int, float, str]:
    return (m.model, -m.imgsz, -m.ratio, m.precision)


def _row(
    m: Measurement,
    budget: LatencyBudget,
    bounds: dict[Candidate, float],
    fitted: dict[Candidate, float],
    margin: float,
) -> CandidateRow:
    samples, fit = m.samples_ms, fitted.get(m.candidate)
    return CandidateRow(
        imgsz=m.imgsz,
        ratio=m.ratio,
        precision=m.precision,
        gflops=m.gflops,
        params=m.params,
        p50_ms=float(np.percentile(samples, 50)) if samples else None,
        p90_ms=float(np.percentile(samples, 90)) if samples else None,
        statistic_ms=point_statistic(samples, budget) if samples else None,
        bound_ms=bounds.get(m.candidate),
        fitted_ms=fit,
        map50_95=m.map50_95,
        finetuned_map50_95=m.finetuned_map50_95,
        meets=fit is not None and budget.holds(fit * (1 + margin)),
        ran_precision=m.ran_precision,
        error=m.error,
        flags=m.flags,
        map_images=m.map_images,
        map_total_images=m.map_total_images,
        model=m.model,
        family=m.family,
    )


def require_choice(selection: Selection) -> CandidateRow:
    """The chosen candidate, or CheckFailed (exit 1) naming the nearest (fastest) candidate."""
    if selection.chosen is not None:
        return selection.chosen
    budget, fastest = selection.budget, selection.fastest
    if fastest is None:
        errors = "; ".join(f"{row.candidate.label}: {row.error}" for row in selection.rows if row.error)
        raise CheckFailed(f"no candidate could be built and timed ({errors})")
    if budget.holds((fastest.fitted_ms or 0.0) * (1 + selection.margin)):
        raise CheckFailed(
            f"candidates meet {budget.text!r}, but none has a measured mAP",
            hint="give a val set with labels (--val) so that candidates can be ranked",
        )
    raise CheckFailed(
        f"no candidate meets {budget.text!r} ({budget.describe()}): the nearest, {fastest.candidate.label}"
        f" ({_gflops(fastest)}), runs {budget.statistic} {fastest.statistic_ms:.2f} ms (upper bound "
        f"{fastest.bound_ms:.2f} ms at {selection.confidence:.0%} confidence, plus a {selection.margin:.0%} "
        "noise margin)",
        hint="relax the budget, add smaller input sizes (--imgsz) or MACs ratios (--macs), or pick a faster "
        "target or precision",
    )


def _gflops(row: CandidateRow) -> str:
    return f"{row.gflops:.2f} GFLOPs" if row.gflops is not None else "GFLOPs unknown"
