"""TensorRT target (TensorRT 10 API): fp32, fp16 and int8 engines, built on the device they run on.

INT8 has two paths. The default, explicit quantization, decides everything on the host: a Q/DQ ONNX
(symmetric INT8, placed for TensorRT's fusions; the Detect head's post-processing in float) made by
NVIDIA Model Optimizer (`targets.modelopt_qdq`) from the shared calibration set, whose accuracy is
checked with ONNX Runtime before any device is involved. The device only compiles that file, with
INT8 and FP16 enabled, and the engine records its hash. The older path (`int8_mode: calibrator`) feeds
the same calibration set to an IInt8EntropyCalibrator2 and keeps a calibration cache, for TensorRT
versions and workflows that still need implicit quantization.

The host half can run alone (`qdq_only`): it writes the Q/DQ ONNX, plain or accuracy-checked (with a
val set, see `targets.accuracy_int8`), into a directory ONNX Runtime can load and benchmark;
`qdq_onnx` then compiles exactly that file on the device, after checking it against the hashes recorded
there, so the chain Q/DQ ONNX sha256 -> engine metadata holds.

Everything except `build_engine` and `TensorRtRunner` runs without TensorRT, and is tested that way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.artifacts import ARTIFACT_FILE, sha256_file, write_atomic
from core.engine_record import read_artifact_dir
from core.errors import BackendUnavailable, InputError
from core.runner import Runner
from targets.base import BuildInputs, RunOptions
from targets.cuda_memory import cuda_library
from targets.engine_dir import model_path, onnx_facts, write_engine_artifact
from targets.modelopt_qdq import DEFAULT_METHOD, modelopt_qdq, modelopt_version
from targets.qdq import QdqScheme

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

MODEL_FILE = "model.engine"
QDQ_FILE = "model.qdq.onnx"
CACHE_FILE = "calibration.cache"
WORKSPACE_BYTES = 2 << 30
# TensorRT's explicit quantization accepts only symmetric signed INT8 (zero point 0): the scheme the
# accuracy loop ranks layers with before ModelOpt writes each candidate.
TENSORRT_QDQ = QdqScheme(activations="QInt8", weights="QInt8", symmetric=True, per_channel=True)
INSTALL_HINT = (
    "TensorRT comes with JetPack on a Jetson, or with NVIDIA's TensorRT container / `pip install tensorrt` "
    "on an x86_64 Linux machine with an NVIDIA GPU; the runner also needs `pip install cuda-python` "
    "(or pycuda)"
)


def availability() -> tuple[bool, str]:
    try:
        import tensorrt
    except ImportError:
        return False, f"tensorrt is not installed. {INSTALL_HINT}"
    library = cuda_library()
    if library is None:
        return False, f"tensorrt {tensorrt.__version__} found, but not cuda-python or pycuda. {INSTALL_HINT}"
    return True, f"tensorrt {tensorrt.__version__} with {library}"


class CalibrationStream:
    """The calibration set as fixed-size batches for an implicit-quantization calibrator, plus its cache.

    The cache is only reused when it was written for the same calibration set (same sha256): a cache
    from other images would silently calibrate the engine on the wrong data.
    """

    def __init__(self, calibration: CalibrationSet, batch_size: int, cache_path: Path):
        self.calibration = calibration
        self.batch_size = batch_size
        self.cache_path = Path(cache_path)
        self._batches: Iterator[np.ndarray] = calibration.batches(batch_size)

    @property
    def nbytes(self) -> int:
        return self.batch_size * 3 * self.calibration.imgsz**2 * np.dtype(np.float32).itemsize

    def next_batch(self) -> np.ndarray | None:
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


def engine_metadata(
    *,
    trt_version: str,
    device_name: str,
    compute_capability: str,
    precision: str,
    int8_mode: str | None,
    calibration_sha256: str | None,
    qdq_onnx_sha256: str | None,
) -> dict[str, Any]:
    """What ties an engine to the device and inputs it was built from (stored in artifact.json)."""
    return {
        "tensorrt_version": trt_version,
        "device_name": device_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "int8_mode": int8_mode,
        "calibration_sha256": calibration_sha256,
        "qdq_onnx_sha256": qdq_onnx_sha256,
    }


def check_engine_compatible(recorded: dict[str, Any], trt_version: str, compute_capability: str) -> None:
    """A serialized engine runs only with the TensorRT version and GPU architecture that built it."""
    if recorded["tensorrt_version"] != trt_version:
        raise InputError(
            f"engine was built with TensorRT {recorded['tensorrt_version']}, this machine has {trt_version}",
            hint="rebuild the engine here with `edgepipe build --target tensorrt`",
        )
    if recorded["compute_capability"] != compute_capability:
        raise InputError(
            f"engine was built for compute capability {recorded['compute_capability']} "
            f"({recorded['device_name']}), this GPU is {compute_capability}",
            hint="TensorRT engines are specific to the GPU they are built on: rebuild it on this device",
        )


def qdq_record(out_path: Path, float_nodes: list[str], method: str) -> dict[str, Any]:
    """The Q/DQ ONNX's record: hash, float nodes, and the quantizer that made it."""
    return {
        "sha256": sha256_file(out_path),
        "float_nodes": float_nodes,
        "quantizer": f"nvidia-modelopt {modelopt_version()}",
        "calibration_method": method,
    }


