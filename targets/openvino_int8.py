"""OpenVINO INT8 through NNCF: `nncf.quantize`, checked against FP32 when a val set is given, and
`nncf.quantize_with_accuracy_control` as the fallback when the drop is past the bound.

Calibration follows NNCF's own options: `preset` (mixed: symmetric weights, asymmetric activations;
performance: symmetric both), `fast_bias_correction` and the activations' range estimator. The Detect
head's post-processing is always left in float.

The float parts run at the hint the target chose for the device (bf16 where the CPU has bf16 units). The
check measures INT8 as it will run; when bf16 float parts put it past the bound, they go back to f32
(measured again, and recorded with why) before NNCF's accuracy control is tried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from targets.accuracy_bound import AccuracyBound
from targets.accuracy_control import validation_dataset, validation_fn
from targets.head import head_postprocess_nodes
from targets.options import AccuracyDrivenOptions

if TYPE_CHECKING:
    from core.calibration import CalibrationSet

log = logging.getLogger(__name__)

# (mAP50-95, mAP50) of an ov.Model compiled with an inference precision hint (f32, bf16)
Measure = Callable[[Any, str], tuple[float, float]]


class OpenVinoOptions(AccuracyDrivenOptions):
    """The OpenVINO target's build options: NNCF's, for INT8."""

    preset: Literal["mixed", "performance"] = Field(
        "mixed", description="NNCF preset: mixed (asymmetric activations) or performance (symmetric)"
    )
    fast_bias_correction: bool = Field(True, description="NNCF's fast bias correction")
    range_estimator: (
        Literal["minmax", "mean_minmax", "mean_quantile", "median_minmax", "histogram"] | None
    ) = Field(None, description="NNCF's activation range estimator (default: NNCF's own)")


def quantize_options(options: OpenVinoOptions, float_ops: list[str], subset_size: int) -> dict[str, Any]:
    """nncf.quantize's keyword arguments from the target's build options."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    kwargs: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(options.preset),
        "subset_size": subset_size,
        "fast_bias_correction": options.fast_bias_correction,
        "ignored_scope": nncf.IgnoredScope(names=float_ops, validate=False),
    }
    if options.range_estimator is not None:
        estimated = getattr(RangeEstimatorParametersSet, options.range_estimator.upper())
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
            activations_range_estimator_params=estimated
        )
    return kwargs


def float_convolutions(model) -> list[str]:
    """Convolutions whose input is not fake-quantized: what runs in float in the INT8 model."""
    kinds = {"Convolution", "GroupConvolution", "MatMul"}
    return [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in kinds and op.input_value(0).get_node().get_type_name() != "FakeQuantize"
    ]


def quantize(
    model,
    calibration: CalibrationSet,
    options: OpenVinoOptions,
    imgsz: int,
    measure: Measure,
    float_hint: str = "f32",
) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """The INT8 model, its quantization record (`float_parts.hint`: the hint its float parts run at, the
    given one unless the check returned them to f32) and, with `val_data`, its accuracy-control record."""
    import nncf

    nncf.set_log_level(logging.WARNING)  # its per-layer INFO lines would bury the progress bars
    float_ops = head_postprocess_nodes(op.get_friendly_name() for op in model.get_ordered_ops())
    kwargs = quantize_options(options, float_ops, len(calibration))
    data = nncf.Dataset(list(calibration.batches(1)))
    record: dict[str, Any] = {
        "tool": f"nncf {nncf.__version__}",
        "preset": options.preset,
        "fast_bias_correction": kwargs["fast_bias_correction"],
        "range_estimator": options.range_estimator or "nncf default",
        "float_ops": float_ops,
    }
    quantized = nncf.quantize(model, data, **kwargs)
    record["float_parts"] = {"hint": float_hint, "checked": False}
    if not options.val_data:
        return quantized, record, None
    val_data, bound = options.val_data, AccuracyBound.from_options(options)
    fp32 = measure(model, "f32")
    limit = bound.limit(fp32[0])
    int8 = measure(quantized, float_hint)
    log.info(
        f"openvino FP32 mAP50-95 {fp32[0]:.4f}, INT8 (float parts {float_hint}) {int8[0]:.4f} "
        f"(drop {fp32[0] - int8[0]:+.4f}, may drop {limit:.4f}: {bound.rule})"
    )
    record["float_parts"]["checked"] = True
    if float_hint != "f32" and not bound.met(fp32[0], int8[0]):
        tried = int8
        int8 = measure(quantized, "f32")
        why = (
            f"INT8 with {float_hint} float parts dropped {fp32[0] - tried[0]:.4f} mAP50-95, past the bound "
            f"{limit:.4f}; with f32 float parts it dropped {fp32[0] - int8[0]:.4f}"
        )
        log.info(f"{why}: the float parts run f32")
        record["float_parts"] = {
            "hint": "f32",
            "checked": True,
            "tried": {"hint": float_hint, "map50_95": tried[0], "map50": tried[1]},
            "why": why,
        }
    float_hint = record["float_parts"]["hint"]
    steps: list[dict[str, Any]] = [{"step": 0, "map50_95": int8[0], "map50": int8[1], "how": "nncf.quantize"}]
    if not bound.met(fp32[0], int8[0]):
        log.info("INT8 is outside the bound: falling back with nncf.quantize_with_accuracy_control")
        quantized = nncf.quantize_with_accuracy_control(
            model,
            data,
            validation_dataset(val_data, imgsz),
            validation_fn(val_data, imgsz),
            max_drop=limit,
            drop_type=nncf.DropType.ABSOLUTE,
            **kwargs,
        )
        final = measure(quantized, float_hint)
        steps.append(
            {"step": 1, "map50_95": final[0], "map50": final[1], "how": "nncf.quantize_with_accuracy_control"}
        )
    final_map = float(steps[-1]["map50_95"])
    control = {
        "max_map_drop": limit,
        "bound": bound.rule,
        "met": bound.met(fp32[0], final_map),
        "fell_back": len(steps) > 1,
        "metric": "mAP50-95",
        "val_data": str(val_data),
        "measured_with": f"openvino (CPU, INT8 with {float_hint} float parts; FP32 at f32)",
        "quantized_with": record["tool"],
        "fp32": {"map50_95": fp32[0], "map50": fp32[1]},
        "final": {**steps[-1], "drop": fp32[0] - final_map},
        "float_layers": float_convolutions(quantized),
        "steps": steps,
    }
    return quantized, record, control
