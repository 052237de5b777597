"""Benchmark an engine directory: latency (model only and end to end), throughput and mAP per batch size.

Every backend goes through the same pre-process, NMS, metric and timing code in `benchmarks/`, so the
figures of two targets differ only by what the targets themselves do. What each backend actually ran
with (threads; OpenVINO's device, hint, streams and requests) is read back from it into the Result; the
engine's memory is measured in a fresh process (`benchmarks.memory`).
"""

from __future__ import annotations

import importlib
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from benchmarks import latency, memory, noise, preflight, throughput
from benchmarks.accuracy import NmsThresholds, evaluate, labelled_images
from benchmarks.device import fingerprint, library_versions
from benchmarks.history import append_results
from benchmarks.profile import PROFILE_RUNS, summarize_profile
from benchmarks.results import SOURCE_ROLE, Result, save_results
from core import letterbox, progress
from core.artifacts import Artifact, now_iso, sha256_path
from core.dataset import check_fits_model, load_dataset
from core.defaults import DEFAULT_IMGSZ
from core.engine_record import read_artifact_dir
from core.errors import InputError
from core.letterbox import load_image
from pipeline.stages.base import Section, StageContext
from targets.accuracy_bound import describe_check
from targets.base import BuildInputs, RunOptions, every_library, get_target

if TYPE_CHECKING:
    from core.runner import Runner
    from targets.base import Target

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
# A 4:3 photo, for --no-accuracy runs without a dataset.
SYNTHETIC_SHAPE = (DEFAULT_IMGSZ * 3 // 4, DEFAULT_IMGSZ, 3)
MEMORY_RUNS = 3
DEVICE_MEMORY = "GPU memory of the TensorRT execution context and its I/O buffers (engine weights excluded)"


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
    device: str = Field(
        "cpu", description="where to run: cpu, cuda, cuda:0 (torch, TensorRT); CPU, GPU, NPU, AUTO (OpenVINO)"
    )
    max_images: int | None = Field(
        None, ge=1, description="measure mAP on the split's first N images only (a partial mAP, labelled)"
    )
    fraction: float | None = Field(
        None, gt=0, le=1, description="measure mAP on this fraction of the split (a partial mAP, labelled)"
    )
    memory: bool = Field(True, description="measure the engine's peak memory in a fresh process (CPU)")
    profile: bool = Field(False, description="per-layer times from the backend's profiler (OpenVINO, ORT)")
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] | None = Field(
        None, description="OpenVINO performance hint; default LATENCY for latency, THROUGHPUT for img/s"
    )
    infer_requests: int | None = Field(
        None, ge=1, description="OpenVINO infer requests of the throughput run; default: the plugin's optimum"
    )
    cuda_graphs: bool = Field(False, description="TensorRT: replay each inference as a captured CUDA graph")
    wait_idle: float = Field(
        0, ge=0, description="before timing, wait up to this many seconds for idle CPUs (0: no wait)"
    )
    # The end-to-end loop's NMS, as the deployed detector runs it (Ultralytics `predict`'s defaults);
    # mAP is always measured with Ultralytics `val`'s (conf 0.001, multi-label).
    e2e_conf: float = Field(0.25, ge=0, le=1, description="end-to-end latency: NMS confidence threshold")
    e2e_iou: float = Field(0.7, gt=0, le=1, description="end-to-end latency: NMS IoU threshold")
    e2e_max_det: int = Field(300, ge=1, description="end-to-end latency: most detections kept per image")
    e2e_multi_label: bool = Field(False, description="end-to-end latency: a box may take several classes")
    e2e_agnostic: bool = Field(False, description="end-to-end latency: NMS across classes (class-agnostic)")

    @model_validator(mode="after")
    def _one_subset(self) -> BenchConfig:
        if self.max_images is not None and self.fraction is not None:
            raise ValueError("give max_images or fraction, not both")
        return self

    def e2e_thresholds(self) -> NmsThresholds:
        return NmsThresholds(
            self.e2e_conf, self.e2e_iou, self.e2e_max_det, self.e2e_multi_label, self.e2e_agnostic
        )

    def map_images(self, total: int) -> int | None:
        """How many of the split's `total` images measure mAP; None: all of them."""
        if self.max_images is not None:
            return min(self.max_images, total)
        if self.fraction is not None:
            return max(1, math.floor(total * self.fraction))
        return None


