"""`edgepipe finetune`: fine-tune a (pruned) checkpoint, optionally distilling from a teacher."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from core.defaults import DEFAULT_IMGSZ
from pipeline.cli.console import console
from pipeline.cli.options import DEVICE_HELP, KeyOptions, Spelling, config_options, device_option
from pipeline.stages.finetune import FINETUNED_FILE, RUN_DIR, FinetuneConfig, finetune

TEACHER_HELP = (
    "unpruned checkpoint to distill from: soft-target BCE on class scores (Hinton et al. 2015) "
    "+ Localization Distillation on DFL boxes (Zheng et al., CVPR 2022), or L1 on YOLO26's box edges"
)


# The run's dataset and device, and a teacher checkpoint (a config may say `true`: the run's input model)
OWN = {"data": "data", "device": "device", "teacher": "teacher"}
SPELLINGS = {"amp": Spelling(("--amp/--fp32",)), "freeze_bn": Spelling(("--freeze-bn/--train-bn",))}


@config_options(FinetuneConfig, command="finetune", own=OWN, spellings=SPELLINGS)
def command(
    *,
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="checkpoint to fine-tune (pruned or not), or a model YAML to train from scratch"
        ),
    ],
    data: Annotated[Path, typer.Option(help="dataset YAML with train and val splits")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="checkpoint to write (the epoch `--checkpoint` keeps)")
    ] = Path(FINETUNED_FILE),
    imgsz: Annotated[int, typer.Option(help="training image size")] = DEFAULT_IMGSZ,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    teacher: Annotated[Path | None, typer.Option(help=TEACHER_HELP)] = None,
    options: KeyOptions[FinetuneConfig],
    run_dir: Annotated[
        Path | None,
        typer.Option(help="keep Ultralytics' run (results.csv, last.pt) here; default: a temp dir"),
    ] = None,
) -> None:
    """Fine-tune a (pruned) YOLOv8, YOLO11 or YOLO26 checkpoint with Ultralytics' trainer, keeping its
    architecture."""
    device = device_option(device, "finetune")
    config = options.build()
    with tempfile.TemporaryDirectory(prefix="edgepipe-finetune-") as tmp:
        run = run_dir or Path(tmp) / RUN_DIR
        path = finetune(model, data, output, config, imgsz=imgsz, device=device, run_dir=run, teacher=teacher)
    console.print(f"wrote {path}")
