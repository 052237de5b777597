"""Budget values as people write them: the search's latency syntax, units and keys in any case.

`max_latency_ms` takes the mapping `{p90: 20}` or the string `edgepipe search --budget` takes,
`"p90<=20ms"` (several joined by commas); a figure may carry its unit where it is unambiguous (`20ms`,
`0.02s`, `5MB`, `50img/s`, `50fps`). Every error says what was expected with an example.
"""

from __future__ import annotations

import re
from typing import Any

STATISTICS = ("p50", "p90", "p95", "p99", "mean", "max")
LATENCY_EXAMPLE = '{p90: 20} or "p90<=20ms" (several: "p50<=15ms, p99<=30ms")'
KEY_ALIASES = {"max_latency": "max_latency_ms", "max_e2e_latency": "max_e2e_latency_ms"}
_NUMBER = r"(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z/]*)"
_LIMIT = re.compile(rf"^\s*(?P<stat>[a-z0-9]+)\s*(?P<op><=|<|>=|>|=)\s*{_NUMBER}\s*$")
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*$")
UNITS = {
    "ms": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "MB": {"": 1.0, "mb": 1.0},
    "img/s": {"": 1.0, "img/s": 1.0, "ips": 1.0, "fps": 1.0},
}


def normalize_keys(raw: Any) -> Any:
    """Keys in lower case, and `max_latency` for `max_latency_ms` (the unit then goes with the value)."""
    if not isinstance(raw, dict):
        return raw
    lowered = {str(k).lower() if isinstance(k, str) else k: v for k, v in raw.items()}
    return {KEY_ALIASES.get(k, k): v for k, v in lowered.items()}


def quantity(value: Any, unit: str, example: str) -> Any:
    """A figure written with its unit ("5MB", "20 ms", "0.02s") as a number in `unit`; others unchanged."""
    if not isinstance(value, str):
        return value
    match = _QUANTITY.match(value.lower())
    scale = UNITS[unit].get(match["unit"]) if match else None
    if match is None or scale is None:
        raise ValueError(f"expected a number in {unit}, e.g. {example}")
    return float(match["value"]) * scale


def latency_limits(value: Any) -> Any:
    """`{p90: 20}`, `{P90: "20ms"}` or `"p90<=20ms, p99<=30ms"` as {statistic: ms}."""
    if isinstance(value, str):
        return dict(_limit(part) for part in value.split(",") if part.strip())
    if isinstance(value, dict):
        limits = {}
        for stat, limit in value.items():
            name = str(stat).lower()
            if name not in STATISTICS:
                raise ValueError(
                    f"unknown statistic {stat!r}: use {', '.join(STATISTICS)}, e.g. {LATENCY_EXAMPLE}"
                )
            limits[name] = quantity(limit, "ms", LATENCY_EXAMPLE)
        return limits
    raise ValueError(f"expected a statistic and its limit, e.g. {LATENCY_EXAMPLE}")


def _limit(text: str) -> tuple[str, float]:
    match = _LIMIT.match(text.lower())
    if match is None or match["stat"] not in STATISTICS:
        raise ValueError(f"not a latency limit: write it like {LATENCY_EXAMPLE}")
    if match["op"] not in ("<=", "<"):
        raise ValueError(f'{text.strip()!r}: a latency budget is a ceiling, e.g. "{match["stat"]}<=20ms"')
    return match["stat"], quantity(match["value"] + match["unit"], "ms", LATENCY_EXAMPLE)
