"""Parse, configure and serialize an engine, on TensorRT 10 or 11.

TensorRT 10 builds weakly typed: the FP16 and INT8 flags let it choose per layer (a Q/DQ ONNX runs its
float layers in fp16), and `int8_mode: calibrator` feeds an IInt8EntropyCalibrator2. TensorRT 11 builds
strongly typed with no flags: a Q/DQ ONNX runs INT8 where it says so and its float layers in the ONNX's
own type, fp16 needs an fp16 ONNX (ModelOpt's AutoCast), and there is no implicit calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import write_atomic
from core.errors import InputError
from targets.tensorrt.calibration import CalibrationStream, entropy_calibrator
from targets.tensorrt.library import TrtApi, checked, import_tensorrt

if TYPE_CHECKING:
    from core.calibration import CalibrationSet
    from targets.tensorrt.cuda_memory import CudaMemory
    from targets.tensorrt.options import TensorRtOptions

CACHE_FILE = "calibration.cache"
NEWER_TENSORRT = "or build on TensorRT 10 (JetPack 6, `pip install 'tensorrt-cu12<11'`)"


@dataclass(frozen=True)
class BuildPlan:
    strongly_typed: bool
    flags: tuple[str, ...]  # trt.BuilderFlag names
    runtime_precision: str
    calibrator: bool


def plan_build(api: TrtApi, precision: str, int8_mode: str | None, onnx_fp16: bool) -> BuildPlan:
    """How this TensorRT builds `precision` from an ONNX whose float type is fp16 (`onnx_fp16`) or fp32."""
    int8 = precision == "int8"
    if not api.strongly_typed_only:
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("FP16", "INT8")}[precision]
        return BuildPlan(False, flags, "int8+fp16" if int8 else precision, int8_mode == "calibrator")
    if int8_mode == "calibrator":
        raise InputError(
            f"TensorRT {api.version} has no implicit INT8 calibration (IInt8EntropyCalibrator2 was removed)",
            hint=f"use int8_mode: qdq (the default, a Q/DQ ONNX made on the host), {NEWER_TENSORRT}",
        )
    float_type = "fp16" if onnx_fp16 else "fp32"
    if not int8 and precision != float_type:
        raise InputError(
            f"TensorRT {api.version} builds strongly typed networks: --precision {precision} needs an "
            f"ONNX in {precision}, this one is {float_type}",
            hint=f"convert it with ModelOpt's AutoCast (modelopt.onnx.autocast), or pass --precision "
            f"{float_type} or int8, {NEWER_TENSORRT}",
        )
    return BuildPlan(True, (), f"int8+{float_type}" if int8 else float_type, False)


def onnx_is_fp16(onnx_path: Path) -> bool:
    """Whether the ONNX computes in fp16 (its weights are FLOAT16), as AutoCast or `half` exports make it."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)


def network_flags(trt: Any, plan: BuildPlan) -> int:
    """STRONGLY_TYPED where asked and the enum has it (a TensorRT that builds only typed may drop it)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if plan.strongly_typed and flag is not None else 0


def compile_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str,
    int8_mode: str | None,
    calibration: CalibrationSet | None,
    batch: int | None,
    options: TensorRtOptions,
    cuda: CudaMemory,
) -> dict[str, Any]:
    """Build and write the engine (CUDA is open before the builder starts); returns the TensorRT version,
    the device, whether it was strongly typed and the precision that runs."""
    trt = import_tensorrt()
    api = TrtApi(trt.__version__)
    plan = plan_build(api, precision, int8_mode, onnx_is_fp16(onnx_path))
    logger = trt.Logger(trt.Logger.WARNING)
    gpu_hint = "is the GPU visible here (nvidia-smi; docker run --runtime nvidia / --gpus all)?"
    builder = checked(trt.Builder(logger), "Builder()", hint=gpu_hint)
    network = checked(builder.create_network(network_flags(trt, plan)), "create_network")
    parser = checked(trt.OnnxParser(network, logger), "OnnxParser")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse the ONNX: {errors}", path=onnx_path)
    config = checked(builder.create_builder_config(), "create_builder_config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_batch = options.opt_batch
    profile = None
    if batch is None:  # dynamic batch: one profile from 1 to max_batch, tuned for the run batch
        image = network.get_input(0)
        _, c, h, w = image.shape
        profile = checked(builder.create_optimization_profile(), "create_optimization_profile")
        max_batch = options.max_batch
        profile.set_shape(image.name, (1, c, h, w), (opt_batch, c, h, w), (max_batch, c, h, w))
        if config.add_optimization_profile(profile) < 0:
            raise InputError(f"TensorRT rejects the batch profile 1/{opt_batch}/{max_batch}", path=onnx_path)
    calibrator = None  # held here for as long as the builder may call it
    if plan.calibrator:
        if calibration is None:
            raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
        stream = CalibrationStream(calibration, batch or opt_batch, engine_path.parent / CACHE_FILE)
        if len(calibration.files) < stream.batch_size:
            raise InputError(
                f"calibration has {len(calibration.files)} images, fewer than its batch {stream.batch_size}",
                hint="raise calib_images or lower opt_batch",
            )
        calibrator = entropy_calibrator(trt, stream, cuda)
        config.int8_calibrator = calibrator
        if profile is not None:  # a dynamic batch calibrates at the profile's opt batch
            checked(config.set_calibration_profile(profile), "set_calibration_profile")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError("TensorRT could not build an engine from this ONNX (see its log)", path=onnx_path)
    write_atomic(engine_path, bytes(serialized))
    device_name, capability = cuda.device_info()
    return {
        "trt_version": trt.__version__,
        "device_name": device_name,
        "compute_capability": capability,
        "strongly_typed": plan.strongly_typed,
        "runtime_precision": plan.runtime_precision,
    }
