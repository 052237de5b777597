"""The TensorRT target: fp32, fp16 and int8 engines, built on the device they run on (TensorRT 10 or 11).

INT8 has two paths. The default, explicit quantization, decides everything on the host: a Q/DQ ONNX
(symmetric INT8, placed for TensorRT's fusions, the Detect head's post-processing in float; `qdq_source`)
made by NVIDIA Model Optimizer (`targets.modelopt_qdq`) from the shared calibration set, checked against
TensorRT's Q/DQ rules (`qdq_rules`), whose accuracy ONNX Runtime measures before any device is involved.
The device only compiles that file, and the engine records its hash. The older path (`int8_mode:
calibrator`, TensorRT 10 only) feeds the same calibration set to an IInt8EntropyCalibrator2
and keeps a calibration cache (`calibration`).

The host half can run alone (`qdq_only`): it writes the Q/DQ ONNX, plain or accuracy-checked (with a
val set, see `targets.accuracy_int8`), into a directory ONNX Runtime can load and benchmark;
`qdq_onnx` then compiles exactly that file on the device, after checking it against the hashes recorded
there, so the chain Q/DQ ONNX sha256 -> engine metadata holds.

Everything except `engine.compile_engine` and `runner.TensorRtRunner` runs without TensorRT, and those two
run here against fakes of the TensorRT 10 and 11 APIs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BackendUnavailable, InputError
from targets.base import BuildInputs, RunOptions
from targets.engine_dir import model_path, onnx_facts, write_engine_artifact
from targets.tensorrt.cuda_memory import cuda_library, open_cuda
from targets.tensorrt.engine import compile_engine
from targets.tensorrt.library import DISTRIBUTIONS, availability
from targets.tensorrt.metadata import engine_metadata
from targets.tensorrt.options import TensorRtOptions
from targets.tensorrt.qdq_source import QDQ_FILE, make_host_qdq, qdq_source
from targets.tensorrt.runner import TensorRtRunner

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

MODEL_FILE = "model.engine"
NAME = "tensorrt"
# The host half's directory runs on ONNX Runtime: its record names the target that loads it, so that
# bench, budgets and compare key its results by what ran; `made_for` names this target.
QDQ_RUNS_ON = "onnxruntime"


def build_qdq_only(
    inputs: BuildInputs,
    precision: str,
    calibration: CalibrationSet | None,
    options: TensorRtOptions,
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
    extra: dict[str, Any] = {"made_for": NAME, "quantization": source.record}
    if source.accuracy_control is not None:
        extra["accuracy_control"] = source.accuracy_control
    return write_engine_artifact(
        out_dir,
        target=QDQ_RUNS_ON,
        precision="int8",
        runtime_precision="int8",
        model_file=QDQ_FILE,
        inputs=inputs,
        facts=facts,
        calibration=calibration,
        options=options.record(),
        versions={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        extra=extra,
    )


class TensorRtTarget:
    name = NAME
    precisions = ("fp32", "fp16", "int8")
    options_model = TensorRtOptions
    from_onnx = True
    runtime_modules = ("tensorrt",)

    def libraries(self, precision: str, options: TensorRtOptions) -> tuple[str, ...]:
        """TensorRT compiles every engine (but the host half); an INT8 build that quantizes here also
        depends on ModelOpt, and on ONNX and ONNX Runtime, which check and measure the Q/DQ ONNX."""
        compiled = () if options.qdq_only else DISTRIBUTIONS
        if precision == "int8" and options.makes_qdq:
            return (*compiled, "nvidia-modelopt", "onnx", "onnxruntime")
        return compiled

    def available(self) -> tuple[bool, str]:
        return availability()

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: TensorRtOptions,
        out_dir: Path,
    ) -> Artifact:
        """`options` (`TensorRtOptions`): qdq_only writes the host half alone; int8_mode picks explicit
        Q/DQ or the calibrator; qdq_onnx compiles a Q/DQ ONNX made earlier as is."""
        if options.qdq_only:
            return build_qdq_only(inputs, precision, calibration, options, out_dir)
        ok, reason = availability()
        if not ok:
            raise BackendUnavailable(reason)
        if inputs.onnx is None:
            raise InputError("the tensorrt target builds from an ONNX file", hint="pass --onnx model.onnx")
        facts = onnx_facts(inputs.onnx)
        int8_mode = options.int8_mode if precision == "int8" else None
        out_dir.mkdir(parents=True, exist_ok=True)
        source, qdq = Path(inputs.onnx), None
        if int8_mode == "qdq":
            source = out_dir / QDQ_FILE
            qdq = qdq_source(inputs.onnx, calibration, options, source)
        record = compile_engine(
            source,
            out_dir / MODEL_FILE,
            precision=precision,
            int8_mode=int8_mode,
            calibration=calibration,
            batch=facts.batch,
            options=options,
            cuda=open_cuda(),
        )
        # A Q/DQ build records the calibration that made its Q/DQ ONNX (none for a foreign file).
        calibration_record = qdq.calibration if qdq else None
        if int8_mode == "calibrator" and calibration is not None:
            calibration_record = calibration.record()
        runtime_precision = record.pop("runtime_precision")
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
            runtime_precision=runtime_precision,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=facts,
            calibration=None,  # in `extra`
            options=options.record(),
            versions={"tensorrt": record["trt_version"], "cuda": cuda_library() or ""},
            extra=extra,
        )

    def load(self, artifact: Artifact, options: RunOptions) -> TensorRtRunner:
        ok, reason = availability()
        if not ok:
            raise BackendUnavailable(reason)
        return TensorRtRunner(model_path(artifact), artifact.metadata, open_cuda(), options.cuda_graphs)
