"""Prune stage: structured pruning of a YOLOv8, YOLO11 or YOLO26 checkpoint to a fraction of its MACs.

With data (a data.yaml or a folder of images; no labels needed) the default is data-aware pruning:
channels chosen by what removing them costs the head's outputs, and every downstream convolution
re-fitted to the unpruned model (`pipeline.pruning.schedule`), in a few geometric steps. Without data it
falls back to magnitude pruning with Torch-Pruning's scheduler, which costs far more accuracy
(docs/pruning.md). `finetune_epochs_per_step` adds fine-tuning after each magnitude step.

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core import progress
from core.artifacts import Artifact
from core.calibration import CalibrationSet
from core.checkpoints import load_detection_model, save_checkpoint
from core.errors import InputError
from core.letterbox import check_imgsz
from core.validation import reported_by_pydantic
from pipeline.stages.base import Section, StageContext
from pipeline.stages.checkpoint_accuracy import checkpoint_map, input_map, map_metadata

log = logging.getLogger(__name__)
PRUNED_FILE = "pruned.pt"
RECONSTRUCT_STEP = 0.9  # the default schedule removes at most a tenth of the MACs per step (measured best)
# The engines a latency goal is measured on (pipeline.pruning.engine_timing.ENGINES, which imports torch)
LatencyEngine = Literal["openvino/fp32", "openvino/bf16", "openvino/int8"]
SENSITIVITY_IMAGES = 32  # measured: 8 or 16 images make the allocation noisy (docs/pruning.md)


class PruneConfig(Section):
    method: Literal["auto", "reconstruct", "magnitude"] = Field(
        "auto",
        description="reconstruct: data-aware selection + layer-wise reconstruction (needs data); "
        "magnitude: weight-norm ranking only; auto: reconstruct when data is given",
    )
    macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the MACs to keep, e.g. 0.5 (default 0.5 unless params is set)",
    )
    params: float | None = Field(None, gt=0, lt=1, description="fraction of the parameters to keep instead")
    latency: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the unpruned model's latency (p50) on `latency_engine` to keep instead, "
        "e.g. 0.6: cuts are chosen by accuracy cost per millisecond a latency model measured on this "
        "machine predicts (docs/pruning.md), and the result is timed against the unpruned model",
    )
    latency_engine: LatencyEngine = Field(
        "openvino/bf16",
        description="the engine (target/precision) whose latency the latency goal and round_to: auto "
        "are measured on, at the pruning's input size",
    )
    latency_threads: int | None = Field(
        None, ge=1, description="inference threads the latency is measured with (default: the runtime's)"
    )
    latency_variants: int = Field(
        12, ge=3, description="random width variants timed to fit the latency model (a quarter held apart)"
    )
    importance: Literal["l1", "l2", "taylor", "bn-scale"] = Field(
        "l2", description="channel importance: weight l1/l2 norm, first-order Taylor (needs data), BN scale"
    )
    global_pruning: bool = Field(
        True, description="rank channels across all layers (global) instead of pruning each layer alike"
    )
    round_to: int | Literal["auto"] | None = Field(
        8,
        description="keep channel counts multiples of this; auto: the channel block the latency model "
        "finds the engine's kernels prefer (measured on latency_engine)",
    )
    max_layer_ratio: float = Field(
        0.5, gt=0, lt=1, description="largest fraction of any one layer's channels that may be removed"
    )
    min_channels: int = Field(
        32, ge=0, description="layers this narrow keep every channel; wider ones never drop below it"
    )
    protected_layers: list[int] = Field(
        [0, 1], description="indices in model.model never pruned (default: the stem convolutions)"
    )
    protect_head: bool | None = Field(
        None,
        description="keep the width of the Detect convs that feed the final box/class convs (default: "
        "for magnitude pruning only; the reconstruction re-fits the final convs, and freeing the head "
        "measured better)",
    )
    isomorphic: bool = Field(
        False, description="rank channels only against groups of the same structure (isomorphic pruning)"
    )
    steps: int | None = Field(
        None,
        ge=1,
        description="prune in this many geometric steps (default: 1 for magnitude; for reconstruct, "
        "enough steps that none removes more than a tenth of the MACs)",
    )
    calib_images: int = Field(
        128, ge=8, description="calibration images that channel costs and the reconstruction are measured on"
    )
    sensitivity_images: int = Field(
        SENSITIVITY_IMAGES,
        ge=1,
        description="of the calibration images, how many each channel group's cost to the head's outputs "
        "is measured on (at half the input size; at most calib_images); fewer make the allocation noisy",
    )
    finetune_epochs_per_step: int = Field(
        0, ge=0, description="fine-tuning epochs after each pruning step (needs data; 0: none)"
    )
    bn_batches: int = Field(
        8, ge=0, description="batches of training images to re-estimate BatchNorm statistics with (0: skip)"
    )
    batch: int = Field(16, ge=1, description="batch size for Taylor gradients, BatchNorm and fine-tuning")
    imgsz: int | None = Field(
        None,
        description="input size of the data-aware steps (default: the run's); `edgepipe search` prunes "
        "once at its largest size and reuses the model at every size",
    )
    data: Path | None = Field(
        None,
        description="data.yaml (its train split) or a folder of images for the data-aware steps "
        "(default: the run's data); labels are used only by Taylor importance and fine-tuning",
    )

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_stride(cls, value: int | None) -> int | None:
        with reported_by_pydantic():
            return None if value is None else check_imgsz(value)

    @field_validator("round_to")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("round_to is a positive channel count or 'auto'")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        if sum(goal is not None for goal in (self.macs, self.params, self.latency)) > 1:
            raise ValueError("set one of macs, params and latency")
        return self

    @property
    def measures_latency(self) -> bool:
        """Whether the pruning fits a latency model: a latency goal or round_to: auto."""
        return self.latency is not None or self.round_to == "auto"

    def resolved_method(self, data: Path | None) -> str:
        """'reconstruct' or 'magnitude': auto picks reconstruct whenever calibration data is given."""
        if self.method == "auto":
            return "reconstruct" if data is not None else "magnitude"
        return self.method

    def resolved_protect_head(self, method: str) -> bool:
        """Whether the convs feeding Detect's final convs keep their width (auto: magnitude only)."""
        return self.protect_head if self.protect_head is not None else method == "magnitude"

    @property
    def target(self) -> tuple[str, float]:
        if self.latency is not None:
            return "latency", self.latency
        return ("params", self.params) if self.params is not None else ("macs", self.macs or 0.5)


