"""The Runner protocol: the one contract between the backends (`targets`) and the harness (`benchmarks`).

A Runner maps a preprocessed NCHW float32 batch (RGB, 0..1, letterboxed) to the raw output of
Ultralytics' Detect head, shaped (N, 4 + classes, anchors), boxes as xywh in input pixels.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    precision: str  # the precision that actually runs, e.g. "fp32", "bf16", "int8+bf16"

    def infer(self, images: np.ndarray) -> np.ndarray: ...
