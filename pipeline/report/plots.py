"""The report's plots as PNG bytes (matplotlib's Agg canvas, no pyplot state, no fonts downloaded)."""

from __future__ import annotations

import io
from typing import Any

from pipeline.report.search import map_label, model_text, row_score
from pipeline.report.summary import DeviceSummary

DPI = 110
STAGE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")  # cycled when longer


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def colours(keys: list[str]) -> dict[str, Any]:
    """One stable colour per row label, shared by every plot of a device."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {key: palette(i % 10) for i, key in enumerate(keys)}


def row_label(result) -> str:
    return f"{result.key} b{result.batch}"


MIN_MAP_SPAN = 0.05  # the mAP axis is at least this tall, so that 0.003 apart does not look like a cliff
MAP_PAD = 0.15  # of the plotted mAPs' spread, above and below
LOG_LATENCY_RATIO = 10  # slowest over fastest p50 beyond which the latency axes are logarithmic


def map_limits(maps: list[float]) -> tuple[float, float]:
    """The mAP axis: a little below the lowest and above the highest plotted mAP, at least
    `MIN_MAP_SPAN` tall, within [0, 1]."""
    low, high = min(maps), max(maps)
    pad = max((high - low) * MAP_PAD, (MIN_MAP_SPAN - (high - low)) / 2)
    low, high = low - pad, high + pad
    if low < 0:
        low, high = 0.0, min(1.0, high - low)
    if high > 1:
        low, high = max(0.0, low - (high - 1)), 1.0
    return low, high


def latency_scale(device: DeviceSummary) -> str:
    """ "log" when the device's p50 latencies span more than `LOG_LATENCY_RATIO`, else "linear": one rule,
    so that the latency-vs-mAP plot and the latency CDF of a device share their scale."""
    p50s = [row.result.latency_ms.p50 for row in device.rows]
    if not p50s or min(p50s) <= 0:
        return "linear"
    return "log" if max(p50s) / min(p50s) > LOG_LATENCY_RATIO else "linear"


def latency_vs_map(device: DeviceSummary) -> bytes | None:
    """Model-only p50 latency (whisker to p90) against mAP50-95; the Pareto front drawn as a step line."""
    fig = latency_vs_map_figure(device)
    return None if fig is None else _png(fig)


def latency_vs_map_figure(device: DeviceSummary):
    rows = [row for row in device.rows if row.result.map50_95 is not None]
    if not rows:
        return None
    palette = colours([row_label(row.result) for row in device.rows])
    fig = _figure(7.5, 4.4)
    ax = fig.add_subplot()
    for row in rows:
        r = row.result
        colour = palette[row_label(r)]
        ax.errorbar(
            r.latency_ms.p50,
            r.map50_95,
            xerr=[[0], [max(r.latency_ms.p90 - r.latency_ms.p50, 0)]],
            fmt="*" if row.pareto else "o",
            markersize=15 if row.pareto else 8,
            color=colour,
            ecolor=colour,
            capsize=3,
            label=row_label(r) + ("  (Pareto)" if row.pareto else ""),
        )
        ax.annotate(row_label(r), (r.latency_ms.p50, r.map50_95), textcoords="offset points", xytext=(6, 6))
    front = sorted((row.result.latency_ms.p50, row.result.map50_95) for row in rows if row.pareto)
    if len(front) > 1:
        xs, ys = zip(*front, strict=True)
        ax.step(xs, ys, where="post", color="0.35", linestyle="--", linewidth=1.2, label="Pareto front")
    ax.set_xlabel("latency p50, model only (ms); whisker to p90")
    ax.set_ylabel("mAP50-95")
    ax.set_title(f"Latency vs accuracy on {device.name}")
    ax.grid(True, alpha=0.3)
    ax.set_xscale(latency_scale(device))
    ax.margins(x=0.15)
    ax.set_ylim(*map_limits([row.result.map50_95 for row in rows if row.result.map50_95 is not None]))
    ax.legend(fontsize="small", loc="best")
    return fig


def latency_cdf(device: DeviceSummary) -> bytes | None:
    """Empirical CDF of the raw model-only latency samples of each target."""
    fig = latency_cdf_figure(device)
    return None if fig is None else _png(fig)


def latency_cdf_figure(device: DeviceSummary):
    rows = [row for row in device.rows if row.result.samples_ms]
    if not rows:
        return None
    palette = colours([row_label(row.result) for row in device.rows])
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    for row in rows:
        samples = sorted(row.result.samples_ms)
        fractions = [(i + 1) / len(samples) for i in range(len(samples))]
        ax.step(
            samples,
            fractions,
            where="post",
            color=palette[row_label(row.result)],
            linewidth=1.6,
            label=f"{row_label(row.result)} (n={len(samples)})",
        )
    ax.set_xscale(latency_scale(device))
    for level in (0.5, 0.9, 0.99):
        ax.axhline(level, color="0.6", linewidth=0.8, linestyle=":")
        ax.text(
            1.0,
            level,
            f" p{round(level * 100)}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize="small",
            color="0.4",
        )
    ax.set_xlabel("latency per batch, model only (ms)")
    ax.set_ylabel("fraction of runs ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Latency distribution on {device.name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def stage_story(model: str, story: list[dict[str, Any]]) -> bytes:
    """Parameters and GFLOPs after each pipeline stage, with the mAP where the stage measured it."""
    stages = [str(step.get("stage", "?")) for step in story]
    fig = _figure(7.5, 3.2)
    axes = fig.subplots(1, 2)
    for ax, key, scale, title in (
        (axes[0], "params", 1e6, "parameters (M)"),
        (axes[1], "gflops", 1.0, "GFLOPs"),
    ):
        values = [float(step.get(key) or 0) / scale for step in story]
        bars = ax.bar(stages, values, color=STAGE_COLOURS)
        ax.bar_label(bars, fmt="%.2f", fontsize="small")
        ax.set_title(title)
        ax.margins(y=0.2)
        ax.grid(True, axis="y", alpha=0.3)
    maps = [step.get("map50_95") for step in story]
    if any(m is not None for m in maps):
        text = ", ".join(f"{s}: {m:.3f}" for s, m in zip(stages, maps, strict=True) if m is not None)
        fig.suptitle(f"{model} — mAP50-95 {text}", fontsize="medium")
    else:
        fig.suptitle(model, fontsize="medium")
    return _png(fig)


def search_front(search: dict[str, Any]) -> bytes:
    """`edgepipe search`: every candidate's latency bound against its mAP50-95 (colour: input size,
    marker: precision, and model in a search of several), the Pareto front, the budget line and the
    winner."""
    rows = [row for row in search["candidates"] if row.get("fitted_ms") is not None and row.get("map50_95")]
    budget = search["budget"]
    sizes = sorted({row["imgsz"] for row in rows}, reverse=True)
    palette = colours([str(s) for s in sizes])
    kinds = sorted({(row.get("model", ""), row["precision"]) for row in rows})
    markers = dict(zip(kinds, "osD^vP*Xph", strict=False))
    fig = _figure(9.0, 4.5)
    ax = fig.add_subplot()

    def score(row: dict[str, Any]) -> float:
        value = row_score(row)
        assert value is not None  # only rows with a measured mAP are plotted
        return value

    for size in sizes:
        for (model, precision), marker in markers.items():
            group = [
                r
                for r in rows
                if (r["imgsz"], r.get("model", ""), r["precision"]) == (size, model, precision)
            ]
            if group:
                ax.scatter(
                    [r["fitted_ms"] for r in group],
                    [score(r) for r in group],
                    color=palette[str(size)],
                    marker=marker,
                    label=f"{model_text(group[0])} {size} px {precision}".lstrip(),
                    zorder=3,
                )
                for r in group:
                    ax.annotate(f"{r['ratio']:g}", (r["fitted_ms"], score(r)), fontsize="x-small",
                                xytext=(4, 3), textcoords="offset points")  # fmt: skip
    front = sorted((r for r in rows if r.get("front")), key=lambda r: r["fitted_ms"])
    if front:
        ax.step([r["fitted_ms"] for r in front], [score(r) for r in front], where="post", color="0.35",
                linewidth=1.0, label="Pareto front")  # fmt: skip
    ax.axvline(budget["limit_ms"], color=STAGE_COLOURS[3], linewidth=1.4, label=f"budget {budget['text']}")
    chosen = search.get("chosen")
    if chosen:
        ax.plot(chosen["fitted_ms"], score(chosen), marker="*", markersize=18, color=STAGE_COLOURS[2],
                linestyle="none", label="chosen", zorder=4)  # fmt: skip
    if rows:
        ax.set_ylim(*map_limits([score(r) for r in rows]))
    ax.set_xlabel(f"latency {budget['statistic']} upper bound, model only (ms); labels: MACs ratio")
    ax.set_ylabel(map_label(search))
    ax.set_title(f"Search on {search['target']}, batch {search['batch']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a point
    return _png(fig)
