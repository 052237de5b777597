"""PyTorch target: the checkpoint itself, fused, in fp32, bf16 (CPU autocast) or fp16 (CUDA only).

It is the reference every other engine is compared with, so its build only copies the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from core.artifacts import sha256_file
from core.checkpoints import class_names, count_params, gflops, load_detection_model
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.families import family_of
from core.runner import Runner
from targets.base import BuildInputs, RunOptions, library_status
from targets.engine_dir import ModelFacts, copy_into, model_path, onnx_facts, write_engine_artifact
from targets.options import TargetOptions

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

MODEL_FILE = "model.pt"


class TorchOptions(TargetOptions):
    device: str | None = Field(None, description="cpu or cuda: where the build checks the precision runs")
    imgsz: int | None = Field(None, ge=32, description="input size when the build has no ONNX")


def checkpoint_facts(checkpoint: Path, imgsz: int) -> ModelFacts:
    model = load_detection_model(checkpoint)
    return ModelFacts(
        imgsz=imgsz,
        batch=None,
        names={str(k): v for k, v in class_names(model).items()},
        params=count_params(model),
        gflops=round(gflops(model, imgsz), 3),
        checkpoint_sha256=sha256_file(checkpoint),
        family=family_of(model),
    )


def check_device_precision(precision: str, device: str) -> None:
    import torch

    if precision == "fp16" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise InputError(
            "torch fp16 runs on CUDA only, and no CUDA device is available here",
            hint="use fp32 or bf16 on a CPU, or build on a machine with an NVIDIA GPU (--device cuda)",
        )
    if precision == "bf16" and device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise InputError("this CPU has no bf16 support in PyTorch", hint="use fp32")


class TorchTarget:
    name = "torch"
    precisions = ("fp32", "bf16", "fp16")
    options_model = TorchOptions
    from_onnx = False
    runtime_modules = ("torch", "ultralytics.nn.tasks")

    def libraries(self, precision: str, options: TorchOptions) -> tuple[str, ...]:
        return ("torch", "ultralytics")

    def available(self) -> tuple[bool, str]:
        return library_status("torch", "pip install torch")

    def unavailable_precisions(self) -> dict[str, str]:
        """Precisions this machine cannot run, with why (fp16 needs CUDA)."""
        import torch

        return {} if torch.cuda.is_available() else {"fp16": "CUDA only, and no CUDA device here"}

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: TorchOptions,
        out_dir: Path,
    ) -> Artifact:
        import torch

        if inputs.checkpoint is None:
            raise InputError("the torch target runs the checkpoint", hint="pass --model model.pt")
        device = options.device or ("cuda" if precision == "fp16" else "cpu")
        check_device_precision(precision, device)
        if inputs.onnx is not None:
            facts = onnx_facts(inputs.onnx)
        else:
            facts = checkpoint_facts(inputs.checkpoint, options.imgsz or inputs.imgsz or DEFAULT_IMGSZ)
        copy_into(inputs.checkpoint, out_dir, MODEL_FILE)
        return write_engine_artifact(
            out_dir,
            target=self.name,
            precision=precision,
            runtime_precision=precision,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=facts,
            calibration=None,
            options=options.record(),
            versions={"torch": torch.__version__},
        )

    def load(self, artifact: Artifact, options: RunOptions) -> TorchRunner:
        return TorchRunner(model_path(artifact), artifact.metadata["precision"], options)


class TorchRunner(Runner):
    def __init__(self, path: Path, precision: str, options: RunOptions):
        import torch

        device = "cuda" if options.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
        check_device_precision(precision, device)
        if options.threads:
            torch.set_num_threads(options.threads)
        self.device = torch.device(device)
        self.model = load_detection_model(path).fuse().to(self.device)
        if precision == "fp16":
            self.model = self.model.half()
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.precision = precision

    def infer(self, images: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(images).to(self.device)
        with torch.inference_mode():
            if self.dtype == torch.bfloat16:
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    y = self.model(x)
            else:
                y = self.model(x.to(self.dtype))
        y = y[0] if isinstance(y, tuple | list) else y
        return y.float().cpu().numpy()

    def settings(self) -> dict[str, Any]:
        """torch's intra-op threads now, not at load: Ultralytics' device selection, when it runs in
        this process, sets them to cpu_count - 1 behind the caller's back."""
        import torch

        return {"threads": torch.get_num_threads(), "device": str(self.device)}
