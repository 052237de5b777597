"""Build and time each ladder candidate on the target, untrained: latency depends on the architecture only.

A candidate is pruned (with the prune stage's defaults at its MACs ratio, no BatchNorm re-estimation since
weights do not matter here), exported, built for the target (INT8 calibrated on a handful of images) and
loaded. All candidates are then timed in interleaved rounds, so that a burst of load on a shared machine
lands on every candidate alike instead of on whichever happened to be timed at that moment.

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import latency, noise
from benchmarks.noise import spread_flag
from core import letterbox
from core.checkpoints import load_detection_model
from core.errors import CheckFailed
from pipeline.search.select import CandidateTiming
from pipeline.stages.benchmark import sample_images
from pipeline.stages.build import BuildEntry, build_engine
from pipeline.stages.export import export_onnx
from pipeline.stages.prune import PruneConfig, prune_checkpoint
from targets.base import RunOptions, get_target

if TYPE_CHECKING:
    from rich.progress import Progress

    from core.artifacts import Artifact


@dataclass(frozen=True)
class TimingSettings:
    target: str
    precision: str
    batch: int = 1
    calib_images: int = 8
    warmup: int = 5
    iters: int = 40  # per round
    min_seconds: float = 1.0  # per round
    rounds: int = 3
    threads: int | None = None
    round_to: int | None = 8


@dataclass(frozen=True)
class BuiltCandidate:
    ratio: float
    gflops: float
    params: int
    engine: Artifact


def prune_candidate(
    source: Path, ratio: float, out: Path, round_to: int | None, imgsz: int, data: Path | None
):
    """The candidate checkpoint at `ratio` of the MACs (the source itself at 1.0): (path, params, gflops)."""
    from pipeline.pruning import measure

    if ratio >= 1.0:
        params, gflops = measure(load_detection_model(source), imgsz)
        return source, params, gflops
    config = PruneConfig(macs=ratio, round_to=round_to, bn_batches=0)
    report = prune_checkpoint(source, out, config, imgsz=imgsz, device="cpu", data=data)
    return out, report.params_after, report.gflops_after


def build_candidate(
    source: Path, ratio: float, work: Path, settings: TimingSettings, imgsz: int, data: Path | None
) -> BuiltCandidate:
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, params, gflops = prune_candidate(
        source, ratio, work / "pruned.pt", settings.round_to, imgsz, data
    )
    onnx = None
    if settings.target != "torch":
        onnx = export_onnx(checkpoint, work / "model.onnx", imgsz, dynamic_batch=settings.batch > 1)
    entry = BuildEntry(  # timed only; the run's build entry builds (and checks) the choice
        target=settings.target, precision=settings.precision, calib_size=settings.calib_images, verify=False
    )
    engine = build_engine(
        entry, work / "engine", onnx=onnx, checkpoint=checkpoint, calib_data=data, val_data=None, imgsz=imgsz
    )
    return BuiltCandidate(ratio, round(gflops, 4), params, engine)


def time_engines(
    built: list[BuiltCandidate],
    settings: TimingSettings,
    data: Path | None,
    progress: Progress | None = None,
) -> tuple[dict[float, list[float]], list[str]]:
    """Samples (ms) per candidate ratio from interleaved rounds, and the machine's noise flags."""
    options = RunOptions(threads=settings.threads, batch=settings.batch)
    runners = {c.ratio: get_target(c.engine.metadata["target"]).load(c.engine, options) for c in built}
    imgsz = int(built[0].engine.metadata["imgsz"])
    images = sample_images(data, "train", settings.batch)[0]
    tensor = letterbox.to_tensor([letterbox.letterbox(image, imgsz)[0] for image in images])
    plan = latency.TimingPlan(settings.warmup, settings.iters, settings.min_seconds)
    samples: dict[float, list[float]] = {ratio: [] for ratio in runners}
    task = progress.add_task("timing", total=settings.rounds * len(runners)) if progress else None
    with noise.LoadMonitor() as load:
        for round_index in range(settings.rounds):
            for ratio, runner in runners.items():
                if progress is not None and task is not None:
                    progress.update(task, description=f"timing round {round_index + 1}: ratio {ratio}")
                samples[ratio] += latency.time_calls(partial(runner.infer, tensor), plan)
                if progress is not None and task is not None:
                    progress.advance(task)
    return samples, load.flags()


def time_ladder(
    source: Path,
    ratios: list[float],
    settings: TimingSettings,
    *,
    imgsz: int,
    data: Path | None,
    progress: Progress | None = None,
) -> tuple[list[CandidateTiming], list[str]]:
    """Build every candidate (least pruned first), then time them all; a ratio pruning cannot reach (and
    every smaller one) is recorded with the reason instead of samples."""
    timings: list[CandidateTiming] = []
    out_of_reach: str | None = None  # why pruning stopped short of a ratio: every smaller one fails alike
    with tempfile.TemporaryDirectory(prefix="edgepipe-search-") as tmp:
        built: list[BuiltCandidate] = []
        task = progress.add_task("building candidates", total=len(ratios)) if progress else None
        for ratio in sorted(ratios, reverse=True):
            if progress is not None and task is not None:
                progress.update(task, description=f"building candidate ratio {ratio}")
            try:
                if out_of_reach is None:
                    built.append(
                        build_candidate(source, ratio, Path(tmp) / f"r{ratio}", settings, imgsz, data)
                    )
            except CheckFailed as exc:  # layer caps and protected layers bound how far pruning can go
                out_of_reach = str(exc).splitlines()[0]
            if out_of_reach is not None:
                timings.append(CandidateTiming(ratio, error=out_of_reach))
            if progress is not None and task is not None:
                progress.advance(task)
        samples, flags = time_engines(built, settings, data, progress)
        for candidate in built:
            spread = spread_flag(f"ratio {candidate.ratio}", samples[candidate.ratio])
            timings.append(
                CandidateTiming(
                    candidate.ratio,
                    candidate.gflops,
                    candidate.params,
                    tuple(round(s, 4) for s in samples[candidate.ratio]),
                    flags=(spread,) if spread else (),
                )
            )
    return sorted(timings, key=lambda t: t.ratio, reverse=True), flags
