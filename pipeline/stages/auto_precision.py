"""`precision: auto`: build every precision the target offers, measure each on this device, keep the
fastest whose mAP50-95 is within the accuracy bound of FP32.

Which precision is fastest depends on the model and the device (on a CPU without AMX, OpenVINO's INT8
and BF16 trade places), so it is measured rather than assumed. Candidates are timed in interleaved
rounds, so that a load spike on a shared machine hits all of them alike, and scored on the val set with
the same harness as `edgepipe bench`. A precision the device cannot run is recorded as skipped. The
chosen engine's `artifact.json` gets an `auto_precision` block: every candidate and why this one won.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.accuracy import evaluate
from benchmarks.device import cpu_info
from benchmarks.latency import TimingPlan, model_latency
from core.artifacts import ARTIFACT_FILE, Artifact, sha256_path, write_json_atomic
from core.engine_record import read_artifact_dir
from core.errors import BackendUnavailable, InputError
from targets.accuracy_bound import AccuracyBound
from targets.base import RunOptions, get_target

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.stages.build import BuildEntry

log = logging.getLogger(__name__)

ROUNDS = 3
PLAN = TimingPlan(warmup=5, iters=20, min_seconds=1.0)


@dataclass
class PrecisionCandidate:
    precision: str
    skipped: str | None = None  # why it was not built (the device cannot run it, ...)
    latency_ms: float | None = None  # median of every round's samples
    map50_95: float | None = None
    drop: float | None = None
    within_bound: bool | None = None


def choose(
    candidates: list[PrecisionCandidate], bound: AccuracyBound, fp32_map: float
) -> tuple[PrecisionCandidate, str]:
    """The fastest candidate within the bound, and why (FP32 is the reference, always within it)."""
    eligible = [c for c in candidates if c.within_bound]
    chosen = min(eligible, key=lambda c: c.latency_ms or float("inf"))
    others = ", ".join(
        f"{c.precision} {c.latency_ms:.2f} ms" + ("" if c.within_bound else f" (drop {c.drop:+.4f}: outside)")
        for c in candidates
        if c is not chosen and c.latency_ms is not None
    )
    reason = (
        f"{chosen.precision} is the fastest within the bound ({bound.rule}, {bound.limit(fp32_map):.4f} "
        f"mAP50-95): {chosen.latency_ms:.2f} ms vs {others or 'no other candidate'}"
    )
    return chosen, reason


def build_auto(
    entry: BuildEntry,
    out_dir: Path,
    build: Callable[[BuildEntry, Path], Artifact],
    val_data: Path | None,
) -> Artifact:
    """Build each precision of `entry.target` with `build`, keep the fastest within the bound in `out_dir`."""
    if val_data is None:
        raise InputError(
            "precision auto compares each precision's mAP with fp32's", hint="pass --val data.yaml"
        )
    target = get_target(entry.target)
    bound = AccuracyBound(entry.max_drop_vs_fp32)
    candidates = [PrecisionCandidate(precision) for precision in target.precisions]
    with tempfile.TemporaryDirectory(prefix="edgepipe-auto-", dir=Path(out_dir).parent) as tmp:
        built: dict[str, Artifact] = {}
        for candidate in candidates:
            log.info(f"precision auto: building {entry.target}/{candidate.precision}")
            try:
                update = {"precision": candidate.precision}
                built[candidate.precision] = build(
                    entry.model_copy(update=update), Path(tmp) / candidate.precision
                )
            except (InputError, BackendUnavailable) as exc:
                candidate.skipped = str(exc)
                log.info(f"precision auto: {candidate.precision} skipped: {candidate.skipped}")
        if "fp32" not in built:
            raise InputError(f"precision auto needs {entry.target}/fp32 as its reference; it did not build")
        measure_precisions(candidates, built, val_data, bound)
        fp32_map = next(c.map50_95 for c in candidates if c.precision == "fp32") or 0.0
        chosen, reason = choose(candidates, bound, fp32_map)
        log.info(f"precision auto: {reason}")
        shutil.copytree(built[chosen.precision].path, out_dir)
    meta = read_artifact_dir(out_dir)
    meta["auto_precision"] = {
        "chosen": chosen.precision,
        "reason": reason,
        "bound": bound.rule,
        "max_map_drop": bound.limit(fp32_map),
        "device": cpu_info()["model"],
        "latency": f"model-only batch 1, median of {ROUNDS} interleaved rounds",
        "candidates": [asdict(c) for c in candidates],
    }
    write_json_atomic(Path(out_dir) / ARTIFACT_FILE, meta)
    return Artifact(kind="engine", path=Path(out_dir).resolve(), sha256=sha256_path(out_dir), metadata=meta)


def measure_precisions(
    candidates: list[PrecisionCandidate], built: dict[str, Artifact], val_data: Path, bound: AccuracyBound
) -> None:
    """Fill in each built candidate's latency (interleaved rounds) and mAP50-95 against FP32's."""
    runners = {p: get_target(a.metadata["target"]).load(a, RunOptions()) for p, a in built.items()}
    imgsz = int(next(iter(built.values())).metadata["imgsz"])
    batch = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    samples: dict[str, list[float]] = {p: [] for p in runners}
    for _ in range(ROUNDS):
        for precision, runner in runners.items():
            samples[precision].extend(model_latency(runner, batch, PLAN))
    maps = {p: evaluate(runner, val_data, imgsz).map50_95 for p, runner in runners.items()}
    for candidate in candidates:
        if candidate.precision in runners:
            candidate.latency_ms = float(np.median(samples[candidate.precision]))
            candidate.map50_95 = maps[candidate.precision]
            candidate.drop = maps["fp32"] - candidate.map50_95
            candidate.within_bound = bound.met(maps["fp32"], candidate.map50_95)
    for runner in runners.values():
        runner.close()
