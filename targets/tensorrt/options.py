"""The TensorRT target's build options (`build[].options` with `target: tensorrt`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from targets.options import AccuracyLoopOptions

WORKSPACE_BYTES = 2 << 30


class TensorRtOptions(AccuracyLoopOptions):
    int8_mode: Literal["qdq", "calibrator"] = Field("qdq", description="explicit Q/DQ or a calibrator")
    calibration_method: Literal["entropy", "max"] | None = Field(
        None, description="qdq: ModelOpt's calibration (default entropy)"
    )
    qdq_onnx: str | None = Field(None, description="compile this Q/DQ ONNX (or --qdq-only directory) as is")
    qdq_only: bool = Field(False, description="write only the Q/DQ ONNX (no TensorRT needed)")
    workspace_bytes: int = Field(WORKSPACE_BYTES, ge=1, description="TensorRT builder workspace")
    opt_batch: int = Field(1, ge=1, description="dynamic batch: the batch the profile is tuned for")
    max_batch: int = Field(16, ge=1, description="dynamic batch: the largest batch")

    @property
    def needs_backend(self) -> bool:
        return not self.qdq_only

    @property
    def needs_calibration(self) -> bool:
        return self.qdq_onnx is None

    @property
    def makes_qdq(self) -> bool:
        """Whether an INT8 build quantizes here with ModelOpt (not the calibrator, not a given Q/DQ ONNX)."""
        return self.qdq_only or (self.int8_mode == "qdq" and self.qdq_onnx is None)