def check_artifact_exists(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(
            "artifact not found", path=path, hint="pass a directory from `edgepipe build`, a .pt or an .onnx"
        )
    return path


def resolve_artifact(path: Path, scratch: Path, imgsz: int = DEFAULT_IMGSZ) -> Artifact:
    """A build directory as is; a plain .pt built as torch/fp32, a plain .onnx as onnxruntime/fp32."""
    path = check_artifact_exists(path)
    if path.is_dir():
        meta = read_artifact_dir(path)
        if meta.get("kind") != "engine":
            raise InputError(f"artifact.json describes a {meta.get('kind')!r}, not an engine", path=path)
        return Artifact(kind="engine", path=path.resolve(), sha256=sha256_path(path), metadata=meta)
    plain_builds = {
        ".pt": ("torch", BuildInputs(onnx=None, checkpoint=path, imgsz=imgsz)),
        ".onnx": ("onnxruntime", BuildInputs(onnx=path)),
    }
    if path.suffix not in plain_builds:
        raise InputError("expected a build directory, a .pt checkpoint or an .onnx model", path=path)
    target_name, inputs = plain_builds[path.suffix]
    target = get_target(target_name)
    return target.build(inputs, "fp32", None, target.options_model(), scratch / "engine")


def sample_images(data_yaml: Path | None, split: str, count: int) -> tuple[list[np.ndarray], str]:
    """`count` BGR images for the timed loops (the split's first images, or a fixed synthetic one) and
    what they are, recorded so that `compare` only judges like with like."""
    if data_yaml is None:
        image = np.random.default_rng(0).integers(0, 256, SYNTHETIC_SHAPE, dtype=np.uint8)
        return [image] * count, f"synthetic {SYNTHETIC_SHAPE[0]}x{SYNTHETIC_SHAPE[1]}"
    dataset = load_dataset(data_yaml)
    paths = dataset.images(split)
    return [load_image(paths[i % len(paths)]) for i in range(count)], f"{dataset.name}/{split}"


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
        skipped = ", ".join(str(b) for b in requested if b != fixed)
        log.info(f"{artifact.path} runs batch {fixed} only; skipping {skipped}")
    return [fixed]


def bench_artifact(
    artifact_path: Path,
    data_yaml: Path | None,
    config: BenchConfig,
    model_name: str | None = None,
    imgsz: int = DEFAULT_IMGSZ,
) -> list[Result]:
    """One Result per batch size; mAP is measured once (it does not depend on the batch) and shared.

    `imgsz` applies to a plain .pt only; build directories and ONNX files carry their own.
    """
    if config.accuracy and data_yaml is None:
        raise InputError("mAP needs a dataset", hint="pass --val data.yaml, or --no-accuracy")
    map_images = None
    if config.accuracy and data_yaml is not None:
        images = labelled_images(Path(data_yaml), config.split)[0]  # fail on a dataset without labels now
        map_images = config.map_images(len(images))
    load = preflight.wait_for_idle(config.wait_idle, log.info)
    threads = preflight.plan_threads(load, config.threads)
    for warning in threads.warnings:
        log.warning(warning)
    config = config.model_copy(update={"threads": threads.threads})
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-") as scratch:
        artifact = resolve_artifact(Path(artifact_path), Path(scratch), imgsz)
        if config.accuracy and data_yaml is not None:
            check_fits_model(data_yaml, len(artifact.metadata["names"]), (config.split,))
        target = get_target(artifact.metadata["target"])
        name = model_name or default_model_name(artifact)
        measured_sha256 = artifact.sha256 if Path(artifact_path).is_dir() else sha256_path(artifact_path)
        results: list[Result] = []
        scores = None
        for batch in batch_sizes(artifact, config.batch):
            result, runner = bench_batch(target, artifact, batch, data_yaml, config)
            result.model, result.artifact_sha256 = name, measured_sha256
            used = result.threads or config.threads
            result.flags = threads.flags + preflight.thread_flags(used, load) + result.flags
            with runner:  # closed once this batch size is measured
                if config.accuracy and data_yaml is not None and scores is None:
                    size = int(artifact.metadata["imgsz"])
                    scores = evaluate(runner, data_yaml, size, config.split, batch, max_images=map_images)
            if scores is not None:
                result.map50_95, result.map50 = scores.map50_95, scores.map50
                result.dataset, result.letterbox = scores.dataset, scores.letterbox
                result.map_images, result.map_partial = scores.images, scores.images < scores.total_images
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
) -> tuple[Result, Runner]:
    """Latency (model only, end to end) and throughput at one batch size, with the noise flags.

    Returns the Result (no mAP yet) and the loaded Runner, which can go on to measure mAP.
    """
    meta = artifact.metadata
    label = f"{meta['target']}/{meta['precision']} batch {batch}"
    with progress.current().task(f"{label}: loading") as task:
        return measure_batch(
            target, artifact, batch, data_yaml, config, lambda what: task.update(f"{label}: {what}")
        )


