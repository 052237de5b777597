"""Latency: warm-up, then a timed loop of at least `iters` runs and `min_seconds`; percentiles of the samples.

Model-only latency times `runner.infer` on a ready batch. End-to-end latency times what an application
does per batch: decode the images from memory, letterbox, infer, then decode + NMS + rescale, with the NMS
thresholds of a deployed detector (not mAP's conf 0.001 multi-label, whose NMS costs ten times more).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from benchmarks.accuracy import NmsThresholds, postprocess
from benchmarks.results import LatencyStats
from core.letterbox import letterbox, to_tensor

if TYPE_CHECKING:
    from core.runner import Runner

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure: `warmup` untimed runs, then runs until both `iters` and `min_seconds` are met."""

    warmup: int = 10
    iters: int = 100
    min_seconds: float = 2.0


def time_calls(fn: Callable[[], object], plan: TimingPlan) -> list[float]:
    """Milliseconds per call of `fn`, measured with perf_counter_ns after the warm-up."""
    for _ in range(plan.warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter_ns() + int(plan.min_seconds * 1e9)
    while len(samples) < plan.iters or time.perf_counter_ns() < deadline:
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def latency_stats(samples_ms: list[float]) -> LatencyStats:
    """n, mean, std (population), min, p50/p90/p95/p99 (numpy's linear percentiles) and max."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p95, p99 = np.percentile(values, PERCENTILES)
    return LatencyStats(
        n=int(values.size),
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        p50=float(p50),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        max=float(values.max()),
    )


def coefficient_of_variation(samples_ms: list[float]) -> float:
    values = np.asarray(samples_ms, dtype=np.float64)
    mean = values.mean()
    return float(values.std() / mean) if mean > 0 else 0.0


def model_latency(runner: Runner, batch: np.ndarray, plan: TimingPlan) -> list[float]:
    """Samples (ms) of `runner.infer` alone on one preprocessed NCHW batch."""
    return time_calls(lambda: runner.infer(batch), plan)


def encode_images(images_bgr: list[np.ndarray]) -> list[bytes]:
    """JPEG-encode images once, so the end-to-end loop decodes from memory instead of timing the disk."""
    encoded = []
    for image in images_bgr:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ValueError("cannot JPEG-encode an image")
        encoded.append(buffer.tobytes())
    return encoded


def end_to_end(
    runner: Runner, encoded: list[bytes], imgsz: int, thresholds: NmsThresholds = NmsThresholds()
) -> list[np.ndarray]:
    """One application step: decode, letterbox, infer, NMS and rescale to the original images."""
    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in encoded]
    boxed = [letterbox(image, imgsz) for image in decoded if image is not None]
    if len(boxed) != len(encoded):
        raise ValueError("cannot decode an encoded image")
    raw = runner.infer(to_tensor([b[0] for b in boxed]))
    return postprocess(raw, [b[1] for b in boxed], imgsz, thresholds)


def e2e_latency(
    runner: Runner,
    encoded: list[bytes],
    imgsz: int,
    plan: TimingPlan,
    thresholds: NmsThresholds = NmsThresholds(),
) -> list[float]:
    """Samples (ms) of `end_to_end` on one batch of encoded images."""
    return time_calls(lambda: end_to_end(runner, encoded, imgsz, thresholds), plan)