def prune_checkpoint(
    checkpoint: Path, out_path: Path, config: PruneConfig, *, imgsz: int, device: str, data: Path | None
):
    """Prune `checkpoint` as `config` says and write `out_path` atomically; returns the PruneReport."""
    from pipeline.pruning import PruneReport, measure
    from pipeline.pruning.data import check_classes

    model = load_detection_model(checkpoint)
    method = config.resolved_method(data)
    labels = labelled_dataset(data)
    needs_labels = method == "magnitude" and (
        config.importance == "taylor" or config.finetune_epochs_per_step > 0
    )
    if needs_labels and labels is None:
        raise InputError(
            "Taylor importance and fine-tuning steps need a labelled dataset (--data D.yaml)",
            path=data or checkpoint,
        )
    if labels is not None:
        check_classes(labels, model.model[-1].nc)
    model.to(_torch_device(device))
    unit, keep = config.target
    params_before, gflops_before = measure(model, imgsz)
    extra: dict = {
        "method": method,
        "target": {unit: keep},
        "protect_head": config.resolved_protect_head(method),
    }
    if method == "magnitude" and config.measures_latency:
        raise InputError(
            "a latency goal and round_to: auto need data-aware pruning: give --data D.yaml or an image "
            f"folder (method {config.method!r})",
            path=checkpoint,
        )
    if method == "reconstruct":
        if data is None:
            raise InputError(
                "method 'reconstruct' needs calibration images (--data D.yaml or an image folder)"
            )
        outcome, steps, calibration, latency, round_to = _prune_reconstruct(model, data, config, imgsz)
        extra |= {"steps": steps, "calibration": calibration, "kept_features": outcome.kept_features(model)}
        extra |= {"round_to": round_to} | ({"latency": latency} if latency else {})
    else:
        log.warning(
            "no calibration data: magnitude pruning without reconstruction, which loses far more mAP "
            "(docs/pruning.md); give --data D.yaml or an image folder"
        )
        model, magnitude = _prune_magnitude(model, data, config, imgsz, device)
        extra |= {"importance": config.importance, "steps": config.steps or 1}
        extra["bn_batches"] = magnitude.bn_batches
    params_after, gflops_after = measure(model, imgsz)
    report = PruneReport(params_before, params_after, gflops_before, gflops_after, extra=extra)
    save_checkpoint(model, out_path, pruning=report.as_metadata())
    return report