def measure_batch(
    target: Target,
    artifact: Artifact,
    batch: int,
    data_yaml: Path | None,
    config: BenchConfig,
    step: Callable[[str], None],
) -> tuple[Result, Runner]:
    """`bench_batch`'s measurements, each announced to `step` as it starts."""
    meta = artifact.metadata
    imgsz = int(meta["imgsz"])

    def run_options(streams: int = 1) -> RunOptions:
        return RunOptions(
            threads=config.threads,
            streams=streams,
            batch=batch,
            device=config.device,
            performance_hint=config.performance_hint,
            infer_requests=config.infer_requests,
            cuda_graphs=config.cuda_graphs,
        )

    def load_runner(streams: int = 1) -> Runner:
        return target.load(artifact, run_options(streams))

    runner = load_runner()
    images, timing_images = sample_images(data_yaml, config.split, batch)
    tensor = letterbox.to_tensor([letterbox.letterbox(image, imgsz)[0] for image in images])
    plan = latency.TimingPlan(config.warmup, config.iters, config.min_seconds)
    with noise.LoadMonitor() as load:
        step("model latency")
        samples = latency.model_latency(runner, tensor, plan)
        step("end-to-end latency")
        thresholds = config.e2e_thresholds()
        e2e_samples = latency.e2e_latency(runner, latency.encode_images(images), imgsz, plan, thresholds)
        step(f"throughput, {config.streams} stream(s)")
        ips = throughput.measure_throughput(
            runner, tensor, config.streams, config.throughput_seconds, lambda: load_runner(config.streams)
        )
    flags = load.flags()
    flags += [f for f in (noise.spread_flag("model", samples), noise.spread_flag("e2e", e2e_samples)) if f]
    inconsistent = noise.consistency_flag(float(np.median(samples)), float(np.median(e2e_samples)))
    flags += [inconsistent] if inconsistent else []
    settings = runner.settings()
    gpu_split = settings.pop("gpu_split_ms", None)  # TensorRT's H2D / compute / D2H medians
    device_memory = settings.pop("device_memory_mb", None)  # TensorRT: context + I/O buffers
    profile = None
    if config.profile:
        step("per-layer profile")
        times = runner.layer_times(tensor, PROFILE_RUNS)
        profile = summarize_profile(times, PROFILE_RUNS) if times else None
    memory_mb, memory_method = device_memory, DEVICE_MEMORY if device_memory is not None else None
    if config.memory and not config.device.startswith("cuda"):
        step("memory, in a fresh process")
        memory_mb = memory.in_fresh_process(engine_memory_mb, artifact, run_options(), tensor.shape)
        memory_method = memory.METHOD
    result = Result(
        model=artifact.path.name,
        target=meta["target"],
        precision=runner.precision,
        requested_precision=meta["precision"],
        batch=batch,
        streams=config.streams,
        threads=settings.get("threads"),
        timing_images=timing_images,
        memory_mb=memory_mb,
        memory_method=memory_method,
        backend_settings=settings,
        profile=profile,
        gpu_split_ms=gpu_split,
        latency_ms=latency.latency_stats(samples),
        e2e_latency_ms=latency.latency_stats(e2e_samples),
        e2e_thresholds=asdict(thresholds),
        throughput_ips=ips,
        throughput=[{"batch": batch, "streams": config.streams, "ips": ips}],
        size_mb=engine_size_mb(artifact),
        params=meta.get("params"),
        gflops=meta.get("gflops"),
        device=fingerprint(config.device, config.threads),
        versions={**meta.get("versions", {}), **library_versions(every_library())},
        artifact_sha256=artifact.sha256,
        created_at=now_iso(),
        flags=flags,
        samples_ms=samples,
        e2e_samples_ms=e2e_samples,
        build_notes=build_notes(meta),
        imgsz=imgsz,
        family=meta.get("family"),
    )
    return result, runner


