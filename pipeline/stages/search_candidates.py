"""Make and measure the search's candidates: build every (model, input size, ratio, precision) on the
target from the checkpoint pruned for that (model, ratio, size), time them all in interleaved rounds and
measure each one's mAP50-95.

Each ratio is pruned at each input size it will run at, with the prune stage's defaults (data-aware
selection and layer-wise repair, no fine-tuning): which channels matter depends on the input size
(docs/pruning.md, "Pruning at the size it runs"). Timing interleaves the candidates so that a burst of
load on a shared machine lands on every candidate alike.

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import latency, noise
from benchmarks.accuracy import evaluate
from benchmarks.noise import spread_flag
from core import letterbox, progress
from core.checkpoints import load_detection_model
from core.errors import CheckFailed, PrecisionUnavailable
from pipeline.search.grid import Candidate
from pipeline.search.select import Measurement
from pipeline.stages.benchmark import sample_images
from pipeline.stages.build import BuildEntry, build_engine
from pipeline.stages.export import export_onnx
from pipeline.stages.prune import PruneConfig, prune_checkpoint
from targets.base import RunOptions, get_target

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.runner import Runner


@dataclass(frozen=True)
class PrunedCandidate:
    """One (ratio, input size)'s checkpoint, or why pruning could not reach it."""

    ratio: float
    imgsz: int
    path: Path | None
    error: str | None = None


@dataclass(frozen=True)
class MeasureSettings:
    target: str
    batch: int = 1
    calib_images: int = 64
    warmup: int = 5
    iters: int = 40  # per round
    min_seconds: float = 1.0  # per round
    rounds: int = 3
    threads: int | None = None
    map_images: int | None = None  # None: the whole val split


def prune_candidate(
    source: Path,
    ratio: float,
    imgsz: int,
    out_dir: Path,
    prune: PruneConfig,
    *,
    device: str,
    data: Path | None,
) -> PrunedCandidate:
    """`source` pruned to `ratio` of its MACs at `imgsz` (the source itself at 1.0), or the reason pruning
    cannot reach it (layer caps and protected layers bound it)."""
    if ratio >= 1.0:
        return PrunedCandidate(ratio, imgsz, source)
    out = out_dir / f"macs-{ratio:g}-{imgsz}px.pt"
    try:
        config = prune.model_copy(update={"macs": ratio, "imgsz": imgsz})
        prune_checkpoint(source, out, config, imgsz=imgsz, device=device, data=data)
    except CheckFailed as exc:
        return PrunedCandidate(ratio, imgsz, None, str(exc).splitlines()[0])
    return PrunedCandidate(ratio, imgsz, out)


def build_candidate(
    checkpoint: Path, candidate: Candidate, work: Path, settings: MeasureSettings, data: Path | None
) -> Artifact:
    """Export and build one candidate, INT8 calibrated on `calib_images` of the train split, unchecked:
    the search measures every candidate's mAP itself."""
    work.mkdir(parents=True, exist_ok=True)
    onnx = None
    if get_target(settings.target).from_onnx:
        onnx = export_onnx(checkpoint, work / "model.onnx", candidate.imgsz, dynamic_batch=settings.batch > 1)
    entry = BuildEntry(
        target=settings.target,
        precision=candidate.precision,
        calib_images=settings.calib_images,
        verify=False,
    )
    return build_engine(
        entry,
        work / "engine",
        onnx=onnx,
        checkpoint=checkpoint,
        calib_data=data,
        val_data=None,
        imgsz=candidate.imgsz,
    )


def model_size(checkpoint: Path, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs at `imgsz`)."""
    from pipeline.pruning.pruner import measure

    return measure(load_detection_model(checkpoint), imgsz)


def time_runners(
    runners: dict[Candidate, Runner],
    settings: MeasureSettings,
    data: Path | None,
) -> tuple[dict[Candidate, list[float]], list[str]]:
    """Samples (ms) per candidate from interleaved rounds, and the machine's noise flags."""
    images = sample_images(data, "train", settings.batch)[0]
    tensors = {
        size: letterbox.to_tensor([letterbox.letterbox(image, size)[0] for image in images])
        for size in {c.imgsz for c in runners}
    }
    plan = latency.TimingPlan(settings.warmup, settings.iters, settings.min_seconds)
    samples: dict[Candidate, list[float]] = {c: [] for c in runners}
    total = settings.rounds * len(runners)
    with noise.LoadMonitor() as load, progress.current().task("timing", total) as task:
        for round_index in range(settings.rounds):
            for candidate, runner in runners.items():
                task.update(f"timing round {round_index + 1}: {candidate.label}")
                samples[candidate] += latency.time_calls(
                    partial(runner.infer, tensors[candidate.imgsz]), plan
                )
                task.advance()
    return samples, load.flags()


def failed(candidate: Candidate, error: str | None) -> Measurement:
    """The record of a candidate that could not be built: why, and no figures."""
    c = candidate
    return Measurement(c.imgsz, c.ratio, c.precision, error=error, model=c.model)


def measure_candidates(
    pruned: dict[tuple[str, float, int], PrunedCandidate],
    candidates: list[Candidate],
    settings: MeasureSettings,
    *,
    data: Path | None,
    val: Path,
) -> tuple[list[Measurement], list[str]]:
    """Build, time and score every candidate (its checkpoint: `pruned[model, ratio, imgsz]`); returns the
    measurements and the machine's noise flags."""
    measurements: list[Measurement] = []
    facts: dict[Candidate, dict[str, Any]] = {}
    options = RunOptions(threads=settings.threads, batch=settings.batch)
    with tempfile.TemporaryDirectory(prefix="edgepipe-search-") as tmp, ExitStack() as stack:
        runners: dict[Candidate, Runner] = {}
        task = stack.enter_context(progress.current().task("building candidates", len(candidates)))
        for index, candidate in enumerate(candidates):
            task.update(f"building {candidate.label}")
            source = pruned[candidate.model, candidate.ratio, candidate.imgsz]
            if source.path is None:
                measurements.append(failed(candidate, source.error))
            else:
                try:
                    engine = build_candidate(source.path, candidate, Path(tmp) / f"c{index}", settings, data)
                except PrecisionUnavailable as exc:  # one precision of several: the others still compete
                    measurements.append(failed(candidate, str(exc).splitlines()[0]))
                else:
                    runners[candidate] = stack.enter_context(
                        get_target(settings.target).load(engine, options)
                    )
                    params, gflops = model_size(source.path, candidate.imgsz)
                    facts[candidate] = {"params": params, "gflops": round(gflops, 4)}
            task.advance()
        samples, flags = time_runners(runners, settings, data)
        for candidate, runner in runners.items():
            score = evaluate(
                runner, val, candidate.imgsz, batch=settings.batch,
                max_images=settings.map_images,
            )  # fmt: skip
            spread = spread_flag(candidate.label, samples[candidate])
            measurements.append(
                Measurement(
                    candidate.imgsz,
                    candidate.ratio,
                    candidate.precision,
                    samples_ms=tuple(round(s, 4) for s in samples[candidate]),
                    map50_95=round(score.map50_95, 5),
                    map_images=score.images,
                    map_total_images=score.total_images,
                    ran_precision=runner.precision,
                    flags=(spread,) if spread else (),
                    model=candidate.model,
                    **facts[candidate],
                )
            )
    return measurements, flags
