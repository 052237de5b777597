"""Device buffers, a stream, events and graphs for the TensorRT runner, on cuda-python or pycuda.

Events time the host-to-device copy, the GPU compute and the device-to-host copy apart, as trtexec
does; a captured CUDA graph replays an inference with one launch (`bench --cuda-graphs`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


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


def _check(result):
    """cuda-python returns (err, *values); raise on an error, return the value (None when there is none)."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if values else None


class CudartMemory:
    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart
        self.cudart = cudart
        self.stream = int(_check(cudart.cudaStreamCreate()))
        self._buffers: list[int] = []

    def alloc(self, nbytes: int) -> int:
        pointer = int(_check(self.cudart.cudaMalloc(nbytes)))
        self._buffers.append(pointer)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        _check(self.cudart.cudaStreamSynchronize(self.stream))

    def device_info(self) -> tuple[str, str]:
        device = _check(self.cudart.cudaGetDevice())
        props = _check(self.cudart.cudaGetDeviceProperties(device))
        return props.name.decode().rstrip("\x00"), f"{props.major}.{props.minor}"

    def event(self) -> object:
        return _check(self.cudart.cudaEventCreate())

    def record(self, event: object) -> None:
        _check(self.cudart.cudaEventRecord(event, self.stream))

    def elapsed_ms(self, start: object, end: object) -> float:
        return float(_check(self.cudart.cudaEventElapsedTime(start, end)))

    def begin_capture(self) -> None:
        mode = self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        _check(self.cudart.cudaStreamBeginCapture(self.stream, mode))

    def end_capture(self) -> object:
        graph = _check(self.cudart.cudaStreamEndCapture(self.stream))
        return _check(self.cudart.cudaGraphInstantiate(graph, 0))

    def launch(self, graph: object) -> None:
        _check(self.cudart.cudaGraphLaunch(graph, self.stream))

    def __del__(self) -> None:
        for pointer in self._buffers:
            self.cudart.cudaFree(pointer)


class PycudaMemory:
    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
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


def cuda_library() -> str | None:
    """'cuda-python' or 'pycuda', the first that imports; None when neither does."""
    import importlib.util

    if importlib.util.find_spec("cuda") is not None:
        return "cuda-python"
    if importlib.util.find_spec("pycuda") is not None:
        return "pycuda"
    return None


def open_cuda() -> CudaMemory:
    return CudartMemory() if cuda_library() == "cuda-python" else PycudaMemory()
