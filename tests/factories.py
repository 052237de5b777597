"""Crafted Result records for the report and gate tests (no model is run)."""

from __future__ import annotations

import numpy as np

from benchmarks.results import LatencyStats, Result

CPU = {"name": "Intel Xeon Platinum 8480+", "arch": "x86_64", "cores": 2, "os": "Linux", "threads_used": 1}
JETSON = {"name": "NVIDIA Jetson AGX Orin 64GB", "arch": "aarch64", "nvpmodel": "MAXN", "jetpack": "6.1"}


def stats(samples: np.ndarray) -> LatencyStats:
    p50, p90, p95, p99 = np.percentile(samples, [50, 90, 95, 99])
    return LatencyStats(
        n=len(samples), mean=samples.mean(), std=samples.std(), min=samples.min(),
        p50=p50, p90=p90, p95=p95, p99=p99, max=samples.max(),
    )  # fmt: skip


def make_result(
    target: str,
    precision: str,
    p50: float,
    map50_95: float | None,
    *,
    device: dict | None = None,
    batch: int = 1,
    ran_as: str | None = None,
    size_mb: float = 12.0,
    seed: int = 0,
    **extra,
) -> Result:
    """A result whose latency stats come from 200 log-normal samples with median `p50`."""
    samples = p50 * np.random.default_rng(seed).lognormal(0.0, 0.08, 200)
    samples *= p50 / np.median(samples)
    fields = {"model": "yolov8n-pruned", "family": "yolov8", "imgsz": 640, "threads": 1, **extra}
    return Result(
        target=target,
        precision=ran_as or precision,
        requested_precision=precision,
        batch=batch,
        dataset="coco128-val2017",
        letterbox="square 640x640",
        latency_ms=stats(samples),
        e2e_latency_ms=stats(samples + 3.0),
        throughput_ips=1000.0 * batch / p50,
        size_mb=size_mb,
        params=1_500_000,
        gflops=4.2,
        map50_95=map50_95,
        map50=None if map50_95 is None else map50_95 + 0.15,
        device=device or CPU,
        versions={"edgepipe": "0.1.0"},
        created_at="2025-01-01T00:00:00+00:00",
        samples_ms=samples.round(4).tolist(),
        **fields,
    )


def cpu_results() -> list[Result]:
    story = [
        {"stage": "source", "params": 3_157_200, "gflops": 8.7, "map50_95": 0.433},
        {"stage": "prune", "params": 1_480_000, "gflops": 4.3},
        {"stage": "finetune", "params": 1_480_000, "gflops": 4.3, "map50_95": 0.401},
    ]
    return [
        make_result("torch", "fp32", 40.0, 0.401, size_mb=6.1, seed=1, stage_story=story),
        make_result("onnxruntime", "fp32", 25.0, 0.401, size_mb=5.9, seed=2),
        make_result("openvino", "fp32", 18.0, 0.400, ran_as="bf16", size_mb=5.9, seed=3, flags=["bf16-hint"]),
        make_result("openvino", "int8", 9.5, 0.392, size_mb=1.7, seed=4),
        make_result("onnxruntime", "int8", 14.0, 0.385, size_mb=1.6, seed=5),
    ]


def source_results() -> list[Result]:
    """The unpruned model of `cpu_results` on the same targets (role "source"): slower, larger, better."""
    source = {"role": "source", "model": "yolov8n"}
    return [
        make_result("torch", "fp32", 92.0, 0.433, size_mb=12.7, seed=11, **source),
        make_result("onnxruntime", "fp32", 57.5, 0.433, size_mb=12.5, seed=12, **source),
        make_result("openvino", "int8", 21.9, 0.425, size_mb=3.4, seed=14, **source),
    ]
