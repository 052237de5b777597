"""YOLO26's end-to-end output (N, 300, 6): decoded without NMS for mAP, and matched row by row for parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import decode_end_to_end, end_to_end, evaluate, postprocess
from core.dataset import load_dataset, read_labels
from core.letterbox import letterbox, load_image
from core.runner import Runner
from pipeline.stages.export import end_to_end_diffs


def end_to_end_output(rows: list[list[float]], max_det: int = 300) -> np.ndarray:
    """(1, max_det, 6) with the given rows first (x1 y1 x2 y2 score class), zeros after, as the head pads."""
    out = np.zeros((1, max_det, 6), dtype=np.float32)
    out[0, : len(rows)] = rows
    return out


def test_end_to_end_rows_are_kept_without_nms_and_rescaled():
    image = np.zeros((100, 200, 3), np.uint8)  # scale 0.32 to 64 px, 16 px of padding on top
    _, box = letterbox(image, 64)
    overlapping = [[16.0, 24.0, 48.0, 40.0, 0.9, 2], [17.0, 24.0, 48.0, 40.0, 0.8, 2]]  # IoU 0.97, one class
    raw = end_to_end_output([*overlapping, [0.0, 0.0, 8.0, 8.0, 0.0005, 1]])
    assert end_to_end(raw) and not end_to_end(np.zeros((1, 10, 300), np.float32))
    (det,) = postprocess(raw, [box], 64)
    assert det.shape == (2, 6)  # NMS at IoU 0.7 would have kept one; the 0.0005 row is under conf 0.001
    np.testing.assert_allclose(det[0, :4], [50.0, 25.0, 150.0, 75.0], atol=1e-4)
    np.testing.assert_allclose(det[:, 4:], [[0.9, 2], [0.8, 2]], atol=1e-6)
    assert [len(d) for d in decode_end_to_end(np.concatenate([raw, raw * 0]))] == [2, 0]


class EndToEndOracle(Runner):
    """Answers each image with its ground truth as end-to-end rows in letterbox pixels: mAP must be 1."""

    precision = "fp32"

    def __init__(self, data_yaml: Path, imgsz: int):
        self.outputs = [self.truth(p, imgsz) for p in load_dataset(data_yaml).images("val")]

    @staticmethod
    def truth(image: Path, imgsz: int) -> np.ndarray:
        _, box = letterbox(load_image(image), imgsz)
        h, w = box.shape
        rows = []
        for cls, cx, cy, bw, bh in read_labels(image):
            x1, y1 = (cx - bw / 2) * w * box.scale + box.pad[0], (cy - bh / 2) * h * box.scale + box.pad[1]
            rows.append([x1, y1, x1 + bw * w * box.scale, y1 + bh * h * box.scale, 0.9, cls])
        return end_to_end_output(rows)

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.outputs.pop(0)


def test_evaluate_scores_a_perfect_end_to_end_runner_one(synth_dataset):
    scores = evaluate(EndToEndOracle(synth_dataset, 96), synth_dataset, 96, progress=False)
    assert scores.map50_95 > 0.95 and scores.map50 == pytest.approx(1.0)


def test_parity_matches_end_to_end_rows_by_class_and_score_not_by_position():
    rows = [[10.0, 10.0, 20.0, 20.0, 0.50001, 0], [30.0, 30.0, 40.0, 40.0, 0.5, 1], [0, 0, 1, 1, 0.1, 0]]
    expected = end_to_end_output(rows, max_det=3)[0]
    swapped = expected[[1, 0, 2]]  # near-tied scores in the other order: the same detections
    assert end_to_end_diffs(expected, swapped, 1e-3) == pytest.approx((0.0, 0.0))
    moved = expected.copy()
    moved[0, :4] += 2.0
    box, score = end_to_end_diffs(expected, moved, 1e-3)
    assert box == pytest.approx(2.0) and score == 0.0
    relabelled = expected.copy()
    relabelled[1, 5] = 0
    assert end_to_end_diffs(expected, relabelled, 1e-3)[0] == np.inf
