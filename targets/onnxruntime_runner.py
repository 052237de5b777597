"""The ONNX Runtime Runner: one InferenceSession on the CPU (or CUDA when asked and available).

Its own module, so that the accuracy-driven INT8 loop (`targets.accuracy_int8`) measures candidates with
it without importing the target that calls that loop.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from core.runner import LayerTime, Runner
from targets.base import RunOptions


def make_session(path: Path, options: RunOptions, profile_prefix: str | None = None):
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    if options.threads:
        session_options.intra_op_num_threads = options.threads
    if profile_prefix is not None:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = profile_prefix
    providers = ["CPUExecutionProvider"]
    if options.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), session_options, providers=providers)


def default_threads() -> int | None:
    """ONNX Runtime's intra-op pool when left at 0: one thread per physical core (its documented default)."""
    return psutil.cpu_count(logical=False)


def node_times(trace: list[dict[str, Any]], skip_runs: int) -> list[LayerTime]:
    """The kernel times of ONNX Runtime's profiler trace, leaving out the first `skip_runs` runs."""
    runs = sorted(e["ts"] for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[skip_runs] if len(runs) > skip_runs else float("inf")
    return [
        LayerTime(
            event["name"].removesuffix("_kernel_time"),
            event.get("args", {}).get("op_name", ""),
            event.get("args", {}).get("provider", ""),
            event["dur"] / 1e3,
        )
        for event in trace
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start
    ]


class OnnxRuntimeRunner(Runner):
    def __init__(self, path: Path, precision: str, options: RunOptions):
        self.path, self.options = path, options
        self.session = make_session(path, options)
        self.input_name = self.session.get_inputs()[0].name
        self.precision = precision
        self.providers = self.session.get_providers()

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]

    def settings(self) -> dict[str, Any]:
        threads = self.session.get_session_options().intra_op_num_threads
        return {"threads": threads or default_threads(), "providers": ",".join(self.providers)}

    def layer_times(self, batch: np.ndarray, runs: int) -> list[LayerTime]:
        """ONNX Runtime's profiler (a Chrome trace of every kernel), read back and deleted."""
        with tempfile.TemporaryDirectory(prefix="edgepipe-ort-profile-") as folder:
            session = make_session(self.path, self.options, profile_prefix=str(Path(folder) / "ort"))
            for _ in range(runs + 1):  # the first run is untimed: first-run allocations
                session.run(None, {self.input_name: batch})
            trace = json.loads(Path(session.end_profiling()).read_text())
        return node_times(trace, skip_runs=1)
