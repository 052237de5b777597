"""ONNX Runtime target: the ONNX as is (fp32), or a static Q/DQ INT8 model calibrated on the user's images.

On x86 CPUs ONNX Runtime's INT8 kernels are fastest with unsigned activations and signed weights (U8S8);
signed activations fall back to slower paths, so the activation type is chosen per machine and recorded.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from core.errors import InputError
from targets.accuracy_int8 import control_options, quantize_within_map_drop
from targets.base import BuildInputs, RunOptions, library_status
from targets.engine_dir import copy_into, model_path, onnx_facts, write_engine_artifact
from targets.onnxruntime_runner import OnnxRuntimeRunner
from targets.options import AccuracyLoopOptions
from targets.qdq import QdqScheme, quantize_qdq

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

MODEL_FILE = "model.onnx"


class OnnxRuntimeOptions(AccuracyLoopOptions):
    activations: Literal["QUInt8", "QInt8"] | None = Field(None, description="INT8 activation type")
    method: Literal["MinMax", "Entropy", "Percentile", "Distribution"] | None = Field(
        None, description="calibration method of onnxruntime.quantization"
    )
    moving_average: bool | None = Field(None, description="MinMax over the mean of per-image ranges")
    op_types: list[str] | None = Field(None, description="only these op types are quantized")


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "vnni" in flags


def default_scheme() -> QdqScheme:
    """U8S8 on x86 (7-bit weights without VNNI, which would otherwise overflow), S8S8 elsewhere."""
    if platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}:
        return QdqScheme(activations="QUInt8", reduce_range=not _cpu_has_vnni())
    return QdqScheme(activations="QInt8")


def scheme_from_options(options: OnnxRuntimeOptions) -> QdqScheme:
    """The machine's default scheme, with `activations`, `method`, `moving_average` and `op_types`
    overridable."""
    overrides: dict[str, Any] = options.model_dump(
        include={"activations", "method", "moving_average"}, exclude_none=True
    )
    if options.op_types is not None:
        overrides["op_types"] = tuple(options.op_types)
    return replace(default_scheme(), **overrides)


class OnnxRuntimeTarget:
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    options_model = OnnxRuntimeOptions
    from_onnx = True
    runtime_modules = ("onnxruntime",)

    def libraries(self, precision: str, options: OnnxRuntimeOptions) -> tuple[str, ...]:
        return ("onnx", "onnxruntime")

    def available(self) -> tuple[bool, str]:
        return library_status("onnxruntime", "pip install onnxruntime")

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: OnnxRuntimeOptions,
        out_dir: Path,
    ) -> Artifact:
        import onnx
        import onnxruntime

        if inputs.onnx is None:
            raise InputError("the onnxruntime target builds from an ONNX file", hint="pass --onnx model.onnx")
        facts = onnx_facts(inputs.onnx)
        out_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        if precision == "fp32":
            copy_into(inputs.onnx, out_dir, MODEL_FILE)
        else:
            if calibration is None:
                raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
            scheme = scheme_from_options(options)
            if not options.val_data:  # unchecked: the build stage has warned
                float_nodes = quantize_qdq(inputs.onnx, out_dir / MODEL_FILE, calibration, scheme)
            else:
                control = quantize_within_map_drop(
                    inputs.onnx, out_dir / MODEL_FILE, calibration, scheme, **control_options(options)
                )
                float_nodes, extra["accuracy_control"] = control.float_nodes, control.record
            extra["quantization"] = {**scheme.record(), "float_nodes": float_nodes}
        versions = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}
        return write_engine_artifact(
            out_dir,
            target=self.name,
            precision=precision,
            runtime_precision=precision,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=facts,
            calibration=calibration if precision == "int8" else None,
            options=options.record(),
            versions=versions,
            extra=extra,
        )

    def load(self, artifact: Artifact, options: RunOptions) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(model_path(artifact), artifact.metadata["runtime_precision"], options)