def _prune_reconstruct(model, data: Path, config: PruneConfig, imgsz: int):
    """Data-aware selection and layer-wise reconstruction (pipeline.pruning.schedule), to a MACs,
    parameter or latency goal; with a latency model, the result is timed against the unpruned model."""
    import torch

    from pipeline.modules import split_c2f
    from pipeline.pruning.core import ignored_layers
    from pipeline.pruning.engine_timing import check_latency
    from pipeline.pruning.goals import CountGoal, Goal, LatencyGoal
    from pipeline.pruning.latency import conv_widths
    from pipeline.pruning.schedule import Guards, prune_and_reconstruct

    calibration = calibration_set(data, imgsz, config.calib_images)
    device = next(model.parameters()).device
    batches = [torch.from_numpy(b).to(device) for b in calibration.batches(8)]
    unit, keep = config.target
    steps = config.steps or max(1, math.ceil(math.log(keep) / math.log(RECONSTRUCT_STEP)))
    split_c2f(model)
    ignored = ignored_layers(model, config.protected_layers, config.resolved_protect_head("reconstruct"))
    timing_images = list(calibration.batches(1))[:8]
    record: dict = {}
    with progress.current().task("pruning", total=1.0) as task:

        def report(what: str, done: float) -> None:
            task.update(what, completed=done)

        latency_model = None
        if config.measures_latency:
            latency_model = _latency_model(model, ignored, timing_images, config, imgsz, report)
            record = {"model": latency_model.record()}
        goal: Goal = (
            LatencyGoal(latency_model, {m: n for n, m in model.named_modules()})
            if unit == "latency" and latency_model is not None
            else CountGoal(unit, imgsz)
        )
        round_to = _round_to(config.round_to, latency_model.block if latency_model else None, unit)
        unpruned = deepcopy(model) if latency_model is not None else None
        outcome = prune_and_reconstruct(
            model,
            ignored,
            batches,
            keep,
            Guards(config.max_layer_ratio, config.min_channels, round_to),
            goal=goal,
            steps=steps,
            sensitivity_images=config.sensitivity_images,
            progress=report,
        )
        if unpruned is not None and latency_model is not None:
            report(f"timing the pruned model against the unpruned one on {config.latency_engine}", 0.0)
            check = check_latency(
                unpruned,
                model,
                timing_images,
                engine=config.latency_engine,
                imgsz=imgsz,
                threads=config.latency_threads,
            )
            predicted = latency_model.predict(conv_widths(model)) / latency_model.predict(
                conv_widths(unpruned)
            )
            record |= {"goal": config.latency, "predicted": round(predicted, 4), **check.record()}
    return outcome, steps, calibration.record(), record, round_to


def _round_to(configured: int | str | None, block: int | None, unit: str) -> int:
    """The channel step of the cuts: auto is the latency model's block. A latency goal steps by whole
    blocks: a cut inside a block saves no time, so a greedy cut by time per accuracy would never take it
    (round_to 8 on a kernel with 16-channel blocks stalled a 0.8 goal at 0.96)."""
    if configured == "auto":
        return block or 8
    count = int(configured or 1)
    return math.lcm(count, block) if unit == "latency" and block else count


def _latency_model(model, ignored, images, config: PruneConfig, imgsz: int, report):
    """The latency model of `model` on `config.latency_engine`, fitted on timed width variants."""
    from pipeline.pruning.latency import fit, measure_variants

    timings = measure_variants(
        model,
        ignored,
        images,
        engine=config.latency_engine,
        imgsz=imgsz,
        threads=config.latency_threads,
        variants=config.latency_variants,
        guards=(config.max_layer_ratio, config.min_channels),
        progress=lambda done: report(f"timing width variants on {config.latency_engine}", done),
    )
    return fit(timings, config.latency_engine, imgsz, config.latency_threads)


def labelled_dataset(data: Path | None) -> Path | None:
    """`data` when it is a data.yaml (labels available), None for an image folder or no data."""
    return data if data is not None and data.suffix in {".yaml", ".yml"} else None


