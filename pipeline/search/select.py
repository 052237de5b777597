"""Choose the least pruned candidate that meets a latency budget: pure functions on recorded timings.

Each candidate's latency samples give an upper confidence bound of the budget's statistic (distribution-
free for a percentile: an order statistic chosen with the binomial distribution; Student's t for the mean).
Latency cannot fall as the kept MACs grow, so the bounds are fitted with isotonic regression against the
ratio, which pools a candidate that timed slower than a bigger one because of noise. A candidate meets the
budget when its fitted bound, raised by a relative `margin` for drift between runs, is within the limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.errors import CheckFailed
from pipeline.search.budget_expr import LatencyBudget


@dataclass(frozen=True)
class CandidateTiming:
    """What timing one candidate recorded; `error` says why it could not be built (no samples then)."""

    ratio: float  # MACs kept, 1.0 = the model as given
    gflops: float | None = None
    params: int | None = None
    samples_ms: tuple[float, ...] = ()
    error: str | None = None
    flags: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateTiming:
        return cls(
            ratio=data["ratio"],
            gflops=data.get("gflops"),
            params=data.get("params"),
            samples_ms=tuple(data.get("samples_ms") or ()),
            error=data.get("error"),
            flags=tuple(data.get("flags") or ()),
        )


@dataclass(frozen=True)
class CandidateRow:
    ratio: float
    gflops: float | None
    params: int | None
    p50_ms: float | None
    p90_ms: float | None
    statistic_ms: float | None  # the budget's statistic as measured
    bound_ms: float | None  # its upper confidence bound
    fitted_ms: float | None  # the bound after the monotone fit
    meets: bool
    error: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Selection:
    budget: LatencyBudget
    confidence: float
    margin: float
    rows: tuple[CandidateRow, ...]  # least pruned first
    chosen: CandidateRow | None

    @property
    def fastest(self) -> CandidateRow | None:
        timed = [row for row in self.rows if row.fitted_ms is not None]
        return min(timed, key=lambda row: (row.statistic_ms, row.ratio), default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": asdict(self.budget),
            "confidence": self.confidence,
            "margin": self.margin,
            "candidates": [asdict(row) for row in self.rows],
            "chosen": asdict(self.chosen) if self.chosen else None,
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


def select(
    timings: list[CandidateTiming], budget: LatencyBudget, *, confidence: float = 0.95, margin: float = 0.05
) -> Selection:
    """Rows for every candidate (least pruned first) and the least pruned one meeting the budget."""
    bounds = {t.ratio: upper_bound(t.samples_ms, budget, confidence) for t in timings if t.samples_ms}
    fitted = dict(zip(bounds, monotone_fit(list(bounds), list(bounds.values())), strict=True))
    rows = []
    for timing in sorted(timings, key=lambda t: t.ratio, reverse=True):
        samples = timing.samples_ms
        fit = fitted.get(timing.ratio)
        rows.append(
            CandidateRow(
                ratio=timing.ratio,
                gflops=timing.gflops,
                params=timing.params,
                p50_ms=float(np.percentile(samples, 50)) if samples else None,
                p90_ms=float(np.percentile(samples, 90)) if samples else None,
                statistic_ms=point_statistic(samples, budget) if samples else None,
                bound_ms=bounds.get(timing.ratio),
                fitted_ms=fit,
                meets=fit is not None and budget.holds(fit * (1 + margin)),
                error=timing.error,
                flags=timing.flags,
            )
        )
    chosen = next((row for row in rows if row.meets), None)
    return Selection(budget, confidence, margin, tuple(rows), chosen)


def require_choice(selection: Selection) -> CandidateRow:
    """The chosen candidate, or CheckFailed (exit 1) naming the fastest candidate and its latency."""
    if selection.chosen is not None:
        return selection.chosen
    budget, fastest = selection.budget, selection.fastest
    if fastest is None:
        errors = "; ".join(f"{row.ratio}: {row.error}" for row in selection.rows if row.error)
        raise CheckFailed(f"no candidate could be built and timed ({errors})")
    raise CheckFailed(
        f"no candidate meets {budget.text!r} ({budget.describe()}): the fastest, MACs ratio {fastest.ratio}"
        f" ({_gflops(fastest)}), runs {budget.statistic} {fastest.statistic_ms:.2f} ms (upper bound "
        f"{fastest.bound_ms:.2f} ms at {selection.confidence:.0%} confidence, plus a {selection.margin:.0%} "
        "noise margin)",
        hint="relax the budget, extend the ladder to smaller ratios (--min-ratio), or pick a faster "
        "target, precision or input size",
    )


def _gflops(row: CandidateRow) -> str:
    return f"{row.gflops:.2f} GFLOPs" if row.gflops is not None else "GFLOPs unknown"
