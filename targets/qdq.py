"""Static Q/DQ INT8 quantization of an ONNX graph with onnxruntime.quantization.

One routine serves ONNX Runtime's INT8 engine (unsigned activations, fastest on x86) and the explicit-
quantization ONNX that TensorRT compiles (symmetric signed INT8 everywhere, float biases, a dedicated Q/DQ
pair per consumer and one scale per Concat, as TensorRT's parser and fusions require: `targets.qdq_concat`).
The Detect head's post-processing stays in float and reads float logits; `keep_float` adds more nodes
(the accuracy-driven loop returns the most sensitive layers to float this way).
"""

from __future__ import annotations

import inspect
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from targets.head import onnx_head_postprocess_nodes
from targets.qdq_concat import unify_concat_scales

if TYPE_CHECKING:
    from core.calibration import CalibrationSet


@dataclass(frozen=True)
class QdqScheme:
    activations: str  # "QUInt8" | "QInt8"
    weights: str = "QInt8"
    symmetric: bool = False  # symmetric activations and weights (zero point 0)
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: avoids U8S8 overflow on x86 CPUs without VNNI
    method: str = "MinMax"
    # MinMax over the mean of per-image ranges, not the extremes: on yolov8n/coco128-val2017 mAP50-95
    # 0.4374 vs 0.4212 with plain MinMax (fp32 0.4359).
    moving_average: bool = True
    op_types: tuple[str, ...] | None = None  # None: every op ONNX Runtime can quantize
    # False keeps biases float: TensorRT dequantizes only INT8/FP8/INT4, never ONNX Runtime's INT32 biases.
    quantize_bias: bool = True
    dedicated_pairs: bool = False  # a Q/DQ pair per consumer of a tensor (ONNX Runtime's advice for TensorRT)
    unify_concat_scales: bool = False  # one scale for each Concat's inputs and output (no reformat layers)

    def record(self) -> dict[str, object]:
        return {**self.__dict__, "op_types": list(self.op_types) if self.op_types else None}


def calibration_reader(calibration: CalibrationSet, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self.batches = calibration.batches(1)

    return Reader()


def supports_calibration_cache() -> bool:
    """`quantize_static(calibration_cache_path=...)` is recent: ONNX Runtime 1.23.2 (the newest for
    JetPack 6's Python 3.10) lacks it."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def quantize_qdq(
    onnx_in: Path,
    onnx_out: Path,
    calibration: CalibrationSet,
    scheme: QdqScheme,
    keep_float: Iterable[str] = (),
    calibration_cache: Path | None = None,
) -> list[str]:
    """Write the Q/DQ model to `onnx_out`; returns the node names left in float.

    `calibration_cache`: a JSON file of activation ranges, written by the first call and read by later
    ones instead of re-running calibration (the ranges do not depend on `keep_float`, only on the model,
    the calibration set and the scheme: give each such combination its own file). ONNX Runtime versions
    without that argument calibrate on every call, with a warning.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cache_argument = {}
    if calibration_cache is not None:
        if supports_calibration_cache():
            cache_argument["calibration_cache_path"] = calibration_cache
        else:
            warnings.warn(
                "this onnxruntime has no calibration cache (quantize_static(calibration_cache_path=...)): "
                "every accuracy step calibrates again; a newer onnxruntime makes it faster",
                stacklevel=2,
            )
    with tempfile.TemporaryDirectory(prefix="edgepipe-qdq-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_in), str(prepared))
        float_nodes = [*onnx_head_postprocess_nodes(prepared), *keep_float]
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(
            str(prepared),
            str(onnx_out),
            calibration_reader(calibration, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=scheme.per_channel,
            reduce_range=scheme.reduce_range,
            activation_type=QuantType[scheme.activations],
            weight_type=QuantType[scheme.weights],
            nodes_to_exclude=float_nodes,
            op_types_to_quantize=list(scheme.op_types) if scheme.op_types else None,
            calibrate_method=CalibrationMethod[scheme.method],
            **cache_argument,
            extra_options={
                "QuantizeBias": scheme.quantize_bias,
                "DedicatedQDQPair": scheme.dedicated_pairs,
                "ActivationSymmetric": scheme.symmetric,
                "WeightSymmetric": True,
                "CalibMovingAverage": scheme.moving_average,
                # A Conv's output is quantized only where a quantized op reads it: the head's last convs
                # then hand the float post-processing unrounded box and class logits.
                "OpTypesToExcludeOutputQuantization": ["Conv"],
            },
        )
    if scheme.unify_concat_scales:
        unify_concat_scales(onnx_out)
    return float_nodes
