"""Benchmark an engine directory: latency (model only and end to end), throughput and mAP per batch size.

Every backend goes through the same pre-process, NMS, metric and timing code in `benchmarks/`, so the
figures of two targets differ only by what the targets themselves do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from benchmarks import latency, noise, throughput
from benchmarks.accuracy import evaluate, labelled_images
from benchmarks.device import fingerprint, library_versions
from benchmarks.history import append_results
from benchmarks.results import Result, save_results
from core import letterbox
from core.artifacts import Artifact, now_iso, sha256_path
from core.dataset import load_dataset
from core.engine_record import read_artifact_dir
from core.errors import InputError
from core.letterbox import load_image
from pipeline.stages.base import Section, StageContext
from targets.accuracy_bound import describe_check
from targets.base import BuildInputs, RunOptions, get_target

if TYPE_CHECKING:
    from rich.progress import Progress

    from core.runner import Runner
    from targets.base import Target

RESULTS_FILE = "results.json"
SYNTHETIC_SHAPE = (480, 640, 3)  # a typical photo, for --no-accuracy runs without a dataset


class BenchConfig(Section):
    batch: list[int] = Field(default_factory=lambda: [1], description="batch sizes to measure")
    warmup: int = Field(10, ge=0, description="untimed runs before each timed loop")
    iters: int = Field(100, ge=1, description="at least this many timed runs per loop")
    min_seconds: float = Field(2.0, ge=0, description="and at least this long per timed loop")
    streams: int = Field(1, ge=1, description="concurrent requests/streams for the throughput figure")
    throughput_seconds: float = Field(3.0, gt=0, description="duration of the throughput measurement")
    threads: int | None = Field(None, ge=1, description="inference threads; default: the backend's choice")
    accuracy: bool = Field(True, description="measure mAP50-95 and mAP50 on the val split")
    split: str = Field("val", description="dataset split that measures mAP")
    device: str = Field("cpu", description="where to run: cpu, cuda, cuda:0 (torch, TensorRT)")


def check_artifact_exists(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(
            "artifact not found", path=path, hint="pass a directory from `edgepipe build`, a .pt or an .onnx"
        )
    return path


def resolve_artifact(path: Path, scratch: Path, imgsz: int = 640) -> Artifact:
    """A build directory as is; a plain .pt built as torch/fp32, a plain .onnx as onnxruntime/fp32."""
    path = check_artifact_exists(path)
    if path.is_dir():
        meta = read_artifact_dir(path)
        if meta.get("kind") != "engine":
            raise InputError(f"artifact.json describes a {meta.get('kind')!r}, not an engine", path=path)
        return Artifact(kind="engine", path=path.resolve(), sha256=sha256_path(path), metadata=meta)
    plain_builds = {
        ".pt": ("torch", BuildInputs(onnx=None, checkpoint=path)),
        ".onnx": ("onnxruntime", BuildInputs(onnx=path)),
    }
    if path.suffix not in plain_builds:
        raise InputError("expected a build directory, a .pt checkpoint or an .onnx model", path=path)
    target_name, inputs = plain_builds[path.suffix]
    return get_target(target_name).build(inputs, "fp32", None, {"imgsz": imgsz}, scratch / "engine")


def sample_images(data_yaml: Path | None, split: str, count: int) -> list[np.ndarray]:
    """`count` BGR images for the timed loops: the split's first images, or a fixed synthetic one."""
    if data_yaml is None:
        return [np.random.default_rng(0).integers(0, 256, SYNTHETIC_SHAPE, dtype=np.uint8)] * count
    paths = load_dataset(data_yaml).images(split)
    return [load_image(paths[i % len(paths)]) for i in range(count)]


def engine_size_mb(artifact: Artifact) -> float:
    """Engine files (IR + weights, ONNX, plan...) in MB of 10^6 bytes, artifact.json excluded."""
    names = artifact.metadata.get("files_sha256") or {artifact.metadata["model_file"]: None}
    return sum((artifact.path / name).stat().st_size for name in names) / 1e6


def batch_sizes(artifact: Artifact, requested: list[int]) -> list[int]:
    """The requested batch sizes this engine runs: all of them, or only its fixed one (others skipped)."""
    fixed = artifact.metadata.get("batch")
    if not fixed:
        return requested
    if fixed not in requested:
        raise InputError(
            f"this engine has a fixed batch of {fixed}, and batch {requested} was requested",
            path=artifact.path,
            hint=f"pass --batch {fixed}, or export with a dynamic batch and rebuild",
        )
    if len(requested) > 1:
        from rich.console import Console

        skipped = ", ".join(str(b) for b in requested if b != fixed)
        Console(stderr=True).print(
            f"[yellow]note[/]: {artifact.path} runs batch {fixed} only; skipping {skipped}"
        )
    return [fixed]


