"""The ONNX Runtime Runner: one InferenceSession on the CPU (or CUDA when asked and available).

Its own module, so that the accuracy-driven INT8 loop (`targets.accuracy_int8`) measures candidates with
it without importing the target that calls that loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.runner import Runner
from targets.base import RunOptions


class OnnxRuntimeRunner(Runner):
    def __init__(self, path: Path, precision: str, options: RunOptions):
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        providers = ["CPUExecutionProvider"]
        if options.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.precision = precision
        self.providers = self.session.get_providers()

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]
