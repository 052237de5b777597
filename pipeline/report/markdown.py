"""Markdown for pull-request comments and CI job summaries: the gate's verdict and the report."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.budgets import Check, Verdict
from benchmarks.table import map_text
from pipeline.report.search import candidate_rows, summary_line
from pipeline.report.summary import (
    GAIN_HEADER,
    DeviceSummary,
    fmt,
    fmt_ratio,
    gain_cells,
    measured_on,
    models_text,
    setup_text,
)


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gate_verdict_line(verdicts: list[Verdict]) -> str:
    """Counts the checks, the rows the gate's tables show, and the (budget, result) pairs they form."""
    checks = sum(len(v.checks) for v in verdicts)
    broken = sum(len(v.failures) for v in verdicts)
    pairs = f"{len(verdicts)} (budget, result) pair{'s' * (len(verdicts) != 1)}"
    if not broken:
        return f"✅ **edgepipe gate passed**: all {checks} checks hold, in {pairs}."
    failed = sum(not v.passed for v in verdicts)
    return f"❌ **edgepipe gate failed**: {broken} of {checks} checks broken, in {failed} of {pairs}."


def _check_row(verdict: Verdict, check: Check) -> list[str]:
    result = verdict.result
    return [
        "✅" if check.passed else "❌",
        f"`{verdict.budget.label}`",
        result.device_name,
        result.family_name or "—",
        f"{result.key} (b{result.batch})",
        check.criterion,
        check.measured_text,
        check.limit_text.replace("<=", "≤").replace(">=", "≥"),
        check.margin_text,
    ]


def gate_markdown(verdicts: list[Verdict], noise: list[str] | None = None) -> str:
    """A one-line verdict, one row per check (broken ones first), then the noise warnings."""
    ordered = sorted(verdicts, key=lambda v: v.passed)
    rows = [_check_row(v, c) for v in ordered for c in sorted(v.checks, key=lambda c: c.passed)]
    header = ["", "budget", "device", "family", "target", "criterion", "measured", "limit", "margin"]
    warnings = "".join(f"\n⚠️ noisy result: {line}\n" for line in noise or [])
    return f"{gate_verdict_line(verdicts)}\n\n{table(header, rows)}\n{warnings}"


def report_markdown(
    title: str,
    devices: list[DeviceSummary],
    stories: dict[str, list[dict[str, Any]]],
    baseline: str,
    search: dict[str, Any] | None = None,
) -> str:
    parts = [f"# {title}", ""]
    for device in devices:
        parts += [f"## {device.name}", ""]
        if device.notes:
            parts += [f"> {note}" for note in device.notes] + [""]
        parts += [f"Model: {models_text(device.rows)}.", ""]
        parts += [f"mAP on {measured_on(device.rows)}; latency is model-only unless marked e2e.", ""]
        header = ["target", "ran as", "batch", "setup", "p50 ms", "p90 ms", "p99 ms", "e2e p50 ms"]
        header += ["img/s", "MB", "mAP50-95", "mAP50", f"Δ mAP50-95 vs {baseline}"]
        header += [f"speed-up vs unpruned, else {baseline}", "Pareto", "flags"]
        rows = [
            [
                row.result.key,
                row.result.precision,
                str(row.result.batch),
                setup_text(row.result),
                fmt(row.result.latency_ms.p50),
                fmt(row.result.latency_ms.p90),
                fmt(row.result.latency_ms.p99),
                fmt(row.result.e2e_latency_ms.p50 if row.result.e2e_latency_ms else None),
                fmt(row.result.throughput_ips, digits=1),
                fmt(row.result.size_mb),
                map_text(row.result),
                fmt(row.result.map50, digits=4),
                fmt(row.map_delta, digits=4, signed=True),
                fmt_ratio(row.speedup),
                "★" if row.pareto else "",
                ", ".join(row.result.flags),
            ]
            for row in device.rows
        ]
        parts += [table(header, rows), "", f"End-to-end latency timed with NMS at {device.e2e_nms}.", ""]
        if device.gains:
            parts += ["### Against the unpruned model", ""]
            parts += [table(GAIN_HEADER, [gain_cells(g) for g in device.gains]), ""]
    for model, story in stories.items():
        parts += [f"## The pipeline's story: {model}", ""]
        rows = [
            [
                str(step.get("stage", "?")),
                fmt(step["params"] / 1e6 if step.get("params") else None, digits=3),
                fmt(step.get("gflops")),
                fmt(step.get("map50_95"), digits=4),
            ]
            for step in story
        ]
        parts += [table(["stage", "params (M)", "GFLOPs", "mAP50-95"], rows), ""]
    if search is not None:
        parts += search_markdown(search)
    return "\n".join(parts)


def search_markdown(search: dict[str, Any]) -> list[str]:
    header, rows = candidate_rows(search)
    return ["## Budget search", "", summary_line(search), "", table(header, rows), ""]
