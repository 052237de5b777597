"""Throughput: images per second at a batch size, with one or several concurrent requests (streams).

A Runner whose `throughput(batch, streams, seconds)` returns a figure measures itself (OpenVINO's async
infer queue with the THROUGHPUT hint; later TensorRT contexts or torch CUDA streams). Otherwise we run
one Runner per stream, each loaded with RunOptions(streams=...), in threads for a fixed duration: the
backends release the GIL while they infer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.runner import Runner

WARMUP_CALLS = 2


def measure_throughput(
    runner: Runner,
    batch: np.ndarray,
    streams: int,
    seconds: float,
    load_runner: Callable[[], Runner] | None = None,
) -> float:
    """Images per second with `streams` concurrent requests; `load_runner` makes the extra runners."""
    own = runner.throughput(batch, streams, seconds)
    if own is not None:
        return float(own)
    if streams > 1 and load_runner is None:
        raise ValueError("several streams need `load_runner` to make one runner per stream")
    runners = [runner] + [load_runner() for _ in range(streams - 1)] if load_runner else [runner]
    return threaded_throughput(runners, batch, seconds)


def threaded_throughput(runners: list[Runner], batch: np.ndarray, seconds: float) -> float:
    """Each runner infers `batch` in its own thread for `seconds`; images done / (last end - first start)."""
    for runner in runners:
        for _ in range(WARMUP_CALLS):
            runner.infer(batch)
    barrier = threading.Barrier(len(runners))
    spans: list[tuple[float, float, int]] = []  # (start, end, calls) per thread
    errors: list[BaseException] = []

    def loop(runner: Runner) -> None:
        barrier.wait()
        began = time.perf_counter()
        calls = 0
        try:
            while time.perf_counter() - began < seconds:
                runner.infer(batch)
                calls += 1
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        spans.append((began, time.perf_counter(), calls))

    threads = [threading.Thread(target=loop, args=(runner,), daemon=True) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return sum(calls for _, _, calls in spans) * len(batch) / elapsed
