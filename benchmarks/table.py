"""The results table people read in the terminal (bench and run print it)."""

from __future__ import annotations

from rich.table import Table

from benchmarks.results import Result


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: list[Result], title: str = "results") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("target", "ran as", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "MB", "mAP50-95",
                   "mAP50", "flags"):
        table.add_column(column, justify="left" if column in {"target", "ran as", "flags"} else "right")
    for r in results:
        table.add_row(
            r.key, r.precision, str(r.batch), _fmt(r.latency_ms.p50), _fmt(r.latency_ms.p90),
            _fmt(r.latency_ms.p99), _fmt(r.throughput_ips, 1), _fmt(r.size_mb), _fmt(r.map50_95, 4),
            _fmt(r.map50, 4), ", ".join(r.flags),
        )
    return table
