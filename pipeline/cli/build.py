"""`edgepipe build`: one engine directory for a target and precision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.artifacts import sha256_path
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from pipeline.cli.console import console
from pipeline.cli.options import KeyOptions, config_options, renamed
from pipeline.stages.build import BuildEntry, BuiltEngine, build_engine_dir
from targets.accuracy_bound import describe_check
from targets.accuracy_int8 import steps_table
from targets.base import all_targets, target_names


def summary_table(meta: dict[str, Any], directory: Path, seconds: float):
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6
    table = Table(title=f"engine {directory}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    calib = meta.get("calibration")
    rows = {
        "target": meta["target"] + (f" (made for {meta['made_for']})" if meta.get("made_for") else ""),
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


QdqOnly = Annotated[
    bool,
    typer.Option(help="tensorrt int8: write only the Q/DQ ONNX and its record here (no TensorRT needed)"),
]
QdqOnnx = Annotated[
    Path | None,
    typer.Option(help="tensorrt int8: compile this Q/DQ ONNX (or the --qdq-only directory) as is"),
]
MaxSteps = Annotated[
    int | None,
    typer.Option(help="--max-drop-vs-fp32 on onnxruntime/tensorrt: most checkpoints after full INT8"),
]


# The command's own default target; the target options as the flags of the targets that take them
OWN: dict[str, str | tuple[str, ...]] = {"target": "target", "options": ("qdq_only", "qdq_onnx", "max_steps")}


@config_options(BuildEntry, command="build", own=OWN)
def command(
    *,
    onnx: Annotated[Path | None, typer.Option(help="ONNX written by `edgepipe export`")] = None,
    model: Annotated[
        Path | None, typer.Option(help="the .pt checkpoint (what the torch target runs)")
    ] = None,
    target: Annotated[str, typer.Option(help=", ".join(target_names()))] = "onnxruntime",
    data: Annotated[Path | None, typer.Option(help="data.yaml whose train images calibrate INT8")] = None,
    options: KeyOptions[BuildEntry],
    val: Annotated[Path | None, typer.Option(help="data.yaml whose val split measures mAP")] = None,
    max_steps: MaxSteps = None,
    qdq_only: QdqOnly = False,
    qdq_onnx: QdqOnnx = None,
    imgsz: Annotated[
        int, typer.Option(help="input size for the torch target without --onnx")
    ] = DEFAULT_IMGSZ,
    calib: Annotated[Path | None, typer.Option("--calib", hidden=True, help="deprecated: --data")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="engine directory to write")] = Path(
        "engine"
    ),
    force: Annotated[bool, typer.Option("--force", help="replace an existing engine directory")] = False,
) -> None:
    """Build an engine directory for one target and precision."""
    data = renamed(data, calib, command="build", old_name="--calib", new_name="--data")
    if onnx is None and model is None:
        raise InputError("nothing to build from", hint="pass --onnx model.onnx (and --model M.pt for torch)")
    flags = target_options(target, qdq_only=qdq_only, qdq_onnx=qdq_onnx, max_steps=max_steps)
    entry = options.build(target=target, options=flags)
    built = build_engine_dir(
        entry, output, force=force, onnx=onnx, checkpoint=model, calib_data=data, val_data=val, imgsz=imgsz
    )
    print_built(built, onnx)
    if (failure := built.unmet_bound()) is not None:
        raise failure


def target_options(target: str, **flags: Any) -> dict[str, Any]:
    """The target-specific flags given, as the build entry's `options`; a flag the target does not take is
    an error naming the targets that do (an unknown target is the build entry's to refuse)."""
    options = {key: value for key, value in flags.items() if value not in (None, False)}
    if "qdq_onnx" in options:
        options["qdq_onnx"] = str(Path(options["qdq_onnx"]).resolve())
    if target not in target_names():
        return options
    for key in options:
        takers = [t.name for t in all_targets() if key in t.options_model.model_fields]
        if target not in takers:
            raise InputError(f"--{key.replace('_', '-')} is an option of --target {' or '.join(takers)}")
    return options


def print_built(built: BuiltEngine, onnx: Path | None) -> None:
    """The engine's summary; for a Q/DQ file made for another target, how to compile it there; what
    `precision auto` chose; an INT8 check's steps and outcome."""
    meta, output = built.record, built.path
    console.print(summary_table(meta, output, built.seconds))
    typer.echo(f"wrote {output} (sha256 {sha256_path(output)[:12]})")
    if meta.get("made_for"):
        typer.echo(
            f"compile it on the device: edgepipe build --onnx {onnx} --target {meta['made_for']} "
            f"--precision int8 --qdq-onnx {output} -o engine"
        )
    if meta.get("auto_precision"):
        console.print(f"precision auto chose {meta['precision']}: {meta['auto_precision']['reason']}")
    control = meta.get("accuracy_control")
    if control and "steps" in control:
        if "layer_groups" in control:  # edgepipe's own loop (onnxruntime, tensorrt)
            console.print(steps_table(control))
        console.print(describe_check(control))
