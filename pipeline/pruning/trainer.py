"""Ultralytics' DetectionTrainer, made to train the checkpoint's own (pruned) module.

The stock trainer rebuilds a model from the checkpoint's YAML and copies matching weights into it, which
silently turns a pruned model back into the full-width one. `get_model` here returns the loaded module
itself, so augmentation, EMA, AMP, validation and checkpointing all act on the pruned architecture. A model
YAML (e.g. `yolov8n.yaml`) still trains from scratch, with the class count taken from the dataset.

Mixed precision (`amp`) is fp16 on CUDA, as Ultralytics does it, and bf16 on CPUs with bf16 units
(AVX512-BF16, AMX), which Ultralytics leaves in fp32: 1.4x faster epochs on a Zen 4 (docs/pruning.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from ultralytics.models.yolo.detect import DetectionTrainer

from core.artifacts import write_atomic
from core.defaults import DEFAULT_IMGSZ
from pipeline.pruning.distill import DistillationLoss, FeatureTaps

log = logging.getLogger(__name__)


class PrunedDetectionTrainer(DetectionTrainer):
    """DetectionTrainer that keeps the given checkpoint's module; optional distillation from a teacher."""

    def __init__(
        self,
        overrides: dict,
        teacher: nn.Module | None = None,
        distill_weight: float = 1.0,
        threads: int | None = None,
        feature_weight: float = 0.0,
        kept_features: list[torch.Tensor | None] | None = None,
        freeze_bn: bool = False,
        label_weight: float = 1.0,
    ):
        super().__init__(overrides=overrides)
        self.freeze_bn = freeze_bn
        # Ultralytics' select_device() leaves torch one thread short of the CPU count (1 of 2 cores here),
        # and runs again in the validator: set the count back at every epoch and after training.
        self.threads = threads or os.cpu_count() or 1
        torch.set_num_threads(self.threads)
        if self.device.type == "cpu" and self.args.amp is True and cpu_runs_bf16_natively():
            self.args.amp = "bf16"  # Ultralytics' own spelling: bf16 autocast, no gradient scaler
            log.info("training in bf16 (this CPU has bf16 units; amp: false trains in fp32)")
        self.add_callback("on_train_epoch_start", lambda t: torch.set_num_threads(t.threads))
        self.add_callback("on_train_end", lambda t: torch.set_num_threads(t.threads))
        self.teacher = teacher
        self.distill_weight = distill_weight
        self.feature_weight = feature_weight
        self.kept_features = kept_features
        self.label_weight = label_weight
        if teacher is not None:
            # After the EMA copy is made, so neither the EMA nor any checkpoint ever holds the teacher.
            self.add_callback("on_pretrain_routine_end", _attach_distillation)

    def get_model(self, cfg=None, weights: nn.Module | None = None, verbose: bool = True):
        if isinstance(weights, nn.Module):
            if getattr(weights, "end2end", False):
                # Ultralytics validates (and so picks `best` and saves) an end-to-end head (YOLO26) on its
                # one-to-many branch with NMS unless told `nms=False`: keep the branch this model ships with.
                self.args.nms = False
            return weights  # the checkpoint's module, pruned shape and all
        return super().get_model(cfg=cfg, weights=weights, verbose=verbose)

    def _do_train(self):
        # Ultralytics' AMP self-test downloads a reference model (AMP stays on for CUDA devices instead),
        # and its autocast() refuses bf16 off CUDA.
        with _replaced("check_amp", lambda _: _on_cuda), _replaced("autocast", _with_cpu_bf16):
            super()._do_train()

    def _model_train(self):
        super()._model_train()
        if self.freeze_bn:
            # BatchNorm in eval mode: training starts from the very function pruning reconstructed (its
            # intercepts live in the running means), and 16-image mosaic batches do not re-estimate it.
            for module in self.model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()


def _attach_distillation(trainer: PrunedDetectionTrainer) -> None:
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(trainer.model)
    teacher = trainer.teacher.to(trainer.device)
    features = None
    if trainer.feature_weight > 0 and trainer.kept_features is not None:
        features = (FeatureTaps(model), FeatureTaps(teacher), trainer.kept_features)
    model.criterion = DistillationLoss(
        model.init_criterion(),
        teacher,
        trainer.distill_weight,
        features,
        trainer.feature_weight,
        trainer.label_weight,
    )


def cpu_runs_bf16_natively() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run in hardware. Elsewhere they are emulated, which buys no
    speed over fp32, so CPU training stays in fp32 there."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _on_cuda(model: nn.Module) -> bool:
    return next(model.parameters()).device.type == "cuda"


def _with_cpu_bf16(autocast: Callable) -> Callable:
    """Ultralytics' autocast(), with bf16 on the CPU run by torch's own CPU autocast."""

    def patched(enabled, device: str = "cuda"):
        if device == "cpu" and enabled is torch.bfloat16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return autocast(enabled, device)

    return patched


@contextlib.contextmanager
def _replaced(name: str, replacement: Callable[[Callable], Callable]) -> Iterator[None]:
    """Swap a function Ultralytics' trainer module imported by name, for the duration of the block."""
    import ultralytics.engine.trainer as engine

    original = getattr(engine, name)
    setattr(engine, name, replacement(original))
    try:
        yield
    finally:
        setattr(engine, name, original)


def train(
    model: Path,
    data: Path,
    out_path: Path,
    *,
    run_dir: Path,
    epochs: int,
    imgsz: int = DEFAULT_IMGSZ,
    batch: int = 16,
    device: str = "cpu",
    teacher: nn.Module | None = None,
    distill_weight: float = 1.0,
    threads: int | None = None,
    feature_weight: float = 0.0,
    kept_features: list[torch.Tensor | None] | None = None,
    freeze_bn: bool = False,
    label_weight: float = 1.0,
    keep: Literal["best", "last"] = "best",
    **train_args,
) -> Path:
    """Train `model` (a .pt checkpoint or a model YAML) on `data`; copy the `keep` checkpoint (best or
    last) to `out_path`. `label_weight` scales the labelled loss when distilling from `teacher`.

    The Ultralytics run directory (results.csv, plots, last.pt) is `run_dir`. The copy is atomic, and
    the checkpoint (EMA weights, pruned shape) loads with `ultralytics.YOLO(out_path)`.
    """
    overrides = {
        "model": str(model),
        "data": str(data),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "device": device,
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "verbose": False,
        **train_args,
    }
    trainer = PrunedDetectionTrainer(
        overrides,
        teacher=teacher,
        distill_weight=distill_weight,
        threads=threads,
        feature_weight=feature_weight,
        kept_features=kept_features,
        freeze_bn=freeze_bn,
        label_weight=label_weight,
    )
    trainer.train()
    chosen = trainer.best if keep == "best" and trainer.best.is_file() else trainer.last
    return write_atomic(out_path, chosen.read_bytes())
