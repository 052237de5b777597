"""The build options each target takes (`build[].options` in a config), as typed models.

Unknown keys are errors (`extra="forbid"`), so a misspelt option fails when the config is read instead of
being ignored by the build. The targets still receive the options as the plain dict recorded in
`artifact.json`; `max_map_drop` and `val_data` are set by the build stage from the entry's
`max_drop_vs_fp32` and the run's val set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.validation import validation_error


class TargetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccuracyDrivenOptions(TargetOptions):
    max_map_drop: float | None = Field(
        None, ge=0, description="set from the build entry's `max_drop_vs_fp32`"
    )
    val_data: str | None = Field(None, description="set from the pipeline's `val` when the build is checked")


class TorchOptions(TargetOptions):
    device: str | None = Field(None, description="cpu or cuda: where the build checks the precision runs")
    imgsz: int | None = Field(None, ge=32, description="input size when the build has no ONNX")


class OnnxRuntimeOptions(AccuracyDrivenOptions):
    activations: Literal["QUInt8", "QInt8"] | None = Field(None, description="INT8 activation type")
    method: Literal["MinMax", "Entropy", "Percentile", "Distribution"] | None = Field(
        None, description="calibration method of onnxruntime.quantization"
    )
    moving_average: bool | None = Field(None, description="MinMax over the mean of per-image ranges")
    op_types: list[str] | None = Field(None, description="only these op types are quantized")
    max_steps: int | None = Field(None, ge=0, description="accuracy loop: most checkpoints after full INT8")
    sensitivity_images: int | None = Field(None, ge=1, description="accuracy loop: images that rank layers")


class OpenVinoOptions(AccuracyDrivenOptions):
    preset: Literal["mixed", "performance"] | None = Field(
        None, description="NNCF preset: mixed (asymmetric activations, default) or performance (symmetric)"
    )
    fast_bias_correction: bool | None = Field(None, description="NNCF's fast bias correction (default on)")
    range_estimator: (
        Literal["minmax", "mean_minmax", "mean_quantile", "median_minmax", "histogram"] | None
    ) = Field(None, description="NNCF's activation range estimator (default: NNCF's own)")


class TensorRtOptions(AccuracyDrivenOptions):
    int8_mode: Literal["qdq", "calibrator"] | None = Field(None, description="explicit Q/DQ or a calibrator")
    calibration_method: Literal["entropy", "max"] | None = Field(
        None, description="qdq: ModelOpt's calibration (default entropy)"
    )
    qdq_onnx: str | None = Field(None, description="compile this Q/DQ ONNX (or --qdq-only directory) as is")
    qdq_only: bool | None = Field(None, description="write only the Q/DQ ONNX (no TensorRT needed)")
    max_steps: int | None = Field(None, ge=0, description="accuracy loop: most checkpoints after full INT8")
    sensitivity_images: int | None = Field(None, ge=1, description="accuracy loop: images that rank layers")
    workspace_bytes: int | None = Field(None, ge=1, description="TensorRT builder workspace")
    opt_batch: int | None = Field(None, ge=1, description="dynamic batch: the batch the profile is tuned for")
    max_batch: int | None = Field(None, ge=1, description="dynamic batch: the largest batch")


OPTIONS: dict[str, type[TargetOptions]] = {
    "torch": TorchOptions,
    "onnxruntime": OnnxRuntimeOptions,
    "openvino": OpenVinoOptions,
    "tensorrt": TensorRtOptions,
}


def check_options(target: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` unchanged when the target's model accepts them (an unknown target is checked elsewhere)."""
    model = OPTIONS.get(target)
    if model is not None:
        try:
            model.model_validate(options)
        except ValidationError as exc:
            raise validation_error(exc, what=f"{target} build options", model=model, one_line=True) from None
    return options