@dataclass(frozen=True)
class QdqSource:
    """The Q/DQ ONNX an INT8 engine is compiled from, with what is known of how it was made."""

    record: dict[str, Any]  # sha256, float nodes, scheme (or where a foreign file came from)
    accuracy_control: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None  # CalibrationSet.record() of the calibration it used


def make_host_qdq(
    onnx_path: Path, calibration: CalibrationSet | None, options: dict[str, Any], out_path: Path
) -> QdqSource:
    """Quantize here with ModelOpt: plain, or checked against FP32 when `options` has `val_data` (falling
    back past the bound: `max_map_drop`, else 1% of FP32)."""
    if calibration is None:
        raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
    method = options.get("calibration_method", DEFAULT_METHOD)

    def write(out: Path, keep_float: list[str]) -> list[str]:
        return modelopt_qdq(onnx_path, out, calibration, method, keep_float)

    if not options.get("val_data"):
        float_nodes = write(out_path, [])
        return QdqSource(qdq_record(out_path, float_nodes, method), calibration=calibration.record())
    from targets.accuracy_int8 import control_options, quantize_within_map_drop

    control = quantize_within_map_drop(
        onnx_path,
        out_path,
        calibration,
        TENSORRT_QDQ,
        **control_options(options),
        write=write,
        quantizer=f"nvidia-modelopt {modelopt_version()} ({method})",
    )
    return QdqSource(qdq_record(out_path, control.float_nodes, method), control.record, calibration.record())


def adopt_qdq_onnx(given: Path, onnx_path: Path, out_path: Path) -> QdqSource:
    """Copy a Q/DQ ONNX made earlier to `out_path`: a directory written by `--qdq-only` (or its
    model.qdq.onnx), checked against the hashes recorded there, or any other Q/DQ file, taken as is."""
    given = Path(given)
    directory = given if given.is_dir() else given.parent
    meta = read_artifact_dir(directory) if (directory / ARTIFACT_FILE).is_file() else None
    if meta is not None and (meta.get("made_for") != "tensorrt" or meta["model_file"] != QDQ_FILE):
        meta = None
    if given.is_dir() and meta is None:
        hint = "make one with `edgepipe build --target tensorrt --precision int8 --qdq-only`"
        raise InputError("no Q/DQ ONNX record here", path=given, hint=hint)
    file = directory / QDQ_FILE if given.is_dir() else given
    if not file.is_file():
        raise InputError("Q/DQ ONNX not found", path=file)
    shutil.copyfile(file, out_path)
    sha256 = sha256_file(out_path)
    if meta is None:
        return QdqSource({"sha256": sha256, "from": str(file)})
    if sha256 != meta["quantization"]["sha256"]:
        raise InputError("the Q/DQ ONNX changed since `--qdq-only` wrote it", path=file, hint="make it again")
    if meta["source"]["onnx_sha256"] != sha256_file(onnx_path):
        raise InputError(
            f"the Q/DQ ONNX was made from another ONNX ({meta['source']['onnx']})",
            path=onnx_path,
            hint="pass the --onnx it was made from",
        )
    record = {**meta["quantization"], "from": str(file)}
    return QdqSource(record, meta.get("accuracy_control"), meta["calibration"])


