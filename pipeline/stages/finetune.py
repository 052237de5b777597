"""Fine-tune stage: Ultralytics training of the pruned module itself, optionally distilled from a teacher.

Distillation (`teacher`) adds logit distillation from the unpruned model to the detection loss: soft-target
BCE on the class scores (Hinton et al., 2015) plus a box term, Localization Distillation on the DFL box
distributions (Zheng et al., CVPR 2022) or, for YOLO26's directly regressed edges, their L1 distance; an
end-to-end head distils both its branches. See pipeline/pruning/distill.py. The term shows as `kd_loss` in
the progress line. The labelled loss and the optimizer are the ones Ultralytics' trainer picks for the
family (YOLO26: `E2ELoss`, and MuSGD for long runs with `optimizer: auto`).

`pipeline.pruning` imports torch, so it is imported inside the functions that use it: the CLI starts
without torch.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.artifacts import Artifact
from core.checkpoints import checkpoint_metadata, class_names, load_detection_model, ultralytics_copy
from core.dataset import load_dataset
from core.errors import InputError
from core.torch_devices import normalized_device
from pipeline.stages.base import Section, StageContext
from pipeline.stages.checkpoint_accuracy import checkpoint_map, input_map, map_metadata

log = logging.getLogger(__name__)
FINETUNED_FILE = "finetuned.pt"  # the kept checkpoint: the last epoch, or the best with `checkpoint: best`
RUN_DIR = "train"


class FinetuneConfig(Section):
    epochs: int = Field(10, ge=1, description="training epochs")
    batch: int = Field(16, ge=1, description="images per batch")
    lr0: float | None = Field(None, gt=0, description="initial learning rate (default: Ultralytics' choice)")
    optimizer: Literal["auto", "SGD", "MuSGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] = Field(
        "auto",
        description="optimizer; auto lets Ultralytics pick by the number of steps (AdamW for short runs, "
        "MuSGD beyond 10,000)",
    )
    patience: int = Field(100, ge=1, description="stop after this many epochs without improvement")
    workers: int = Field(4, ge=0, description="dataloader worker processes (CPU training uses 0)")
    amp: bool = Field(
        True,
        description="mixed precision: fp16 on CUDA, bf16 on CPUs with bf16 units (AVX512-BF16, AMX); "
        "false trains in fp32",
    )
    seed: int = Field(0, description="random seed")
    teacher: bool | Path = Field(
        False,
        description="distill from a teacher: true = the run's unpruned input model, or a checkpoint path",
    )
    distill_weight: float = Field(1.0, gt=0, description="weight of the distillation loss")
    label_weight: float = Field(
        0.0,
        ge=0,
        description="with a teacher, weight of the labelled detection loss (0: learn from the teacher's "
        "outputs alone, measured best where pruning kept most of the accuracy; 1 measured better where it "
        "lost most of it); without a teacher the labels are the whole loss",
    )
    feature_weight: float = Field(
        1.0,
        ge=0,
        description="weight of neck-feature (P3/P4/P5) distillation on the channels pruning kept (0: off)",
    )
    unlabelled: Path | None = Field(
        None,
        description="extra images, a folder or a data.yaml whose labels are ignored: the teacher "
        "pseudo-labels them and they are trained on with distillation (needs a teacher)",
    )
    checkpoint: Literal["last", "best"] = Field(
        "last",
        description="which epoch to keep: last (the final EMA weights; measured better: held-apart images "
        "of the split the model was trained on are ones it memorised) or best (by mAP on `holdout`)",
    )
    holdout: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="with checkpoint best: fraction of the labelled training images held apart to choose "
        "the epoch on (0: the dataset's val split, Ultralytics' own choice)",
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for training (default: every core)"
    )
    freeze_bn: bool = Field(
        True,
        description="keep BatchNorm statistics as the checkpoint has them (eval mode) while training; "
        "a model YAML trained from scratch always updates them",
    )
    device: str | None = Field(
        None, description="torch device: cpu, cuda or cuda:N (default: the run's device)"
    )

    @field_validator("device", mode="before")
    @classmethod
    def _torch_device(cls, value: str | int | None) -> str | None:
        return None if value is None else normalized_device(value)

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
    """Check the inputs, train, and write the kept checkpoint to `out_path` (atomically)."""
    from pipeline.pruning.trainer import train

    nc = _check_model(model)
    _check_data(data, nc)
    if config.unlabelled is not None and teacher is None:
        raise InputError("unlabelled images need a teacher to pseudo-label them", path=config.unlabelled)
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
        # Keeping the last epoch needs no per-epoch validation (Ultralytics still validates the last one).
        "val": config.checkpoint == "best",
    }
    if config.lr0 is not None:
        args["lr0"] = config.lr0
    train_data = _training_set(data, config, teacher_model, imgsz, run_dir.parent / "data")
    with tempfile.TemporaryDirectory(prefix="edgepipe-student-") as scratch:
        # Ultralytics' trainer unpickles its model fully: it gets a copy re-saved from the restricted load.
        student = ultralytics_copy(model, Path(scratch) / model.name) if model.suffix == ".pt" else model
        return train(
            student,
            train_data,
            out_path,
            run_dir=run_dir,
            epochs=config.epochs,
            imgsz=imgsz,
            batch=config.batch,
            device=device,
            teacher=teacher_model,
            distill_weight=config.distill_weight,
            label_weight=config.label_weight,
            threads=config.threads,
            feature_weight=config.feature_weight if teacher_model is not None else 0.0,
            kept_features=_kept_features(model, teacher_model),
            freeze_bn=config.freeze_bn and nc is not None,
            keep=config.checkpoint,
            **args,
        )


def _training_set(data: Path, config: FinetuneConfig, teacher, imgsz: int, out_dir: Path) -> Path:
    """The data.yaml Ultralytics trains on: labelled images minus the held-apart part (checkpoint best),
    plus pseudo-labelled extras; the held-apart part is its val split. Returns `data` itself when neither
    applies."""
    from pipeline.pruning.trainset import pseudo_label, split_held_apart, unlabelled_images, write_data_yaml

    holdout = config.holdout if config.checkpoint == "best" else 0.0
    if holdout == 0 and config.unlabelled is None:
        return data
    dataset = load_dataset(data)
    train, held = split_held_apart(dataset.images("train"), holdout, config.seed)
    if not held:
        held = dataset.images("val")
    if config.unlabelled is not None:
        held_files = {p.resolve() for p in held}  # never train on a held-apart image, labelled or not
        extra = [p for p in unlabelled_images(config.unlabelled) if p.resolve() not in held_files]
        train = train + pseudo_label(teacher, extra, out_dir / "pseudo", imgsz)
    names = dataset.names if teacher is None else class_names(teacher)
    return write_data_yaml(out_dir, names, train, held)


def _kept_features(student: Path, teacher):
    """Which teacher channels the student's P3/P4/P5 features kept (recorded by pruning), if known."""
    import torch

    if teacher is None or student.suffix != ".pt":
        return None
    kept = checkpoint_metadata(student).get("pruning", {}).get("kept_features")
    if kept is not None:
        return [torch.tensor(k) for k in kept]
    widths = _feature_widths(load_detection_model(student))
    if widths == _feature_widths(teacher):
        return [None] * len(widths)  # unpruned widths: the features line up as they are
    log.warning("the student's pruning record has no kept channels: no feature distillation")
    return None


def _feature_widths(model) -> list[int]:
    head = model.model[-1]
    return [conv.in_channels for conv in (branch[0].conv for branch in head.cv2)]


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
    out = ctx.out_dir / FINETUNED_FILE
    model = ctx.input("model")
    before = input_map(model, ctx.settings)
    finetune(
        model.path,
        data,
        out,
        config,
        imgsz=ctx.settings.imgsz,
        device=config.device or ctx.settings.device,
        run_dir=ctx.out_dir / RUN_DIR,
        teacher=teacher,
    )
    accuracy = map_metadata(before, checkpoint_map(out, ctx.settings))
    facts = _facts(out, ctx.settings.imgsz, teacher)
    before_facts = _facts(model.path, ctx.settings.imgsz, None)
    size_before = {"params_before": before_facts["params"], "gflops_before": before_facts["gflops"]}
    return {"model": Artifact.from_path("checkpoint", out, **facts, **size_before, **accuracy)}


def _facts(checkpoint: Path, imgsz: int, teacher: Path | None) -> dict:
    from pipeline.pruning.pruner import measure

    params, gflops = measure(load_detection_model(checkpoint), imgsz)
    return {"params": params, "gflops": round(gflops, 3), "teacher": str(teacher) if teacher else None}
