"""Per-layer timings (`bench --profile`): the backend profiler's layer times, per inference.

The profiled inferences run on a separate, profiling copy of the engine after the timed loops, so the
profiler's overhead never reaches the latency figures. The layer times add up to less than the measured
latency: what lies between layers (scheduling, the executor, copies in and out) is no layer's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

if TYPE_CHECKING:
    from rich.table import Table

    from core.runner import LayerTime

PROFILE_RUNS = 20
TOP_LAYERS = 10


def summarize_profile(times: list[LayerTime], runs: int) -> dict[str, Any]:
    """{runs, total_ms, layers: [{name, type, exec_type, ms}]}, slowest first.

    Each layer's figure is its median over the runs (a run where it did not execute counts 0), so that
    a run slowed down by another process weighs no more than the p50 it is compared with.
    """
    per_layer: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for t in times:
        per_layer[(t.name, t.op_type, t.exec_type)].append(t.ms)
    medians = {
        key: float(np.median(values + [0.0] * (runs - len(values)))) for key, values in per_layer.items()
    }
    ranked = sorted(medians.items(), key=lambda item: -item[1])
    layers = [
        {"name": name, "type": op_type, "exec_type": exec_type, "ms": ms}
        for (name, op_type, exec_type), ms in ranked
    ]
    return {"runs": runs, "total_ms": sum(medians.values()), "layers": layers}


def profile_share(profile: dict[str, Any], p50_ms: float) -> float:
    """The layers' total as a share of the measured model latency (p50)."""
    return profile["total_ms"] / p50_ms if p50_ms else 0.0


def profile_table(profile: dict[str, Any], p50_ms: float, title: str, top: int = TOP_LAYERS) -> Table:
    share = profile_share(profile, p50_ms)
    table = Table(
        title=f"{title}: slowest {min(top, len(profile['layers']))} of {len(profile['layers'])} layers",
        caption=f"layers sum to {profile['total_ms']:.2f} ms per inference, {share:.0%} of the "
        f"model latency p50 {p50_ms:.2f} ms (per-layer medians of {profile['runs']} profiled runs)",
    )
    for column in ("layer", "type", "kernel", "ms", "share"):
        table.add_column(column, justify="right" if column in ("ms", "share") else "left", overflow="fold")
    for layer in profile["layers"][:top]:
        part = layer["ms"] / profile["total_ms"] if profile["total_ms"] else 0.0
        table.add_row(layer["name"], layer["type"], layer["exec_type"], f"{layer['ms']:.3f}", f"{part:.1%}")
    return table