def engine_memory_mb(artifact: Artifact, options: RunOptions, shape: tuple[int, ...]) -> float:
    """Run in a fresh process (`memory.in_fresh_process`): the peak RSS that loading the engine and
    running it `MEMORY_RUNS` times adds once its runtime library is imported."""
    target = get_target(artifact.metadata["target"])

    def prepare() -> np.ndarray:
        # Imported before the memory baseline: the figure leaves out the runtime library's own code.
        for module in target.runtime_modules:
            importlib.import_module(module)
        return np.random.default_rng(0).random(shape, dtype=np.float32)

    def load_and_run(batch: np.ndarray) -> None:
        with target.load(artifact, options) as runner:
            for _ in range(MEMORY_RUNS):
                runner.infer(batch)

    return memory.added_peak_mb(prepare, load_and_run)


def build_notes(meta: dict[str, Any]) -> list[str]:
    """What the engine's build measured about itself: the INT8 check, the precision auto chose."""
    notes = []
    if meta.get("auto_precision"):
        notes.append(f"precision auto chose {meta['precision']}: {meta['auto_precision']['reason']}")
    if meta.get("accuracy_control") and "final" in meta["accuracy_control"]:
        notes.append(describe_check(meta["accuracy_control"]))
    return notes


def run(config: BenchConfig, ctx: StageContext) -> dict[str, Artifact]:
    return bench_engine(config, ctx, role=None)


def run_source(config: BenchConfig, ctx: StageContext) -> dict[str, Artifact]:
    """The bench of the run's unpruned model: its Results carry the role "source"."""
    return bench_engine(config, ctx, role=SOURCE_ROLE)


def bench_engine(config: BenchConfig, ctx: StageContext, role: str | None) -> dict[str, Artifact]:
    engine = ctx.input("engine")
    engine.verify()  # a swapped engine file must not be measured under the old record
    data_yaml = ctx.settings.val if config.accuracy else None
    if config.accuracy and data_yaml is None:
        raise InputError("the bench section measures mAP, and the pipeline names no val data.yaml")
    results = bench_artifact(engine.path, data_yaml, config, ctx.settings.model_name)
    for result in results:
        result.role = role
    path = save_results(ctx.out_dir / RESULTS_FILE, results)
    for history in ctx.settings.histories or (None,):
        append_results(results, history)
    return {"results": Artifact.from_path("results", path, count=len(results))}
