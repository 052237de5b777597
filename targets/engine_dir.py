"""What every target writes beside its engine: `artifact.json`, and the model facts it is built from.

The facts (image size, batch, class names, params, GFLOPs, the checkpoint's hash) travel inside the ONNX
as metadata written by `edgepipe export`, so a build needs nothing but the ONNX file.
"""

from __future__ import annotations

import ast
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import core
from core.artifacts import ARTIFACT_FILE, Artifact, now_iso, sha256_file, sha256_path, write_json_atomic
from core.engine_record import EngineRecord
from core.errors import InputError

if TYPE_CHECKING:
    import onnx

    from core.calibration import CalibrationSet
    from targets.base import BuildInputs

# Keys edgepipe adds to the ONNX metadata next to Ultralytics' own (names, imgsz, stride, batch...).
META_PARAMS = "edgepipe_params"
META_GFLOPS = "edgepipe_gflops"
META_CHECKPOINT_SHA256 = "edgepipe_checkpoint_sha256"
META_FAMILY = "edgepipe_family"  # yolov8, yolo11, yolo26 (core.families)


@dataclass(frozen=True)
class ModelFacts:
    imgsz: int
    batch: int | None  # None: dynamic batch
    names: dict[str, str]
    params: int | None
    gflops: float | None
    checkpoint_sha256: str | None
    family: str | None = None  # None: an ONNX exported before edgepipe recorded it


def load_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX model, checked; a corrupt or foreign file is an InputError naming it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError("ONNX file not found", path=path, hint="make one with `edgepipe export`")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, ...
        raise InputError(f"not a valid ONNX model: {exc}", path=path, hint="re-run edgepipe export") from exc
    return model


def onnx_facts(path: Path) -> ModelFacts:
    model = load_onnx(path)
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" not in meta or "imgsz" not in meta:
        raise InputError(
            "ONNX has no Ultralytics metadata (names, imgsz)", path=path, hint="use edgepipe export"
        )
    dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else None
    imgsz = ast.literal_eval(meta["imgsz"])
    names = ast.literal_eval(meta["names"])
    return ModelFacts(
        imgsz=int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz),
        batch=batch,
        names={str(k): str(v) for k, v in names.items()},
        params=int(meta[META_PARAMS]) if META_PARAMS in meta else None,
        gflops=float(meta[META_GFLOPS]) if META_GFLOPS in meta else None,
        checkpoint_sha256=meta.get(META_CHECKPOINT_SHA256),
        family=meta.get(META_FAMILY),
    )


def copy_into(source: Path, out_dir: Path, name: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_dir / name)
    return name


def write_engine_artifact(
    out_dir: Path,
    *,
    target: str,
    precision: str,
    runtime_precision: str,
    model_file: str,
    inputs: BuildInputs,
    facts: ModelFacts,
    calibration: CalibrationSet | None,
    options: dict[str, Any],
    versions: dict[str, str],
    extra: dict[str, Any] | None = None,
) -> Artifact:
    """Write the engine record (`artifact.json`, `core.engine_record`) and return the directory's Artifact.

    `extra` holds the target's own sections; a key of the record given there replaces it.
    """
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != ARTIFACT_FILE)
    fields: dict[str, Any] = {
        "kind": "engine",
        "target": target,
        "precision": precision,
        "runtime_precision": runtime_precision,
        "model_file": model_file,
        "imgsz": facts.imgsz,
        "batch": facts.batch,
        "names": facts.names,
        "family": facts.family,
        "source": {
            "onnx": str(inputs.onnx) if inputs.onnx else None,
            "onnx_sha256": sha256_file(inputs.onnx) if inputs.onnx else None,
            "checkpoint": str(inputs.checkpoint) if inputs.checkpoint else None,
            "checkpoint_sha256": (
                sha256_file(inputs.checkpoint) if inputs.checkpoint else facts.checkpoint_sha256
            ),
        },
        "calibration": calibration.record() if calibration is not None else None,
        "params": facts.params,
        "gflops": facts.gflops,
        "versions": {"edgepipe": core.__version__, "python": platform.python_version(), **versions},
        "options": options,
        "files_sha256": {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in files},
        "created_at": now_iso(),
        **(extra or {}),
    }
    meta = EngineRecord.model_validate(fields).as_metadata()
    write_json_atomic(out_dir / ARTIFACT_FILE, meta)
    return Artifact(kind="engine", path=out_dir.resolve(), sha256=sha256_path(out_dir), metadata=meta)


def model_path(artifact: Artifact) -> Path:
    """The engine file of a build directory, once every file of it is checked against `artifact.json`."""
    meta = artifact.metadata
    recorded = meta.get("files_sha256") or {}
    for name in sorted({meta["model_file"], *recorded}):
        path = Path(artifact.path) / name
        if not path.is_file():
            raise InputError("engine file is missing", path=path, hint="rebuild the engine")
        if name in recorded and sha256_file(path) != recorded[name]:
            raise InputError(
                f"changed since it was built (sha256 differs from {recorded[name][:12]}... in artifact.json)",
                path=path,
                hint="rebuild the engine",
            )
    return Path(artifact.path) / meta["model_file"]
