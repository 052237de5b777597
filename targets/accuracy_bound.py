"""The mAP50-95 drop an INT8 build may cost against FP32 on the same target before it falls back.

The user's `max_drop_vs_fp32` (absolute; `max_map_drop` in the target options and the record) when
given, else 1% of the FP32 figure: MLPerf's rule that a quantized model keeps 99% of the reference
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from targets.options import AccuracyDrivenOptions

RELATIVE_DROP = 0.01
_TOLERANCE = 1e-9  # mAP differences are sums of floats: 0.4359 - 0.4309 must count as 0.005


@dataclass(frozen=True)
class AccuracyBound:
    max_map_drop: float | None = None  # absolute; None: RELATIVE_DROP of FP32

    @classmethod
    def from_options(cls, options: AccuracyDrivenOptions) -> AccuracyBound:
        return cls(options.max_map_drop)

    def limit(self, fp32_map: float) -> float:
        return self.max_map_drop if self.max_map_drop is not None else RELATIVE_DROP * fp32_map

    def met(self, fp32_map: float, map50_95: float) -> bool:
        return fp32_map - map50_95 <= self.limit(fp32_map) + _TOLERANCE

    @property
    def rule(self) -> str:
        if self.max_map_drop is not None:
            return f"max_drop_vs_fp32 {self.max_map_drop} (absolute)"
        return f"{RELATIVE_DROP:.0%} of FP32 mAP50-95 (MLPerf's 99% rule)"


def describe_check(record: dict[str, Any]) -> str:
    """One line on an `accuracy_control` record: the measured drop, the bound, what was kept in float."""
    final = record["final"]
    if "layer_groups" in record:  # edgepipe's own loop (onnxruntime, tensorrt)
        kept = f"{final['float_layers']} of {record['layer_groups']} layer groups in float"
    else:  # NNCF's accuracy control (openvino)
        kept = f"{len(record['float_layers'])} convolutions in float"
    layers = record["float_layers"]
    if layers:
        kept += f" ({', '.join(layers[:6])}{', ...' if len(layers) > 6 else ''})"
    verdict = "within" if record["met"] else "ABOVE"
    return (
        f"INT8 checked on {record['val_data']}: mAP50-95 {final['map50_95']:.4f} vs fp32 "
        f"{record['fp32']['map50_95']:.4f}, drop {final['drop']:+.4f} {verdict} the bound "
        f"{record['max_map_drop']:.4f} ({record['bound']}); "
        + (f"fell back: {kept}" if record["fell_back"] else "full INT8")
    )
