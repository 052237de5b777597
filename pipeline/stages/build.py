"""Build a device-specific engine directory from the exported ONNX (or the checkpoint, for torch).

The target does the backend work; this stage checks the request up front (known target, supported
precision, library installed, calibration data for INT8), draws the shared calibration set and builds
into a temporary directory that becomes the engine directory only when complete.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field, ValidationError, model_validator

from core.artifacts import Artifact, atomic_output, sha256_path
from core.calibration import CalibrationSet
from core.engine_record import read_artifact_dir
from core.errors import BackendUnavailable, CheckFailed, InputError
from core.validation import validation_error
from pipeline.stages.base import Section, StageContext
from targets.accuracy_int8 import steps_table
from targets.base import BuildInputs, check_precision, get_target
from targets.engine_dir import onnx_facts
from targets.options import check_options


class BuildEntry(Section):
    target: str = Field(description="backend: torch, onnxruntime, openvino or tensorrt")
    precision: str = Field("fp32", description="fp32, bf16, fp16 or int8, as the target supports")
    calib_size: int = Field(300, ge=1, description="INT8: calibration images drawn from the train split")
    calib_seed: int = Field(0, description="INT8: seed of the calibration sample")
    max_map_drop: float | None = Field(
        None, ge=0, description="INT8: largest allowed absolute mAP50-95 drop vs fp32 (accuracy-aware mode)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="target-specific build options (docs/config.md lists each target's)"
    )

    @model_validator(mode="after")
    def _known_options(self) -> BuildEntry:
        try:
            check_options(self.target, self.options)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self


def build_engine(
    entry: BuildEntry,
    out_dir: Path,
    *,
    onnx: Path | None,
    checkpoint: Path | None,
    calib_data: Path | None,
    val_data: Path | None,
    imgsz: int | None = None,
) -> Artifact:
    """Check the request, draw the calibration set for INT8 and let the target write `out_dir`."""
    target = get_target(entry.target)
    check_precision(target, entry.precision)
    ok, reason = target.available()
    if not ok and not entry.options.get("qdq_only"):  # tensorrt's host half needs no TensorRT
        raise BackendUnavailable(reason)
    if onnx is not None:
        imgsz = onnx_facts(onnx).imgsz  # also rejects a corrupt ONNX before any work
    options = dict(entry.options)
    if entry.target == "torch":
        options.setdefault("imgsz", imgsz or 640)
    calibration = None
    if entry.precision == "int8" and not options.get("qdq_onnx"):  # a given Q/DQ ONNX is calibrated
        if calib_data is None:
            raise InputError("int8 needs calibration images", hint="pass --calib data.yaml (its train split)")
        calibration = CalibrationSet.from_dataset(
            calib_data, imgsz or 640, entry.calib_size, entry.calib_seed
        )
        if entry.max_map_drop is not None:
            if val_data is None:
                raise InputError("--max-map-drop needs a validation set", hint="pass --val data.yaml")
            options.update(max_map_drop=entry.max_map_drop, val_data=str(val_data))
    elif entry.max_map_drop is not None and entry.precision != "int8":
        raise InputError("--max-map-drop applies to int8 builds only")
    elif entry.max_map_drop is not None:
        options.update(max_map_drop=entry.max_map_drop)  # rejected with --qdq-onnx by the target
    inputs = BuildInputs(
        onnx=Path(onnx) if onnx else None, checkpoint=Path(checkpoint) if checkpoint else None
    )
    return target.build(inputs, entry.precision, calibration, options, Path(out_dir))


def run(entry: BuildEntry, ctx: StageContext) -> dict[str, Artifact]:
    onnx = ctx.inputs["onnx"].path if "onnx" in ctx.inputs else None
    checkpoint = ctx.inputs["model"].path if "model" in ctx.inputs else None
    artifact = build_engine(
        entry,
        ctx.out_dir / "engine",
        onnx=onnx,
        checkpoint=checkpoint,
        calib_data=ctx.settings.data,
        val_data=ctx.settings.val,
        imgsz=ctx.settings.imgsz,
    )
    return {"engine": artifact}


def summary_table(meta: dict[str, Any], directory: Path, seconds: float):
    from rich.table import Table

    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6
    table = Table(title=f"engine {directory}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    calib = meta.get("calibration")
    rows = {
        "target": meta["target"],
        "precision (requested)": meta["precision"],
        "precision (runs as)": meta["runtime_precision"],
        "input": f"{meta['batch'] or 'dynamic'} x 3 x {meta['imgsz']} x {meta['imgsz']}",
        "size": f"{size:.2f} MB",
        "build time": f"{seconds:.1f} s",
        "calibration": (
            f"{calib['images']} images of {calib['dataset']} (sha256 {calib['sha256'][:12]})"
            if calib
            else "none"
        ),
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def command(
    onnx: Annotated[Path | None, typer.Option(help="ONNX written by `edgepipe export`")] = None,
    model: Annotated[
        Path | None, typer.Option(help="the .pt checkpoint (what the torch target runs)")
    ] = None,
    target: Annotated[str, typer.Option(help="torch, onnxruntime, openvino or tensorrt")] = "onnxruntime",
    precision: Annotated[str, typer.Option(help="fp32, bf16, fp16 or int8")] = "fp32",
    calib: Annotated[Path | None, typer.Option(help="data.yaml whose train images calibrate INT8")] = None,
    calib_size: Annotated[int, typer.Option(help="number of calibration images")] = 300,
    calib_seed: Annotated[int, typer.Option(help="seed of the calibration sample")] = 0,
    max_map_drop: Annotated[
        float | None, typer.Option(help="INT8: largest allowed mAP50-95 drop vs fp32 (needs --val)")
    ] = None,
    val: Annotated[Path | None, typer.Option(help="data.yaml whose val split measures mAP")] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(help="--max-map-drop on onnxruntime/tensorrt: most checkpoints after full INT8"),
    ] = None,
    qdq_only: Annotated[
        bool,
        typer.Option(help="tensorrt int8: write only the Q/DQ ONNX and its record here (no TensorRT needed)"),
    ] = False,
    qdq_onnx: Annotated[
        Path | None,
        typer.Option(help="tensorrt int8: compile this Q/DQ ONNX (or the --qdq-only directory) as is"),
    ] = None,
    imgsz: Annotated[int, typer.Option(help="input size for the torch target without --onnx")] = 640,
    output: Annotated[Path, typer.Option("-o", "--output", help="engine directory to write")] = Path(
        "engine"
    ),
) -> None:
    """Build an engine directory for one target and precision."""
    from rich.console import Console

    if onnx is None and model is None:
        raise InputError("nothing to build from", hint="pass --onnx model.onnx (and --model M.pt for torch)")
    if (qdq_only or qdq_onnx) and target != "tensorrt":
        raise InputError("--qdq-only and --qdq-onnx are options of --target tensorrt")
    options: dict[str, Any] = {"qdq_only": qdq_only} if qdq_only else {}
    if qdq_onnx is not None:
        options["qdq_onnx"] = str(qdq_onnx.resolve())
    if max_steps is not None:
        options["max_steps"] = max_steps
    try:
        entry = BuildEntry(
            target=target,
            precision=precision,
            calib_size=calib_size,
            calib_seed=calib_seed,
            max_map_drop=max_map_drop,
            options=options,
        )
    except ValidationError as exc:
        raise validation_error(
            exc, what="invalid options", model=BuildEntry, options=True, hint="see `edgepipe build --help`"
        ) from None
    console = Console(stderr=True)
    started = time.perf_counter()
    # The accuracy-driven loop shows its own progress bars and step lines instead of a spinner.
    spinner = console.status(f"building {target}/{precision}") if max_map_drop is None else nullcontext()
    with atomic_output(output) as staged, spinner:
        build_engine(entry, staged, onnx=onnx, checkpoint=model, calib_data=calib, val_data=val, imgsz=imgsz)
    meta = read_artifact_dir(output)
    console.print(summary_table(meta, output, time.perf_counter() - started))
    typer.echo(f"wrote {output} (sha256 {sha256_path(output)[:12]})")
    if meta.get("made_for") == "tensorrt":
        typer.echo(
            f"compile it on the device: edgepipe build --onnx {onnx} --target tensorrt --precision int8 "
            f"--qdq-onnx {output} -o engine"
        )
    if meta.get("accuracy_control") and "steps" in meta["accuracy_control"]:
        check_accuracy_control(meta["accuracy_control"], output, console)


def check_accuracy_control(record: dict[str, Any], output: Path, console) -> None:
    """Print the loop's steps; a bound not met is a failed check, though the engine is kept."""
    console.print(steps_table(record))
    if not record["met"]:
        final = record["final"]
        raise CheckFailed(
            f"mAP50-95 drop {final['drop']:.4f} is above --max-map-drop {record['max_map_drop']} after "
            f"{len(record['steps'])} steps; kept the best model found (mAP50-95 {final['map50_95']:.4f}, "
            f"{final['float_layers']} of {record['layer_groups']} layer groups in float), labelled "
            "accuracy_control.met = false",
            path=output,
            hint="allow a larger drop, more steps (--max-steps), or calibrate on more images (--calib-size)",
        )