def qdq_source(
    onnx_path: Path, calibration: CalibrationSet | None, options: dict[str, Any], out_path: Path
) -> QdqSource:
    """The Q/DQ ONNX to compile, written to `out_path`: the given `qdq_onnx`, or made here."""
    if not options.get("qdq_onnx"):
        return make_host_qdq(onnx_path, calibration, options, out_path)
    if options.get("max_map_drop") is not None:
        raise InputError(
            "--max-map-drop decides the Q/DQ ONNX, --qdq-onnx compiles one already decided: pass one of them"
        )
    return adopt_qdq_onnx(Path(options["qdq_onnx"]), onnx_path, out_path)


def build_qdq_only(
    inputs: BuildInputs,
    precision: str,
    calibration: CalibrationSet | None,
    options: dict[str, Any],
    out_dir: Path,
) -> Artifact:
    """The host half of an INT8 build, no TensorRT needed: the Q/DQ ONNX and its record, in a directory
    ONNX Runtime loads (so `edgepipe bench` checks it here) and `--qdq-onnx` compiles on the device."""
    import onnx
    import onnxruntime

    if precision != "int8":
        raise InputError("--qdq-only writes the INT8 Q/DQ ONNX: pass --precision int8")
    if inputs.onnx is None:
        raise InputError("the tensorrt target builds from an ONNX file", hint="pass --onnx model.onnx")
    facts = onnx_facts(inputs.onnx)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = make_host_qdq(inputs.onnx, calibration, options, out_dir / QDQ_FILE)
    extra: dict[str, Any] = {"made_for": "tensorrt", "quantization": source.record}
    if source.accuracy_control is not None:
        extra["accuracy_control"] = source.accuracy_control
    return write_engine_artifact(
        out_dir,
        target="onnxruntime",
        precision="int8",
        runtime_precision="int8",
        model_file=QDQ_FILE,
        inputs=inputs,
        facts=facts,
        calibration=calibration,
        options=options,
        versions={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        extra=extra,
    )


class TensorRtTarget:
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")

    def available(self) -> tuple[bool, str]:
        return availability()

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: dict[str, Any],
        out_dir: Path,
    ) -> Artifact:
        """`options`: int8_mode ("qdq" default | "calibrator"); qdq_onnx (a Q/DQ ONNX made earlier on the
        host, or the directory `qdq_only` wrote, compiled as is); qdq_only (write only the Q/DQ ONNX, no
        TensorRT needed); calibration_method (ModelOpt's entropy or max); val_data and max_map_drop (the
        Q/DQ checked against FP32, also `max_steps`, `sensitivity_images`); workspace_bytes."""
        if options.get("qdq_only"):
            return build_qdq_only(inputs, precision, calibration, options, out_dir)
        ok, reason = availability()
        if not ok:
            raise BackendUnavailable(reason)
        if inputs.onnx is None:
            raise InputError("the tensorrt target builds from an ONNX file", hint="pass --onnx model.onnx")
        facts = onnx_facts(inputs.onnx)
        out_dir.mkdir(parents=True, exist_ok=True)
        int8_mode = options.get("int8_mode", "qdq") if precision == "int8" else None
        source, stream, qdq = Path(inputs.onnx), None, None
        if int8_mode == "qdq":
            source = out_dir / QDQ_FILE
            qdq = qdq_source(inputs.onnx, calibration, options, source)
        elif int8_mode == "calibrator":
            if calibration is None:
                raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
            stream = CalibrationStream(calibration, facts.batch or 1, out_dir / CACHE_FILE)
        elif int8_mode is not None:
            raise InputError(f"unknown int8_mode {int8_mode!r}; use 'qdq' or 'calibrator'")

        record = build_engine(source, out_dir / MODEL_FILE, precision, stream, facts.batch, options)
        # A Q/DQ build records the calibration that made its Q/DQ ONNX (none for a foreign file).
        calibration_record = qdq.calibration if qdq else stream.calibration.record() if stream else None
        metadata = engine_metadata(
            precision=precision,
            int8_mode=int8_mode,
            calibration_sha256=calibration_record["sha256"] if calibration_record else None,
            qdq_onnx_sha256=qdq.record["sha256"] if qdq else None,
            **record,
        )
        extra: dict[str, Any] = {"calibration": calibration_record, "tensorrt": metadata}
        if qdq is not None:
            extra["quantization"] = qdq.record
            if qdq.accuracy_control is not None:
                extra["accuracy_control"] = qdq.accuracy_control
        return write_engine_artifact(
            out_dir,
            target=self.name,
            precision=precision,
            runtime_precision="int8+fp16" if precision == "int8" else precision,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=facts,
            calibration=None,  # in `extra`
            options=options,
            versions={"tensorrt": record["trt_version"], "cuda": cuda_library() or ""},
            extra=extra,
        )

    def load(self, artifact: Artifact, options: RunOptions) -> TensorRtRunner:
        ok, reason = availability()
        if not ok:
            raise BackendUnavailable(reason)
        return TensorRtRunner(model_path(artifact), artifact.metadata, options)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    stream: CalibrationStream | None,
    batch: int | None,
    options: dict[str, Any],
) -> dict[str, str]:
    """Parse, configure and serialize; returns the TensorRT version and the device it was built on."""
    import tensorrt as trt

    from targets.cuda_memory import open_cuda

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse the ONNX: {errors}", path=onnx_path)
    config = builder.create_builder_config()
    workspace = int(options.get("workspace_bytes", WORKSPACE_BYTES))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers left in float run in fp16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if batch is None:  # dynamic batch: one profile from 1 to max_batch, tuned for the run batch
        image = network.get_input(0)
        _, c, h, w = image.shape
        profile = builder.create_optimization_profile()
        opt_batch, max_batch = int(options.get("opt_batch", 1)), int(options.get("max_batch", 16))
        profile.set_shape(image.name, (1, c, h, w), (opt_batch, c, h, w), (max_batch, c, h, w))
        config.add_optimization_profile(profile)
    cuda = open_cuda()
    if stream is not None:
        config.int8_calibrator = entropy_calibrator(stream, cuda)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError("TensorRT could not build an engine from this ONNX (see its log)", path=onnx_path)
    write_atomic(engine_path, bytes(serialized))
    device_name, capability = cuda.device_info()
    return {"trt_version": trt.__version__, "device_name": device_name, "compute_capability": capability}


