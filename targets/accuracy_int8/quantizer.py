"""`quantize_qdq` for one model, calibration set and scheme, with the calibration run only once.

The accuracy loop quantizes the same model dozens of times with different layers in float; calibration
(running every image through a graph that outputs every activation) is the slow part and its ranges do
not depend on which layers stay float, so they are cached in a JSON file after the first call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from targets.qdq import QdqScheme, quantize_qdq

if TYPE_CHECKING:
    from core.calibration import CalibrationSet


@dataclass(frozen=True)
class CachedQuantizer:
    onnx: Path
    calibration: CalibrationSet
    scheme: QdqScheme
    ranges_cache: Path  # need not exist yet; must not be shared with another model, set or scheme

    def write(self, out: Path, keep_float: Iterable[str] = ()) -> list[str]:
        """Write the Q/DQ model with `keep_float` nodes in float; returns every node left in float."""
        return quantize_qdq(
            self.onnx, out, self.calibration, self.scheme, keep_float, calibration_cache=self.ranges_cache
        )
