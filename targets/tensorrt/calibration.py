"""Implicit INT8 calibration (TensorRT 10 only): the calibration set as batches of the profile's batch
size, its cache, and the IInt8EntropyCalibrator2 that feeds them to the builder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.artifacts import sha256_file, write_atomic

if TYPE_CHECKING:
    from core.calibration import CalibrationSet
    from targets.tensorrt.cuda_memory import CudaMemory


class CalibrationStream:
    """The calibration set as fixed-size batches for an implicit-quantization calibrator, plus its cache.

    `batch_size` is the batch TensorRT calibrates at: the engine's fixed batch, or the `opt` batch of the
    calibration profile of a dynamic one. The cache is only reused when it was written for the same
    calibration set (same sha256): a cache from other images would silently calibrate the engine on the
    wrong data.
    """

    def __init__(self, calibration: CalibrationSet, batch_size: int, cache_path: Path):
        self.calibration = calibration
        self.batch_size = batch_size
        self.cache_path = Path(cache_path)
        self._batches: Iterator[np.ndarray] = calibration.batches(batch_size)

    @property
    def nbytes(self) -> int:
        """One batch: the size of the device buffer the calibrator fills."""
        return self.batch_size * 3 * self.calibration.imgsz**2 * np.dtype(np.float32).itemsize

    def next_batch(self) -> np.ndarray | None:
        """The next batch (CalibrationSet drops a short last one: TensorRT calibrates at one batch size)."""
        return next(self._batches, None)

    @property
    def _stamp_path(self) -> Path:
        return self.cache_path.with_suffix(self.cache_path.suffix + ".json")

    def read_cache(self) -> bytes | None:
        if not (self.cache_path.is_file() and self._stamp_path.is_file()):
            return None
        stamp = json.loads(self._stamp_path.read_text())
        if stamp.get("calibration_sha256") != self.calibration.sha256:
            return None
        return self.cache_path.read_bytes()

    def write_cache(self, cache: bytes) -> None:
        write_atomic(self.cache_path, bytes(cache))
        stamp = {"calibration_sha256": self.calibration.sha256, "cache_sha256": sha256_file(self.cache_path)}
        write_atomic(self._stamp_path, json.dumps(stamp, indent=2))


def entropy_calibrator(trt: Any, stream: CalibrationStream, cuda: CudaMemory) -> Any:
    """An IInt8EntropyCalibrator2 reading `stream` into one device buffer of a whole batch."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_input = cuda.alloc(stream.nbytes)

        def get_batch_size(self) -> int:
            return stream.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = stream.next_batch()
            if batch is None:
                return None
            cuda.to_device(self.device_input, np.ascontiguousarray(batch, dtype=np.float32))
            cuda.synchronize()
            return [self.device_input]

        def read_calibration_cache(self) -> bytes | None:
            return stream.read_cache()

        def write_calibration_cache(self, cache) -> None:
            stream.write_cache(bytes(cache))

    return EntropyCalibrator()