def entropy_calibrator(stream: CalibrationStream, cuda):
    """An IInt8EntropyCalibrator2 reading `stream` into one device buffer (needs TensorRT)."""
    import tensorrt as trt

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
            cuda.to_device(self.device_input, np.ascontiguousarray(batch))
            cuda.synchronize()
            return [self.device_input]

        def read_calibration_cache(self) -> bytes | None:
            return stream.read_cache()

        def write_calibration_cache(self, cache) -> None:
            stream.write_cache(bytes(cache))

    return EntropyCalibrator()


class TensorRtRunner(Runner):
    def __init__(self, path: Path, metadata: dict[str, Any], options: RunOptions):
        import tensorrt as trt

        from targets.cuda_memory import open_cuda

        self.cuda = open_cuda()
        check_engine_compatible(metadata["tensorrt"], trt.__version__, self.cuda.device_info()[1])
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.precision = metadata["runtime_precision"]
        self._buffers: dict[tuple[int, ...], tuple[int, int, np.ndarray]] = {}

    def _bind(self, shape: tuple[int, ...]) -> tuple[int, int, np.ndarray]:
        """Device buffers for an input shape, allocated once per shape."""
        if shape not in self._buffers:
            self.context.set_input_shape(self.input_name, shape)
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            output = np.empty(out_shape, dtype=np.float32)
            nbytes = int(np.prod(shape)) * 4
            self._buffers[shape] = (self.cuda.alloc(nbytes), self.cuda.alloc(output.nbytes), output)
        return self._buffers[shape]

    def infer(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        device_in, device_out, output = self._bind(images.shape)
        self.context.set_input_shape(self.input_name, images.shape)
        self.context.set_tensor_address(self.input_name, device_in)
        self.context.set_tensor_address(self.output_name, device_out)
        self.cuda.to_device(device_in, images)
        self.context.execute_async_v3(self.cuda.stream)
        self.cuda.to_host(output, device_out)
        self.cuda.synchronize()
        return output.copy()
