"""The Q/DQ ONNX an INT8 engine compiles: made here by NVIDIA Model Optimizer (plain, or checked against
FP32 and falling back layer by layer), or adopted from an earlier `--qdq-only` directory or another tool,
and in every case checked against TensorRT's Q/DQ rules before it is used."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import ARTIFACT_FILE, sha256_file
from core.engine_record import read_artifact_dir
from core.errors import InputError
from targets.accuracy_int8 import control_options, quantize_within_map_drop
from targets.modelopt_qdq import DEFAULT_METHOD, modelopt_qdq, modelopt_version
from targets.qdq import QdqScheme
from targets.tensorrt.qdq_rules import require_valid_qdq

if TYPE_CHECKING:
    from core.calibration import CalibrationSet
    from targets.tensorrt.options import TensorRtOptions

QDQ_FILE = "model.qdq.onnx"
# TensorRT's explicit quantization: symmetric signed INT8 (zero point 0), float biases, a dedicated pair per
# consumer, one scale per Concat: the scheme the accuracy loop ranks layers with before ModelOpt writes
# each candidate.
TENSORRT_QDQ = QdqScheme(
    activations="QInt8",
    weights="QInt8",
    symmetric=True,
    per_channel=True,
    quantize_bias=False,
    dedicated_pairs=True,
    unify_concat_scales=True,
)


@dataclass(frozen=True)
class QdqSource:
    """The Q/DQ ONNX an INT8 engine is compiled from, with what is known of how it was made."""

    record: dict[str, Any]  # sha256, float nodes, scheme (or where a foreign file came from)
    accuracy_control: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None  # CalibrationSet.record() of the calibration it used


def qdq_record(out_path: Path, float_nodes: list[str], method: str) -> dict[str, Any]:
    """The Q/DQ ONNX's record: hash, float nodes, and the quantizer that made it."""
    return {
        "sha256": sha256_file(out_path),
        "float_nodes": float_nodes,
        "quantizer": f"nvidia-modelopt {modelopt_version()}",
        "calibration_method": method,
    }


def make_host_qdq(
    onnx_path: Path, calibration: CalibrationSet | None, options: TensorRtOptions, out_path: Path
) -> QdqSource:
    """Quantize here with ModelOpt: plain, or checked against FP32 when `options` has `val_data` (falling
    back past the bound: `max_map_drop`, else 1% of FP32)."""
    if calibration is None:
        raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
    method = options.calibration_method or DEFAULT_METHOD

    def write(out: Path, keep_float: list[str]) -> list[str]:
        return modelopt_qdq(onnx_path, out, calibration, method, keep_float)

    if not options.val_data:
        float_nodes = write(out_path, [])
        require_valid_qdq(out_path)
        return QdqSource(qdq_record(out_path, float_nodes, method), calibration=calibration.record())
    control = quantize_within_map_drop(
        onnx_path,
        out_path,
        calibration,
        TENSORRT_QDQ,
        **control_options(options),
        write=write,
        quantizer=f"nvidia-modelopt {modelopt_version()} ({method})",
    )
    require_valid_qdq(out_path)
    return QdqSource(qdq_record(out_path, control.float_nodes, method), control.record, calibration.record())


def adopt_qdq_onnx(given: Path, onnx_path: Path, out_path: Path) -> QdqSource:
    """Copy a Q/DQ ONNX made earlier to `out_path`: a directory written by `--qdq-only` (or its
    model.qdq.onnx), checked against the hashes recorded there, or any other Q/DQ file (ModelOpt's, say),
    taken as it is; either must pass TensorRT's Q/DQ rules."""
    given = Path(given)
    directory = given if given.is_dir() else given.parent
    meta = read_artifact_dir(directory) if (directory / ARTIFACT_FILE).is_file() else None
    if meta is not None and (meta.get("made_for") != "tensorrt" or meta["model_file"] != QDQ_FILE):
        meta = None
    if given.is_dir() and meta is None:
        hint = "make one with `edgepipe build --target tensorrt --precision int8 --qdq-only`"
        raise InputError("no Q/DQ ONNX record here", path=given, hint=hint)
    file = directory / QDQ_FILE if given.is_dir() else given
    if not file.is_file():
        raise InputError("Q/DQ ONNX not found", path=file)
    shutil.copyfile(file, out_path)
    sha256 = sha256_file(out_path)
    if meta is None:
        require_valid_qdq(file)
        return QdqSource({"sha256": sha256, "from": str(file)})
    if sha256 != meta["quantization"]["sha256"]:
        raise InputError("the Q/DQ ONNX changed since `--qdq-only` wrote it", path=file, hint="make it again")
    if meta["source"]["onnx_sha256"] != sha256_file(onnx_path):
        raise InputError(
            f"the Q/DQ ONNX was made from another ONNX ({meta['source']['onnx']})",
            path=onnx_path,
            hint="pass the --onnx it was made from",
        )
    require_valid_qdq(file)  # made by an older edgepipe, perhaps
    record = {**meta["quantization"], "from": str(file)}
    return QdqSource(record, meta.get("accuracy_control"), meta["calibration"])


def qdq_source(
    onnx_path: Path, calibration: CalibrationSet | None, options: TensorRtOptions, out_path: Path
) -> QdqSource:
    """The Q/DQ ONNX to compile, written to `out_path`: the given `qdq_onnx`, or made here."""
    if not options.qdq_onnx:
        return make_host_qdq(onnx_path, calibration, options, out_path)
    if options.max_map_drop is not None:
        raise InputError(
            "--max-drop-vs-fp32 decides the Q/DQ ONNX, --qdq-onnx compiles one already decided: "
            "pass one of them"
        )
    return adopt_qdq_onnx(Path(options.qdq_onnx), onnx_path, out_path)
