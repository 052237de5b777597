"""TensorRT's Q/DQ ONNX made by NVIDIA Model Optimizer (`modelopt.onnx.quantization.quantize`).

ModelOpt places Q/DQ where TensorRT fuses them (a Conv's input and weight, not every Concat or
Sigmoid), calibrates with entropy (its default) or max, and runs its calibration through ONNX
Runtime's CPU execution provider, so the file is made and checked on the host. It runs in a child
process: it is heavy to import and sets process-wide logging and ONNX Runtime state.

Float parts stay fp32 in the file (`high_precision_dtype="fp32"`): ONNX Runtime measures them as the
hand-built file's, and TensorRT, built with FP16 enabled, still runs them in fp16.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BackendUnavailable, InputError
from targets.head import onnx_head_postprocess_nodes
from targets.qdq import calibration_reader

if TYPE_CHECKING:
    from core.calibration import CalibrationSet

METHODS = ("entropy", "max")
DEFAULT_METHOD = "entropy"
PACKAGE = "nvidia-modelopt"


def modelopt_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        raise BackendUnavailable(f"{PACKAGE} is not installed: pip install {PACKAGE}") from None


def modelopt_qdq(
    onnx_in: Path,
    onnx_out: Path,
    calibration: CalibrationSet,
    method: str = DEFAULT_METHOD,
    keep_float: Iterable[str] = (),
) -> list[str]:
    """Write ModelOpt's INT8 Q/DQ model of `onnx_in` to `onnx_out`; returns the nodes kept in float
    (the Detect head's post-processing and `keep_float`)."""
    if method not in METHODS:
        raise InputError(f"ModelOpt calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    modelopt_version()
    float_nodes = [*onnx_head_postprocess_nodes(Path(onnx_in)), *keep_float]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
        child.submit(_quantize, Path(onnx_in), Path(onnx_out), calibration, method, float_nodes).result()
    if not Path(onnx_out).is_file():
        raise InputError("ModelOpt wrote no Q/DQ ONNX (see its log above)", path=onnx_in)
    return float_nodes


def _quantize(
    onnx_in: Path, onnx_out: Path, calibration: CalibrationSet, method: str, float_nodes: list[str]
) -> None:
    """The child process's work."""
    import onnx
    from modelopt.onnx.quantization import quantize

    input_name = onnx.load(str(onnx_in), load_external_data=False).graph.input[0].name
    quantize(
        str(onnx_in),
        quantize_mode="int8",
        calibration_data_reader=calibration_reader(calibration, input_name),
        calibration_method=method,
        calibration_eps=["cpu"],
        # Patterns are matched with re.match: anchored, so one name excludes only itself.
        nodes_to_exclude=[f"{re.escape(name)}$" for name in float_nodes],
        high_precision_dtype="fp32",
        output_path=str(onnx_out),
        log_level="WARNING",
    )
