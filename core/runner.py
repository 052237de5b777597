"""The Runner protocol: the one contract between the backends (`targets`) and the harness (`benchmarks`).

A Runner maps a preprocessed NCHW float32 batch (RGB, 0..1, letterboxed) to the raw output of
Ultralytics' Detect head, shaped (N, 4 + classes, anchors), boxes as xywh in input pixels. Backends
subclass it to inherit the defaults below; it is a context manager that closes the Runner on exit.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np

R = TypeVar("R", bound="Runner")


class LayerTime(NamedTuple):
    """One layer's time in one profiled inference, as the backend's profiler reports it."""

    name: str
    op_type: str
    exec_type: str  # the kernel that ran it, e.g. "brgconv_avx512_amx_bf16", or the execution provider
    ms: float


@runtime_checkable
class Runner(Protocol):
    precision: str  # the precision that actually runs, e.g. "fp32", "bf16", "int8+bf16"

    def infer(self, images: np.ndarray) -> np.ndarray: ...

    def throughput(self, batch: np.ndarray, streams: int, seconds: float) -> float | None:
        """Images per second with `streams` concurrent requests, measured by the backend itself; None
        (the default) lets the harness run one Runner per stream in threads (`benchmarks.throughput`)."""
        return None

    def settings(self) -> dict[str, Any]:
        """What the backend actually runs with, read back from it: `threads` (None: not known) and its
        own keys (OpenVINO: device, hint, streams, requests)."""
        return {}

    def layer_times(self, batch: np.ndarray, runs: int) -> list[LayerTime] | None:
        """Per-layer times of `runs` profiled inferences of `batch` (after one untimed run), from a
        separately loaded, profiling copy of the engine; None (the default): no profiler."""
        return None

    def close(self) -> None:
        """Release what the Runner holds (sessions, compiled models, device buffers); the default holds
        nothing that garbage collection does not free."""
        return None

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
