"""Compare two results files: did latency change beyond noise, did mAP or size change?

Results are paired by (target, precision as configured, batch). A pair is judged only when its two
results are comparable: timed on the same kind of input images, and mAP on the same dataset and
letterbox (or in neither), at the same input size, threads, streams and performance hint;
`refuse_unjudgeable` turns a file with no pair, or a pair that is not
comparable, into an InputError (exit 2), since a check that judges nothing would pass anything.

A latency change counts only when both hold:
- the Mann-Whitney U test on the raw samples rejects "same distribution" at `alpha`, and
- the medians differ by at least `min_effect` (relative).
Consecutive latency samples are not independent (caches, clocks, other processes), which makes the
test's p-value optimistic on its own; the minimum effect keeps a statistically "significant" 0.5%
wobble from failing a build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from benchmarks.results import Result
from core.errors import CheckFailed, InputError

ALPHA = 0.01
MIN_EFFECT = 0.03
MAX_MAP_REGRESSION = 0.005


@dataclass(frozen=True)
class LatencyChange:
    metric: str  # "latency" (model only) or "e2e latency"
    base_median: float
    new_median: float
    p_value: float | None  # None: no raw samples to test, the medians alone decide nothing
    verdict: str  # "slower", "faster", "same" (within noise) or "untested"

    @property
    def relative(self) -> float:
        return self.new_median / self.base_median - 1 if self.base_median else 0.0


@dataclass
class Comparison:
    key: tuple[str, str, int]  # (target, precision, batch)
    latency: list[LatencyChange]
    map_change: float | None
    size_change: float | None  # relative
    notes: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the pair cannot be judged
    noise: list[str] = field(default_factory=list)  # noise flags of either result

    @property
    def label(self) -> str:
        return f"{self.key[0]}/{self.key[1]} batch {self.key[2]}"


def latency_change(
    metric: str, base: list[float], new: list[float], alpha: float = ALPHA, min_effect: float = MIN_EFFECT
) -> LatencyChange:
    """The verdict on one latency metric from the raw samples of both runs."""
    from scipy.stats import mannwhitneyu

    base_median, new_median = float(np.median(base)), float(np.median(new))
    p_value = float(mannwhitneyu(new, base, alternative="two-sided").pvalue)
    relative = new_median / base_median - 1
    verdict = "same"
    if p_value < alpha and abs(relative) >= min_effect:
        verdict = "slower" if relative > 0 else "faster"
    return LatencyChange(metric, base_median, new_median, p_value, verdict)


def latency_changes(base: Result, new: Result, alpha: float, min_effect: float) -> list[LatencyChange]:
    """Model-only and (when both have it) end-to-end latency; "untested" where raw samples are missing."""
    metrics = [("latency", base.samples_ms, new.samples_ms, base.latency_ms, new.latency_ms)]
    if base.e2e_latency_ms and new.e2e_latency_ms:
        metrics.append(
            ("e2e latency", base.e2e_samples_ms, new.e2e_samples_ms, base.e2e_latency_ms, new.e2e_latency_ms)
        )
    return [
        latency_change(metric, old, now, alpha, min_effect)
        if len(old) > 1 and len(now) > 1
        else LatencyChange(metric, old_stats.p50, new_stats.p50, None, "untested")
        for metric, old, now, old_stats, new_stats in metrics
    ]


def _key(result: Result) -> tuple[str, str, int]:
    return result.target, result.requested_precision or result.precision, result.batch


def _by_key(results: list[Result]) -> dict[tuple[str, str, int], Result]:
    """Results by key; the unpruned source's (role "source") only in a file holding nothing else, so a
    run's reference never stands in for the run's model."""
    own = [r for r in results if not r.is_source] or results
    return {_key(r): r for r in own}


def compare_results(
    base: list[Result],
    new: list[Result],
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    max_map_regression: float = MAX_MAP_REGRESSION,
) -> tuple[list[Comparison], list[str]]:
    """Comparisons of paired results, and notes on results found in only one file."""
    base_by_key, new_by_key = _by_key(base), _by_key(new)
    unpaired = [f"only in base: {'/'.join(map(str, k))}" for k in base_by_key if k not in new_by_key]
    unpaired += [f"only in new: {'/'.join(map(str, k))}" for k in new_by_key if k not in base_by_key]
    comparisons = []
    for key, old in base_by_key.items():
        if key in new_by_key:
            comparisons.append(compare_pair(key, old, new_by_key[key], alpha, min_effect, max_map_regression))
    return comparisons, unpaired


def compare_pair(
    key: tuple[str, str, int],
    base: Result,
    new: Result,
    alpha: float,
    min_effect: float,
    max_map_regression: float,
) -> Comparison:
    latency = latency_changes(base, new, alpha, min_effect)
    map_change = None
    if base.map50_95 is not None and new.map50_95 is not None:
        map_change = new.map50_95 - base.map50_95
    size_change = new.size_mb / base.size_mb - 1 if base.size_mb and new.size_mb else None
    comparison = Comparison(key, latency, map_change, size_change, problems=comparability_problems(base, new))
    if base.device_name != new.device_name:
        comparison.notes.append(f"different devices: {base.device_name} vs {new.device_name}")
    comparison.noise = [f"base: {f}" for f in base.flags] + [f"new: {f}" for f in new.flags]
    for change in latency:
        if change.verdict == "slower":
            comparison.regressions.append(
                f"{change.metric} p50 {change.base_median:.2f} -> {change.new_median:.2f} ms "
                f"({change.relative:+.1%}, p={change.p_value:.2g})"
            )
    if map_change is not None and map_change < -max_map_regression:
        comparison.regressions.append(f"mAP50-95 dropped by {-map_change:.4f} (> {max_map_regression})")
    return comparison


# What differs -> the bench option (or build setting) that makes it differ, named in the refusal's hint.
OPTIONS = {
    "timing images": "--val or --no-accuracy",
    "dataset": "--val",
    "letterbox": "--imgsz",
    "input size": "--imgsz",
    "mAP images": "--max-images or --fraction",
    "mAP in one file": "--no-accuracy",
    "threads": "--threads",
    "streams": "--streams",
    "performance hint": "--performance-hint",
}


def comparability_problems(base: Result, new: Result) -> list[str]:
    """Why two results of one engine cannot be judged against each other (empty: they can).

    Each problem starts with what differs (a key of OPTIONS). A field missing from an older result is
    unknown, and is not held against it.
    """
    problems = []
    if base.timing_images and new.timing_images and base.timing_images != new.timing_images:
        problems.append(f"timing images: {base.timing_images} in base, {new.timing_images} in new")
    hints = (base.backend_settings.get("performance_hint"), new.backend_settings.get("performance_hint"))
    for what, old, now in (
        ("input size", base.imgsz, new.imgsz),
        ("threads", base.threads, new.threads),
        ("streams", base.streams, new.streams),
        ("performance hint", *hints),
    ):
        if old is not None and now is not None and old != now:
            problems.append(f"{what}: {old} in base, {now} in new")
    if (base.map50_95 is None) != (new.map50_95 is None):
        which = "base" if base.map50_95 is not None else "new"
        problems.append(f"mAP in one file only (the {which}), so accuracy cannot be compared")
    elif base.map50_95 is not None and new.map50_95 is not None:
        for what, old, now in (
            ("dataset", base.dataset, new.dataset),
            ("letterbox", base.letterbox, new.letterbox),
            ("mAP images", base.map_images, new.map_images),
        ):
            if old is not None and now is not None and old != now:
                problems.append(f"{what}: {old} in base, {now} in new")
    return problems


def refuse_unjudgeable(comparisons: list[Comparison], unpaired: list[str]) -> None:
    """InputError when no pair was found, or when a pair's results are not comparable; the hint names
    the options that differ."""
    if not comparisons:
        raise InputError(
            "no (target, precision, batch) appears in both files, so nothing can be compared: "
            + ("; ".join(unpaired) or "both files are empty"),
            hint="compare results of the same engines at the same batch sizes",
        )
    problems = [(c.label, p) for c in comparisons for p in c.problems]
    if problems:
        options = dict.fromkeys(
            option for _, p in problems for what, option in OPTIONS.items() if p.startswith(what)
        )
        raise InputError(
            "the results are not comparable:\n  " + "\n  ".join(f"{label}: {p}" for label, p in problems),
            hint=f"benchmark both the same way (the same {', '.join(options)})",
        )


def failed_check(comparisons: list[Comparison], strict: bool = False) -> CheckFailed | None:
    """The comparison's failed check (exit 1): a regression beyond noise or, with `strict`, a result
    flagged as noisy; None when it passes."""
    regressions = [f"{c.label}: {r}" for c in comparisons for r in c.regressions]
    if regressions:
        return CheckFailed("regression beyond noise:\n  " + "\n  ".join(regressions))
    noisy = [f"{c.label}: {n}" for c in comparisons for n in c.noise]
    if strict and noisy:
        return CheckFailed("noise-flagged results (--strict):\n  " + "\n  ".join(noisy))
    return None


def comparison_table(comparisons: list[Comparison], title: str):
    table = Table(title=title)
    for column in ("target", "batch", "metric", "base p50 ms", "new p50 ms", "change", "p-value", "verdict"):
        table.add_column(column, justify="left" if column in ("target", "metric", "verdict") else "right")
    styles = {"slower": "bold red", "faster": "green", "same": "dim", "untested": "yellow"}
    for c in comparisons:
        target = f"{c.key[0]}/{c.key[1]}"
        for change in c.latency:
            table.add_row(
                target,
                str(c.key[2]),
                change.metric,
                f"{change.base_median:.2f}",
                f"{change.new_median:.2f}",
                f"{change.relative:+.1%}",
                f"{change.p_value:.2g}" if change.p_value is not None else "-",
                f"[{styles[change.verdict]}]{change.verdict}[/]",
            )
        if c.map_change is not None:
            dropped = any(r.startswith("mAP") for r in c.regressions)
            verdict = "[bold red]dropped[/]" if dropped else "ok"
            table.add_row(target, str(c.key[2]), "mAP50-95", "", "", f"{c.map_change:+.4f}", "", verdict)
        if c.size_change is not None:
            table.add_row(target, str(c.key[2]), "size", "", "", f"{c.size_change:+.1%}", "", "")
    return table