def calibration_set(data: Path, imgsz: int, size: int):
    """The seeded calibration sample of a data.yaml's train split or of an image folder."""
    from pipeline.pruning.trainset import unlabelled_images

    if data.is_dir():
        images = unlabelled_images(data)
        return CalibrationSet.from_files(sample(images, size), imgsz, str(data))
    return CalibrationSet.from_dataset(data, imgsz, size=size)


def sample(images: list[Path], size: int, seed: int = 0) -> list[Path]:
    return images if len(images) <= size else sorted(random.Random(seed).sample(images, size))


def _prune_magnitude(model, data: Path | None, config: PruneConfig, imgsz: int, device: str):
    """Torch-Pruning's scheduler with a weight-norm (or Taylor / BN-scale) ranking, in `steps` steps.

    Returns the model (a fine-tuning step replaces it) and the last step's report.
    """

    from pipeline.pruning import PruneOptions, prune_model
    from pipeline.pruning.data import train_batches

    options = PruneOptions(
        importance=config.importance,
        global_pruning=config.global_pruning,
        round_to=config.round_to if isinstance(config.round_to, int) else None,
        max_layer_ratio=config.max_layer_ratio,
        min_channels=config.min_channels,
        protected_layers=tuple(config.protected_layers),
        protect_head=config.resolved_protect_head("magnitude"),
        isomorphic=config.isomorphic,
        imgsz=imgsz,
    )
    labels = labelled_dataset(data)

    def batches(count: int):
        if labels is None or not count:
            return None
        return lambda: train_batches(labels, imgsz, config.batch, count)

    unit, keep = config.target
    steps = config.steps or 1
    before = count_of(model, unit, imgsz)
    for step in range(1, steps + 1):
        with progress.current().task(f"pruning step {step}/{steps}", total=1.0) as task:
            now = count_of(model, unit, imgsz)
            report = prune_model(
                model,
                options,
                **{unit: keep ** (step / steps) * before / now},
                gradient_batches=batches(4),
                bn_batches=batches(config.bn_batches),
                progress=_completed(task),
            )
            if config.finetune_epochs_per_step and labels is not None:
                task.update(f"fine-tuning step {step}/{steps}")
                model = _finetune_step(model, labels, config, imgsz, device, step)
    return model, report


def _completed(task: progress.Task) -> Callable[[float], None]:
    """A fraction-done callback (what pipeline.pruning reports) that moves `task` there."""
    return lambda done: task.update(completed=done)


def count_of(model, unit: str, imgsz: int) -> float:
    from pipeline.pruning import measure

    params, gflops = measure(model, imgsz)
    return params if unit == "params" else gflops


def _finetune_step(model, data: Path, config: PruneConfig, imgsz: int, device: str, step: int):
    from pipeline.pruning.trainer import train

    with tempfile.TemporaryDirectory(prefix="edgepipe-prune-ft-") as tmp:
        step_ckpt = save_checkpoint(model, Path(tmp) / f"step{step}.pt")
        best = train(
            step_ckpt,
            data,
            Path(tmp) / "best.pt",
            run_dir=Path(tmp) / "run",
            epochs=config.finetune_epochs_per_step,
            imgsz=imgsz,
            batch=config.batch,
            device=device,
        )
        return load_detection_model(best).to(_torch_device(device))


def _torch_device(device: str):
    """Ultralytics' device selection, without the one-core-short CPU thread count it sets."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    threads = torch.get_num_threads()
    selected = select_device(device, verbose=False)
    torch.set_num_threads(max(threads, os.cpu_count() or 1))
    return selected


def run(config: PruneConfig, ctx: StageContext) -> dict[str, Artifact]:
    checkpoint = ctx.input("model").path
    data = config.data or ctx.settings.data
    out = ctx.out_dir / PRUNED_FILE
    imgsz = config.imgsz or ctx.settings.imgsz
    before = input_map(ctx.input("model"), ctx.settings)
    report = prune_checkpoint(checkpoint, out, config, imgsz=imgsz, device=ctx.settings.device, data=data)
    accuracy = map_metadata(before, checkpoint_map(out, ctx.settings))
    return {"model": Artifact.from_path("checkpoint", out, **report.as_metadata(), **accuracy)}
