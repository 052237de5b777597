"""OpenVINO target: an IR compiled with an explicit inference precision, or INT8 through NNCF.

OpenVINO's CPU plugin runs an FP32 IR in bf16 on CPUs with bf16 units unless told otherwise, so every
engine states its `INFERENCE_PRECISION_HINT` and records what the compiled model reports back. INT8
keeps the Detect head's post-processing in float (as Ultralytics' OpenVINO INT8 export does). Its float
parts run in bf16 where the CPU has bf16 units (the plugin itself keeps the box decode after the last
convolution in f32), else f32; the INT8 self-check measures them as they run and returns them to f32
when bf16 costs mAP past the bound (targets/openvino_int8.py). The engine records the hint it chose.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.accuracy import evaluate
from core.errors import InputError, PrecisionUnavailable
from core.runner import LayerTime, Runner
from targets.base import BuildInputs, RunOptions, library_status
from targets.engine_dir import model_path, onnx_facts, write_engine_artifact
from targets.openvino_int8 import quantize

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

MODEL_FILE = "model.xml"
DEVICES = ("CPU", "GPU", "NPU", "AUTO")  # also with a suffix: GPU.1, AUTO:GPU,CPU
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# The hint each engine compiles with; int8 names the precision of its float parts, the slowest it may
# take (`int8_float_hint` picks bf16 where the device runs it, and the engine records the choice).
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def runtime_precision(precision: str, hint_read_back: str) -> str:
    actual = PRECISION_NAMES.get(hint_read_back, hint_read_back)
    return f"int8+{actual}" if precision == "int8" else actual


def int8_float_hint(device: str = "CPU") -> str:
    """The hint for an INT8 engine's float parts: bf16 on a CPU with bf16 units (AVX512-BF16, AMX), which
    OpenVINO reports in its optimization capabilities, else f32. Other devices keep f32."""
    import openvino as ov

    name = device_name(device)
    if name.split(".")[0] != "CPU":
        return HINTS["int8"]
    return "bf16" if "BF16" in ov.Core().get_property(name, "OPTIMIZATION_CAPABILITIES") else HINTS["int8"]


def engine_hint(metadata: dict[str, Any]) -> str:
    """The hint an engine was built for, from its record (engines built before the choice: f32)."""
    return str(metadata.get("inference_precision_hint") or HINTS[metadata["precision"]])


def device_name(device: str) -> str:
    """The OpenVINO device for `--device` (cpu -> CPU); an InputError for one OpenVINO has no name for."""
    name = device.upper()
    if name.split(":")[0].split(".")[0] not in DEVICES:
        raise InputError(
            f"OpenVINO runs on {', '.join(DEVICES)} (e.g. GPU.1, AUTO:GPU,CPU), not {device!r}",
            hint="pass --device CPU, GPU, NPU or AUTO",
        )
    return name


def compile_model(
    path: Path | Any, hint: str, options: RunOptions, performance: str = "LATENCY", profile: bool = False
):
    """`hint` is the inference precision hint (f32, bf16, f16); `performance` is the performance hint
    unless the options name one; streams are explicit, so the recorded stream count is the one that ran."""
    import openvino as ov

    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": hint,
        "PERFORMANCE_HINT": options.performance_hint or performance,
        "NUM_STREAMS": options.streams,
    }
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = options.threads
    if profile:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(path, device_name(options.device), config)


def hint_read_back(compiled) -> str:
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def read_back(compiled) -> dict[str, Any]:
    """What the plugin compiled for: devices, hint, streams, threads and optimal requests.

    A property the device (or AUTO) does not report is left out.
    """
    names = {
        "device": "EXECUTION_DEVICES",
        "performance_hint": "PERFORMANCE_HINT",
        "streams": "NUM_STREAMS",
        "threads": "INFERENCE_NUM_THREADS",
        "optimal_infer_requests": "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
    }
    found: dict[str, Any] = {}
    for key, name in names.items():
        try:
            value = compiled.get_property(name)
        except RuntimeError:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        found[key] = value if isinstance(value, int) else str(value)
    return found


class OpenVinoTarget:
    name = "openvino"
    precisions = ("fp32", "bf16", "fp16", "int8")

    def available(self) -> tuple[bool, str]:
        return library_status("openvino", "pip install openvino nncf")

    def unavailable_precisions(self) -> dict[str, str]:
        """bf16 and fp16 on a CPU without those units: OpenVINO would run them as fp32."""
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return {
            precision: f"this CPU has no {precision.upper()} units (OpenVINO would run fp32)"
            for precision in ("bf16", "fp16")
            if precision.upper() not in capabilities
        }

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: dict[str, Any],
        out_dir: Path,
    ) -> Artifact:
        import openvino as ov

        if inputs.onnx is None:
            raise InputError("the openvino target builds from an ONNX file", hint="pass --onnx model.onnx")
        facts = onnx_facts(inputs.onnx)
        model = ov.convert_model(str(inputs.onnx))
        versions = {"openvino": ov.__version__}
        extra: dict[str, Any] = {}
        hint = HINTS[precision]
        if precision == "int8":
            if calibration is None:
                raise InputError("int8 needs a calibration set", hint="pass --data data.yaml")
            import nncf

            def measure(candidate, float_hint: str) -> tuple[float, float]:
                runner = OpenVinoRunner(candidate, "int8", RunOptions(), hint=float_hint)
                accuracy = evaluate(runner, options["val_data"], facts.imgsz)
                return accuracy.map50_95, accuracy.map50

            versions["nncf"] = nncf.__version__
            model, extra["quantization"], control = quantize(
                model, calibration, options, facts.imgsz, measure, int8_float_hint()
            )
            hint = extra["quantization"]["float_parts"]["hint"]
            if control is not None:
                extra["accuracy_control"] = control
        out_dir.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, out_dir / MODEL_FILE, compress_to_fp16=precision == "fp16")

        compiled = compile_model(out_dir / MODEL_FILE, hint, RunOptions())
        actual = runtime_precision(precision, hint_read_back(compiled))
        if precision in ("bf16", "fp16") and actual != precision:
            raise PrecisionUnavailable(
                f"this device cannot run {precision}: OpenVINO runs it as {actual}",
                hint="build fp32 or int8 for this device, or build on the device the engine is for",
            )
        return write_engine_artifact(
            out_dir,
            target=self.name,
            precision=precision,
            runtime_precision=actual,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=facts,
            calibration=calibration if precision == "int8" else None,
            options=options,
            versions=versions,
            extra={"inference_precision_hint": hint, **extra},
        )

    def load(self, artifact: Artifact, options: RunOptions) -> OpenVinoRunner:
        meta = artifact.metadata
        return OpenVinoRunner(model_path(artifact), meta["precision"], options, hint=engine_hint(meta))


class OpenVinoRunner(Runner):
    def __init__(self, path: Path | Any, precision: str, options: RunOptions, hint: str | None = None):
        """`path`: an IR file, or an ov.Model in memory (the INT8 build measures candidates so); `hint`:
        the inference precision hint, by default the precision's own (f32 for int8's float parts)."""
        self.path = path
        self.hint = hint or HINTS[precision]
        self.compiled = compile_model(path, self.hint, options)
        self.request = self.compiled.create_infer_request()
        self.precision = runtime_precision(precision, hint_read_back(self.compiled))
        self.options = options
        self._settings = {**read_back(self.compiled), "infer_requests": 1}

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def infer(self, images: np.ndarray) -> np.ndarray:
        # The output buffer is reused by the next request, so it is copied; the input needs no copy.
        return self.request.infer({0: images}, share_inputs=True)[0].copy()

    def throughput(self, batch: np.ndarray, streams: int, seconds: float) -> float:
        """Images per second with `streams` parallel requests (THROUGHPUT hint, AsyncInferQueue)."""
        import openvino as ov

        options = replace(self.options, streams=streams)
        compiled = compile_model(self.path, self.hint, options, performance="THROUGHPUT")
        requests = self.options.infer_requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        queue = ov.AsyncInferQueue(compiled, requests)
        self._settings["throughput"] = {**read_back(compiled), "infer_requests": requests}
        for _ in range(len(queue)):  # warm-up: one pass through every request
            queue.start_async({0: batch})
        queue.wait_all()
        started, submitted = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            queue.start_async({0: batch})
            submitted += 1
        queue.wait_all()
        return submitted * len(batch) / (time.perf_counter() - started)

    def layer_times(self, batch: np.ndarray, runs: int) -> list[LayerTime]:
        """OpenVINO's own per-layer counters (PERF_COUNT), as `benchmark_app -pc` prints them."""
        compiled = compile_model(self.path, self.hint, self.options, profile=True)
        request = compiled.create_infer_request()
        request.infer({0: batch})  # untimed: first-run allocations
        times = []
        for _ in range(runs):
            request.infer({0: batch})
            times += [
                LayerTime(
                    info.node_name, info.node_type, info.exec_type, info.real_time.total_seconds() * 1e3
                )
                for info in request.get_profiling_info()
                if info.status == info.Status.EXECUTED
            ]
        return times
