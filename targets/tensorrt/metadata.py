"""What ties an engine to the TensorRT, the GPU and the inputs it was built from (artifact.json)."""

from __future__ import annotations

from typing import Any

from core.errors import InputError


def engine_metadata(
    *,
    trt_version: str,
    device_name: str,
    compute_capability: str,
    precision: str,
    int8_mode: str | None,
    calibration_sha256: str | None,
    qdq_onnx_sha256: str | None,
    strongly_typed: bool,
) -> dict[str, Any]:
    return {
        "tensorrt_version": trt_version,
        "device_name": device_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "int8_mode": int8_mode,
        "calibration_sha256": calibration_sha256,
        "qdq_onnx_sha256": qdq_onnx_sha256,
        "strongly_typed": strongly_typed,
    }


def check_engine_compatible(recorded: dict[str, Any], trt_version: str, compute_capability: str) -> None:
    """A serialized engine runs only with the TensorRT version and GPU architecture that built it."""
    if recorded["tensorrt_version"] != trt_version:
        raise InputError(
            f"engine was built with TensorRT {recorded['tensorrt_version']}, this machine has {trt_version}",
            hint="rebuild the engine here with `edgepipe build --target tensorrt`",
        )
    if recorded["compute_capability"] != compute_capability:
        raise InputError(
            f"engine was built for compute capability {recorded['compute_capability']} "
            f"({recorded['device_name']}), this GPU is {compute_capability}",
            hint="TensorRT engines are specific to the GPU they are built on: rebuild it on this device",
        )
