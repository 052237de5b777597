"""Budgets: what a device must achieve for a target to ship, and their evaluation against results.

A budgets YAML (a public contract) holds entries matched by a glob on the device name and a glob on
the engine's name (`target/precision` as configured, or as it ran: `openvino/int8+fp32`), optionally a
batch size, each with one or more criteria.
Evaluation yields one `Verdict` per (budget, matching result), made of one `Check` per criterion.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from benchmarks import budget_values
from benchmarks.results import Result
from core.errors import InputError
from core.yamlfile import read_yaml_model

Statistic = Literal["p50", "p90", "p95", "p99", "mean", "max"]
CRITERIA = (
    "max_latency_ms",
    "max_e2e_latency_ms",
    "min_throughput_ips",
    "max_size_mb",
    "max_memory_mb",
    "min_map50_95",
    "max_map_drop",
    "ran_as",
)
EXAMPLE = '- {target: "openvino/int8", max_latency_ms: "p90<=20ms", min_map50_95: 0.40, ran_as: "int8*"}'


class Budget(BaseModel):
    """One entry of `budgets:`; every criterion is optional but at least one is required."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="a label for reports and JUnit; default: device and target")
    device: str = Field("*", description="glob on the device name of the fingerprint (case-insensitive)")
    target: str = Field(description="glob on target/precision, e.g. 'openvino/int8' or 'tensorrt/*'")
    batch: int | None = Field(None, ge=1, description="only results measured at this batch size")
    max_latency_ms: dict[Statistic, float] | None = Field(
        None,
        description='model-only latency ceilings in ms by statistic: {p90: 20}, or "p90<=20ms" as the '
        "search writes it (alias `max_latency`)",
    )
    max_e2e_latency_ms: dict[Statistic, float] | None = Field(
        None,
        description="end-to-end (pre + infer + post) latency ceilings, written as max_latency_ms "
        "(alias `max_e2e_latency`)",
    )
    min_throughput_ips: float | None = Field(None, gt=0, description="minimum images per second")
    max_size_mb: float | None = Field(None, gt=0, description="maximum engine size in MB")
    max_memory_mb: float | None = Field(
        None, gt=0, description="maximum peak resident memory the engine adds when loaded and run, in MB"
    )
    min_map50_95: float | None = Field(None, ge=0, le=1, description="minimum mAP50-95")
    max_map_drop: float | None = Field(
        None, ge=0, le=1, description="maximum absolute mAP50-95 drop against `baseline`"
    )
    baseline: str | None = Field(
        None, description="target/precision glob whose result on the same device and batch is the reference"
    )
    allow_partial_map: bool = Field(
        False, description="accept a mAP measured on a subset of the split (bench --max-images/--fraction)"
    )
    ran_as: str | None = Field(
        None,
        description="glob the precision that actually ran must match, e.g. 'int8*' fails an INT8 engine "
        "that fell back to fp32",
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_in_any_case(cls, raw: Any) -> Any:
        return budget_values.normalize_keys(raw)

    @field_validator("max_latency_ms", "max_e2e_latency_ms", mode="before")
    @classmethod
    def _latency_syntax(cls, value: Any) -> Any:
        return None if value is None else budget_values.latency_limits(value)

    @field_validator("max_size_mb", "max_memory_mb", mode="before")
    @classmethod
    def _megabytes(cls, value: Any) -> Any:
        return budget_values.quantity(value, "MB", "5 or 5MB")

    @field_validator("min_throughput_ips", mode="before")
    @classmethod
    def _images_per_second(cls, value: Any) -> Any:
        return budget_values.quantity(value, "img/s", "50 or 50img/s")

    @model_validator(mode="after")
    def _coherent(self) -> Budget:
        if not any(getattr(self, key) is not None for key in CRITERIA):
            raise ValueError(f"no criterion given: set at least one of {', '.join(CRITERIA)}")
        if (self.max_map_drop is None) != (self.baseline is None):
            raise ValueError("max_map_drop and baseline go together: the drop is measured against baseline")
        for key in ("max_latency_ms", "max_e2e_latency_ms"):
            limits = getattr(self, key) or {}
            if any(value <= 0 for value in limits.values()):
                raise ValueError(f"{key}: latency limits must be positive")
        return self

    @property
    def label(self) -> str:
        batch = f" batch {self.batch}" if self.batch else ""
        return self.name or f"{self.target}{batch} on {self.device}"

    def matches(self, result: Result) -> bool:
        """The unpruned model a run benches as its reference (role "source") is never gated."""
        return (
            not result.is_source
            and _glob(result.device_name, self.device)
            and result.matches(self.target)
            and (self.batch is None or result.batch == self.batch)
        )


class BudgetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budgets: list[Budget] = Field(min_length=1, description="the budget entries")


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def load_budgets(path: Path | str) -> list[Budget]:
    """Read and validate a budgets YAML; errors name the file, the entry index and the key."""
    path = Path(path)
    return read_yaml_model(
        path,
        BudgetsFile,
        what="budgets file",
        expected=f"a mapping with a `budgets:` list, whose entries look like {EXAMPLE}",
        invalid="invalid budgets",
        hint=f"entries look like {EXAMPLE}; docs/config.md lists every budget key",
    ).budgets


@dataclass(frozen=True)
class Check:
    """One criterion of one budget against one result. `margin` > 0 is headroom, < 0 the overshoot."""

    criterion: str  # e.g. "latency p90", "e2e latency p99", "throughput", "mAP50-95 drop vs torch/fp32"
    unit: str
    limit: float
    measured: float | None  # None: the result does not hold this figure, so the budget cannot hold
    upper: bool  # True: measured must stay <= limit; False: measured must reach >= limit

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.upper else self.measured >= self.limit

    @property
    def margin(self) -> float | None:
        if self.measured is None:
            return None
        return self.limit - self.measured if self.upper else self.measured - self.limit

    @property
    def margin_pct(self) -> float | None:
        return None if self.margin is None or self.limit == 0 else 100 * self.margin / self.limit

    @property
    def measured_text(self) -> str:
        return "not measured" if self.measured is None else _fmt(self.measured, self.unit)

    @property
    def limit_text(self) -> str:
        return ("<= " if self.upper else ">= ") + _fmt(self.limit, self.unit)

    @property
    def margin_text(self) -> str:
        if self.margin is None:
            return "n/a"
        pct = f" ({self.margin_pct:+.1f}%)" if self.margin_pct is not None else ""
        return _fmt(self.margin, self.unit, signed=True) + pct

    def describe(self) -> str:
        """One line with measured value, limit and margin, e.g. for a JUnit failure message."""
        verdict = "ok" if self.passed else "BROKEN"
        return (
            f"{self.criterion} {verdict}: measured {self.measured_text}, limit {self.limit_text}, "
            f"margin {self.margin_text}"
        )


@dataclass(frozen=True)
class RanAsCheck(Check):
    """The precision that ran against the budget's `ran_as` glob: a check without a margin."""

    pattern: str = "*"
    ran_as: str = ""

    @property
    def passed(self) -> bool:
        return _glob(self.ran_as, self.pattern)

    @property
    def measured_text(self) -> str:
        return self.ran_as

    @property
    def limit_text(self) -> str:
        return f"matches {self.pattern}"

    @property
    def margin_text(self) -> str:
        return "—"


def _fmt(value: float, unit: str, signed: bool = False) -> str:
    digits = 2 if unit else 4  # unitless figures are mAPs
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip()


@dataclass(frozen=True)
class Verdict:
    """All checks of one budget (by index in the file) against one result."""

    index: int
    budget: Budget
    result: Result
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)


