"""Device buffers, a stream, events and graphs for TensorRT's builder and runner, on cuda-python or pycuda.

Opened before TensorRT's builder or runtime, on the device's primary context: `pycuda.autoinit` would push a
context of its own after TensorRT had started on the primary one ("context is destroyed" at exit). Events
time the host-to-device copy, the GPU compute and the device-to-host copy apart, as trtexec does; a captured
CUDA graph replays an inference with one launch (`bench --cuda-graphs`).
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from core.errors import EdgepipeError


class CudaError(EdgepipeError):
    """A CUDA call failed; the message names the call and CUDA's error."""


class CudaMemory(Protocol):
    stream: int  # the stream handle TensorRT's execute_async_v3 takes

    def alloc(self, nbytes: int) -> int: ...
    def to_device(self, pointer: int, array: np.ndarray) -> None: ...
    def to_host(self, array: np.ndarray, pointer: int) -> None: ...
    def synchronize(self) -> None: ...
    def device_info(self) -> tuple[str, str]: ...  # (name, compute capability "8.7")
    def event(self) -> object: ...  # a CUDA event; `record` puts it on the stream
    def record(self, event: object) -> None: ...
    def elapsed_ms(self, start: object, end: object) -> float: ...  # both recorded and completed
    def begin_capture(self) -> None: ...  # stream capture: what is enqueued next becomes a graph
    def end_capture(self) -> object: ...  # the captured, instantiated graph
    def launch(self, graph: object) -> None: ...


def _check(result, call: str):
    """cuda-python returns (err, *values); raise on an error, return the value (None when there is none)."""
    err, *values = result
    if int(err) != 0:
        hint = "check the driver with `nvidia-smi` (or `tegrastats` on a Jetson)"
        raise CudaError(f"CUDA: {call} failed with {err!r}", hint=hint)
    return values[0] if values else None


class CudartMemory:
    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart
        self.cudart = cudart
        _check(cudart.cudaFree(0), "cudaFree(0) (opening the primary context)")
        self.stream = int(_check(cudart.cudaStreamCreate(), "cudaStreamCreate"))
        self._buffers: list[int] = []

    def alloc(self, nbytes: int) -> int:
        pointer = int(_check(self.cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        self._buffers.append(pointer)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        copied = self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream)
        _check(copied, "cudaMemcpyAsync to the device")

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        copied = self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream)
        _check(copied, "cudaMemcpyAsync to the host")

    def synchronize(self) -> None:
        _check(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def device_info(self) -> tuple[str, str]:
        device = _check(self.cudart.cudaGetDevice(), "cudaGetDevice")
        props = _check(self.cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        return props.name.decode().rstrip("\x00"), f"{props.major}.{props.minor}"

    def event(self) -> object:
        return _check(self.cudart.cudaEventCreate(), "cudaEventCreate")

    def record(self, event: object) -> None:
        _check(self.cudart.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: object, end: object) -> float:
        return float(_check(self.cudart.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def begin_capture(self) -> None:
        mode = self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        _check(self.cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")

    def end_capture(self) -> object:
        graph = _check(self.cudart.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        return _check(self.cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch(self, graph: object) -> None:
        _check(self.cudart.cudaGraphLaunch(graph, self.stream), "cudaGraphLaunch")

    def __del__(self) -> None:
        for pointer in self._buffers:
            self.cudart.cudaFree(pointer)


class PycudaMemory:
    def __init__(self) -> None:
        import pycuda.autoprimaryctx  # noqa: F401  (retains the primary context TensorRT also uses)
        import pycuda.driver as driver

        self.driver = driver
        self._stream = driver.Stream()
        self.stream = self._stream.handle
        self._buffers: list = []

    def alloc(self, nbytes: int) -> int:
        buffer = self.driver.mem_alloc(nbytes)
        self._buffers.append(buffer)
        return int(buffer)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self.driver.memcpy_htod_async(pointer, array, self._stream)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self.driver.memcpy_dtoh_async(array, pointer, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def device_info(self) -> tuple[str, str]:
        device = self.driver.Context.get_device()
        major, minor = device.compute_capability()
        return device.name(), f"{major}.{minor}"

    def event(self) -> object:
        return self.driver.Event()

    def record(self, event) -> None:
        event.record(self._stream)

    def elapsed_ms(self, start, end) -> float:
        return float(end.time_since(start))

    def begin_capture(self) -> None:
        self._stream.begin_capture()

    def end_capture(self) -> object:
        return self._stream.end_capture().instantiate()

    def launch(self, graph) -> None:
        graph.launch(self._stream)


def _has_module(name: str) -> bool:
    """find_spec of a submodule imports its parents; a missing parent is simply absent."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def cuda_library() -> str | None:
    """'cuda-python' or 'pycuda', the first installed; None when neither is. `cuda` alone proves nothing:
    cuda-pathfinder and cuda-toolkit are `cuda.*` namespace packages without the runtime bindings."""
    if _has_module("cuda.bindings.runtime") or _has_module("cuda.cudart"):  # cuda-python >= 12.6 / older
        return "cuda-python"
    if _has_module("pycuda.driver"):
        return "pycuda"
    return None


def open_cuda() -> CudaMemory:
    library = cuda_library()
    if library is None:
        raise CudaError("neither cuda-python nor pycuda is installed", hint="pip install 'cuda-python>=12'")
    return CudartMemory() if library == "cuda-python" else PycudaMemory()
