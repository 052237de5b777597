"""Prune stage: structured pruning of a YOLOv8 checkpoint to a fraction of its MACs or parameters.

`steps` > 1 prunes in K geometric steps (each keeps the same fraction), optionally fine-tuning for
`finetune_epochs_per_step` epochs after each, the iterative prune-then-fine-tune schedule.

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from rich.progress import Progress, TaskID

from core.artifacts import Artifact
from core.checkpoints import load_detection_model, save_checkpoint
from core.errors import InputError
from pipeline.stages.base import Section, StageContext

PRUNED_FILE = "pruned.pt"


class PruneConfig(Section):
    macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the MACs to keep, e.g. 0.5 (default 0.5 unless params is set)",
    )
    params: float | None = Field(None, gt=0, lt=1, description="fraction of the parameters to keep instead")
    importance: Literal["l1", "l2", "taylor", "bn-scale"] = Field(
        "l2", description="channel importance: weight l1/l2 norm, first-order Taylor (needs data), BN scale"
    )
    global_pruning: bool = Field(
        True, description="rank channels across all layers (global) instead of pruning each layer alike"
    )
    round_to: int | None = Field(8, ge=1, description="keep channel counts multiples of this")
    max_layer_ratio: float = Field(
        0.5, gt=0, lt=1, description="largest fraction of any one layer's channels that may be removed"
    )
    min_channels: int = Field(
        32, ge=0, description="layers this narrow keep every channel; wider ones never drop below it"
    )
    protected_layers: list[int] = Field(
        [0, 1], description="indices in model.model never pruned (default: the stem convolutions)"
    )
    protect_head: bool = Field(
        True, description="keep the width of the Detect convs that feed the final box/class convs"
    )
    isomorphic: bool = Field(
        False, description="rank channels only against groups of the same structure (isomorphic pruning)"
    )
    steps: int = Field(1, ge=1, description="prune in this many steps to reach the target")
    finetune_epochs_per_step: int = Field(
        0, ge=0, description="fine-tuning epochs after each pruning step (needs data; 0: none)"
    )
    bn_batches: int = Field(
        8, ge=0, description="batches of training images to re-estimate BatchNorm statistics with (0: skip)"
    )
    batch: int = Field(16, ge=1, description="batch size for Taylor gradients, BatchNorm and fine-tuning")
    data: Path | None = Field(
        None, description="data.yaml for Taylor/BatchNorm/fine-tuning (default: run data)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        if self.macs is not None and self.params is not None:
            raise ValueError("set macs or params, not both")
        return self

    @property
    def target(self) -> tuple[str, float]:
        return ("params", self.params) if self.params is not None else ("macs", self.macs or 0.5)


def prune_checkpoint(
    checkpoint: Path, out_path: Path, config: PruneConfig, *, imgsz: int, device: str, data: Path | None
):
    """Prune `checkpoint` as `config` says and write `out_path` atomically; returns the PruneReport."""
    from pipeline.pruning import PruneOptions, measure, prune_model
    from pipeline.pruning.data import check_classes, train_batches

    model = load_detection_model(checkpoint)
    needs_data = config.importance == "taylor" or config.finetune_epochs_per_step > 0
    if data is None and needs_data:
        raise InputError("this prune configuration needs data (--data D.yaml)", path=checkpoint)
    if data is not None:
        check_classes(data, model.model[-1].nc)
    torch_device = _torch_device(device)
    model.to(torch_device)
    options = PruneOptions(
        importance=config.importance,
        global_pruning=config.global_pruning,
        round_to=config.round_to,
        max_layer_ratio=config.max_layer_ratio,
        min_channels=config.min_channels,
        protected_layers=tuple(config.protected_layers),
        protect_head=config.protect_head,
        isomorphic=config.isomorphic,
        imgsz=imgsz,
    )

    def batches(count: int):
        return (
            (lambda: train_batches(data, imgsz, config.batch, count)) if data is not None and count else None
        )

    unit, keep = config.target
    params_before, gflops_before = measure(model, imgsz)
    before = params_before if unit == "params" else gflops_before
    with Progress(transient=True) as progress:
        for step in range(1, config.steps + 1):
            task = progress.add_task(f"pruning step {step}/{config.steps}", total=1.0)
            now = count_of(model, unit, imgsz)
            report = prune_model(
                model,
                options,
                **{unit: keep ** (step / config.steps) * before / now},
                gradient_batches=batches(4),
                bn_batches=batches(config.bn_batches),
                progress=partial(_advance, progress, task),
            )
            if config.finetune_epochs_per_step and data is not None:
                progress.update(task, description=f"fine-tuning step {step}/{config.steps}")
                model = _finetune_step(model, data, config, imgsz, device, step)
    report.params_before, report.gflops_before = params_before, gflops_before
    report.params_after, report.gflops_after = measure(model, imgsz)
    report.extra = {"importance": config.importance, "target": {unit: keep}, "steps": config.steps}
    save_checkpoint(model, out_path, pruning=report.as_metadata())
    return report


def count_of(model, unit: str, imgsz: int) -> float:
    from pipeline.pruning import measure

    params, gflops = measure(model, imgsz)
    return params if unit == "params" else gflops


def _advance(progress: Progress, task: TaskID, done: float) -> None:
    progress.update(task, completed=done)


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
    from ultralytics.utils.torch_utils import select_device

    return select_device(device, verbose=False)


def run(config: PruneConfig, ctx: StageContext) -> dict[str, Artifact]:
    checkpoint = ctx.input("model").path
    data = config.data or ctx.settings.data
    out = ctx.out_dir / PRUNED_FILE
    report = prune_checkpoint(
        checkpoint, out, config, imgsz=ctx.settings.imgsz, device=ctx.settings.device, data=data
    )
    return {"model": Artifact.from_path("checkpoint", out, **report.as_metadata())}
