"""`edgepipe export`: a checkpoint to a checked ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.artifacts import refuse_overwrite, sha256_file
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.letterbox import check_imgsz
from pipeline.cli.console import console
from pipeline.cli.options import KeyOptions, Spelling, config_options, renamed
from pipeline.stages.export import ExportConfig, export_checked, parity_table

# The parity tolerances' first spellings, kept beside the keys' own
SPELLINGS = {
    "parity_tolerance": Spelling(("--parity-tolerance", "--tolerance")),
    "parity_box_tolerance": Spelling(("--parity-box-tolerance", "--box-tolerance")),
}


@config_options(ExportConfig, command="export", spellings=SPELLINGS)
def command(
    *,
    model: Annotated[Path, typer.Option("--model", help="Ultralytics .pt checkpoint to export")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write")] = Path("model.onnx"),
    imgsz: Annotated[int, typer.Option(help="square input size in pixels")] = DEFAULT_IMGSZ,
    options: KeyOptions[ExportConfig],
    val: Annotated[
        Path | None, typer.Option(help="data.yaml whose val images the parity check uses (default: noise)")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", hidden=True, help="deprecated: --val")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing ONNX file")] = False,
) -> None:
    """Export a checkpoint to ONNX and check it against PyTorch."""
    refuse_overwrite(output, force)
    try:
        check_imgsz(imgsz)
    except InputError as exc:
        raise InputError(
            f"--imgsz {exc}", hint=f"use {DEFAULT_IMGSZ}, 320 or another multiple of 32"
        ) from None
    config = options.build()
    val = renamed(val, data, command="export", old_name="--data", new_name="--val")
    path, parity = export_checked(model, output, imgsz, config, val)
    console.print(parity_table(parity))
    typer.echo(f"wrote {path} (sha256 {sha256_file(path)[:12]})")
