"""Static Q/DQ INT8 quantization of an ONNX graph with onnxruntime.quantization.

One routine serves ONNX Runtime's INT8 engine (unsigned activations, fastest on x86) and the explicit-
quantization ONNX that TensorRT compiles (symmetric signed INT8 everywhere, as TensorRT requires). The
Detect head's post-processing stays in float and reads float logits; `keep_float` adds more nodes
(the accuracy-driven loop returns the most sensitive layers to float this way).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from targets.head import onnx_head_postprocess_nodes

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
    the calibration set and the scheme: give each such combination its own file).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

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
            calibration_cache_path=calibration_cache,
            extra_options={
                "ActivationSymmetric": scheme.symmetric,
                "WeightSymmetric": True,
                "CalibMovingAverage": scheme.moving_average,
                # A Conv's output is quantized only where a quantized op reads it: the head's last convs
                # then hand the float post-processing unrounded box and class logits.
                "OpTypesToExcludeOutputQuantization": ["Conv"],
            },
        )
    return float_nodes
