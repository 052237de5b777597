"""`edgepipe finetune`: fine-tune a (pruned) checkpoint, optionally distilling from a teacher."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from core.defaults import DEFAULT_IMGSZ
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, config_from_options, default, device_option, option
from pipeline.stages.finetune import FINETUNED_FILE, RUN_DIR, FinetuneConfig, finetune


def command(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="checkpoint to fine-tune (pruned or not), or a model YAML to train from scratch"
        ),
    ],
    data: Annotated[Path, typer.Option(help="dataset YAML with train and val splits")],
    epochs: Annotated[int, option(FinetuneConfig, "epochs")] = default(FinetuneConfig, "epochs"),
    output: Annotated[
        Path, typer.Option("-o", "--output", help="checkpoint to write (the epoch `--checkpoint` keeps)")
    ] = Path(FINETUNED_FILE),
    imgsz: Annotated[int, typer.Option(help="training image size")] = DEFAULT_IMGSZ,
    batch: Annotated[int, option(FinetuneConfig, "batch")] = default(FinetuneConfig, "batch"),
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    lr0: Annotated[float | None, option(FinetuneConfig, "lr0")] = default(FinetuneConfig, "lr0"),
    optimizer: Annotated[str, option(FinetuneConfig, "optimizer")] = default(FinetuneConfig, "optimizer"),
    patience: Annotated[int, option(FinetuneConfig, "patience")] = default(FinetuneConfig, "patience"),
    workers: Annotated[int, option(FinetuneConfig, "workers")] = default(FinetuneConfig, "workers"),
    amp: Annotated[bool, option(FinetuneConfig, "amp", "--amp/--fp32")] = default(FinetuneConfig, "amp"),
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="unpruned checkpoint to distill from: soft-target BCE on class scores (Hinton et al. 2015) "
            "+ Localization Distillation on DFL boxes (Zheng et al., CVPR 2022)"
        ),
    ] = None,
    distill_weight: Annotated[float, option(FinetuneConfig, "distill_weight")] = default(
        FinetuneConfig, "distill_weight"
    ),
    feature_weight: Annotated[float, option(FinetuneConfig, "feature_weight")] = default(
        FinetuneConfig, "feature_weight"
    ),
    label_weight: Annotated[float, option(FinetuneConfig, "label_weight")] = default(
        FinetuneConfig, "label_weight"
    ),
    unlabelled: Annotated[Path | None, option(FinetuneConfig, "unlabelled")] = default(
        FinetuneConfig, "unlabelled"
    ),
    checkpoint: Annotated[str, option(FinetuneConfig, "checkpoint")] = default(FinetuneConfig, "checkpoint"),
    holdout: Annotated[float, option(FinetuneConfig, "holdout")] = default(FinetuneConfig, "holdout"),
    threads: Annotated[int | None, option(FinetuneConfig, "threads")] = default(FinetuneConfig, "threads"),
    freeze_bn: Annotated[bool, option(FinetuneConfig, "freeze_bn", "--freeze-bn/--train-bn")] = default(
        FinetuneConfig, "freeze_bn"
    ),
    run_dir: Annotated[
        Path | None,
        typer.Option(help="keep Ultralytics' run (results.csv, last.pt) here; default: a temp dir"),
    ] = None,
) -> None:
    """Fine-tune a (pruned) YOLOv8 checkpoint with Ultralytics' trainer, keeping its architecture."""
    device = device_option(device, "finetune")
    config = config_from_options(
        FinetuneConfig,
        "finetune",
        epochs=epochs,
        batch=batch,
        lr0=lr0,
        optimizer=optimizer,
        patience=patience,
        workers=workers,
        amp=amp,
        distill_weight=distill_weight,
        feature_weight=feature_weight,
        label_weight=label_weight,
        unlabelled=unlabelled,
        checkpoint=checkpoint,
        holdout=holdout,
        threads=threads,
        freeze_bn=freeze_bn,
    )
    with tempfile.TemporaryDirectory(prefix="edgepipe-finetune-") as tmp:
        path = finetune(
            model,
            data,
            output,
            config,
            imgsz=imgsz,
            device=device,
            run_dir=run_dir or Path(tmp) / RUN_DIR,
            teacher=teacher,
        )
    console.print(f"wrote {path}")
