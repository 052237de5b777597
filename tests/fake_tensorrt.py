"""Test doubles of TensorRT 10 and 11 (which cannot be installed here) and of the CUDA memory the target
uses, so that the builder and runner code that only a device would run is executed on every machine.

The fakes expose only the API surface of each version: TensorRT 11 has no `BuilderFlag.FP16`/`INT8`, no
`int8_calibrator` and no `IInt8EntropyCalibrator2`, and builds every network strongly typed. The parser
reads the real ONNX (its input and output shapes, its float type) and refuses an INT32 `DequantizeLinear`
as TensorRT's does. The "engine" is JSON; running it fills the output with `expected_output`, computed
from the input the runner copied to fake device memory, so a wrong buffer size, dtype or shape shows.
"""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path
from typing import Any

import numpy as np


class FakeCuda:
    """The `CudaMemory` protocol over host memory, checking every copy fits its buffer."""

    def __init__(self, capability: str = "8.7"):
        self.stream = 7
        self.memory: dict[int, bytearray] = {}
        self.capability = capability
        self.copies: list[int] = []  # bytes copied to the device, per call
        self.clock = 0.0  # fake GPU time: each recorded event reads it, each copy or launch advances it
        self.capture: list | None = None  # work enqueued while a graph is being captured
        self.launches = 0

    def alloc(self, nbytes: int) -> int:
        pointer = 0x1000 * (len(self.memory) + 1)
        self.memory[pointer] = bytearray(nbytes)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        buffer = self.memory[pointer]
        assert array.nbytes <= len(buffer), f"{array.nbytes} bytes copied into a {len(buffer)}-byte buffer"
        buffer[: array.nbytes] = array.tobytes()
        self.copies.append(array.nbytes)
        self.clock += 0.25

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        buffer = self.memory[pointer]
        assert array.nbytes <= len(buffer), f"{array.nbytes} bytes read from a {len(buffer)}-byte buffer"
        array[...] = np.frombuffer(bytes(buffer[: array.nbytes]), dtype=array.dtype).reshape(array.shape)

    def synchronize(self) -> None:
        return None

    def event(self) -> list[float]:
        return [0.0]

    def record(self, event: list[float]) -> None:
        event[0] = self.clock

    def elapsed_ms(self, start: list[float], end: list[float]) -> float:
        return end[0] - start[0]

    def begin_capture(self) -> None:
        self.capture = []

    def end_capture(self) -> list:
        graph, self.capture = self.capture, None
        return graph

    def launch(self, graph: list) -> None:
        self.launches += 1
        for work in graph:
            work()

    def device_info(self) -> tuple[str, str]:
        return "Fake GPU", self.capability

    def read(self, pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(bytes(self.memory[pointer]), dtype=dtype, count=count).reshape(shape)


def expected_output(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """What the fake engine computes: per image, its mean plus the channel and anchor index."""
    n, channels, anchors = shape
    mean = images.reshape(n, -1).astype(np.float64).mean(axis=1)
    grid = np.arange(channels)[:, None] * 0.5 + np.arange(anchors)[None, :] * 1e-3
    return mean[:, None, None] + grid[None]


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"


def _onnx_io(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph

    def dims(value) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

    int32_dq = [
        node.name
        for node in graph.node
        if node.op_type == "DequantizeLinear"
        and any(i.name == node.input[0] and i.data_type == onnx.TensorProto.INT32 for i in graph.initializer)
    ]
    fp16 = graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    return {
        "input": graph.input[0].name,
        "input_shape": dims(graph.input[0]),
        "output": graph.output[0].name,
        "output_shape": dims(graph.output[0]),
        "fp16_io": fp16,
        "int32_dq": int32_dq,
    }


def make_tensorrt(major: int, cuda: FakeCuda) -> types.ModuleType:
    """A `tensorrt` module with the API of TensorRT `major` (10 or 11), running on `cuda`."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = f"{major}.{3 if major == 10 else 4}.0"
    trt.TensorIOMode = TensorIOMode
    trt.DataType = DataType
    trt.nptype = lambda dtype: np.dtype(dtype.value).type
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    trt.BuilderFlag = (
        types.SimpleNamespace(FP16="fp16", INT8="int8") if major == 10 else types.SimpleNamespace()
    )

    class Logger:
        WARNING = 2

        def __init__(self, severity: int):
            self.severity = severity

    class Network:
        def __init__(self, flags: int):
            self.strongly_typed = major >= 11 or bool(flags & (1 << 5))
            self.io: dict[str, Any] | None = None

        def get_input(self, index: int):
            assert self.io is not None and index == 0
            return types.SimpleNamespace(name=self.io["input"], shape=tuple(self.io["input_shape"]))

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            io = _onnx_io(Path(path))
            self.errors = [f"{name}: INT32 DequantizeLinear is not supported" for name in io["int32_dq"]]
            self.network.io = io
            return not self.errors

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low, opt, high) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Config:
        def __init__(self) -> None:
            self.flags: list[str] = []
            self.profiles: list[Profile] = []
            self.calibration_profile: Profile | None = None
            self.pool: dict[str, int] = {}

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pool[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: Profile) -> bool:
            self.calibration_profile = profile
            return True

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "int8_calibrator" and major >= 11:
                raise AttributeError("'IBuilderConfig' object has no attribute 'int8_calibrator'")
            object.__setattr__(self, name, value)

    class Builder:
        def __init__(self, logger: Logger):
            self.logger = logger

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            assert network.io is not None, "build before parse"
            io = dict(network.io)
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None:
                io["calibrated_batches"] = _calibrate(calibrator, io, config)
            profile = config.profiles[0].shapes[io["input"]] if config.profiles else None
            if -1 in io["input_shape"] and profile is None:
                return None  # TensorRT: a dynamic input needs an optimization profile
            record = {**io, "version": trt.__version__, "flags": config.flags, "profile": profile,
                      "strongly_typed": network.strongly_typed}  # fmt: skip
            return json.dumps(record).encode()

    def _calibrate(calibrator, io: dict[str, Any], config: Config) -> int:
        """TensorRT 10's calibration: at the profile's opt batch for a dynamic input."""
        shape = list(io["input_shape"])
        if shape[0] == -1:
            assert config.calibration_profile is not None, "dynamic batch calibrated without a profile"
            shape = list(config.calibration_profile.shapes[io["input"]][1])
        assert calibrator.get_batch_size() == shape[0], "calibrator batch differs from the profile's"
        if calibrator.read_calibration_cache() is not None:
            return 0
        batches = 0
        while (pointers := calibrator.get_batch([io["input"]])) is not None:
            batch = cuda.read(pointers[0], tuple(shape), np.dtype(np.float32))
            assert batch.max() <= 1.0, "calibration batch is not preprocessed"
            batches += 1
        calibrator.write_calibration_cache(b"TRT-fake-EntropyCalibration2\n")
        return batches

    class Engine:
        def __init__(self, record: dict[str, Any]):
            self.record = record
            self.num_io_tensors = 2
            self.device_memory_size = 1_000_000

        def get_tensor_name(self, index: int) -> str:
            return [self.record["input"], self.record["output"]][index]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name == self.record["input"] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType.HALF if self.record["fp16_io"] else DataType.FLOAT

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine: Engine):
            self.engine, self.shape, self.addresses = engine, None, {}

        def set_input_shape(self, name: str, shape) -> bool:
            record = self.engine.record
            low, _, high = record["profile"] or (record["input_shape"],) * 3
            ok = all(lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True))
            self.shape = tuple(shape) if ok else None
            return ok

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            assert self.shape is not None, "output shape asked before a valid input shape"
            return (self.shape[0], *self.engine.record["output_shape"][1:])

        def set_tensor_address(self, name: str, pointer: int) -> bool:
            self.addresses[name] = pointer
            return True

        def execute_async_v3(self, stream: int) -> bool:
            assert stream == cuda.stream and self.shape is not None
            if cuda.capture is not None:  # captured into a graph: runs when the graph is launched
                cuda.capture.append(self._run)
                return True
            return self._run()

        def _run(self) -> bool:
            cuda.clock += 1.0
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype("")))
            record = self.engine.record
            images = cuda.read(self.addresses[record["input"]], self.shape, dtype)
            output = expected_output(images, self.get_tensor_shape("")).astype(dtype)
            cuda.to_device(self.addresses[record["output"]], output)
            return bool(np.isfinite(images).all())  # NaN input stands in for a failed launch

    class Runtime:
        def __init__(self, logger: Logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            try:
                record = json.loads(data)
            except ValueError:
                return None
            return Engine(record) if record.get("version") == trt.__version__ else None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    if major == 10:

        class IInt8EntropyCalibrator2:
            """The base class the target's calibrator derives from (gone in TensorRT 11)."""

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return trt
