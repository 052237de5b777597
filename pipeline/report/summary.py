"""What the report shows, computed once for the HTML and the Markdown: rows per device, Pareto front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.budgets import find_baseline
from benchmarks.results import Result
from core.pareto import pareto_front


@dataclass(frozen=True)
class SourceGain:
    """What pruning bought and cost on one engine: the run's model against its unpruned source, the
    same target/precision on the same device and batch."""

    final: Result
    source: Result

    @property
    def speedup(self) -> float:
        """Source p50 over final p50 (model only): 2.0 is twice as fast."""
        return self.source.latency_ms.p50 / self.final.latency_ms.p50

    @property
    def map_points(self) -> float | None:
        """Final minus source mAP50-95, in points (hundredths): negative is what pruning cost."""
        if self.final.map50_95 is None or self.source.map50_95 is None:
            return None
        return 100 * (self.final.map50_95 - self.source.map50_95)

    @property
    def size_ratio(self) -> float | None:
        """Final size over source size: 0.5 is half the size."""
        if not self.final.size_mb or not self.source.size_mb:
            return None
        return self.final.size_mb / self.source.size_mb


@dataclass(frozen=True)
class Row:
    result: Result
    baseline: Result | None  # the baseline result on the same device and batch, if any
    pareto: bool  # on the latency (p50, model-only) vs mAP50-95 Pareto front of its device
    gain: SourceGain | None = None  # against the unpruned model, when the run benched it

    @property
    def map_delta(self) -> float | None:
        """mAP50-95 minus the baseline's: negative is a loss."""
        if self.baseline is None or self.baseline.map50_95 is None or self.result.map50_95 is None:
            return None
        return self.result.map50_95 - self.baseline.map50_95

    @property
    def speedup(self) -> float | None:
        """p50 speed-up against the unpruned model of the same engine when the run benched it, else
        against the baseline target on the same device and batch (2.0: twice as fast)."""
        if self.gain is not None:
            return self.gain.speedup
        if self.baseline is None:
            return None
        return self.baseline.latency_ms.p50 / self.result.latency_ms.p50

    @property
    def precision_changed(self) -> bool:
        requested = self.result.requested_precision
        return requested is not None and requested != self.result.precision


@dataclass
class DeviceSummary:
    name: str
    fingerprint: dict[str, Any]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def gains(self) -> list[SourceGain]:
        return [row.gain for row in self.rows if row.gain is not None]

    @property
    def e2e_nms(self) -> str:
        """The NMS thresholds this device's e2e latencies were timed with (mAP always uses val's)."""
        return (
            "; ".join(sorted({row.result.e2e_nms for row in self.rows if row.result.e2e_nms}))
            or "not recorded"
        )


def source_gain(result: Result, sources: list[Result]) -> SourceGain | None:
    """`result` against the unpruned model's result of the same engine, device and batch, if benched."""
    same = [
        s
        for s in sources
        if (s.device_name, s.key, s.batch) == (result.device_name, result.key, result.batch)
    ]
    source = max(same, key=lambda s: s.created_at, default=None)
    return SourceGain(result, source) if source is not None else None


def summarize(results: list[Result], baseline: str) -> list[DeviceSummary]:
    """One summary per device, rows ordered by model-only p50 latency.

    The rows are the run's model; the unpruned source's results (role "source") are what each row is
    compared with, unless they are all there is.
    """
    own = [r for r in results if not r.is_source] or results
    sources = [r for r in results if r.is_source and r not in own]
    devices: dict[str, list[Result]] = {}
    for result in own:
        devices.setdefault(result.device_name, []).append(result)
    summaries = []
    for name, group in devices.items():
        group = sorted(group, key=lambda r: (r.latency_ms.p50, r.key, r.batch))
        with_map = [i for i, r in enumerate(group) if r.map50_95 is not None]
        front = pareto_front([(group[i].latency_ms.p50, group[i].map50_95 or 0.0) for i in with_map])
        on_front = {with_map[i] for i in front}
        rows = [
            Row(r, find_baseline(results, baseline, name, r.batch), i in on_front, source_gain(r, sources))
            for i, r in enumerate(group)
        ]
        summaries.append(DeviceSummary(name, group[0].device, rows, _notes(group, baseline, rows)))
    return summaries


def _notes(group: list[Result], baseline: str, rows: list[Row]) -> list[str]:
    notes = []
    evaluated_on = {(r.dataset, r.letterbox) for r in group if r.map50_95 is not None}
    if len(evaluated_on) > 1:
        listed = "; ".join(
            f"{d or '?'} ({lb or 'letterbox unknown'})" for d, lb in sorted(evaluated_on, key=str)
        )
        notes.append(
            f"mAP was measured on different datasets or letterboxes ({listed}): compare like with like."
        )
    if not any(row.baseline for row in rows):
        notes.append(f"No {baseline} result on this device: the mAP drop column is empty.")
    if not any(r.map50_95 is not None for r in group):
        notes.append("No result on this device has an mAP (benchmarked with --no-accuracy).")
    notes += dict.fromkeys(f"{r.key}: {note}" for r in group for note in r.build_notes)  # once per engine
    return notes


def stage_stories(results: list[Result]) -> dict[str, list[dict[str, Any]]]:
    """The pipeline's story per model (params, GFLOPs, mAP per stage), each distinct story once."""
    stories: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if result.stage_story and result.model not in stories:
            stories[result.model] = result.stage_story
    return stories


def fmt(value: float | None, unit: str = "", digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def fmt_ratio(value: float | None) -> str:
    """A ratio as "2.31×"."""
    return "—" if value is None else f"{value:.2f}×"


def setup_text(result: Result) -> str:
    """How a result was measured, beside its batch: "640 px, 2 thr, 1 str" (input size, the threads
    the backend ran with, the throughput's streams); an unknown part is left out."""
    parts = [
        f"{result.imgsz} px" if result.imgsz is not None else None,
        f"{result.threads} thr" if result.threads is not None else None,
        f"{result.streams} str",
    ]
    return ", ".join(p for p in parts if p)


def models_text(rows: list[Row]) -> str:
    """The models of the rows with their families: "yolov8n-pruned (YOLOv8)", several joined by commas."""
    return ", ".join(dict.fromkeys(row.result.model_label for row in rows))


def measured_on(rows: list[Row]) -> str:
    """The datasets and letterboxes that measured the mAPs: "coco128-val2017 (square 640x640)"."""
    seen = {(r.result.dataset, r.result.letterbox) for r in rows if r.result.dataset}
    return ", ".join(f"{d} ({lb})" if lb else str(d) for d, lb in sorted(seen, key=str)) or "no dataset"


GAIN_HEADER = [
    "target",
    "batch",
    "unpruned p50 ms",
    "p50 ms",
    "speed-up",
    "unpruned mAP50-95",
    "mAP50-95",
    "Δ mAP50-95 (points)",
    "unpruned MB",
    "MB",
    "size ratio",
]


def gain_cells(gain: SourceGain) -> list[str]:
    """One row of the "Against the unpruned model" table, as text (HTML and Markdown alike)."""
    final, source = gain.final, gain.source
    return [
        final.key,
        str(final.batch),
        fmt(source.latency_ms.p50),
        fmt(final.latency_ms.p50),
        fmt_ratio(gain.speedup),
        fmt(source.map50_95, digits=4),
        fmt(final.map50_95, digits=4),
        fmt(gain.map_points, signed=True),
        fmt(source.size_mb),
        fmt(final.size_mb),
        fmt_ratio(gain.size_ratio),
    ]
