"""The engine's memory: peak resident memory added by loading and running it, in a fresh process.

A fresh (spawned) process per measurement keeps one engine's allocations, caches and thread pools out of
another's figure. Inside it, the resident set is read once the backend's libraries are imported, the
kernel's high-water mark is reset (Linux: /proc/self/clear_refs), the engine is loaded and run, and the
figure is the high-water mark minus that baseline. Where the mark cannot be reset the lifetime peak
(getrusage) stands in, which can only overstate. GPU memory is not counted here.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

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
    return psutil.Process().memory_info().rss // 1024


def added_peak_mb(prepare: Callable[[], Any], load_and_run: Callable[[Any], None]) -> float:
    """MB (10^6 bytes) the peak RSS rises over the baseline taken after `prepare` (imports)."""
    state = prepare()
    reset_peak()
    before = current_kb()
    load_and_run(state)
    return max(0, peak_kb() - before) * 1024 / 1e6


def in_fresh_process(function: Callable[..., float], *args: Any) -> float:
    """`function(*args)` in a new interpreter; `function` is top-level (pickled by name).

    A plain subprocess rather than multiprocessing's spawn, which would re-run the caller's main script.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.run(
        [sys.executable, "-c", "from benchmarks.memory import child_main; child_main()"],
        input=pickle.dumps((function, args)),
        capture_output=True,
        env=env,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the memory measurement failed:\n{child.stderr.decode(errors='replace')[-2000:]}")
    return pickle.loads(child.stdout)


def child_main() -> None:
    """The fresh process: read (function, args) on stdin, write the pickled figure on stdout."""
    function, args = pickle.loads(sys.stdin.buffer.read())
    stdout, sys.stdout = sys.stdout, sys.stderr  # the libraries' prints must not corrupt the answer
    value = function(*args)
    sys.stdout = stdout
    sys.stdout.buffer.write(pickle.dumps(value))
