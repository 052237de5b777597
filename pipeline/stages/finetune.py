"""Fine-tune stage: Ultralytics training of the pruned module itself, optionally distilled from a teacher.

Distillation (`teacher`) adds logit distillation from the unpruned model to the detection loss: soft-target
BCE on the class scores (Hinton et al., 2015) plus Localization Distillation on the DFL box distributions
(Zheng et al., CVPR 2022); see pipeline/pruning/distill.py. The term shows as `kd_loss` in the progress line.

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from core.artifacts import Artifact
from core.checkpoints import load_detection_model
from core.dataset import load_dataset
from core.errors import InputError
from pipeline.stages.base import Section, StageContext

BEST_FILE = "best.pt"
RUN_DIR = "train"


class FinetuneConfig(Section):
    epochs: int = Field(10, ge=1, description="training epochs")
    batch: int = Field(16, ge=1, description="images per batch")
    lr0: float | None = Field(None, gt=0, description="initial learning rate (default: Ultralytics' choice)")
    optimizer: Literal["auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] = Field(
        "auto", description="optimizer; auto lets Ultralytics pick by dataset size"
    )
    patience: int = Field(100, ge=1, description="stop after this many epochs without improvement")
    workers: int = Field(4, ge=0, description="dataloader worker processes (CPU training uses 0)")
    amp: bool = Field(True, description="mixed precision on CUDA devices")
    seed: int = Field(0, description="random seed")
    teacher: bool | Path = Field(
        False,
        description="distill from a teacher: true = the run's unpruned input model, or a checkpoint path",
    )
    distill_weight: float = Field(1.0, gt=0, description="weight of the distillation loss")
    device: str | None = Field(None, description="torch device: cpu, 0, cuda:0 (default: the run's device)")
    data: Path | None = Field(None, description="data.yaml to train on (default: the run's data)")


def finetune(
    model: Path,
    data: Path,
    out_path: Path,
    config: FinetuneConfig,
    *,
    imgsz: int,
    device: str,
    run_dir: Path,
    teacher: Path | None = None,
) -> Path:
    """Check the inputs, train, and write the best checkpoint to `out_path` (atomically)."""
    from pipeline.pruning.trainer import train

    nc = _check_model(model)
    _check_data(data, nc)
    teacher_model = _load_teacher(teacher, model) if teacher is not None else None
    args = {
        "optimizer": config.optimizer,
        "patience": config.patience,
        "workers": config.workers,
        "amp": config.amp,
        "seed": config.seed,
        "plots": False,
        # Ultralytics warms bias learning rates down from 0.1 (meant for SGD from scratch; only its
        # optimizer=auto path turns that off): with Adam-type optimizers it wrecks a pretrained model.
        "warmup_bias_lr": 0.0,
    }
    if config.lr0 is not None:
        args["lr0"] = config.lr0
    return train(
        model,
        data,
        out_path,
        run_dir=run_dir,
        epochs=config.epochs,
        imgsz=imgsz,
        batch=config.batch,
        device=device,
        teacher=teacher_model,
        distill_weight=config.distill_weight,
        **args,
    )


def _check_model(model: Path) -> int | None:
    """The head's class count of a checkpoint; None for a model YAML (its nc comes from the dataset)."""
    if model.suffix in {".yaml", ".yml"}:
        return None
    return load_detection_model(model).model[-1].nc


def _check_data(data: Path, nc: int | None) -> None:
    from pipeline.pruning.data import check_classes

    dataset = load_dataset(data)
    dataset.images("train")
    dataset.images("val")
    if nc is not None:
        check_classes(data, nc)


def _load_teacher(teacher: Path, student: Path):
    model = load_detection_model(teacher)
    head = model.model[-1]
    if student.suffix == ".pt":
        student_head = load_detection_model(student).model[-1]
        if (head.nc, head.reg_max, head.nl) != (student_head.nc, student_head.reg_max, student_head.nl):
            raise InputError(
                f"teacher head (nc={head.nc}, reg_max={head.reg_max}, levels={head.nl}) does not match the "
                f"student's (nc={student_head.nc}, reg_max={student_head.reg_max}, levels={student_head.nl})",
                path=teacher,
                hint="distill from the model the student was pruned from",
            )
    return model


def run(config: FinetuneConfig, ctx: StageContext) -> dict[str, Artifact]:
    data = config.data or ctx.settings.data
    if data is None:
        raise InputError("fine-tuning needs a dataset: set `data` in the config")
    teacher = None
    if isinstance(config.teacher, Path):
        teacher = config.teacher
    elif config.teacher:
        teacher = ctx.input("teacher").path
    out = ctx.out_dir / BEST_FILE
    finetune(
        ctx.input("model").path,
        data,
        out,
        config,
        imgsz=ctx.settings.imgsz,
        device=config.device or ctx.settings.device,
        run_dir=ctx.out_dir / RUN_DIR,
        teacher=teacher,
    )
    return {"model": Artifact.from_path("checkpoint", out, **_facts(out, ctx.settings.imgsz, teacher))}


def _facts(checkpoint: Path, imgsz: int, teacher: Path | None) -> dict:
    from pipeline.pruning import measure

    params, gflops = measure(load_detection_model(checkpoint), imgsz)
    return {"params": params, "gflops": round(gflops, 3), "teacher": str(teacher) if teacher else None}
