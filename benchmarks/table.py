"""The rich table people read results in (bench, history, run): latency, throughput, mAP, size, memory, flags.

The target column is the engine's key (target/precision as configured); "ran as" is what actually ran;
imgsz, threads and the streams of img/s say how it was measured, and a partial mAP shows its images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from rich.table import Table

    from benchmarks.results import Result


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _throughput(r: Result) -> str:
    return _number(r.throughput_ips, 1) + (f" ({r.streams} str)" if r.streams > 1 else "")


def _map(r: Result) -> str:
    """mAP50-95; a partial one (a subset of the split) is marked with the images it saw."""
    text = _number(r.map50_95, 4)
    return f"{text} ({r.map_images} img, partial)" if r.map50_95 is not None and r.map_partial else text


def map_text(r: Result) -> str:
    """mAP50-95 with the images it saw when partial, for the report and Markdown ("—" when absent)."""
    return "—" if r.map50_95 is None else _map(r)


def _imgsz(r: Result) -> str:
    return "-" if r.imgsz is None else str(r.imgsz)


def _threads(r: Result) -> str:
    return "-" if r.threads is None else str(r.threads)


def _flag_kinds(r: Result) -> str:
    return ", ".join(dict.fromkeys(flag.split(":")[0] for flag in r.flags))


# header -> cell text; the context columns say where and what a result measured.
CONTEXT: dict[str, Callable[[Result], str]] = {
    "when": lambda r: r.created_at.replace("T", " ")[:16],
    "device": lambda r: r.device_name,
    "model": lambda r: r.model,
    "family": lambda r: r.family_name or "-",
}
MEASURES: dict[str, Callable[[Result], str]] = {
    "target": lambda r: r.key,
    "ran as": lambda r: r.ran_as,
    "batch": lambda r: str(r.batch),
    "imgsz": _imgsz,
    "threads": _threads,
    "p50 ms": lambda r: _number(r.latency_ms.p50, 2),
    "p90 ms": lambda r: _number(r.latency_ms.p90, 2),
    "p99 ms": lambda r: _number(r.latency_ms.p99, 2),
    "e2e p50 ms": lambda r: _number(r.e2e_latency_ms.p50 if r.e2e_latency_ms else None, 2),
    "img/s": _throughput,
    "mAP50-95": _map,
    "size MB": lambda r: _number(r.size_mb, 2),
    "mem MB": lambda r: _number(r.memory_mb, 0),
    "flags": _flag_kinds,
}
TEXT_COLUMNS = ("when", "device", "model", "family", "target", "ran as", "flags")
NO_WRAP = ("target", "mAP50-95", "img/s")  # "0.4200 (32 img, partial)" and "83.3 (4 str)" stay whole
# keeps the history table readable in 160 columns
LEFT_OUT_IN_CONTEXT = ("p90 ms", "p99 ms", "size MB", "mem MB")


def results_table(results: list[Result], title: str = "benchmark results", context: bool = False) -> Table:
    """One row per result; `context` adds when, device, model and family (the history of many runs).

    Flags show by kind ("cpu-load", "high-cv"); `flag_lines` gives their full text.
    """
    columns = {**CONTEXT, **MEASURES} if context else dict(MEASURES)
    if context:
        columns = {k: v for k, v in columns.items() if k not in LEFT_OUT_IN_CONTEXT}
    table = Table(title=title)
    for header in columns:
        text = header in TEXT_COLUMNS
        table.add_column(
            header, justify="left" if text else "right", overflow="fold", no_wrap=header in NO_WRAP
        )
    for r in results:
        table.add_row(*(cell(r) for cell in columns.values()))
    return table


def flag_lines(results: list[Result]) -> list[str]:
    return [f"{r.key} batch {r.batch}: {flag}" for r in results for flag in r.flags]