def find_baseline(results: list[Result], pattern: str, device: str, batch: int) -> Result | None:
    """The newest result of the run's model (not its unpruned source) matching `pattern` on `device` at
    `batch`, or None."""
    candidates = [
        r
        for r in results
        if not r.is_source and r.device_name == device and r.batch == batch and r.matches(pattern)
    ]
    return max(candidates, key=lambda r: r.created_at, default=None)


def budget_verdicts(
    budgets: list[Budget], results: list[Result], source: Path | None = None
) -> list[Verdict]:
    """Check every budget against every result it matches.

    A budget that matches no result, or whose baseline has no result beside a matched one, makes the
    inputs unusable (InputError, exit 2): a gate that silently checks nothing would pass anything.
    """
    verdicts: list[Verdict] = []
    for index, budget in enumerate(budgets):
        matched = [r for r in results if budget.matches(r)]
        if not matched:
            present = sorted({f"{r.key} batch {r.batch} on {r.device_name!r}" for r in results})
            raise InputError(
                f"budgets[{index}] ({budget.label}) matches no result; the results hold: "
                + ("; ".join(present) or "nothing"),
                path=source,
                hint="fix the device/target/batch globs, or benchmark that target on this device",
            )
        for result in matched:
            checks = _checks(index, budget, result, results, source)
            verdicts.append(Verdict(index, budget, result, tuple(checks)))
    return verdicts


