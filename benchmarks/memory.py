"""The engine's memory: peak resident memory added by loading and running it, in a fresh process.

A fresh (spawned) process per measurement keeps one engine's allocations, caches and thread pools out of
another's figure. Inside it, the resident set is read once the backend's libraries are imported, the
kernel's high-water mark is reset (Linux: /proc/self/clear_refs), the engine is loaded and run, and the
figure is the high-water mark minus that baseline. Where the mark cannot be reset the lifetime peak
(getrusage) stands in, which can only overstate. GPU memory is not counted here.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

METHOD = "peak RSS added by loading and running the engine, in a fresh process (VmHWM - VmRSS before)"
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    if not _STATUS.is_file():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_kb() -> int:
    peak = _status_kb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB elsewhere


def current_kb() -> int:
    rss = _status_kb("VmRSS")
    if rss is not None:
        return rss
    import psutil

    return psutil.Process().memory_info().rss // 1024


def added_peak_mb(prepare: Callable[[], Any], load_and_run: Callable[[Any], None]) -> float:
    """MB (10^6 bytes) the peak RSS rises over the baseline taken after `prepare` (imports)."""
    state = prepare()
    reset_peak()
    before = current_kb()
    load_and_run(state)
    return max(0, peak_kb() - before) * 1024 / 1e6


def in_fresh_process(function: Callable[..., float], *args: Any) -> float:
    """`function(*args)` in a newly spawned interpreter (a top-level, picklable function)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
