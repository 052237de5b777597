"""Prune stage: structured pruning of a YOLOv8, YOLO11 or YOLO26 checkpoint to a fraction of its MACs.

The section is one config per method (`pipeline.pruning.config`), keyed on `method`. With data (a
data.yaml or a folder of images; no labels needed) the default is data-aware pruning: channels chosen by
what removing them costs the head's outputs, and every downstream convolution re-fitted to the unpruned
model, in a few geometric steps. Without data it falls back to magnitude pruning with Torch-Pruning's
scheduler, which costs far more accuracy (docs/pruning.md). The stage runs the method through the
`pipeline.pruning.pruner.Pruner` protocol.

`pipeline.pruning`'s methods import torch, so they are imported inside the functions that use them: the
CLI starts without torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core import progress
from core.artifacts import Artifact
from core.checkpoints import load_detection_model, save_checkpoint
from core.errors import InputError
from pipeline.pruning.config import PruneConfig, resolve
from pipeline.stages.base import RunSettings, StageContext
from pipeline.stages.checkpoint_accuracy import checkpoint_map, input_map, map_metadata

if TYPE_CHECKING:
    from pipeline.pruning.pruner import PruneReport

log = logging.getLogger(__name__)
PRUNED_FILE = "pruned.pt"


def prune_checkpoint(
    checkpoint: Path, out_path: Path, config: PruneConfig, *, imgsz: int, device: str, data: Path | None
):
    """Prune `checkpoint` as `config` says and write `out_path` atomically; returns the PruneReport."""
    from pipeline.pruning.data import check_classes, labelled_dataset
    from pipeline.pruning.pruner import PruneReport, measure, pruner_for

    model = load_detection_model(checkpoint)
    method = resolve(config, data, checkpoint)
    labels = labelled_dataset(data)
    if method.needs_labels and labels is None:
        raise InputError(
            "Taylor importance and fine-tuning steps need a labelled dataset (--data D.yaml)",
            path=data or checkpoint,
        )
    if labels is not None:
        check_classes(labels, model.model[-1].nc)
    if data is None:  # magnitude pruning: resolve refuses the data-aware method without data
        log.warning(
            "no calibration data: magnitude pruning without reconstruction, which loses far more mAP "
            "(docs/pruning.md); give --data D.yaml or an image folder"
        )
    model.to(_torch_device(device))
    unit, keep = method.goal
    params_before, gflops_before = measure(model, imgsz)
    extra = {"method": method.method, "goal": {unit: keep}, "protect_head": method.resolved_protect_head()}
    with progress.current().task("pruning", total=1.0) as task:
        model, record = pruner_for(method).prune(
            model,
            imgsz=imgsz,
            data=data,
            device=device,
            progress=lambda what, done: task.update(what, completed=done),
        )
    params_after, gflops_after = measure(model, imgsz)
    report = PruneReport(params_before, params_after, gflops_before, gflops_after, extra=extra | record)
    save_checkpoint(model, out_path, pruning=report.as_metadata())
    return report


def _torch_device(device: str):
    """Ultralytics' device selection, without the one-core-short CPU thread count it sets."""
    import torch
    from ultralytics.utils.torch_utils import select_device

    threads = torch.get_num_threads()
    selected = select_device(device, verbose=False)
    torch.set_num_threads(max(threads, os.cpu_count() or 1))
    return selected


def prune_measured(
    model: Artifact, out: Path, config: PruneConfig, settings: RunSettings
) -> tuple[Artifact, PruneReport]:
    """Prune `model` into `out` and measure its mAP50-95 before and after on the run's val split (none
    without one): the checkpoint the prune stage and `edgepipe prune` both make, and the report."""
    before = input_map(model, settings)
    data, imgsz = config.data or settings.data, config.imgsz or settings.imgsz
    report = prune_checkpoint(model.path, out, config, imgsz=imgsz, device=settings.device, data=data)
    accuracy = map_metadata(before, checkpoint_map(out, settings))
    return Artifact.from_path("checkpoint", out, **report.as_metadata(), **accuracy), report


def run(config: PruneConfig, ctx: StageContext) -> dict[str, Artifact]:
    pruned, _ = prune_measured(ctx.input("model"), ctx.out_dir / PRUNED_FILE, config, ctx.settings)
    return {"model": pruned}