def _checks(
    index: int, budget: Budget, result: Result, results: list[Result], source: Path | None
) -> list[Check]:
    checks: list[Check] = []
    for key, stats, prefix in (
        ("max_latency_ms", result.latency_ms, "latency"),
        ("max_e2e_latency_ms", result.e2e_latency_ms, "e2e latency"),
    ):
        for stat, limit in (getattr(budget, key) or {}).items():
            measured = getattr(stats, stat) if stats is not None else None
            checks.append(Check(f"{prefix} {stat}", "ms", limit, measured, upper=True))
    if budget.min_throughput_ips is not None:
        checks.append(Check("throughput", "img/s", budget.min_throughput_ips, result.throughput_ips, False))
    if budget.max_size_mb is not None:
        checks.append(Check("size", "MB", budget.max_size_mb, result.size_mb, upper=True))
    if budget.max_memory_mb is not None:
        checks.append(Check("memory", "MB", budget.max_memory_mb, result.memory_mb, upper=True))
    if budget.ran_as is not None:
        checks.append(RanAsCheck("ran as", "", 0.0, None, True, pattern=budget.ran_as, ran_as=result.ran_as))
    if budget.min_map50_95 is not None or budget.max_map_drop is not None:
        check_full_map(index, budget, result, source)
    if budget.min_map50_95 is not None:
        checks.append(Check("mAP50-95", "", budget.min_map50_95, result.map50_95, upper=False))
    if budget.max_map_drop is not None and budget.baseline is not None:
        base = find_baseline(results, budget.baseline, result.device_name, result.batch)
        if base is None:
            raise InputError(
                f"budgets[{index}] ({budget.label}): no {budget.baseline!r} result "
                f"on {result.device_name!r} at batch {result.batch} to measure the mAP drop of {result.key}",
                path=source,
                hint="benchmark the baseline on the same device and batch, and pass its results to gate",
            )
        check_full_map(index, budget, base, source)
        drop = None
        if base.map50_95 is not None and result.map50_95 is not None:
            drop = base.map50_95 - result.map50_95
        checks.append(Check(f"mAP50-95 drop vs {base.key}", "", budget.max_map_drop, drop, upper=True))
    return checks


def check_full_map(index: int, budget: Budget, result: Result, source: Path | None) -> None:
    """A partial mAP (a subset of the split) never passes for a full one unless the budget allows it."""
    if result.map_partial and not budget.allow_partial_map:
        raise InputError(
            f"budgets[{index}] ({budget.label}): the mAP of {result.key} batch {result.batch} was measured "
            f"on {result.map_images} images only (a partial mAP), and this budget checks mAP",
            path=source,
            hint="bench without --max-images/--fraction, or set `allow_partial_map: true` in the budget",
        )
