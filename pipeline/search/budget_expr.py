"""Latency budgets written as one expression: "p90<=12ms", "p50<8ms", "mean<=20ms", "fps>=30".

Every budget becomes a ceiling on one statistic of the model-only latency per batch: "fps>=F" at batch b
is "mean <= 1000 * b / F ms" (single-stream throughput), so one selection rule serves all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InputError

LATENCY_STATISTICS = ("p50", "p90", "p95", "p99", "mean")
EXPRESSION = re.compile(
    r"^\s*(?P<stat>[a-z0-9]+)\s*(?P<op><=|<|>=|>)\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z/]*)\s*$"
)
EXAMPLES = '"p90<=12ms", "p50<8ms", "mean<=20ms" or "fps>=30"'


@dataclass(frozen=True)
class LatencyBudget:
    """A ceiling on one latency statistic (ms per batch); `text` is what the user wrote."""

    statistic: str  # one of LATENCY_STATISTICS
    limit_ms: float
    strict: bool  # "<" rather than "<="
    text: str

    def holds(self, value_ms: float) -> bool:
        return value_ms < self.limit_ms if self.strict else value_ms <= self.limit_ms

    @property
    def quantile(self) -> float | None:
        """0.9 for p90; None for the mean."""
        return int(self.statistic[1:]) / 100 if self.statistic.startswith("p") else None

    def describe(self) -> str:
        return f"{self.statistic} {'<' if self.strict else '<='} {self.limit_ms:.3g} ms"


def parse_budget(text: str, batch: int = 1) -> LatencyBudget:
    """Parse a budget expression; `batch` converts an fps budget into a per-batch mean latency."""
    match = EXPRESSION.match(text.lower())
    if match is None:
        raise InputError(f"cannot read the budget {text!r}", hint=f"write it like {EXAMPLES}")
    stat, op, unit = match["stat"], match["op"], match["unit"]
    value = float(match["value"])
    if value <= 0:
        raise InputError(f"budget {text!r}: the limit must be positive")
    if stat == "fps":
        if op not in (">=", ">") or unit not in ("", "fps"):
            raise InputError(f"budget {text!r}: fps is a floor", hint='write it like "fps>=30"')
        return LatencyBudget("mean", 1000.0 * batch / value, op == ">", text)
    if stat not in LATENCY_STATISTICS:
        raise InputError(
            f"budget {text!r}: unknown statistic {stat!r}",
            hint=f"use one of {', '.join(LATENCY_STATISTICS)} or fps, like {EXAMPLES}",
        )
    if op not in ("<=", "<"):
        hint = f'write it like "{stat}<={value:g}ms"'
        raise InputError(f"budget {text!r}: latency is a ceiling", hint=hint)
    if unit not in ("ms", ""):
        raise InputError(f"budget {text!r}: unknown unit {unit!r}", hint="latency budgets are in ms")
    return LatencyBudget(stat, value, op == "<", text)
