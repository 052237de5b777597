"""Run a serialized engine: one input, one output, device buffers per input shape, dtypes from the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.runner import Runner
from targets.tensorrt.cuda_memory import CudaMemory
from targets.tensorrt.library import TensorRtFailure, checked, import_tensorrt
from targets.tensorrt.metadata import check_engine_compatible

REBUILD = "rebuild it on this device with `edgepipe build --target tensorrt`"


class TensorRtRunner(Runner):
    def __init__(self, path: Path, metadata: dict[str, Any], cuda: CudaMemory, cuda_graphs: bool = False):
        trt = import_tensorrt()
        self.cuda = cuda  # opened by the caller before the runtime, on the primary context
        check_engine_compatible(metadata["tensorrt"], trt.__version__, cuda.device_info()[1])
        self.runtime = checked(trt.Runtime(trt.Logger(trt.Logger.WARNING)), "Runtime()")
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise InputError("TensorRT cannot deserialize this engine (see its log)", path=path, hint=REBUILD)
        self.context = checked(self.engine.create_execution_context(), "create_execution_context")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            detail = f"engine has inputs {inputs} and outputs {outputs}: a YOLOv8 has one of each"
            raise InputError(detail, path=path)
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.precision = metadata["runtime_precision"]
        self._buffers: dict[tuple[int, ...], tuple[int, int, np.ndarray]] = {}
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], object] = {}
        self._events = [self.cuda.event() for _ in range(4)]  # before H2D, compute, D2H, and after
        self._split: dict[str, list[float]] = {"h2d": [], "compute": [], "d2h": []}

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(self.input_name, shape):
            raise InputError(
                f"the engine does not take input shape {shape}",
                hint="a fixed-batch engine takes its own batch only; a dynamic one takes 1..max_batch",
            )

    def _bind(self, shape: tuple[int, ...]) -> tuple[int, int, np.ndarray]:
        """Device buffers for an input shape, allocated once per shape."""
        if shape not in self._buffers:
            self._set_shape(shape)
            output = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype)
            nbytes = int(np.prod(shape)) * self.input_dtype.itemsize
            self._buffers[shape] = (self.cuda.alloc(nbytes), self.cuda.alloc(output.nbytes), output)
        return self._buffers[shape]

    def infer(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=self.input_dtype)
        device_in, device_out, output = self._bind(images.shape)
        self._set_shape(images.shape)
        for name, pointer in ((self.input_name, device_in), (self.output_name, device_out)):
            checked(self.context.set_tensor_address(name, pointer), f"set_tensor_address({name!r})")
        start, copied_in, computed, copied_out = self._events
        self.cuda.record(start)
        self.cuda.to_device(device_in, images)
        self.cuda.record(copied_in)
        self._enqueue(images.shape)
        self.cuda.record(computed)
        self.cuda.to_host(output, device_out)
        self.cuda.record(copied_out)
        self.cuda.synchronize()
        spans = {"h2d": (start, copied_in), "compute": (copied_in, computed), "d2h": (computed, copied_out)}
        for key, (a, b) in spans.items():
            self._split[key].append(self.cuda.elapsed_ms(a, b))
        return output.astype(np.float32)  # a copy: the harness decodes float32

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream):
            raise TensorRtFailure("TensorRT: execute_async_v3 failed (see its log above)", hint=REBUILD)

    def _enqueue(self, shape: tuple[int, ...]) -> None:
        """The engine's work on the stream; with CUDA graphs, captured once per shape and replayed.

        TensorRT wants one plain enqueue before a capture (it sets up its resources there).
        """
        if not self.cuda_graphs:
            self._execute()
        elif shape not in self._graphs:
            self._execute()
            self.cuda.begin_capture()
            self._execute()
            self._graphs[shape] = self.cuda.end_capture()
        else:
            self.cuda.launch(self._graphs[shape])

    def settings(self) -> dict[str, Any]:
        """CUDA graphs on or off, the median H2D / GPU compute / D2H split of the inferences so far, and
        the device memory of the engine's execution context plus its I/O buffers."""
        split = {key: float(np.median(times)) for key, times in self._split.items() if times}
        scratch = getattr(self.engine, "device_memory_size_v2", None) or self.engine.device_memory_size
        buffers = sum(
            int(np.prod(shape)) * self.input_dtype.itemsize + out.nbytes
            for shape, (_, _, out) in self._buffers.items()
        )
        return {
            "cuda_graphs": self.cuda_graphs,
            "gpu_split_ms": split or None,
            "device_memory_mb": (scratch + buffers) / 1e6,
        }
