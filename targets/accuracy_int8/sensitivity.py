"""Rank layer groups by how much INT8 hurts the Detect output when only that group is quantized.

Quantizing one group at a time isolates its own error (in the full INT8 model the other layers' noise
would mask it) and costs one quantizer pass plus a few inferences per group: for yolov8n's ~90 groups on
8 images at 640, a few minutes on 2 CPU cores. mAP is then measured only at the loop's checkpoints.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import progress
from core.letterbox import preprocess
from targets.accuracy_int8.layers import LayerGroup
from targets.accuracy_int8.quantizer import CachedQuantizer
from targets.base import RunOptions
from targets.onnxruntime_runner import OnnxRuntimeRunner

if TYPE_CHECKING:
    from core.calibration import CalibrationSet

SCORE_NAME = "confidence-weighted squared error of the Detect output, only this layer in INT8, vs FP32"


@dataclass(frozen=True)
class LayerScore:
    layer: str
    score: float


def output_error(reference: np.ndarray, candidate: np.ndarray, imgsz: int) -> float:
    """Squared error per anchor (boxes in units of the input size, class scores as they are), averaged
    with each anchor weighted by its FP32 confidence: background anchors, which never become
    detections, count little. Outputs are Detect's (N, 4 + classes, anchors)."""
    reference = reference.astype(np.float64)
    delta = candidate.astype(np.float64) - reference
    per_anchor = ((delta[:, :4] / imgsz) ** 2).sum(axis=1) + (delta[:, 4:] ** 2).sum(axis=1)
    weight = reference[:, 4:].max(axis=1)
    return float((per_anchor * weight).sum() / max(float(weight.sum()), 1e-12))


def probe_images(calibration: CalibrationSet, count: int) -> list[np.ndarray]:
    """`count` calibration images spread evenly over the set, each a (1, 3, imgsz, imgsz) tensor."""
    files = calibration.files
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)]
    return [preprocess([file], calibration.imgsz)[0] for file in chosen]


def model_outputs(onnx_path: Path, images: Sequence[np.ndarray]) -> np.ndarray:
    runner = OnnxRuntimeRunner(onnx_path, "int8", RunOptions())
    return np.concatenate([runner.infer(image) for image in images])


def rank_layers(
    quantizer: CachedQuantizer,
    groups: Sequence[LayerGroup],
    images: Sequence[np.ndarray],
) -> list[LayerScore]:
    """Every group's score, most harmful first; equal scores keep graph order, so the ranking is stable."""
    imgsz = images[0].shape[-1]
    reference = model_outputs(quantizer.onnx, images)
    quantizable = [node for group in groups for node in group.nodes]
    scores = []
    with tempfile.TemporaryDirectory(prefix="edgepipe-sensitivity-") as tmp:
        probe = Path(tmp) / "one_layer_int8.onnx"
        for group in progress.track(groups, "layer sensitivity", len(groups)):
            own = set(group.nodes)
            quantizer.write(probe, keep_float=[node for node in quantizable if node not in own])
            error = output_error(reference, model_outputs(probe, images), imgsz)
            scores.append(LayerScore(group.name, error))
    return sorted(scores, key=lambda s: -s.score)
