"""Accuracy-driven INT8 for ONNX Runtime and TensorRT: keep the most sensitive layers in float until
the mAP50-95 drop against FP32 is within a bound.

`layers` finds the quantizable layer groups, `sensitivity` ranks them by the output error each causes
alone in INT8, `fallback` returns them to float in growing chunks, measuring mAP only at checkpoints.
"""

from targets.accuracy_int8.fallback import (
    AccuracyControl,
    control_options,
    quantize_within_map_drop,
    steps_table,
)

__all__ = ["AccuracyControl", "control_options", "quantize_within_map_drop", "steps_table"]