def bench_artifact(
    artifact_path: Path,
    data_yaml: Path | None,
    config: BenchConfig,
    model_name: str | None = None,
    progress: Progress | None = None,
    imgsz: int = 640,
) -> list[Result]:
    """One Result per batch size; mAP is measured once (it does not depend on the batch) and shared.

    `imgsz` applies to a plain .pt only; build directories and ONNX files carry their own.
    """
    if config.accuracy and data_yaml is None:
        raise InputError("mAP needs a dataset", hint="pass --val data.yaml, or --no-accuracy")
    if config.accuracy and data_yaml is not None:
        labelled_images(Path(data_yaml), config.split)  # fail on a dataset without labels before any work
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-") as scratch:
        artifact = resolve_artifact(Path(artifact_path), Path(scratch), imgsz)
        target = get_target(artifact.metadata["target"])
        name = model_name or default_model_name(artifact)
        measured_sha256 = artifact.sha256 if Path(artifact_path).is_dir() else sha256_path(artifact_path)
        results: list[Result] = []
        scores = None
        for batch in batch_sizes(artifact, config.batch):
            result, runner = bench_batch(target, artifact, batch, data_yaml, config, progress)
            result.model, result.artifact_sha256 = name, measured_sha256
            with runner:  # closed once this batch size is measured
                if config.accuracy and data_yaml is not None and scores is None:
                    size = int(artifact.metadata["imgsz"])
                    scores = evaluate(
                        runner, data_yaml, size, config.split, batch, progress=progress or False
                    )
            if scores is not None:
                result.map50_95, result.map50 = scores.map50_95, scores.map50
                result.dataset, result.letterbox = scores.dataset, scores.letterbox
            results.append(result)
    return results


def default_model_name(artifact: Artifact) -> str:
    source = artifact.metadata.get("source") or {}
    origin = source.get("checkpoint") or source.get("onnx")
    return Path(origin).stem if origin else artifact.path.name


def bench_batch(
    target: Target,
    artifact: Artifact,
    batch: int,
    data_yaml: Path | None,
    config: BenchConfig,
    progress: Progress | None = None,
) -> tuple[Result, Runner]:
    """Latency (model only, end to end) and throughput at one batch size, with the noise flags.

    Returns the Result (no mAP yet) and the loaded Runner, which can go on to measure mAP.
    """
    meta = artifact.metadata
    imgsz = int(meta["imgsz"])
    label = f"{meta['target']}/{meta['precision']} batch {batch}"
    task = progress.add_task(f"{label}: loading", total=None) if progress else None

    def step(what: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, description=f"{label}: {what}")

    def load_runner(streams: int = 1) -> Runner:
        options = RunOptions(threads=config.threads, streams=streams, batch=batch, device=config.device)
        return target.load(artifact, options)

    runner = load_runner()
    images = sample_images(data_yaml, config.split, batch)
    tensor = letterbox.to_tensor([letterbox.letterbox(image, imgsz)[0] for image in images])
    plan = latency.TimingPlan(config.warmup, config.iters, config.min_seconds)
    with noise.LoadMonitor() as load:
        step("model latency")
        samples = latency.model_latency(runner, tensor, plan)
        step("end-to-end latency")
        e2e_samples = latency.e2e_latency(runner, latency.encode_images(images), imgsz, plan)
        step(f"throughput, {config.streams} stream(s)")
        ips = throughput.measure_throughput(
            runner, tensor, config.streams, config.throughput_seconds, lambda: load_runner(config.streams)
        )
    flags = load.flags()
    flags += [f for f in (noise.spread_flag("model", samples), noise.spread_flag("e2e", e2e_samples)) if f]
    step("done")
    if progress is not None and task is not None:
        progress.update(task, total=1, completed=1)
    result = Result(
        model=artifact.path.name,
        target=meta["target"],
        precision=runner.precision,
        requested_precision=meta["precision"],
        batch=batch,
        streams=config.streams,
        threads=config.threads,
        latency_ms=latency.latency_stats(samples),
        e2e_latency_ms=latency.latency_stats(e2e_samples),
        throughput_ips=ips,
        throughput=[{"batch": batch, "streams": config.streams, "ips": ips}],
        size_mb=engine_size_mb(artifact),
        params=meta.get("params"),
        gflops=meta.get("gflops"),
        device=fingerprint(config.device, config.threads),
        versions={**meta.get("versions", {}), **library_versions()},
        artifact_sha256=artifact.sha256,
        created_at=now_iso(),
        flags=flags,
        samples_ms=samples,
        e2e_samples_ms=e2e_samples,
        build_notes=build_notes(meta),
    )
    return result, runner


def build_notes(meta: dict[str, Any]) -> list[str]:
    """What the engine's build measured about itself: the INT8 check, the precision auto chose."""
    notes = []
    if meta.get("auto_precision"):
        notes.append(f"precision auto chose {meta['precision']}: {meta['auto_precision']['reason']}")
    if meta.get("accuracy_control") and "final" in meta["accuracy_control"]:
        notes.append(describe_check(meta["accuracy_control"]))
    return notes


def run(config: BenchConfig, ctx: StageContext) -> dict[str, Artifact]:
    engine = ctx.input("engine")
    engine.verify()  # a swapped engine file must not be measured under the old record
    data_yaml = ctx.settings.val if config.accuracy else None
    if config.accuracy and data_yaml is None:
        raise InputError("the bench section measures mAP, and the pipeline names no val data.yaml")
    with bench_progress() as progress:
        results = bench_artifact(engine.path, data_yaml, config, ctx.settings.model_name, progress)
    path = save_results(ctx.out_dir / RESULTS_FILE, results)
    append_results(results)
    return {"results": Artifact.from_path("results", path, count=len(results))}


def bench_progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(), "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
